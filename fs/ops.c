/*
 * ops: the fuse_lowlevel_ops table.
 *
 * Every request gets exactly one reply.  Handlers compute a negative errno
 * or a result; errors are answered by ops_reply_err() alone, which also
 * counts them for .metrics.  No handler blocks on anything but the store.
 *
 * `events` is opened with direct I/O for every open (FUSE-NOTES §1): one
 * write() is one FUSE_WRITE, and reads always reach the daemon, so a size
 * that grows from inside the daemon is never hidden behind the page cache.
 * Attribute timeouts are 0 for files whose size changes.  Writes ignore the
 * kernel's offset and append at the journal's own end (O_APPEND is
 * required at open).  The generated files (.status, .metrics, .peers,
 * info) are rendered once per open into the handle and read from there;
 * their size is the length of a rendering (see ops_text_size()), so tools
 * that trust the size (sendfile, tar, rsync, SQLite's readfile()) get the
 * whole text.
 */

#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "fs.h"
#include "lines.h"
#include "log.h"
#include "peering.h"
#include "pipes.h"
#include "quorum.h"
#include "snapshot.h"
#include "tree.h"

#define OPS_DIR_TIMEOUT		60.0	/* names and dirs never change */
#define OPS_TEXT_MAX		(64u << 20)

/*
 * Bytes of one FUSE write (conn->max_write; what libfuse 3.14 allows with
 * 4 KiB pages).  The kernel carries a bigger write() in pieces of at most
 * this many bytes, or of as many whole pages of the writer's buffer as fit
 * (a page less when it is not page-aligned), one after the other; when a
 * piece fails, it returns the count of the pieces before (a short count).
 * With the kernel's default max_pages_limit (256), a piece over
 * OPS_WRITE_MAX less a page may therefore have more of the same write()
 * after it, and a smaller one is the last: see ops_append().
 */
#define OPS_WRITE_MAX		(1u << 20)

struct handle {
	pthread_mutex_t lock;		/* serialises writes to this open file */
	enum tree_kind kind;
	uint32_t dev;
	struct buf pending;		/* unfinished line; under lock */
	bool refuse_line;		/* drop up to the next '\n'; under lock */
	size_t skip_len;		/* a refused rest of a line: its length */
	unsigned long long skip_hash;	/* ... and lines_hash; under lock */
	bool maybe_more;		/* the last write may go on; under lock */
	pid_t opener;			/* the thread that opened it */
	struct buf text;		/* rendered content (generated files) */
	struct pipe *pipe;		/* live, from/<rev>, .live */
	/* readers of events: see ops_read_events(); under lock */
	struct journal_pin *pin;	/* keeps what is not read yet */
	uint64_t shift;			/* real offset - kernel offset */
	uint64_t expect;		/* kernel offset of a continuing read */
	/* snapshot */
	struct journal_snap *snap;	/* readers: the view taken at open */
	bool snap_writer;		/* writers: install at release */
	uint64_t snap_rev;		/* the head at open: what it covers */
	struct buf snapbuf;		/* the payload written so far */
	struct handle *prev, *next;	/* o->handles; under o->handles_lock */
};

