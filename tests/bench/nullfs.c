/*
 * nullfs: the FUSE floor of the benchmark (tests/bench/bench.py).
 *
 * A minimal libfuse3 low-level filesystem run the way odofs runs
 * (fuse_session_loop_mt, 8 threads at most, 4 idle), so that what it
 * costs is what FUSE alone costs:
 *
 *	MOUNT/file		a regular file opened with direct I/O: writes are
 *				accepted and discarded (the reply is the size),
 *				reads are served from memory, --size bytes of
 *				repeated 100-byte lines
 *	MOUNT/file1 ...		--files N - 1 more such files (one per writer:
 *				the kernel serialises direct writes to one
 *				inode, as odofs's writers to one `events`)
 *	MOUNT/live		a live pipe as odofs's `live`: each open is a
 *				cursor that starts at the end of everything
 *				written so far (to any file, while a live file
 *				is open); a read with nothing new is parked and
 *				answered by the next write, from the writer's
 *				thread, before it replies to the write.
 *				The floor of the live-latency workloads: two
 *				FUSE round trips and nothing else
 *	MOUNT/dev-000000 ...	--entries N empty directories, for the `ls -l`
 *				floor
 *
 * Timeouts are odofs's: names and directories 60 s, the file's attributes
 * 0 s (every stat reaches the daemon, as for `events`).  Entries are listed
 * with plain readdir, as odofs does; --readdirplus lists them with
 * readdirplus instead (attributes in the listing, no lookup per entry).
 *
 *	nullfs [--size BYTES] [--files N] [--entries N] [--readdirplus]
 *	       [-o OPT] [--max-threads N] [--max-idle N] [--live-batch-us N]
 *	       MOUNTPOINT
 *
 * --max-threads and --max-idle set the loop's thread limits (default 8 and
 * 4, odofs's).  --live-batch-us N answers parked live reads from a timer
 * every N µs instead of from each write (an experiment: batching).
 *
 * Runs in the foreground until SIGTERM/SIGINT or fusermount3 -u.
 */
#define FUSE_USE_VERSION 312

#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define NULLFS_FILE_INO		2
#define NULLFS_FILES_MAX	64
#define NULLFS_LIVE_INO		(NULLFS_FILE_INO + NULLFS_FILES_MAX)
#define NULLFS_ENTRY_INO0	(NULLFS_LIVE_INO + 1)
#define NULLFS_LOG_MAX		(1ull << 30)	/* of live data; reserved, not touched */
#define NULLFS_LINE		100
#define NULLFS_MAX_READ		(1u << 20)
#define NULLFS_DIR_TIMEOUT	60.0

static unsigned long long nullfs_size = 100ull << 20;
static unsigned long nullfs_entries;
static unsigned nullfs_files = 1;
static int nullfs_plus;
static unsigned nullfs_max_threads = 8, nullfs_max_idle = 4;	/* as odofs */
static char *nullfs_data;	/* NULLFS_MAX_READ + NULLFS_LINE bytes of lines */
static time_t nullfs_started;

/* live: the log of what was written while a live file was open */
struct live {
	uint64_t pos;			/* next byte of the log to give */
	fuse_req_t req;			/* parked read, deliverable */
	fuse_req_t parking;		/* interrupt callback being registered */
	int parking_intr;
	size_t want;
	struct live *prev, *next;
};

static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static struct live *live_opens;
static unsigned live_nopen;
static unsigned live_nparked;
static char *live_log;
static uint64_t live_len;
static unsigned live_batch_us;	/* --live-batch-us: deliver on a timer */

static void
nullfs_fill(void)
{
	size_t len = NULLFS_MAX_READ + NULLFS_LINE;

	if ((nullfs_data = malloc(len)) == NULL) {
		perror("nullfs: malloc");
		exit(1);
	}
	for (size_t i = 0; i < len; i++)
		nullfs_data[i] = (i % NULLFS_LINE) == NULLFS_LINE - 1 ? '\n' :
		    (char)('a' + (i % 26));
}

