/*
 * journal: devices and their append-only event journals, over the store.
 *
 * A device is named by an id (1..JOURNAL_ID_MAX bytes, see config_valid_id)
 * and has a random 64-bit epoch fixed at creation, a source node (the one
 * node that orders its events), and a journal of events numbered from 1
 * without gaps.  Each event is one line; its byte offset in the device's
 * `events` file is the sum of the lengths (payload + newline) of every event
 * before it and never changes.
 *
 * Devices are known by a dense index (0 .. journal_count() - 1) that is
 * stable for the life of the process: devices are never removed.  Memory is
 * O(devices); events are read from the store on demand.
 *
 * Thread-safety: every function may be called from any thread.  Appends to
 * one device are serialised by that device's lock, held from
 * journal_txn_begin() to commit or abort; readers never take it.
 */
#ifndef ODOFS_JOURNAL_H
#define ODOFS_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"

#define JOURNAL_ID_MAX		128	/* bytes of a device id */
#define JOURNAL_NODE_MAX	64	/* bytes of a node id */
#define JOURNAL_MAX_DEVICES	(1u << 20)

struct journal;
struct journal_txn;

/*
 * What --repair dropped from a device: revisions from to last (events of
 * them were in the store, bytes long; from 0: nothing dropped, the
 * revision index was written again), and why.
 */
typedef void (*journal_report_fn)(void *arg, const char *device, bool source,
    uint64_t from, uint64_t last, uint64_t events, uint64_t bytes,
    const char *why);

struct journal_opts {
	const char *data_dir;		/* the store lives here */
	const char *node_id;		/* this node: the source of what it creates */
	bool sync;			/* every commit waits for stable storage */
	uint32_t max_event_bytes;	/* longest payload accepted */
	size_t cache_bytes;		/* LevelDB block cache */
	/*
	 * Every device is checked at open (SPEC §1): revisions contiguous
	 * from first to head, offsets consistent with lengths, the revision
	 * index consistent.  Damage fails journal_open with -EUCLEAN, naming
	 * the device and revisions; with repair, each damaged device is cut
	 * at its first bad revision instead and report (if set) says so.
	 */
	bool repair;
	bool repair_hold;		/* a source cut becomes held (peered) */
	journal_report_fn report;
	void *report_arg;
};

/* A consistent copy of a device's state. */
struct journal_info {
	char id[JOURNAL_ID_MAX + 1];
	char source[JOURNAL_NODE_MAX + 1];
	uint64_t epoch;
	uint64_t created_ns;		/* CLOCK_REALTIME at creation */
	uint64_t mtime_ns;		/* last append by this process, else creation */
	uint64_t first;			/* first retained revision (head + 1 if none) */
	uint64_t head;			/* last revision, 0 if none */
	uint64_t first_offset;		/* offset of the first retained event */
	uint64_t end_offset;		/* offset of the end: the file's size */
	uint64_t snapshot_rev;		/* revision the latest snapshot covers */
	uint64_t snapshot_len;		/* bytes of its payload */
	bool local;			/* this node is the source */
	bool held;	/* our id is the source, but a wiped data dir lost it:
			   a replica, read-only (SPEC §8.9) */
};

struct journal_stats {
	uint64_t devices;
	uint64_t events;		/* sum of heads */
	uint64_t events_appended;	/* by this process */
	uint64_t bytes_appended;	/* payload + newline, by this process */
	uint64_t commits;		/* store batches written */
	uint64_t syncs;			/* store writes to stable storage */
};

/*
 * Called after every commit that made events visible, in the committing
 * thread, with no journal lock held: device idx now has head.  It must not
 * block; it is a hint for consumers, who pull from the store.
 */
typedef void (*journal_notify_fn)(void *arg, uint32_t idx, uint64_t head);

/* Opens the store and loads every device.  Blocks on disk I/O. */
int journal_open(struct journal **out, const struct journal_opts *o,
    struct err *e);
/* Closes; accepts NULL.  No other call may be running. */
void journal_close(struct journal *j);