static struct odofs *
ops_ctx(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static void
ops_reply_err(fuse_req_t req, int rc)
{
	struct odofs *o = ops_ctx(req);
	int n = -rc;

	if (n > 0 && n < FS_ERRNO_MAX)
		atomic_fetch_add(&o->metrics.errors[n], 1);
	fuse_reply_err(req, n);
}

static bool
ops_decode(struct odofs *o, fuse_ino_t ino, struct tree_node *n)
{
	return tree_decode(ino, journal_count(o->journal), n);
}

static void
ops_ts(struct timespec *ts, uint64_t ns)
{
	ts->tv_sec = (time_t)(ns / 1000000000ull);
	ts->tv_nsec = (long)(ns % 1000000000ull);
}

static bool
ops_is_text(enum tree_kind kind)
{
	return kind == TREE_STATUS || kind == TREE_METRICS ||
	    kind == TREE_PEERS || kind == TREE_INFO;
}

/* Renders the generated file n into out. */
static int
ops_render(struct odofs *o, const struct tree_node *n, struct buf *out)
{
	switch (n->kind) {
	case TREE_STATUS:
		return render_status(o, out);
	case TREE_METRICS:
		return render_metrics(o, out);
	case TREE_PEERS:
		return render_peers(o, out);
	case TREE_INFO:
		return render_info(o, n->dev, out);
	default:
		return -EINVAL;
	}
}

/*
 * The size of the generated file n as the asker sees it: the length of the
 * rendering of the open file it asks through (h: the kernel passes the
 * file handle when it revalidates for lseek(SEEK_END)); else of the newest
 * copy that the asking thread has open itself (fstat(2) comes without a
 * file handle); else of a rendering made now.  So for a program reading
 * the file, stat, fstat, lseek and read agree byte for byte.  A rendering
 * that fails here reports 0; the open fails with its error.
 */
static off_t
ops_text_size(struct odofs *o, const struct tree_node *n,
    const struct handle *h, pid_t asker)
{
	struct buf b;
	off_t size = -1;

	if (h != NULL && h->kind == n->kind)
		return (off_t)h->text.len;
	pthread_mutex_lock(&o->handles_lock);
	for (h = o->handles; h != NULL; h = h->next)
		if (h->opener == asker && h->kind == n->kind &&
		    h->dev == n->dev) {
			size = (off_t)h->text.len;
			break;
		}
	pthread_mutex_unlock(&o->handles_lock);
	if (size >= 0)
		return size;
	buf_init(&b, OPS_TEXT_MAX);
	size = ops_render(o, n, &b) == 0 ? (off_t)b.len : 0;
	buf_release(&b);
	return size;
}

/*
 * Fills st for node n, as seen by the request req through the open file h
 * (NULL: a request on a name); returns the attribute timeout to give.
 */
static double
ops_stat(struct odofs *o, fuse_req_t req, const struct handle *h,
    const struct tree_node *n, struct stat *st)
{
	bool group = o->cfg->fs_group[0] != '\0';
	struct journal_info in;
	double timeout = 0.0;

	memset(st, 0, sizeof(*st));
	st->st_ino = n->kind == TREE_FROM_REV ? tree_ino_from(n->dev, n->rev) :
	    tree_ino(n->kind, n->dev);
	st->st_uid = getuid();
	st->st_gid = group ? o->cfg->fs_gid : getgid();
	st->st_mode = tree_mode(n->kind, false, group);
	st->st_blksize = 4096;
	ops_ts(&st->st_mtim, (uint64_t)o->started * 1000000000ull);
	switch (n->kind) {
	case TREE_ROOT:
		st->st_nlink = 2 + journal_count(o->journal);
		break;
	case TREE_STATUS:
	case TREE_METRICS:
	case TREE_FIREHOSE:
	case TREE_PEERS:
		st->st_nlink = 1;
		break;
	case TREE_DEV:
	case TREE_EVENTS:
	case TREE_SNAPSHOT:
	case TREE_INFO:
	case TREE_LIVE:
	case TREE_FROM:
	case TREE_FROM_REV:
		journal_info(o->journal, n->dev, &in);
		ops_ts(&st->st_mtim, in.created_ns);
		st->st_mode = tree_mode(n->kind, in.local, group);
		st->st_nlink = 1;
		if (n->kind == TREE_DEV || n->kind == TREE_FROM) {
			st->st_nlink = 2;
			timeout = OPS_DIR_TIMEOUT;
		} else if (n->kind == TREE_SNAPSHOT) {
			st->st_size = (off_t)in.snapshot_len;
		} else if (n->kind == TREE_EVENTS) {
			st->st_size = (off_t)in.end_offset;
			st->st_blocks = (blkcnt_t)((in.end_offset -
			    in.first_offset + 511) / 512);
			ops_ts(&st->st_mtim, in.mtime_ns);
		}
		break;
	default:
		break;
	}
	if (ops_is_text(n->kind))
		st->st_size = ops_text_size(o, n, h, fuse_req_ctx(req)->pid);
	/* not sparse: cp would look for holes in a file with no blocks */
	if (S_ISREG(st->st_mode) && n->kind != TREE_EVENTS)
		st->st_blocks = (blkcnt_t)((st->st_size + 511) / 512);
	st->st_ctim = st->st_mtim;
	st->st_atim = st->st_mtim;
	return timeout;
}

static void
ops_reply_node(fuse_req_t req, struct odofs *o, const struct tree_node *n)
{
	struct fuse_entry_param e;

	memset(&e, 0, sizeof(e));
	e.attr_timeout = ops_stat(o, req, NULL, n, &e.attr);
	e.ino = e.attr.st_ino;
	e.entry_timeout = OPS_DIR_TIMEOUT;
	fuse_reply_entry(req, &e);
}

static void
ops_reply_entry(fuse_req_t req, struct odofs *o, enum tree_kind kind,
    uint32_t dev)
{
	struct tree_node n = { kind, dev, 0 };

	ops_reply_node(req, o, &n);
}

static void
ops_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	/* writeback caching would lose O_APPEND (FUSE-NOTES §1) */
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	/* ops_append() knows how the kernel cuts a write() */
	if (conn->max_write > OPS_WRITE_MAX)
		conn->max_write = OPS_WRITE_MAX;
}