static int
nullfs_stat(fuse_ino_t ino, struct stat *st, double *timeout)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_uid = getuid();
	st->st_gid = getgid();
	st->st_blksize = 4096;
	st->st_mtim.tv_sec = nullfs_started;
	st->st_atim = st->st_ctim = st->st_mtim;
	*timeout = NULLFS_DIR_TIMEOUT;
	if (ino == FUSE_ROOT_ID) {
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2 + nullfs_entries;
	} else if (ino >= NULLFS_FILE_INO && ino < NULLFS_FILE_INO + nullfs_files) {
		st->st_mode = S_IFREG | 0644;
		st->st_nlink = 1;
		st->st_size = (off_t)nullfs_size;
		st->st_blocks = (blkcnt_t)((nullfs_size + 511) / 512);
		*timeout = 0.0;
	} else if (ino == NULLFS_LIVE_INO) {
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
		*timeout = 0.0;
	} else if (ino >= NULLFS_ENTRY_INO0 &&
	    ino < NULLFS_ENTRY_INO0 + nullfs_entries) {
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
	} else {
		return -ENOENT;
	}
	return 0;
}

static void
nullfs_entry_name(char *out, size_t cap, unsigned long i)
{
	snprintf(out, cap, "dev-%06lu", i);
}

static void
nullfs_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;	/* as odofs */
	if (nullfs_plus)
		conn->want |= FUSE_CAP_READDIRPLUS;
	else
		conn->want &= ~(FUSE_CAP_READDIRPLUS |
		    FUSE_CAP_READDIRPLUS_AUTO);
}

static void
nullfs_reply_entry(fuse_req_t req, fuse_ino_t ino)
{
	struct fuse_entry_param e;

	memset(&e, 0, sizeof(e));
	if (nullfs_stat(ino, &e.attr, &e.attr_timeout) < 0) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	e.ino = ino;
	e.entry_timeout = NULLFS_DIR_TIMEOUT;
	fuse_reply_entry(req, &e);
}

static void
nullfs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	char *end;
	unsigned long i;

	if (parent != FUSE_ROOT_ID) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (strcmp(name, "live") == 0) {
		nullfs_reply_entry(req, NULLFS_LIVE_INO);
		return;
	}
	if (strncmp(name, "file", 4) == 0) {
		if (name[4] == '\0') {
			nullfs_reply_entry(req, NULLFS_FILE_INO);
			return;
		}
		errno = 0;
		i = strtoul(name + 4, &end, 10);
		if (errno == 0 && *end == '\0' && name[4] != '0' &&
		    i < nullfs_files) {
			nullfs_reply_entry(req, NULLFS_FILE_INO + i);
			return;
		}
	}
	if (strncmp(name, "dev-", 4) == 0) {
		errno = 0;
		i = strtoul(name + 4, &end, 10);
		if (errno == 0 && *end == '\0' && end - name == 10 &&
		    i < nullfs_entries) {
			nullfs_reply_entry(req, NULLFS_ENTRY_INO0 + i);
			return;
		}
	}
	fuse_reply_err(req, ENOENT);
}

static void
nullfs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;
	double timeout;

	(void)fi;
	if (nullfs_stat(ino, &st, &timeout) < 0) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	fuse_reply_attr(req, &st, timeout);
}

static void
nullfs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
    struct fuse_file_info *fi)
{
	(void)attr;
	(void)to_set;
	nullfs_getattr(req, ino, fi);
}