/* The store under j, for core modules that keep their own keys. */
struct store;
struct store *journal_store(struct journal *j);

/* Sets the commit hook; call before other threads use j. */
void journal_set_notify(struct journal *j, journal_notify_fn fn, void *arg);

/*
 * Called after a snapshot of device idx was installed (written by hand,
 * built by the snapshot command, or received from a peer), in the
 * installing thread, which may hold the device's append lock: it must only
 * take note.  Set before other threads use j.
 */
typedef void (*journal_snap_fn)(void *arg, uint32_t idx);
void journal_set_snapshot_notify(struct journal *j, journal_snap_fn fn,
    void *arg);

/* The number of devices; indexes below it are valid. */
uint32_t journal_count(struct journal *j);

/* Finds a device by id: 0 and *idx, or -ENOENT. */
int journal_lookup(struct journal *j, const char *id, size_t len,
    uint32_t *idx);

/*
 * Creates a device sourced by this node, with a new random epoch.  Returns
 * 0 and *idx, -EINVAL for an invalid id, -EEXIST if the id exists, -ENOSPC
 * past JOURNAL_MAX_DEVICES, -EIO on a storage error.
 */
int journal_create(struct journal *j, const char *id, size_t len,
    uint32_t *idx, struct err *e);

/* Copies device idx's state into *out. */
void journal_info(struct journal *j, uint32_t idx, struct journal_info *out);

/* The device's id (valid for the life of j) and its id length. */
const char *journal_id(struct journal *j, uint32_t idx, size_t *len);

/* The last revision of device idx, 0 if none (lock-free). */
uint64_t journal_head(struct journal *j, uint32_t idx);
/* The first retained revision of device idx (lock-free). */
uint64_t journal_first(struct journal *j, uint32_t idx);

/* The device's epoch, and its source's id (valid for the life of j). */
uint64_t journal_epoch(struct journal *j, uint32_t idx);
const char *journal_source(struct journal *j, uint32_t idx);
/* Whether this node is the source of device idx. */
bool journal_is_local(struct journal *j, uint32_t idx);

void journal_stats(struct journal *j, struct journal_stats *out);

/*
 * Appending.  journal_txn_begin() takes the device's append lock and
 * returns a transaction; journal_txn_add() stages one event (the payload,
 * without newline); journal_txn_commit() writes everything staged as one
 * store batch and makes it visible, or journal_txn_abort() drops it.  Both
 * release the lock and free t.  Keep the time between begin and commit
 * short: other appenders of the device wait.
 *
 * begin: -EROFS when this node is not the device's source, -ENOMEM.
 * add: -EFBIG over max_event_bytes, -EINVAL if data holds a newline; the
 *      transaction stays usable.
 * commit: -EIO on a storage error; nothing of t is then visible.
 */
int journal_txn_begin(struct journal *j, uint32_t idx,
    struct journal_txn **out, struct err *e);
int journal_txn_add(struct journal_txn *t, const char *data, size_t len,
    struct err *e);
/* Number of events staged so far. */
uint32_t journal_txn_count(const struct journal_txn *t);
/* On success, *first_rev (may be NULL) is the first revision written. */
int journal_txn_commit(struct journal_txn *t, uint64_t *first_rev,
    struct err *e);
void journal_txn_abort(struct journal_txn *t);

/*
 * Appends buf, a sequence of whole lines each ending in '\n', as one event
 * per line in one batch.  Returns the number of events, or a negative errno
 * as for the txn functions (-EINVAL if buf does not end in '\n').
 */
int journal_append_lines(struct journal *j, uint32_t idx, const char *buf,
    size_t len, struct err *e);

/* Makes every commit so far durable on stable storage.  Blocks. */
int journal_sync(struct journal *j, struct err *e);

/*
 * Reads the `events` file of device idx: copies up to size bytes starting
 * at byte offset *off into buf.  An offset below the first retained event
 * reads from the first retained event, and *off says where the bytes
 * really start.  Returns the number of bytes, 0 at or past the end, or
 * -EIO.
 */