static void
ops_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct odofs *o = ops_ctx(req);
	struct tree_node p;
	enum tree_kind k;
	uint32_t dev;

	if (!ops_decode(o, parent, &p))
		return ops_reply_err(req, -ENOENT);
	if (p.kind == TREE_ROOT) {
		k = tree_find(tree_root_files, tree_root_nfiles, name);
		if (k != TREE_NONE)
			return ops_reply_entry(req, o, k, 0);
		if (journal_lookup(o->journal, name, strlen(name), &dev) == 0)
			return ops_reply_entry(req, o, TREE_DEV, dev);
		return ops_reply_err(req, -ENOENT);
	}
	if (p.kind == TREE_DEV) {
		k = tree_find(tree_dev_files, tree_dev_nfiles, name);
		if (k != TREE_NONE)
			return ops_reply_entry(req, o, k, p.dev);
		return ops_reply_err(req, -ENOENT);
	}
	if (p.kind == TREE_FROM) {
		/* any decimal revision can be opened; the listing is empty */
		struct tree_node n = { TREE_FROM_REV, p.dev, 0 };

		if (!tree_parse_rev(name, &n.rev))
			return ops_reply_err(req, -ENOENT);
		return ops_reply_node(req, o, &n);
	}
	ops_reply_err(req, -ENOTDIR);
}

static struct handle *
ops_handle(struct fuse_file_info *fi)
{
	return (struct handle *)(uintptr_t)fi->fh;
}

/* fi: the open file the kernel asks through (lseek), or NULL (stat, fstat) */
static void
ops_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct odofs *o = ops_ctx(req);
	struct tree_node n;
	struct stat st;
	double timeout;

	if (!ops_decode(o, ino, &n))
		return ops_reply_err(req, -ENOENT);
	timeout = ops_stat(o, req, fi != NULL ? ops_handle(fi) : NULL, &n,
	    &st);
	fuse_reply_attr(req, &st, timeout);
}

static void
ops_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
    struct fuse_file_info *fi)
{
	const int times = FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME |
	    FUSE_SET_ATTR_ATIME_NOW | FUSE_SET_ATTR_MTIME_NOW |
	    FUSE_SET_ATTR_CTIME;

	(void)attr;
	/* chattr +a: no truncation; no chmod/chown; touch changes nothing */
	if (to_set & ~times)
		return ops_reply_err(req, -EPERM);
	ops_getattr(req, ino, fi);
}

static void
ops_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct odofs *o = ops_ctx(req);
	struct tree_node p;
	struct err e;
	uint32_t dev;
	int rc;

	(void)mode;
	if (!ops_decode(o, parent, &p))
		return ops_reply_err(req, -ENOENT);
	/* a device id has no '/': mkdir inside a device is a bad id */
	if (p.kind != TREE_ROOT)
		return ops_reply_err(req, p.kind == TREE_DEV ? -EINVAL :
		    -ENOTDIR);
	/* an id a connected peer holds is taken, even if not replicated here */
	if (journal_lookup(o->journal, name, strlen(name), &dev) < 0 &&
	    peering_known(o->peering, name, strlen(name)))
		return ops_reply_err(req, -EEXIST);
	if ((rc = journal_create(o->journal, name, strlen(name), &dev,
	    &e)) < 0) {
		if (rc != -EINVAL && rc != -EEXIST)
			log_warnx("mkdir failed: %s: %s", name, e.msg);
		return ops_reply_err(req, rc);
	}
	log_info("device created: %s", name);
	ops_reply_entry(req, o, TREE_DEV, dev);
}

static void
ops_eperm_name(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	(void)parent;
	(void)name;
	ops_reply_err(req, -EPERM);
}

static void
ops_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
    fuse_ino_t newparent, const char *newname, unsigned int flags)
{
	(void)parent;
	(void)name;
	(void)newparent;
	(void)newname;
	(void)flags;
	ops_reply_err(req, -EPERM);
}

static void
ops_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
    dev_t rdev)
{
	(void)parent;
	(void)name;
	(void)mode;
	(void)rdev;
	ops_reply_err(req, -EPERM);
}

static void
ops_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
    const char *name)
{
	(void)link;
	(void)parent;
	(void)name;
	ops_reply_err(req, -EPERM);
}

static void
ops_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
    const char *newname)
{
	(void)ino;
	(void)newparent;
	(void)newname;
	ops_reply_err(req, -EPERM);
}

static void
ops_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
    struct fuse_file_info *fi)
{
	(void)parent;
	(void)name;
	(void)mode;
	(void)fi;
	ops_reply_err(req, -EPERM);
}

/*
 * A new handle, in o->handles from here on.  It takes over text, the
 * rendering of a generated file (so ops_text_size() never sees one being
 * written); text is left empty.
 */
static struct handle *
handle_new(struct odofs *o, enum tree_kind kind, uint32_t dev, pid_t opener,
    struct buf *text)
{
	struct handle *h = calloc(1, sizeof(*h));

	if (h == NULL)
		return NULL;
	pthread_mutex_init(&h->lock, NULL);
	h->kind = kind;
	h->dev = dev;
	h->opener = opener;
	buf_init(&h->pending, o->cfg->max_event_bytes);
	h->text = *text;
	buf_init(text, text->max);
	buf_init(&h->snapbuf, JOURNAL_SNAPSHOT_MAX);
	pthread_mutex_lock(&o->handles_lock);
	h->next = o->handles;
	if (o->handles != NULL)
		o->handles->prev = h;
	o->handles = h;
	pthread_mutex_unlock(&o->handles_lock);
	return h;
}