static void
nullfs_open_live(fuse_req_t req, struct fuse_file_info *fi)
{
	struct live *l;

	if ((fi->flags & O_ACCMODE) != O_RDONLY) {
		fuse_reply_err(req, EACCES);
		return;
	}
	if ((l = calloc(1, sizeof(*l))) == NULL) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_lock(&live_lock);
	l->pos = live_len;
	l->next = live_opens;
	if (live_opens != NULL)
		live_opens->prev = l;
	live_opens = l;
	live_nopen++;
	pthread_mutex_unlock(&live_lock);
	fi->fh = (uintptr_t)l;
	fi->direct_io = 1;
	fi->noflush = 1;
	if (fuse_reply_open(req, fi) == -ENOENT) {
		pthread_mutex_lock(&live_lock);
		if (l->prev != NULL)
			l->prev->next = l->next;
		else
			live_opens = l->next;
		if (l->next != NULL)
			l->next->prev = l->prev;
		live_nopen--;
		pthread_mutex_unlock(&live_lock);
		free(l);
	}
}

/* Interrupt of a parked live read: as odofs's pipe_interrupt(). */
static void
nullfs_live_intr(fuse_req_t req, void *arg)
{
	struct live *l = arg;

	pthread_mutex_lock(&live_lock);
	if (l->req == req) {
		l->req = NULL;
		live_nparked--;
	} else {
		if (l->parking == req)
			l->parking_intr = 1;
		req = NULL;
	}
	pthread_mutex_unlock(&live_lock);
	if (req != NULL)
		fuse_reply_err(req, EINTR);
}

static void
nullfs_read_live(fuse_req_t req, struct live *l, size_t size)
{
	uint64_t pos;
	size_t n;
	int intr;

	pthread_mutex_lock(&live_lock);
	if (l->req != NULL || l->parking != NULL) {
		pthread_mutex_unlock(&live_lock);
		fuse_reply_err(req, EAGAIN);
		return;
	}
	if (l->pos < live_len) {
		pos = l->pos;
		n = live_len - pos < size ? (size_t)(live_len - pos) : size;
		l->pos += n;
		pthread_mutex_unlock(&live_lock);
		fuse_reply_buf(req, live_log + pos, n);	/* the log never moves */
		return;
	}
	l->parking = req;
	l->parking_intr = 0;
	l->want = size;
	pthread_mutex_unlock(&live_lock);
	fuse_req_interrupt_func(req, nullfs_live_intr, l);
	pthread_mutex_lock(&live_lock);
	l->parking = NULL;
	intr = l->parking_intr;
	if (!intr) {
		/* a write may have come meanwhile */
		if (l->pos < live_len) {
			pos = l->pos;
			n = live_len - pos < size ? (size_t)(live_len - pos) : size;
			l->pos += n;
			pthread_mutex_unlock(&live_lock);
			fuse_req_interrupt_func(req, NULL, NULL);
			fuse_reply_buf(req, live_log + pos, n);
			return;
		}
		l->req = req;
		live_nparked++;
	}
	pthread_mutex_unlock(&live_lock);
	if (intr)
		fuse_reply_err(req, EINTR);
}

struct deliver {
	fuse_req_t req;
	uint64_t pos;
	size_t n;
};

/*
 * Appends a write to the live log and takes every parked read: *out (free
 * it) and their count, to answer once the write itself is answered.
 */
static unsigned
nullfs_live_write(const char *buf, size_t size, struct deliver **out)
{
	struct deliver *d = NULL;
	unsigned nd = 0;

	*out = NULL;
	if (__atomic_load_n(&live_nopen, __ATOMIC_RELAXED) == 0)
		return 0;
	pthread_mutex_lock(&live_lock);
	if (live_nopen == 0 || live_len + size > NULLFS_LOG_MAX) {
		pthread_mutex_unlock(&live_lock);
		return 0;
	}
	memcpy(live_log + live_len, buf, size);
	live_len += size;
	if (live_batch_us == 0 && live_nparked > 0 &&
	    (d = malloc(live_nparked * sizeof(*d))) != NULL) {
		for (struct live *l = live_opens; l != NULL; l = l->next) {
			if (l->req == NULL)
				continue;
			d[nd].req = l->req;
			d[nd].pos = l->pos;
			d[nd].n = live_len - l->pos < l->want ?
			    (size_t)(live_len - l->pos) : l->want;
			l->pos += d[nd].n;
			l->req = NULL;
			live_nparked--;
			nd++;
		}
	}
	pthread_mutex_unlock(&live_lock);
	*out = d;
	return nd;
}