ssize_t journal_read(struct journal *j, uint32_t idx, uint64_t *off,
    char *buf, size_t size, struct err *e);

/*
 * Reads whole lines from revision *rev on: each event is written as
 * "payload\n" (or, with tagged, "<id>\t<rev>\t<payload>\n").  *skip bytes of
 * the first line are left out, for a reader that took part of it before;
 * a line too long for the space left is cut there and *skip records how
 * much of it was given.  On return *rev and *skip name the next byte to
 * read.  Returns the bytes written, 0 when revision *rev does not exist yet,
 * -ERANGE when *rev is below the first retained revision, -EIO.
 */
ssize_t journal_read_from(struct journal *j, uint32_t idx, uint64_t *rev,
    size_t *skip, bool tagged, char *buf, size_t size, struct err *e);

/* journal_read_from(), reading no revision above last. */
ssize_t journal_read_range(struct journal *j, uint32_t idx, uint64_t *rev,
    size_t *skip, uint64_t last, bool tagged, char *buf, size_t size,
    struct err *e);

/*
 * Snapshots.  A device's latest snapshot is a payload of at most
 * JOURNAL_SNAPSHOT_MAX bytes covering revisions 1..rev.  Installing one
 * writes it and the device record in one batch; it never goes backwards.
 * Returns 0, -EINVAL (rev above head, or below the current snapshot),
 * -EFBIG, -EIO.  Blocks on the store; does not stop appenders.
 */
#define JOURNAL_SNAPSHOT_MAX	(64u << 20)
/*
 * The largest event: limits.max_event_bytes' bound.  A replica takes any
 * event its source took, up to this, whatever its own limit.
 */
#define JOURNAL_EVENT_MAX	(4u << 20)
int journal_snapshot_install(struct journal *j, uint32_t idx, uint64_t rev,
    const char *data, size_t len, struct err *e);

/* A consistent view of one device's snapshot, for one reader. */
struct journal_snap;
int journal_snap_open(struct journal *j, uint32_t idx,
    struct journal_snap **out, struct err *e);
void journal_snap_close(struct journal_snap *s);
uint64_t journal_snap_rev(const struct journal_snap *s);
uint64_t journal_snap_len(const struct journal_snap *s);
/* Copies up to size bytes of the payload from off; 0 at the end. */
ssize_t journal_snap_read(struct journal_snap *s, uint64_t off, char *buf,
    size_t size, struct err *e);

/*
 * Pins: what open readers still need.  A reader of `events` pins the byte
 * offset it has read up to, a live pipe the next revision; compaction never
 * deletes an event at or after a pin of its device.  Positions only move
 * forward: a pin is where its reader last was.  journal_pin_new() returns
 * NULL on ENOMEM; a new pin holds nothing until it is set.
 */
struct journal_pin;
struct journal_pin *journal_pin_new(struct journal *j, uint32_t idx);
void journal_pin_offset(struct journal_pin *p, uint64_t offset);
void journal_pin_rev(struct journal_pin *p, uint64_t rev);
void journal_pin_free(struct journal *j, struct journal_pin *p);

/*
 * Compaction: deletes the events of device idx below revision first,
 * keeping the offsets of the rest, never past its snapshot (snapshot + 1),
 * never an event a pin holds, and never one a .live reader has not read
 * (from the firehose log at or after the slowest reader's position, as
 * journal_firehose_prune() last set it).  The first retained revision moves at
 * once; the keys are then deleted in batches that never hold the append
 * lock, and the range is compacted on disk.  Returns the first retained
 * revision after the call, or a negative errno.  Blocks: call it off the
 * FUSE threads.
 */
int64_t journal_compact(struct journal *j, uint32_t idx, uint64_t first,
    struct err *e);

/*
 * Replication.  A replica device has another node as its source and takes
 * events only through journal_apply(), which accepts revision head + 1 and
 * nothing else (-ESTALE).  The lines are "payload\n" each; offsets follow
 * the source's because they are the same sums.
 */