static void
handle_free(struct odofs *o, struct handle *h)
{
	pthread_mutex_lock(&o->handles_lock);
	if (h->prev != NULL)
		h->prev->next = h->next;
	else
		o->handles = h->next;
	if (h->next != NULL)
		h->next->prev = h->prev;
	pthread_mutex_unlock(&o->handles_lock);
	if (h->pipe != NULL)
		pipes_close(o->pipes, h->pipe);
	journal_pin_free(o->journal, h->pin);
	journal_snap_close(h->snap);
	buf_release(&h->pending);
	buf_release(&h->text);
	buf_release(&h->snapbuf);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

static int
ops_open_events(struct odofs *o, const struct tree_node *n, int flags)
{
	if ((flags & O_ACCMODE) == O_RDONLY && !(flags & O_TRUNC))
		return 0;
	if (!journal_is_local(o->journal, n->dev))
		return -EROFS;
	/* chattr +a: only appending opens may write */
	if ((flags & O_TRUNC) || !(flags & O_APPEND))
		return -EPERM;
	return 0;
}

/*
 * snapshot: read by anyone; on the source, written by replacing it whole
 * ("cat state > snapshot": O_TRUNC, no O_APPEND, write-only).
 */
static int
ops_open_snapshot(struct odofs *o, const struct tree_node *n, int flags)
{
	if ((flags & O_ACCMODE) == O_RDONLY && !(flags & O_TRUNC))
		return 0;
	if (!journal_is_local(o->journal, n->dev))
		return -EROFS;
	if ((flags & O_ACCMODE) != O_WRONLY || !(flags & O_TRUNC) ||
	    (flags & O_APPEND))
		return -EPERM;
	return 0;
}

static void
ops_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct odofs *o = ops_ctx(req);
	struct handle *h = NULL;
	struct tree_node n;
	struct buf text;
	int rc;

	if (!ops_decode(o, ino, &n))
		return ops_reply_err(req, -ENOENT);
	if (tree_is_dir(n.kind))
		return ops_reply_err(req, -EISDIR);
	if (n.kind == TREE_EVENTS)
		rc = ops_open_events(o, &n, fi->flags);
	else if (n.kind == TREE_SNAPSHOT)
		rc = ops_open_snapshot(o, &n, fi->flags);
	else
		rc = (fi->flags & O_ACCMODE) == O_RDONLY ? 0 : -EACCES;
	if (rc == 0 && n.kind == TREE_FROM_REV &&
	    (n.rev == 0 || n.rev < journal_first(o->journal, n.dev)))
		rc = -ERANGE;	/* compacted: read snapshot, then from/ */
	buf_init(&text, OPS_TEXT_MAX);
	if (rc == 0 && ops_is_text(n.kind))
		rc = ops_render(o, &n, &text);
	if (rc == 0 && (h = handle_new(o, n.kind, n.dev, fuse_req_ctx(req)->pid,
	    &text)) == NULL)
		rc = -ENOMEM;
	buf_release(&text);
	if (rc < 0)
		return ops_reply_err(req, rc);
	switch (n.kind) {
	case TREE_EVENTS:
		/* a reader keeps what it has not read yet from compaction */
		if ((fi->flags & O_ACCMODE) != O_WRONLY) {
			h->pin = journal_pin_new(o->journal, n.dev);
			if (h->pin == NULL)
				rc = -ENOMEM;
			else
				journal_pin_offset(h->pin, 0);
		}
		break;
	case TREE_SNAPSHOT:
		if ((fi->flags & O_ACCMODE) == O_RDONLY) {
			struct err e;

			rc = journal_snap_open(o->journal, n.dev, &h->snap, &e);
		} else {
			h->snap_writer = true;
			h->snap_rev = journal_head(o->journal, n.dev);
		}
		break;
	case TREE_LIVE:
		h->pipe = pipes_open_device(o->pipes, n.dev,
		    journal_head(o->journal, n.dev) + 1);
		rc = h->pipe ? 0 : -ENOMEM;
		break;
	case TREE_FROM_REV:
		h->pipe = pipes_open_device(o->pipes, n.dev, n.rev);
		rc = h->pipe ? 0 : -ENOMEM;
		break;
	case TREE_FIREHOSE:
		h->pipe = pipes_open_firehose(o->pipes);
		rc = h->pipe ? 0 : -ENOMEM;
		break;
	default:
		break;		/* generated files: rendered above */
	}
	if (rc < 0) {
		handle_free(o, h);
		return ops_reply_err(req, rc);
	}
	fi->fh = (uintptr_t)h;
	fi->direct_io = 1;
	fi->keep_cache = 0;
	/*
	 * Measured alternative, for tests/bench/events_cache.py only:
	 * readers of `events` through the page cache.  attr_timeout 0 and
	 * the kernel's auto_inval_data refresh the size before each read
	 * and drop the cache when it changed.
	 */
	if (o->events_page_cache && n.kind == TREE_EVENTS &&
	    (fi->flags & O_ACCMODE) == O_RDONLY) {
		fi->direct_io = 0;
		fi->keep_cache = 1;
	}
	if ((fi->flags & O_ACCMODE) == O_RDONLY)
		fi->noflush = 1;
	if (fuse_reply_open(req, fi) == -ENOENT)
		handle_free(o, h);	/* interrupted: no release will come */
}