/*
 * --live-batch-us N: parked reads are answered by this thread every N µs
 * instead of by each write, so that a reader gets what N µs brought in
 * one read (the experiment of docs/BENCHMARKS.md, workload 7).
 */
static void *
nullfs_live_batcher(void *arg)
{
	struct timespec ts = { 0, (long)live_batch_us * 1000 };

	(void)arg;
	for (;;) {
		struct deliver *d = NULL;
		unsigned nd = 0;

		nanosleep(&ts, NULL);
		pthread_mutex_lock(&live_lock);
		if (live_nparked > 0 &&
		    (d = malloc(live_nparked * sizeof(*d))) != NULL) {
			for (struct live *l = live_opens; l != NULL; l = l->next) {
				if (l->req == NULL || l->pos >= live_len)
					continue;
				d[nd].req = l->req;
				d[nd].pos = l->pos;
				d[nd].n = live_len - l->pos < l->want ?
				    (size_t)(live_len - l->pos) : l->want;
				l->pos += d[nd].n;
				l->req = NULL;
				live_nparked--;
				nd++;
			}
		}
		pthread_mutex_unlock(&live_lock);
		for (unsigned i = 0; i < nd; i++) {
			fuse_req_interrupt_func(d[i].req, NULL, NULL);
			fuse_reply_buf(d[i].req, live_log + d[i].pos, d[i].n);
		}
		free(d);
	}
	return NULL;
}

static void
nullfs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct live *l = (struct live *)(uintptr_t)fi->fh;

	if (ino == NULLFS_LIVE_INO && l != NULL) {
		pthread_mutex_lock(&live_lock);
		if (l->prev != NULL)
			l->prev->next = l->next;
		else
			live_opens = l->next;
		if (l->next != NULL)
			l->next->prev = l->prev;
		live_nopen--;
		pthread_mutex_unlock(&live_lock);
		free(l);
	}
	fuse_reply_err(req, 0);
}

static void
nullfs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (ino == NULLFS_LIVE_INO) {
		nullfs_open_live(req, fi);
		return;
	}
	if (ino < NULLFS_FILE_INO || ino >= NULLFS_FILE_INO + nullfs_files) {
		fuse_reply_err(req, ino == FUSE_ROOT_ID ? EISDIR : ENOENT);
		return;
	}
	fi->direct_io = 1;		/* as odofs's events */
	fi->keep_cache = 0;
	if ((fi->flags & O_ACCMODE) == O_RDONLY)
		fi->noflush = 1;
	fuse_reply_open(req, fi);
}

static void
nullfs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
    struct fuse_file_info *fi)
{
	unsigned long long o = (unsigned long long)off;
	size_t n;

	if (ino == NULLFS_LIVE_INO) {
		nullfs_read_live(req, (struct live *)(uintptr_t)fi->fh, size);
		return;
	}
	if (o >= nullfs_size) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	n = size;
	if (n > NULLFS_MAX_READ)
		n = NULLFS_MAX_READ;
	if (n > nullfs_size - o)
		n = (size_t)(nullfs_size - o);
	/* the lines repeat every NULLFS_LINE bytes: no copy */
	fuse_reply_buf(req, nullfs_data + o % NULLFS_LINE, n);
}

static void
nullfs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
    off_t off, struct fuse_file_info *fi)
{
	struct deliver *d;
	unsigned nd;

	(void)ino;
	(void)off;
	(void)fi;
	nd = nullfs_live_write(buf, size, &d);
	/* readers first: the shortest path from a write to a reader */
	for (unsigned i = 0; i < nd; i++) {
		fuse_req_interrupt_func(d[i].req, NULL, NULL);
		fuse_reply_buf(d[i].req, live_log + d[i].pos, d[i].n);
	}
	free(d);
	fuse_reply_write(req, size);
}

