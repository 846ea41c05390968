/*
 * store: LevelDB through its C API.  The handle owns the options objects it
 * was opened with; batches and iterators are thin wrappers so that no
 * leveldb_* type leaves this file.  An empty synchronous write is how a
 * sync is requested: LevelDB appends an empty record to its log and fsyncs
 * it, and concurrent syncs are grouped by LevelDB's writer queue.
 *
 * A full disk is met before LevelDB meets it: while the file system has
 * less than STORE_RESERVE free (an eighth of a small one), or fewer than
 * STORE_RESERVE_INODES free inodes, writes fail with ENOSPC without
 * reaching LevelDB, and go on by themselves once there is room.  So
 * LevelDB never tears a log record on a full disk, and keeps room and
 * inodes for its new logs, memtable flushes and compactions.
 *
 * A write LevelDB fails anyway (a flush or compaction that found no room,
 * which LevelDB keeps as a background error; an I/O error) fails the store
 * for writes: from then on they fail at once without reaching LevelDB,
 * while reads go on.  For a lack of room, a recovery thread, with backoff,
 * waits until the file system has room for LevelDB to replay its log
 * and a file can be made and written in the data dir (a probe: a full
 * quota or a file system that refuses new files shows no other way),
 * then reopens the database: new calls wait while the calls and iterators
 * under way finish (each holds the handle: `users`), the database is
 * closed and opened again, and writes go on.  Iterators held long (a
 * snapshot being served) postpone it.  A failing disk (EIO) is not
 * reopened: a write it failed may be in the log or not, so writes wait
 * for a restart, which reloads the journal from the store.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <leveldb/c.h>

#include "log.h"
#include "store.h"

#define STORE_RETRY_MIN_MS	100
#define STORE_RETRY_MAX_MS	2000
#define STORE_ROOM_SPARE	(1u << 20)	/* beyond the logs to replay */
/*
 * Writes are refused with ENOSPC while the file system has less than this
 * free: LevelDB then never meets a full disk in a log append (which would
 * leave a torn record that later records must not follow), and keeps room
 * for its memtable flushes and compactions.
 */
#define STORE_RESERVE		(STORE_WRITE_BUFFER + STORE_ROOM_SPARE)
#define STORE_WRITE_BUFFER	(8u << 20)
/* a new log, a table or two, a manifest, with a margin: files LevelDB makes */
#define STORE_RESERVE_INODES	64
#define STORE_PROBE		"odofs-probe"	/* made and removed to test */
#define STORE_SCRATCH_MAX	(256ull << 20)	/* a look at a damaged store */

struct store {
	leveldb_t *db;
	leveldb_options_t *opts;
	leveldb_cache_t *cache;
	leveldb_filterpolicy_t *filter;
	leveldb_readoptions_t *ropts;
	leveldb_writeoptions_t *wopts;
	leveldb_writeoptions_t *wopts_sync;
	_Atomic uint64_t syncs;		/* writes that reached stable storage */
	char *dir;
	/* failure and recovery: see the top of this file */
	pthread_mutex_t mu;
	pthread_cond_t cv;		/* users fell, failed, reopened, closing */
	unsigned users;			/* calls and iterators on db */
	unsigned long_users;		/* of them: iterators held long */
	bool reopening, closing, thread_started;
	int failed;			/* 0; -ENOSPC or -EIO: writes refused */
	bool full;			/* below STORE_RESERVE free (no reopen) */
	time_t full_since;
	char why[STORE_WHY_MAX];
	time_t since;
	uint64_t failures, reopens;
	pthread_t thread;
};

struct store_batch {
	leveldb_writebatch_t *wb;
};

struct store_iter {
	struct store *s;
	leveldb_iterator_t *it;
	leveldb_readoptions_t *ropts;
	bool held_long;
};

static int
store_mkdirs(const char *dir, struct err *e)
{
	char path[4096];
	size_t n = strlen(dir);

	if (n == 0 || n >= sizeof(path))
		return err_set(e, -ENAMETOOLONG, "data dir: bad path '%s'", dir);
	memcpy(path, dir, n + 1);
	for (char *p = path + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(path, 0700) < 0 && errno != EEXIST)
			return err_set(e, -errno, "data dir: cannot create %s: %s",
			    path, strerror(errno));
		*p = '/';
	}
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		return err_set(e, -errno, "data dir: cannot create %s: %s", path,
		    strerror(errno));
	return 0;
}