/*
 * Reads `events` for one open file.  Offsets are exact, except that a read
 * starting below the first retained event (after a compaction) is served
 * from that event on, so `cat events` prints exactly the retained events:
 * the handle then remembers the shift between the kernel's file position
 * and the real offset, and applies it to the read that continues where
 * the last one ended.  Any other read is exact again.  The handle's pin
 * follows the end of its last read: what it has not read yet is kept.
 */
static ssize_t
ops_read_events(struct odofs *o, struct handle *h, uint64_t off, char *buf,
    size_t size, struct err *e)
{
	uint64_t real;
	ssize_t n;

	pthread_mutex_lock(&h->lock);
	if (h->shift > 0 && off == h->expect)
		real = off + h->shift;
	else
		real = off;
	n = journal_read(o->journal, h->dev, &real, buf, size, e);
	if (n >= 0) {
		h->shift = real - off;
		h->expect = off + (uint64_t)n;
		if (h->pin != NULL)
			journal_pin_offset(h->pin, real + (uint64_t)n);
	}
	pthread_mutex_unlock(&h->lock);
	return n;
}

static void
ops_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
    struct fuse_file_info *fi)
{
	struct odofs *o = ops_ctx(req);
	struct handle *h = ops_handle(fi);
	struct err e;
	ssize_t n;
	char *buf;