static void
nullfs_ok(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

static void
nullfs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
    struct fuse_file_info *fi)
{
	(void)datasync;
	nullfs_ok(req, ino, fi);
}

static void
nullfs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (ino != FUSE_ROOT_ID) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	fuse_reply_open(req, fi);
}

/* Entry k (from 0) of "." ".." "file" file1... dev-...: name and inode. */
static fuse_ino_t
nullfs_dirent(unsigned long long k, char *name, size_t cap)
{
	if (k >= 3 && k < 2ull + nullfs_files) {
		snprintf(name, cap, "file%llu", k - 2);
		return NULLFS_FILE_INO + (k - 2);
	}
	if (k >= 3)
		k -= nullfs_files - 1;
	if (k == 0) {
		snprintf(name, cap, ".");
		return FUSE_ROOT_ID;
	}
	if (k == 1) {
		snprintf(name, cap, "..");
		return FUSE_ROOT_ID;
	}
	if (k == 2) {
		snprintf(name, cap, "file");
		return NULLFS_FILE_INO;
	}
	nullfs_entry_name(name, cap, (unsigned long)(k - 3));
	return NULLFS_ENTRY_INO0 + (k - 3);
}

static void
nullfs_readdir_any(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
    int plus)
{
	unsigned long long total = 2ull + nullfs_files + nullfs_entries;
	size_t used = 0;
	char *buf;

	if (ino != FUSE_ROOT_ID) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	if ((buf = malloc(size)) == NULL) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	for (unsigned long long k = (unsigned long long)off; k < total; k++) {
		char name[32];
		fuse_ino_t eino = nullfs_dirent(k, name, sizeof(name));
		size_t ent;

		if (plus) {
			struct fuse_entry_param e;

			memset(&e, 0, sizeof(e));
			if (k >= 2) {
				nullfs_stat(eino, &e.attr, &e.attr_timeout);
				e.ino = eino;
				e.entry_timeout = NULLFS_DIR_TIMEOUT;
			} else {
				/* "." and "..": no lookup count */
				e.attr.st_ino = eino;
				e.attr.st_mode = S_IFDIR;
			}
			ent = fuse_add_direntry_plus(req, buf + used,
			    size - used, name, &e, (off_t)(k + 1));
		} else {
			struct stat st;

			memset(&st, 0, sizeof(st));
			st.st_ino = eino;
			st.st_mode = eino < NULLFS_ENTRY_INO0 &&
			    eino != FUSE_ROOT_ID ? S_IFREG : S_IFDIR;
			ent = fuse_add_direntry(req, buf + used, size - used,
			    name, &st, (off_t)(k + 1));
		}
		if (ent > size - used)
			break;
		used += ent;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static void
nullfs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
    struct fuse_file_info *fi)
{
	(void)fi;
	nullfs_readdir_any(req, ino, size, off, 0);
}

static void
nullfs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
    struct fuse_file_info *fi)
{
	(void)fi;
	nullfs_readdir_any(req, ino, size, off, 1);
}

static const struct fuse_lowlevel_ops nullfs_ops = {
	.init = nullfs_init,
	.lookup = nullfs_lookup,
	.getattr = nullfs_getattr,
	.setattr = nullfs_setattr,
	.open = nullfs_open,
	.read = nullfs_read,
	.write = nullfs_write,
	.flush = nullfs_ok,
	.release = nullfs_release,
	.fsync = nullfs_fsync,
	.opendir = nullfs_opendir,
	.readdir = nullfs_readdir,
	.readdirplus = nullfs_readdirplus,
	.releasedir = nullfs_ok,
};