/* Whether n names one of LevelDB's manifests, tables or logs. */
static bool
store_file(const char *n)
{
	const char *dot = strrchr(n, '.');
	size_t digits = strspn(n, "0123456789");

	return strncmp(n, "MANIFEST-", 9) == 0 ||
	    (digits > 0 && dot == n + digits && (strcmp(dot, ".ldb") == 0 ||
	    strcmp(dot, ".sst") == 0 || strcmp(dot, ".log") == 0));
}

/*
 * Whether dir holds LevelDB files (a CURRENT, a manifest, tables or a log):
 * a store, whole or damaged.  A LOCK or LOG alone, or files of ours (a
 * snapshot command's scratch files), are not one.
 */
static int
store_present(const char *dir, bool *current, unsigned *files, struct err *e)
{
	struct dirent *de;
	DIR *d;

	*current = false;
	*files = 0;
	if ((d = opendir(dir)) == NULL)
		return err_set(e, -errno, "data dir %s: %s", dir, strerror(errno));
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, "CURRENT") == 0)
			*current = true;
		else if (store_file(de->d_name))
			(*files)++;
	}
	closedir(d);
	return 0;
}

/*
 * The pid that holds dir's LOCK (LevelDB locks it with fcntl), or 0 when
 * it cannot be told.
 */
static long
store_lock_holder(const char *dir)
{
	char path[4200];
	struct flock fl;
	int fd;

	snprintf(path, sizeof(path), "%s/LOCK", dir);
	if ((fd = open(path, O_RDWR | O_CLOEXEC)) < 0)
		return 0;
	memset(&fl, 0, sizeof(fl));
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	if (fcntl(fd, F_GETLK, &fl) < 0 || fl.l_type == F_UNLCK)
		fl.l_pid = 0;
	close(fd);
	return (long)fl.l_pid;
}

static void *store_recovery(void *arg);

static struct store *
store_new(size_t cache_bytes)
{
	struct store *s = calloc(1, sizeof(*s));
	pthread_condattr_t ca;

	if (s == NULL)
		return NULL;
	pthread_mutex_init(&s->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cv, &ca);
	pthread_condattr_destroy(&ca);
	s->opts = leveldb_options_create();
	s->cache = leveldb_cache_create_lru(cache_bytes);
	s->filter = leveldb_filterpolicy_create_bloom(10);
	/* a damaged log or table fails the open, never drops records */
	leveldb_options_set_paranoid_checks(s->opts, 1);
	leveldb_options_set_cache(s->opts, s->cache);
	leveldb_options_set_filter_policy(s->opts, s->filter);
	leveldb_options_set_write_buffer_size(s->opts, STORE_WRITE_BUFFER);
	leveldb_options_set_max_open_files(s->opts, 256);
	s->ropts = leveldb_readoptions_create();
	leveldb_readoptions_set_verify_checksums(s->ropts, 1);
	s->wopts = leveldb_writeoptions_create();
	s->wopts_sync = leveldb_writeoptions_create();
	leveldb_writeoptions_set_sync(s->wopts_sync, 1);
	return s;
}

/*
 * Holds of db by this thread: calls under way and iterators it made (not
 * those held long, which may move between threads).  A thread that holds
 * db already never waits for a reopen (which waits for it): a compaction
 * writes while its iterator is open.
 */
static _Thread_local unsigned store_held;

/* A call or an iterator on db: waits while the database is reopened. */
static void
store_hold(struct store *s)
{
	pthread_mutex_lock(&s->mu);
	while (s->reopening && store_held == 0)
		pthread_cond_wait(&s->cv, &s->mu);
	s->users++;
	pthread_mutex_unlock(&s->mu);
	store_held++;
}