	(void)ino;
	/*
	 * Replies are sent from a buffer of this request's own: the reader
	 * may close (and the release free the handle) as soon as the kernel
	 * has the data, before fuse_reply_buf() returns here.
	 */
	if (h->pipe != NULL) {
		atomic_fetch_add(&o->metrics.reads, 1);
		pipes_read(o->pipes, h->pipe, req, size,
		    (fi->flags & O_NONBLOCK) != 0);
		return;
	}
	if ((buf = malloc(size ? size : 1)) == NULL)
		return ops_reply_err(req, -ENOMEM);
	err_clear(&e);
	if (h->kind == TREE_EVENTS) {
		n = ops_read_events(o, h, (uint64_t)off, buf, size, &e);
	} else if (h->snap != NULL) {
		n = journal_snap_read(h->snap, (uint64_t)off, buf, size, &e);
	} else {
		struct buf *t = h->snap_writer ? &h->snapbuf : &h->text;
		size_t len = t->len;
		size_t start = (uint64_t)off < len ? (size_t)off : len;

		n = (ssize_t)(len - start < size ? len - start : size);
		if (n > 0)
			memcpy(buf, t->data + start, (size_t)n);
	}
	if (n < 0) {
		log_warnx("read failed: %s", e.msg);
		free(buf);
		return ops_reply_err(req, (int)n);
	}
	atomic_fetch_add(&o->metrics.reads, 1);
	atomic_fetch_add(&o->metrics.read_bytes, (uint64_t)n);
	fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

/* Commits the pending partial line of h as an event.  Caller holds h->lock. */
static int
ops_commit_pending(struct odofs *o, struct handle *h)
{
	struct journal_txn *t;
	struct err e;
	int rc;

	if (h->pending.len == 0)
		return 0;
	if ((rc = journal_txn_begin(o->journal, h->dev, &t, &e)) < 0)
		return rc;
	if ((rc = journal_txn_add(t, h->pending.data, h->pending.len, &e)) < 0) {
		journal_txn_abort(t);
		return rc;
	}
	if ((rc = journal_txn_commit(t, NULL, &e)) < 0)
		return rc;
	buf_reset(&h->pending);
	return 0;
}

/* Remembers data[0..len), the refused rest of a line: see ops_append(). */
static void
ops_skip(struct handle *h, const char *data, size_t len)
{
	h->skip_len = len;
	h->skip_hash = lines_hash(data, len);
}

/*
 * Appends one FUSE write: its complete lines become events in one batch,
 * the bytes after its last newline wait in h->pending.  A write with a line
 * over max_event_bytes fails with -EFBIG as a whole: none of its events is
 * stored and h->pending stays as it was.  Except when the over-long line is
 * the one h->pending holds the start of, since nothing of that line may be
 * stored (SPEC §4):
 *  - when this write is the first piece of its write(), the writer gets
 *    EFBIG: the pending bytes go, and so does the rest of the line, up to
 *    its newline, in the writes that follow (h->refuse_line);
 *  - when the write before may go on (h->maybe_more), this may be a later
 *    piece of a write() the kernel cut: the kernel then returns the count
 *    of the pieces before, and the pending bytes are what the writer was
 *    told it wrote, so they stay, to be committed at close as usual.  A
 *    writer that sends the rest again sends a first piece: the case above.
 * A refused write that holds the newline ending such a line leaves its
 * bytes up to that newline in h->skip_*: a writer that sends them again
 * (a buffered writer flushes its buffer again at close) would otherwise
 * have the end of the line stored as an event of its own; that write is
 * refused again, and any other write is taken as usual.
 * The kernel offers no way to fail a write() whose first pieces went
 * through, so a write() over OPS_WRITE_MAX gets EFBIG only when its first
 * piece already holds the over-long line.  Nothing is stored on error.
 * Caller holds h->lock.
 */
static int
ops_append(struct odofs *o, struct handle *h, const char *data, size_t size)
{
	const char *p, *end, *nl;
	struct lines_plan plan;
	struct journal_txn *t;
	size_t old_pending = h->pending.len, need;
	bool maybe_more = h->maybe_more;
	struct err e;
	int rc;

	h->maybe_more = false;
	if (h->skip_len > 0) {
		if (size >= h->skip_len &&
		    lines_hash(data, h->skip_len) == h->skip_hash)
			return -EFBIG;		/* the same rest again */
		h->skip_len = 0;
	}
	if (h->refuse_line) {
		if ((nl = memchr(data, '\n', size)) != NULL) {
			h->refuse_line = false;
			ops_skip(h, data, (size_t)(nl - data) + 1);
		}
		return -EFBIG;
	}
	rc = lines_plan(old_pending, data, size, o->cfg->max_event_bytes,
	    &plan);
	if (rc < 0) {
		if (old_pending > 0 && !maybe_more &&
		    (plan.bad == LINES_BAD_FIRST ||
		    (plan.bad == LINES_BAD_TAIL && plan.events == 0))) {
			buf_reset(&h->pending);
			h->refuse_line = plan.bad == LINES_BAD_TAIL;
			if (plan.bad == LINES_BAD_FIRST)
				ops_skip(h, data, plan.first_len + 1);
		}
		return rc;
	}
	/* room for what stays pending, so nothing fails after the commit */
	if (plan.events == 0)
		need = old_pending + plan.tail;
	else if (plan.tail > old_pending + plan.first_len)
		need = plan.tail;
	else
		need = old_pending + plan.first_len;
	if ((rc = buf_ensure(&h->pending, need)) < 0)
		return rc == -E2BIG ? -EFBIG : rc;
	if (plan.events > 0) {
		if ((rc = journal_txn_begin(o->journal, h->dev, &t, &e)) < 0)
			return rc;
		/* the first event completes the pending bytes, if any */
		if (old_pending > 0) {
			if ((rc = buf_append(&h->pending, data,
			    plan.first_len)) == 0)
				rc = journal_txn_add(t, h->pending.data,
				    h->pending.len, &e);
			p = data + plan.first_len + 1;
		} else {
			p = data;
		}
		end = data + plan.whole;
		for (; rc == 0 && p < end; p = nl + 1) {
			nl = memchr(p, '\n', (size_t)(end - p));
			rc = journal_txn_add(t, p, (size_t)(nl - p), &e);
		}
		if (rc < 0) {
			journal_txn_abort(t);
		} else {
			rc = journal_txn_commit(t, NULL, &e);
		}
		if (rc < 0) {
			h->pending.len = old_pending;	/* as before the write */
			return rc;
		}
		buf_reset(&h->pending);
	}
	if (plan.tail > 0 &&
	    (rc = buf_append(&h->pending, data + plan.whole, plan.tail)) < 0)
		return rc == -E2BIG ? -EFBIG : rc;
	h->maybe_more = size > OPS_WRITE_MAX - (size_t)sysconf(_SC_PAGESIZE);
	return 0;
}

/* Writes into a snapshot being replaced, like a regular file. */
static int
ops_write_snapshot(struct handle *h, const char *data, size_t size,
    uint64_t off)
{
	struct buf *b = &h->snapbuf;
	int rc;

	if (off > JOURNAL_SNAPSHOT_MAX || size > JOURNAL_SNAPSHOT_MAX - off)
		return -EFBIG;
	if ((rc = buf_ensure(b, (size_t)off + size)) < 0)
		return rc == -E2BIG ? -EFBIG : rc;
	if (off > b->len) {		/* a hole reads as zeros */
		memset(b->data + b->len, 0, (size_t)off - b->len);
		b->len = (size_t)off;
	}
	memcpy(b->data + off, data, size);
	if (off + size > b->len)
		b->len = (size_t)(off + size);
	b->data[b->len] = '\0';
	return 0;
}

static void
ops_write(fuse_req_t req, fuse_ino_t ino, const char *data, size_t size,
    off_t off, struct fuse_file_info *fi)
{
	struct odofs *o = ops_ctx(req);
	struct handle *h = ops_handle(fi);
	int rc;

	(void)ino;
	(void)off;		/* O_APPEND: the journal's end, not the kernel's */
	if (h->snap_writer) {
		pthread_mutex_lock(&h->lock);
		rc = ops_write_snapshot(h, data, size, (uint64_t)off);
		pthread_mutex_unlock(&h->lock);
		if (rc < 0)
			return ops_reply_err(req, rc);
		return (void)fuse_reply_write(req, size);
	}
	if (h->kind != TREE_EVENTS)
		return ops_reply_err(req, -EBADF);
	pthread_mutex_lock(&h->lock);
	rc = ops_append(o, h, data, size);
	pthread_mutex_unlock(&h->lock);
	if (rc < 0)
		return ops_reply_err(req, rc);
	atomic_fetch_add(&o->metrics.writes, 1);
	atomic_fetch_add(&o->metrics.write_bytes, size);
	fuse_reply_write(req, size);
}

/*
 * flush comes with every close() of a descriptor of the open file (a dup,
 * a child's inherited copy), and close() waits for its answer; release
 * comes once, after the last close() has returned (FUSE-NOTES §7).  So the
 * partial line is committed here when the opener closes, where close()
 * returns the error, and the line ends: a refused rest of a line is
 * forgotten too (SPEC §4: "committed as a final event when it is
 * closed").  If the commit fails, close() gets the error and the release
 * tries again; the release also commits what another thread or process
 * left when it closed last.  A replaced snapshot still waits
 * for the release: a dup closing must not install half of it.
 */
static void
ops_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct odofs *o = ops_ctx(req);
	struct handle *h = ops_handle(fi);
	int rc = 0;