/*
 * source may be this node's id: a journal it sourced before its data dir
 * was lost, found on peers; it is held as a replica (info's held), read
 * only, and never appended to under that epoch again (SPEC §8.9).
 */
int journal_create_replica(struct journal *j, const char *id, size_t len,
    uint64_t epoch, const char *source, uint64_t created_ns, uint32_t *idx,
    struct err *e);
int journal_apply(struct journal *j, uint32_t idx, uint64_t first_rev,
    const char *lines, size_t len, uint32_t count, struct err *e);
/*
 * Catches a replica up from a snapshot at revision rev whose next event
 * starts at byte offset: the snapshot is installed, the journal continues
 * at rev + 1, and older events are deleted.  -ESTALE if the replica is not
 * behind it.
 */
int journal_replica_reset(struct journal *j, uint32_t idx, uint64_t rev,
    uint64_t offset, const char *snap, size_t len, struct err *e);
/* Where revision rev starts (first <= rev <= head + 1); UINT64_MAX if not. */
uint64_t journal_rev_offset(struct journal *j, uint32_t idx, uint64_t rev);

/*
 * The journal's change clock; the clock at device idx's last change, and
 * at its last change other than an append (a head that moved).
 */
uint64_t journal_clock(struct journal *j);
uint64_t journal_version(struct journal *j, uint32_t idx);
uint64_t journal_meta_version(struct journal *j, uint32_t idx);

/*
 * What info, .status and the catalogue show of a device's replication.
 * Setting another upstream or hop count is a change of the device (its
 * version moves, so catalogues carry it); the upstream's head is not.
 */
#define JOURNAL_HOPS_NONE	255	/* no known path to the source */
struct journal_repl {
	char upstream[JOURNAL_NODE_MAX + 1];	/* "" when none */
	uint64_t upstream_head;			/* its head, as last heard */
	uint64_t progress_ns;			/* last apply, CLOCK_REALTIME */
	uint8_t hops;		/* to the source: 0 at it, else JOURNAL_HOPS_NONE */
};
void journal_repl_set(struct journal *j, uint32_t idx, const char *upstream,
    uint64_t upstream_head, uint8_t hops);
void journal_repl_get(struct journal *j, uint32_t idx, struct journal_repl *out);

/*
 * The firehose: every device's events in commit order, for `.live`.
 *
 * While at least one firehose reader is open, each commit also writes a
 * small log entry ("commit seq: device, revisions") in its batch, so a
 * reader is a cursor (seq, rev, skip) over the store and costs no memory.
 * Commits of different devices run in parallel, so a reader only reads up
 * to the watermark: the highest seq below which every commit is done.
 * Entries are deleted by journal_firehose_prune() once every reader is
 * past them, and all of them at open.
 */
struct journal_fh_cursor {
	uint64_t seq;		/* next commit to read */
	uint64_t rev;		/* next revision inside it (0: its first) */
	size_t skip;		/* bytes of that line already given */
};

/* Registers a reader; *c starts at the next commit. */
void journal_firehose_open(struct journal *j, struct journal_fh_cursor *c);
/* Unregisters a reader. */
void journal_firehose_close(struct journal *j);
/* Every commit below the returned seq is complete. */
uint64_t journal_firehose_watermark(struct journal *j);
/* Whether a commit at or after c is complete and can be read. */
bool journal_firehose_ready(struct journal *j,
    const struct journal_fh_cursor *c);
/*
 * Reads "<id>\t<rev>\t<payload>\n" lines from c on, as journal_read_from()
 * does, advancing c.  Returns bytes, 0 when nothing is ready, -EIO.
 */
ssize_t journal_firehose_read(struct journal *j, struct journal_fh_cursor *c,
    char *buf, size_t size, struct err *e);
/*
 * Deletes log entries below seq, or every complete one when seq is
 * UINT64_MAX (no reader).  seq, the slowest reader's position, is also
 * where compaction starts looking for what .live readers still need.
 * Blocks on the store.
 */
void journal_firehose_prune(struct journal *j, uint64_t seq);

#endif