static void
store_release_one(struct store *s)
{
	pthread_mutex_lock(&s->mu);
	if (--s->users == 0 && s->reopening)
		pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

static void
store_release(struct store *s)
{
	store_held--;
	store_release_one(s);
}

/*
 * Whether vfs is below `bytes` free or below STORE_RESERVE_INODES free
 * inodes; with `small`, each at most an eighth of a small file system.  A
 * file system without an inode count (f_files 0: btrfs) has no inode limit.
 */
static bool
store_vfs_short(const struct statvfs *vfs, unsigned long long bytes,
    bool small)
{
	unsigned long long size, inodes = STORE_RESERVE_INODES;

	size = (unsigned long long)vfs->f_blocks * vfs->f_frsize;
	if (small && bytes > size / 8)
		bytes = size / 8;
	if (inodes > vfs->f_files / 8)
		inodes = vfs->f_files / 8;
	return (unsigned long long)vfs->f_bavail * vfs->f_frsize < bytes ||
	    (vfs->f_files > 0 && vfs->f_favail < inodes);
}

/* Whether the data dir's file system is below its reserve. */
static bool
store_short_of_room(struct store *s)
{
	struct statvfs vfs;

	return statvfs(s->dir, &vfs) == 0 && store_vfs_short(&vfs,
	    STORE_RESERVE, true);
}

/* A write failed: writes are refused until the recovery thread reopens. */
static int
store_fail(struct store *s, const char *lerr, struct err *e)
{
	int code = strstr(lerr, "No space left") != NULL ? -ENOSPC :
	    strstr(lerr, "Disk quota") != NULL ? -EDQUOT : -EIO;

	pthread_mutex_lock(&s->mu);
	if (s->failed == 0) {
		s->failed = code;
		snprintf(s->why, sizeof(s->why), "%s", lerr);
		s->since = time(NULL);
		s->failures++;
		pthread_cond_broadcast(&s->cv);
		log_warnx("store: writes fail until it is reopened: %s", lerr);
	}
	pthread_mutex_unlock(&s->mu);
	return err_set(e, code, "store write: %s", lerr);
}

/*
 * Whether a file can be made, written and made durable in dir: a full
 * quota, a file system out of inodes, or one that refuses new files fails
 * this where statvfs shows nothing.
 */
static bool
store_probe(const char *dir)
{
	char path[4200];
	bool ok;
	int fd;

	snprintf(path, sizeof(path), "%s/" STORE_PROBE, dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return false;
	ok = write(fd, "odofs\n", 6) == 6 && fsync(fd) == 0;
	close(fd);
	unlink(path);
	return ok;
}

/*
 * Whether the data dir's file system has room for LevelDB to replay its
 * logs into a table and start a new log (their size, and some to spare,
 * and the inodes of the reserve), and takes a new file.
 */
static bool
store_has_room(const char *dir)
{
	char path[4200];
	unsigned long long need = STORE_ROOM_SPARE;
	struct statvfs vfs;
	struct dirent *de;
	struct stat st;
	DIR *d;

	if ((d = opendir(dir)) == NULL)
		return false;
	while ((de = readdir(d)) != NULL) {
		const char *n = de->d_name, *dot = strrchr(n, '.');

		/* LevelDB's logs (000003.log), not our odofs.log */
		if (store_file(n) && dot != NULL && strcmp(dot, ".log") == 0) {
			snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
			if (stat(path, &st) == 0)
				need += (unsigned long long)st.st_size;
		}
	}
	closedir(d);
	return statvfs(dir, &vfs) == 0 && !store_vfs_short(&vfs, need, false) &&
	    store_probe(dir);
}

/* Waits ms on s->cv (under s->mu); true when closing. */
static bool
store_sleep(struct store *s, unsigned ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	while (!s->closing &&
	    pthread_cond_timedwait(&s->cv, &s->mu, &ts) != ETIMEDOUT)
		;
	return s->closing;
}

/* The recovery thread: see the top of this file. */
static void *
store_recovery(void *arg)
{
	struct store *s = arg;
	unsigned delay = STORE_RETRY_MIN_MS;

	pthread_mutex_lock(&s->mu);
	for (;;) {
		char *lerr = NULL;
		bool room;

		while (s->failed == 0 && !s->closing)
			pthread_cond_wait(&s->cv, &s->mu);
		if (s->closing || store_sleep(s, delay))
			break;
		if (delay < STORE_RETRY_MAX_MS)
			delay *= 2;
		if (s->long_users > 0)
			continue;	/* a snapshot is being read: later */
		pthread_mutex_unlock(&s->mu);
		/*
		 * A failing disk (EIO) is not reopened: a write it failed
		 * may or may not be in the log (a failed fsync), so what the
		 * journal holds in memory could be wrong after a replay.
		 */
		room = s->failed != -EIO && store_has_room(s->dir);
		pthread_mutex_lock(&s->mu);
		if (!room || s->long_users > 0)
			continue;
		s->reopening = true;
		while (s->users > 0 && s->long_users == 0)
			pthread_cond_wait(&s->cv, &s->mu);
		if (s->long_users > 0) {
			/* an iterator made just now is held long: later */
			s->reopening = false;
			pthread_cond_broadcast(&s->cv);
			continue;
		}
		if (s->db != NULL)
			leveldb_close(s->db);
		leveldb_options_set_create_if_missing(s->opts, 0);
		leveldb_options_set_error_if_exists(s->opts, 0);
		s->db = leveldb_open(s->opts, s->dir, &lerr);
		if (lerr == NULL) {
			log_info("store: reopened after %ld s of failed writes "
			    "(%s); writes go on", (long)(time(NULL) - s->since),
			    s->why);
			s->failed = 0;
			s->why[0] = '\0';
			s->reopens++;
			delay = STORE_RETRY_MIN_MS;
		} else {
			/* reads fail too now, until an open succeeds */
			log_warnx("store: reopen failed: %s", lerr);
			snprintf(s->why, sizeof(s->why), "%s", lerr);
			s->db = NULL;
			leveldb_free(lerr);
		}
		s->reopening = false;
		pthread_cond_broadcast(&s->cv);
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

void
store_state(struct store *s, struct store_state *out)
{
	pthread_mutex_lock(&s->mu);
	out->failed = s->failed;
	snprintf(out->why, sizeof(out->why), "%s", s->why);
	out->since = s->since;
	if (s->failed == 0 && s->full) {
		out->failed = -ENOSPC;
		snprintf(out->why, sizeof(out->why), "%s: nearly full (No space "
		    "left on device): writes wait for %u MiB free, or an "
		    "eighth of a smaller file system", s->dir,
		    STORE_RESERVE >> 20);
		out->since = s->full_since;
	}
	out->failures = s->failures;
	out->reopens = s->reopens;
	pthread_mutex_unlock(&s->mu);
}

int
store_open(struct store **out, const char *dir, size_t cache_bytes,
    struct err *e)
{
	struct store *s;
	char *lerr = NULL;
	unsigned files;
	bool current;
	long pid;
	int rc;

	*out = NULL;
	if ((rc = store_mkdirs(dir, e)) < 0 ||
	    (rc = store_present(dir, &current, &files, e)) < 0)
		return rc;
	if (!current && files > 0)
		return err_set(e, -EUCLEAN, "data dir %s: the store is damaged "
		    "(no CURRENT file, %u store file%s): not re-created; run "
		    "odofs --repair %s", dir, files, files == 1 ? "" : "s", dir);
	if ((s = store_new(cache_bytes)) == NULL)
		return err_set(e, -ENOMEM, "store: out of memory");
	/* created only where there is none: never over data */
	leveldb_options_set_create_if_missing(s->opts, !current);
	leveldb_options_set_error_if_exists(s->opts, !current);
	s->db = leveldb_open(s->opts, dir, &lerr);
	if (lerr != NULL) {
		/* LevelDB: "IO error: lock DIR/LOCK: <why>" */
		if (strncmp(lerr, "IO error: lock ", 15) == 0) {
			pid = store_lock_holder(dir);
			if (pid > 0)
				rc = err_set(e, -EBUSY, "data dir %s in use by "
				    "another odofs (pid %ld)", dir, pid);
			else
				rc = err_set(e, -EBUSY, "data dir %s in use by "
				    "another odofs", dir);
		} else if (current) {
			rc = err_set(e, -EUCLEAN, "data dir %s: the store is "
			    "damaged: %s; run odofs --repair %s", dir, lerr,
			    dir);
		} else {
			rc = err_set(e, -EIO, "data dir %s: cannot create the "
			    "store: %s", dir, lerr);
		}
		leveldb_free(lerr);
		store_close(s);
		return rc;
	}
	if ((s->dir = strdup(dir)) == NULL) {
		store_close(s);
		return err_set(e, -ENOMEM, "store: out of memory");
	}
	if ((rc = pthread_create(&s->thread, NULL, store_recovery, s)) != 0) {
		store_close(s);
		return err_set(e, -rc, "store: recovery thread: %s",
		    strerror(rc));
	}
	s->thread_started = true;
	*out = s;
	return 0;
}

/* Copies file src to dst (a log or manifest: a few MiB at most). */
static int
store_copy_file(const char *src, const char *dst)
{
	char buf[64 << 10];
	int in, out, rc = 0;
	ssize_t n;

	if ((in = open(src, O_RDONLY | O_CLOEXEC)) < 0)
		return -errno;
	if ((out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0) {
		rc = -errno;
		close(in);
		return rc;
	}
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)n) != n) {
			rc = -EIO;
			break;
		}
	if (n < 0)
		rc = -errno;
	close(in);
	close(out);
	return rc;
}

void
store_close_scratch(struct store *s, const char *scratch)
{
	DIR *d;
	struct dirent *de;
	char path[4200];

	store_close(s);
	if (scratch == NULL || scratch[0] == '\0' ||
	    (d = opendir(scratch)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", scratch, de->d_name);
		unlink(path);
	}
	closedir(d);
	rmdir(scratch);
}

int
store_open_scratch(struct store **out, const char *dir, char *scratch,
    size_t len, struct err *e)
{
	char src[4200], dst[4200];
	struct store *s;
	struct dirent *de;
	char *lerr = NULL;
	DIR *d;
	int rc = 0;

	unsigned long long total = 0;
	struct statvfs vfs;
	struct stat st;

	*out = NULL;
	scratch[0] = '\0';
	/* what a killed look left behind */
	if ((d = opendir(dir)) == NULL)
		return err_set(e, -errno, "%s: %s", dir, strerror(errno));
	while ((de = readdir(d)) != NULL) {
		const char *n = de->d_name;
		long pid;

		snprintf(src, sizeof(src), "%s/%s", dir, n);
		if (strncmp(n, ".odofs-scratch-", 15) == 0 &&
		    (pid = strtol(n + 15, NULL, 10)) > 0 &&
		    kill((pid_t)pid, 0) < 0 && errno == ESRCH)
			store_close_scratch(NULL, src);
		else if (store_file(n) && stat(src, &st) == 0)
			total += (unsigned long long)st.st_size;
	}
	closedir(d);
	/*
	 * Copies, not links: LevelDB may write a table under a number an
	 * orphan table already has (a manifest that lost its last edits),
	 * truncating it, and the orphan is what a repair would salvage.
	 */
	if (total > STORE_SCRATCH_MAX || statvfs(dir, &vfs) < 0 ||
	    (unsigned long long)vfs.f_bavail * vfs.f_frsize <
	    total + STORE_RESERVE)
		return err_set(e, -EFBIG, "%s: no room for a scratch copy", dir);
	snprintf(scratch, len, "%s/.odofs-scratch-%ld", dir, (long)getpid());
	if (mkdir(scratch, 0700) < 0) {
		rc = err_set(e, -errno, "%s: %s", scratch, strerror(errno));
		scratch[0] = '\0';
		return rc;
	}
	if ((d = opendir(dir)) == NULL) {
		rc = err_set(e, -errno, "%s: %s", dir, strerror(errno));
		goto fail;
	}
	while (rc == 0 && (de = readdir(d)) != NULL) {
		const char *n = de->d_name;
		int c;

		if (!store_file(n) && strcmp(n, "CURRENT") != 0)
			continue;
		snprintf(src, sizeof(src), "%s/%s", dir, n);
		snprintf(dst, sizeof(dst), "%s/%s", scratch, n);
		if ((c = store_copy_file(src, dst)) < 0)
			rc = err_set(e, c, "%s: %s", dst, strerror(-c));
	}
	closedir(d);
	if (rc < 0)
		goto fail;
	if ((s = store_new(8 << 20)) == NULL) {
		rc = err_set(e, -ENOMEM, "store: out of memory");
		goto fail;
	}
	/* what LevelDB makes of it when it skips what it cannot read */
	leveldb_options_set_paranoid_checks(s->opts, 0);
	s->db = leveldb_open(s->opts, scratch, &lerr);
	if (lerr != NULL) {
		rc = err_set(e, -EUCLEAN, "%s", lerr);
		leveldb_free(lerr);
		store_close(s);
		goto fail;
	}
	*out = s;
	return 0;
fail:
	store_close_scratch(NULL, scratch);
	return rc;
}

int
store_repair(const char *dir, struct err *e)
{
	struct store *s;
	char *lerr = NULL;
	int rc = 0;

	char path[4200];
	struct flock fl;
	long pid;
	int fd;

	/* LevelDB's repair takes no lock: take LevelDB's, as a daemon does */
	snprintf(path, sizeof(path), "%s/LOCK", dir);
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0)
		return err_set(e, -errno, "%s: %s", path, strerror(errno));
	memset(&fl, 0, sizeof(fl));
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	if (fcntl(fd, F_SETLK, &fl) < 0) {
		close(fd);
		pid = store_lock_holder(dir);
		return pid > 0 ? err_set(e, -EBUSY, "data dir %s in use by "
		    "another odofs (pid %ld): stop it first", dir, pid) :
		    err_set(e, -EBUSY, "data dir %s in use: stop its odofs "
		    "first", dir);
	}
	if ((s = store_new(8 << 20)) == NULL) {
		close(fd);
		return err_set(e, -ENOMEM, "store: out of memory");
	}
	leveldb_repair_db(s->opts, dir, &lerr);
	if (lerr != NULL) {
		rc = err_set(e, -EIO, "data dir %s: repair failed: %s", dir,
		    lerr);
		leveldb_free(lerr);
	}
	store_close(s);
	close(fd);	/* the journal's open takes the lock next */
	return rc;
}

void
store_close(struct store *s)
{
	if (s == NULL)
		return;
	if (s->thread_started) {
		pthread_mutex_lock(&s->mu);
		s->closing = true;
		pthread_cond_broadcast(&s->cv);
		pthread_mutex_unlock(&s->mu);
		pthread_join(s->thread, NULL);
	}
	if (s->db != NULL)
		leveldb_close(s->db);
	free(s->dir);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
	if (s->wopts_sync != NULL)
		leveldb_writeoptions_destroy(s->wopts_sync);
	if (s->wopts != NULL)
		leveldb_writeoptions_destroy(s->wopts);
	if (s->ropts != NULL)
		leveldb_readoptions_destroy(s->ropts);
	if (s->opts != NULL)
		leveldb_options_destroy(s->opts);
	if (s->filter != NULL)
		leveldb_filterpolicy_destroy(s->filter);
	if (s->cache != NULL)
		leveldb_cache_destroy(s->cache);
	free(s);
}

int
store_get(struct store *s, const void *key, size_t klen, void *val,
    size_t cap, size_t *len, struct err *e)
{
	char *lerr = NULL;
	size_t vlen = 0;
	char *v;

	store_hold(s);
	v = s->db != NULL ? leveldb_get(s->db, s->ropts, key, klen, &vlen,
	    &lerr) : NULL;
	if (s->db == NULL)
		lerr = strdup("the store is not open (reopen failed)");
	store_release(s);
	if (lerr != NULL) {
		err_set(e, -EIO, "store read: %s", lerr);
		leveldb_free(lerr);
		return -EIO;
	}
	if (v == NULL)
		return -ENOENT;
	*len = vlen;
	if (vlen > cap) {
		leveldb_free(v);
		return -EOVERFLOW;
	}
	memcpy(val, v, vlen);
	leveldb_free(v);
	return 0;
}

struct store_batch *
store_batch_new(void)
{
	struct store_batch *b = malloc(sizeof(*b));

	if (b != NULL)
		b->wb = leveldb_writebatch_create();
	return b;
}

void
store_batch_free(struct store_batch *b)
{
	if (b == NULL)
		return;
	leveldb_writebatch_destroy(b->wb);
	free(b);
}

void
store_batch_put(struct store_batch *b, const void *k, size_t klen,
    const void *v, size_t vlen)
{
	leveldb_writebatch_put(b->wb, k, klen, v, vlen);
}

void
store_batch_delete(struct store_batch *b, const void *k, size_t klen)
{
	leveldb_writebatch_delete(b->wb, k, klen);
}

void
store_batch_clear(struct store_batch *b)
{
	leveldb_writebatch_clear(b->wb);
}

static int store_write_room(struct store *s, struct store_batch *b,
    bool sync, bool room, struct err *e);

int
store_write(struct store *s, struct store_batch *b, bool sync, struct err *e)
{
	return store_write_room(s, b, sync, true, e);
}

/* With room, the write waits for STORE_RESERVE free (a sync does not). */
static int
store_write_room(struct store *s, struct store_batch *b, bool sync, bool room,
    struct err *e)
{
	char *lerr = NULL;
	int rc;

	store_hold(s);
	if (s->failed != 0) {
		pthread_mutex_lock(&s->mu);
		rc = err_set(e, s->failed, "store write: %s", s->why);
		pthread_mutex_unlock(&s->mu);
		store_release(s);
		return rc;
	}
	if (room && s->dir != NULL && store_short_of_room(s)) {
		pthread_mutex_lock(&s->mu);
		if (!s->full) {
			s->full = true;
			s->full_since = time(NULL);
			s->failures++;
			log_warnx("store: writes refused: %s is nearly full",
			    s->dir);
		}
		pthread_mutex_unlock(&s->mu);
		store_release(s);
		return err_set(e, -ENOSPC, "store write: %s: nearly full (No "
		    "space left on device)", s->dir);
	}
	if (room && s->full) {
		pthread_mutex_lock(&s->mu);
		if (s->full)
			log_info("store: writes go on: %s has room again after "
			    "%ld s", s->dir, (long)(time(NULL) - s->full_since));
		s->full = false;
		pthread_mutex_unlock(&s->mu);
	}
	leveldb_write(s->db, sync ? s->wopts_sync : s->wopts, b->wb, &lerr);
	if (lerr != NULL) {
		rc = store_fail(s, lerr, e);
		leveldb_free(lerr);
		store_release(s);
		return rc;
	}
	store_release(s);
	if (sync)
		atomic_fetch_add_explicit(&s->syncs, 1, memory_order_relaxed);
	return 0;
}

uint64_t
store_syncs(struct store *s)
{
	return atomic_load_explicit(&s->syncs, memory_order_relaxed);
}

int
store_sync(struct store *s, struct err *e)
{
	struct store_batch b;
	int rc;

	/* an empty record: what is acknowledged is made durable, full or not */
	b.wb = leveldb_writebatch_create();
	rc = store_write_room(s, &b, true, false, e);
	leveldb_writebatch_destroy(b.wb);
	return rc;
}

void
store_compact(struct store *s, const void *start, size_t slen,
    const void *limit, size_t llen)
{
	store_hold(s);
	if (s->db != NULL && s->failed == 0)
		leveldb_compact_range(s->db, start, slen, limit, llen);
	store_release(s);
}

struct store_iter *
store_iter_new(struct store *s, bool fill_cache)
{
	struct store_iter *it = malloc(sizeof(*it));

	if (it == NULL)
		return NULL;
	store_hold(s);
	if (s->db == NULL) {
		store_release(s);
		free(it);
		return NULL;
	}
	it->s = s;
	it->held_long = false;
	it->ropts = leveldb_readoptions_create();
	leveldb_readoptions_set_fill_cache(it->ropts, fill_cache);
	leveldb_readoptions_set_verify_checksums(it->ropts, 1);
	it->it = leveldb_create_iterator(s->db, it->ropts);
	return it;
}

void
store_iter_hold_long(struct store_iter *it)
{
	pthread_mutex_lock(&it->s->mu);
	it->held_long = true;
	it->s->long_users++;
	pthread_cond_broadcast(&it->s->cv);	/* a reopen waiting: give up */
	pthread_mutex_unlock(&it->s->mu);
	store_held--;		/* it may be freed by another thread */
}

void
store_iter_free(struct store_iter *it)
{
	if (it == NULL)
		return;
	leveldb_iter_destroy(it->it);
	leveldb_readoptions_destroy(it->ropts);
	if (it->held_long) {
		pthread_mutex_lock(&it->s->mu);
		it->s->long_users--;
		pthread_mutex_unlock(&it->s->mu);
		store_release_one(it->s);
	} else {
		store_release(it->s);
	}
	free(it);
}

void
store_iter_seek(struct store_iter *it, const void *k, size_t klen)
{
	leveldb_iter_seek(it->it, k, klen);
}

void
store_iter_seek_last(struct store_iter *it)
{
	leveldb_iter_seek_to_last(it->it);
}

bool
store_iter_valid(const struct store_iter *it)
{
	return leveldb_iter_valid(it->it) != 0;
}

void
store_iter_next(struct store_iter *it)
{
	leveldb_iter_next(it->it);
}

void
store_iter_prev(struct store_iter *it)
{
	leveldb_iter_prev(it->it);
}

const void *
store_iter_key(const struct store_iter *it, size_t *len)
{
	return leveldb_iter_key(it->it, len);
}

const void *
store_iter_value(const struct store_iter *it, size_t *len)
{
	return leveldb_iter_value(it->it, len);
}

int
store_iter_status(const struct store_iter *it, struct err *e)
{
	char *lerr = NULL;

	leveldb_iter_get_error(it->it, &lerr);
	if (lerr != NULL) {
		err_set(e, -EIO, "store iterator: %s", lerr);
		leveldb_free(lerr);
		return -EIO;
	}
	return 0;
}