	(void)ino;
	/*
	 * Only the thread that opened the file commits at its close: a child
	 * that inherited the descriptor (each command of `{ echo -n a; echo
	 * b; } >> events`) closes it without ending the line, as with a
	 * plain file; the opener's close does, and close() waits for it.
	 */
	if (h->kind == TREE_EVENTS && fuse_req_ctx(req)->pid == h->opener) {
		pthread_mutex_lock(&h->lock);
		h->refuse_line = false;
		h->maybe_more = false;
		h->skip_len = 0;
		rc = ops_commit_pending(o, h);
		pthread_mutex_unlock(&h->lock);
	}
	if (rc < 0) {
		log_warnx("partial line not committed at close: %s: %s",
		    journal_id(o->journal, h->dev, &(size_t){0}),
		    strerror(-rc));
		return ops_reply_err(req, rc);
	}
	fuse_reply_err(req, 0);
}

/*
 * The last close: commit what a flush did not (none came, or it failed),
 * install a replaced snapshot, free the handle.
 */
static void
ops_close(struct odofs *o, struct handle *h)
{
	int rc = 0;

	if (h->kind == TREE_EVENTS) {
		pthread_mutex_lock(&h->lock);
		rc = ops_commit_pending(o, h);
		pthread_mutex_unlock(&h->lock);
		if (rc < 0)
			log_warnx("partial line lost at close: %s: %s",
			    journal_id(o->journal, h->dev, &(size_t){0}),
			    strerror(-rc));
	}
	if (h->snap_writer) {
		struct err e;

		err_clear(&e);
		rc = journal_snapshot_install(o->journal, h->dev, h->snap_rev,
		    h->snapbuf.data ? h->snapbuf.data : "", h->snapbuf.len, &e);
		if (rc < 0)	/* installed: the journal tells the snapshotter */
			log_warnx("snapshot not installed: %s", e.msg);
	}
	handle_free(o, h);
}

static void
ops_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	ops_close(ops_ctx(req), ops_handle(fi));
	fuse_reply_err(req, 0);
}

void
ops_release_all(struct odofs *o)
{
	while (o->handles != NULL)
		ops_close(o, o->handles);
}

static void
ops_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
    struct fuse_file_info *fi)
{
	struct odofs *o = ops_ctx(req);
	struct handle *h = ops_handle(fi);
	uint64_t head;
	struct err e;
	int rc;

	(void)ino;
	(void)datasync;
	if ((rc = journal_sync(o->journal, &e)) < 0) {
		log_warnx("fsync failed: %s", e.msg);
		return ops_reply_err(req, rc);
	}
	/*
	 * With durability.replicas, a source's events wait for that many
	 * peers to hold every event appended before it (SPEC §8.10).
	 */
	if (o->quorum != NULL && h->kind == TREE_EVENTS &&
	    journal_is_local(o->journal, h->dev) &&
	    (head = journal_head(o->journal, h->dev)) > 0) {
		quorum_wait(o->quorum, req, h->dev, head);
		return;
	}
	fuse_reply_err(req, 0);
}

static void
ops_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
    struct fuse_pollhandle *ph)
{
	struct odofs *o = ops_ctx(req);
	struct handle *h = ops_handle(fi);