static void
nullfs_usage(void)
{
	fprintf(stderr, "usage: nullfs [--size BYTES] [--files N] [--entries N] "
	    "[--readdirplus] [-o OPT] [--max-threads N] [--max-idle N] "
	    "[--live-batch-us N] MOUNTPOINT\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	struct fuse_args fargs = FUSE_ARGS_INIT(0, NULL);
	struct fuse_loop_config *lcfg;
	struct fuse_session *se;
	const char *mnt = NULL;
	int rc = 1;

	if (fuse_opt_add_arg(&fargs, "nullfs") != 0 ||
	    fuse_opt_add_arg(&fargs, "-o") != 0 ||
	    fuse_opt_add_arg(&fargs, "fsname=nullfs,subtype=nullfs") != 0)
		return 1;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--size") == 0 && i + 1 < argc) {
			nullfs_size = strtoull(argv[++i], NULL, 0);
		} else if (strcmp(argv[i], "--entries") == 0 && i + 1 < argc) {
			nullfs_entries = strtoul(argv[++i], NULL, 0);
		} else if (strcmp(argv[i], "--max-threads") == 0 &&
		    i + 1 < argc) {
			nullfs_max_threads = (unsigned)strtoul(argv[++i], NULL, 0);
		} else if (strcmp(argv[i], "--max-idle") == 0 && i + 1 < argc) {
			nullfs_max_idle = (unsigned)strtoul(argv[++i], NULL, 0);
		} else if (strcmp(argv[i], "--files") == 0 && i + 1 < argc) {
			nullfs_files = (unsigned)strtoul(argv[++i], NULL, 0);
		} else if (strcmp(argv[i], "--live-batch-us") == 0 &&
		    i + 1 < argc) {
			live_batch_us = (unsigned)strtoul(argv[++i], NULL, 0);
		} else if (strcmp(argv[i], "--readdirplus") == 0) {
			nullfs_plus = 1;
		} else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) {
			if (fuse_opt_add_arg(&fargs, "-o") != 0 ||
			    fuse_opt_add_arg(&fargs, argv[++i]) != 0)
				return 1;
		} else if (argv[i][0] == '-' || mnt != NULL) {
			nullfs_usage();
		} else {
			mnt = argv[i];
		}
	}
	if (mnt == NULL || nullfs_entries > 10000000 || nullfs_files < 1 ||
	    nullfs_files > NULLFS_FILES_MAX)
		nullfs_usage();
	nullfs_started = time(NULL);
	nullfs_fill();
	live_log = mmap(NULL, NULLFS_LOG_MAX, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (live_log == MAP_FAILED) {
		perror("nullfs: mmap");
		return 1;
	}
	if (live_batch_us > 0) {
		pthread_t t;

		if (live_batch_us >= 1000000 ||
		    pthread_create(&t, NULL, nullfs_live_batcher, NULL) != 0) {
			fprintf(stderr, "nullfs: bad --live-batch-us\n");
			return 1;
		}
		pthread_detach(t);
	}

	se = fuse_session_new(&fargs, &nullfs_ops, sizeof(nullfs_ops), NULL);
	if (se == NULL)
		goto out_args;
	if (fuse_set_signal_handlers(se) != 0)
		goto out_session;
	if (fuse_session_mount(se, mnt) != 0)
		goto out_signals;
	if ((lcfg = fuse_loop_cfg_create()) == NULL)
		goto out_unmount;
	fuse_loop_cfg_set_max_threads(lcfg, nullfs_max_threads);
	fuse_loop_cfg_set_idle_threads(lcfg, nullfs_max_idle);
	rc = fuse_session_loop_mt(se, lcfg) < 0 ? 1 : 0;
	fuse_loop_cfg_destroy(lcfg);
out_unmount:
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out_session:
	fuse_session_destroy(se);
out_args:
	fuse_opt_free_args(&fargs);
	free(nullfs_data);
	return rc;
}