	(void)ino;
	if (h->pipe != NULL)
		return pipes_poll(o->pipes, h->pipe, req, ph);
	/* regular files are always ready */
	if (ph != NULL)
		fuse_pollhandle_destroy(ph);
	fuse_reply_poll(req, POLLIN | POLLRDNORM | POLLOUT | POLLWRNORM);
}

static void
ops_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct odofs *o = ops_ctx(req);
	struct tree_node n;

	if (!ops_decode(o, ino, &n))
		return ops_reply_err(req, -ENOENT);
	if (!tree_is_dir(n.kind))
		return ops_reply_err(req, -ENOTDIR);
	fuse_reply_open(req, fi);
}

/*
 * Directory offsets are stable cursors: entry k (from 0) of the listing
 * "." ".." <own listed files> <devices in creation order> has offset k + 1.
 * The live pipes are not listed (tree.h).
 * With readdirplus each entry carries its attributes too, so `ls -l` of a
 * large root costs no LOOKUP per device (FUSE-NOTES §7); "." and ".." go
 * without (inode 0: the kernel makes no entry of them).
 */
static void
ops_listdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
    bool plus)
{
	struct odofs *o = ops_ctx(req);
	const struct tree_entry *files;
	size_t nfiles, used = 0;
	uint64_t k, total;
	struct tree_node n;
	char *buf;

	if (!ops_decode(o, ino, &n) || !tree_is_dir(n.kind))
		return ops_reply_err(req, -ENOTDIR);
	if (n.kind == TREE_ROOT) {
		files = tree_root_files;
		nfiles = tree_root_nlisted;
		total = 2 + nfiles + journal_count(o->journal);
	} else if (n.kind == TREE_DEV) {
		files = tree_dev_files;
		nfiles = tree_dev_nlisted;
		total = 2 + nfiles;
	} else {
		files = NULL;		/* from/: listed empty */
		nfiles = 0;
		total = 2;
	}
	if ((buf = malloc(size)) == NULL)
		return ops_reply_err(req, -ENOMEM);
	for (k = (uint64_t)off; k < total; k++) {
		struct fuse_entry_param e;
		struct tree_node c = { TREE_NONE, n.dev, 0 };
		char name[JOURNAL_ID_MAX + 1];
		size_t ent;

		memset(&e, 0, sizeof(e));
		if (k < 2) {
			snprintf(name, sizeof(name), "%s", k == 0 ? "." : "..");
			e.attr.st_ino = k == 0 ? ino : 1;
			e.attr.st_mode = S_IFDIR;
		} else {
			if (k < 2 + nfiles) {
				snprintf(name, sizeof(name), "%s",
				    files[k - 2].name);
				c.kind = files[k - 2].kind;
			} else {
				size_t len;
				const char *id;

				c.kind = TREE_DEV;
				c.dev = (uint32_t)(k - 2 - nfiles);
				id = journal_id(o->journal, c.dev, &len);
				memcpy(name, id, len + 1);
			}
			e.attr_timeout = ops_stat(o, req, NULL, &c, &e.attr);
			if (plus) {
				e.ino = e.attr.st_ino;
				e.entry_timeout = OPS_DIR_TIMEOUT;
			}
		}
		if (plus)
			ent = fuse_add_direntry_plus(req, buf + used, size - used,
			    name, &e, (off_t)(k + 1));
		else
			ent = fuse_add_direntry(req, buf + used, size - used,
			    name, &e.attr, (off_t)(k + 1));
		if (ent > size - used)
			break;
		used += ent;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static void
ops_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
    struct fuse_file_info *fi)
{
	(void)fi;
	ops_listdir(req, ino, size, off, false);
}

static void
ops_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
    struct fuse_file_info *fi)
{
	(void)fi;
	ops_listdir(req, ino, size, off, true);
}

/* df: the data directory's file system, where the journal grows */
static void
ops_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct odofs *o = ops_ctx(req);
	struct statvfs sv;
	int rc;

	(void)ino;
	if (statvfs(o->cfg->data_dir, &sv) < 0) {
		rc = -errno;
		log_warn("statfs of the data directory failed: %s",
		    o->cfg->data_dir);
		return ops_reply_err(req, rc);
	}
	sv.f_namemax = 255;
	fuse_reply_statfs(req, &sv);
}

const struct fuse_lowlevel_ops ops_table = {
	.init = ops_init,
	.lookup = ops_lookup,
	.getattr = ops_getattr,
	.setattr = ops_setattr,
	.mkdir = ops_mkdir,
	.mknod = ops_mknod,
	.unlink = ops_eperm_name,
	.rmdir = ops_eperm_name,
	.symlink = ops_symlink,
	.rename = ops_rename,
	.link = ops_link,
	.create = ops_create,
	.open = ops_open,
	.read = ops_read,
	.write = ops_write,
	.flush = ops_flush,
	.release = ops_release,
	.fsync = ops_fsync,
	.poll = ops_poll,
	.opendir = ops_opendir,
	.readdir = ops_readdir,
	.readdirplus = ops_readdirplus,
	.statfs = ops_statfs,
};
