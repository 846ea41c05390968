/*
 * journal_int.h: what the files of the journal module share.  Private to
 * core/: the module's contract is journal.h, and nothing outside the
 * journal's own files includes this.
 *
 *   devtable.c   the device table, the device record, accessors, clock
 *   journal.c    open and close, transactions (append, apply), replica
 *                reset, reads by offset and by revision
 *   jcheck.c     the checks at open, --repair, the marks
 *   firehose.c   the firehose log behind `.live`
 *   snapstore.c  snapshot storage
 *   compact.c    pins and compaction
 *
 * struct journal_pin is compact.c's and struct journal_snap snapstore.c's:
 * no other file looks inside them.
 *
 * Locks, and what each protects:
 *
 *   j->create_lock  serialises device creation (journal_create*) and the
 *                   load at open; next_devno, and the table's writes: a new
 *                   chunk, and (with table_lock) a slot, the hash and count.
 *   j->table_lock   (a rwlock) hash and hash_cap: journal_table_add writes
 *                   them, journal_lookup reads them.  The chunks are read
 *                   without it: a device pointer never moves, and every
 *                   index below count is filled in.
 *   d->lock         the append lock, held from journal_txn_open to commit
 *                   or abort and through a replica reset: head and
 *                   end_offset are written under it.  Readers never take it.
 *   d->meta_lock    serialises writes of the device record: snapshot
 *                   installs, compactions and a replica reset's move of
 *                   first.  first, first_offset, snapshot_rev and
 *                   snapshot_len are written under it.
 *   d->repl_lock    upstream, upstream_head and hops; never held long.
 *   j->fh_lock      fh_next, fh_inflight (and its counts) and fh_pruned;
 *                   fh_readers and fh_watermark are written under it and
 *                   read without it.
 *   j->pins_lock    the list of pins (j->pins, each pin's prev and next);
 *                   a pin's offset and rev are atomics its owner stores.
 *
 *   A device's id, devno, source, epoch and created_ns never change once it
 *   is in the table; local, held and cut only change at load.  At load
 *   (journal_load, with create_lock held) no other thread runs, and device
 *   fields and records are written without their locks (journal_hold_cut
 *   writes a record without meta_lock).  The hooks (notify, snap_notify)
 *   and the options are set before other threads start.
 *
 * Lock order, outer first; the journal's code holds no other two locks
 * together:
 *
 *   create_lock  -> table_lock    creation looks the id up, adds to the table
 *   d->lock      -> d->meta_lock  a replica reset (and the snapshot install
 *                                 it makes)
 *   d->lock      -> fh_lock       a commit takes its firehose seq
 *   d->meta_lock -> pins_lock     compaction reads the pins
 *
 *   notify is called with no journal lock held; snap_notify may be called
 *   under d->lock (journal.h).  journal_delete_below holds no lock.
 *
 * Atomics.  Every load and store is sequentially consistent (plain
 * atomic_load/atomic_store), which is at least the release/acquire these
 * pairs need:
 *
 *   count          stored after the new device's slot and hash entry: a
 *                  reader that loads count n can index every device below n.
 *   head, end_offset
 *                  stored by the appender after its batch is in the store
 *                  (end_offset, then head): a reader that sees a head can
 *                  always read that event.  A reader takes its store view
 *                  after loading end (or head), so the view holds all of it.
 *   first, first_offset
 *                  moved by a compaction before it deletes anything
 *                  (first_offset, then first), and loaded by a reader after
 *                  it took its view, so the view holds everything from them
 *                  on.  head and end are loaded before first, and a replica
 *                  reset stores them before first: no reader ever sees
 *                  first > head + 1.
 *   snapshot_rev, snapshot_len
 *                  stored before the record is written, and put back if the
 *                  write fails; exact under meta_lock.  journal_snap_open
 *                  reads them from its view's record instead.
 *   fh_watermark   stored after every commit below it was written or
 *                  failed: a firehose reader reads only entries below it.
 *   fh_readers     loaded without fh_lock as a hint (no reader: no log
 *                  entry), and again under it.
 *   version, meta_version, clock, mtime_ns, progress_ns, fh_low
 *                  what listings show and where compaction starts looking;
 *                  nothing is ordered by them.
 */
#ifndef ODOFS_JOURNAL_INT_H
#define ODOFS_JOURNAL_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"
#include "journal.h"

struct store_batch;
struct store_iter;

#define JOURNAL_CHUNK_SHIFT	10
#define JOURNAL_CHUNK		(1u << JOURNAL_CHUNK_SHIFT)
#define JOURNAL_NCHUNKS		(JOURNAL_MAX_DEVICES / JOURNAL_CHUNK)

struct device {
	pthread_mutex_t lock;		/* serialises appends */
	pthread_mutex_t meta_lock;	/* serialises record writes: snapshot
					   installs, compactions, and a
					   replica reset's move of first */
	uint32_t devno;			/* key prefix in the store */
	size_t idlen;
	char id[JOURNAL_ID_MAX + 1];
	char source[JOURNAL_NODE_MAX + 1];
	uint64_t epoch;
	uint64_t created_ns;
	bool local;			/* the source: appends go here */
	bool held;			/* sourced here once, now a replica */
	bool cut;			/* --repair cut it (reported once) */
	_Atomic uint64_t first;		/* written under meta_lock */
	_Atomic uint64_t first_offset;	/* written under meta_lock */
	_Atomic uint64_t head;		/* written under lock */
	_Atomic uint64_t end_offset;	/* written under lock */
	_Atomic uint64_t snapshot_rev;	/* written under meta_lock */
	_Atomic uint64_t snapshot_len;	/* written under meta_lock */
	_Atomic uint64_t mtime_ns;	/* last append; creation at load */
	_Atomic uint64_t version;	/* journal clock at the last change */
	_Atomic uint64_t meta_version;	/* ... but for appends */
	/* replication, shown in info; under repl_lock, never held long */
	pthread_mutex_t repl_lock;
	char upstream[JOURNAL_NODE_MAX + 1];
	uint64_t upstream_head;
	uint8_t hops;			/* JOURNAL_HOPS_NONE when unknown */
	_Atomic uint64_t progress_ns;	/* last apply (CLOCK_REALTIME) */
};

struct journal {
	struct store *store;
	char node_id[JOURNAL_NODE_MAX + 1];
	char *data_dir;
	bool repair;			/* journal_opts.repair */
	bool repair_hold;		/* journal_opts.repair_hold */
	journal_report_fn report;
	void *report_arg;
	bool opened;			/* whole: its marks are saved at close */
	bool sync;
	uint32_t max_event_bytes;

	pthread_mutex_t create_lock;	/* serialises journal_create and the
					   load; protects next_devno */
	pthread_rwlock_t table_lock;	/* protects hash, hash_cap, count writes */
	struct device **chunks[JOURNAL_NCHUNKS];
	_Atomic uint32_t count;
	uint32_t *hash;			/* idx + 1, 0 = empty */
	size_t hash_cap;		/* a power of two */
	uint32_t next_devno;		/* under create_lock */

	_Atomic uint64_t events_appended;
	_Atomic uint64_t bytes_appended;
	_Atomic uint64_t commits;

	_Atomic uint64_t clock;		/* bumped by every change */

	journal_notify_fn notify;	/* set before threads */
	void *notify_arg;
	journal_snap_fn snap_notify;	/* set before threads */
	void *snap_notify_arg;

	/* the firehose log (see journal.h) */
	pthread_mutex_t fh_lock;	/* protects the fh_* fields below */
	_Atomic uint32_t fh_readers;	/* written under fh_lock */
	uint64_t fh_next;		/* next seq to assign */
	uint64_t *fh_inflight;		/* seqs being written */
	size_t fh_ninflight, fh_capinflight;
	_Atomic uint64_t fh_watermark;	/* every seq below it is done */
	uint64_t fh_pruned;		/* every seq below it is deleted */
	_Atomic uint64_t fh_low;	/* the slowest reader's seq, at most;
					   stored without fh_lock */

	pthread_mutex_t pins_lock;	/* protects pins (the list) */
	struct journal_pin *pins;
};

struct journal_txn {
	struct journal *j;
	struct device *d;
	uint32_t idx;
	bool replica;			/* applying: no size limit, any source */
	struct store_batch *batch;
	uint64_t first_rev;
	uint64_t rev;			/* next revision to stage */
	uint64_t start_offset;		/* end offset at begin */
	uint64_t offset;		/* next offset to stage */
	uint32_t count;
};

static inline struct device *
journal_dev(struct journal *j, uint32_t idx)
{
	return j->chunks[idx >> JOURNAL_CHUNK_SHIFT][idx & (JOURNAL_CHUNK - 1)];
}

/* devtable.c */

/* Adds d to the table as the next index.  Caller holds create_lock. */
int journal_table_add(struct journal *j, struct device *d, uint32_t *idx);
/* Fills d's record fields from a stored record: 0 or -EPROTO. */
int journal_devrec_decode(struct device *d, const unsigned char *p,
    size_t len);
/* A device with id and its locks; NULL on ENOMEM.  Free accepts NULL. */
struct device *journal_device_new(const char *id, size_t len);
void journal_device_free(struct device *d);
/* Bump the journal's clock into d: a change of d, of its head only. */
void journal_touch(struct journal *j, struct device *d);
void journal_touch_head(struct journal *j, struct device *d);
/* Writes d's record into b.  Caller holds d->meta_lock (or is loading). */
void journal_put_record(struct store_batch *b, const struct device *d);

/* journal.c */

/* CLOCK_REALTIME in nanoseconds. */
uint64_t journal_now_ns(void);
/*
 * Position it on d's event that holds byte off (returns the bytes of it to
 * skip, or -EIO), or on revision rev of d (0 or -EIO).
 */
ssize_t journal_seek_offset(struct store_iter *it, const struct device *d,
    uint64_t off);
int journal_seek_rev(struct store_iter *it, const struct device *d,
    uint64_t rev);
/* Parses the event key of d under it: false if it is not one. */
bool journal_iter_event(struct store_iter *it, uint32_t devno, uint64_t *off,
    uint64_t *rev);

/* jcheck.c: at open, before other threads */

/* Loads and checks every device.  Caller holds create_lock. */
int journal_load(struct journal *j, struct err *e);
/* Each journal against its mark (marks.h); records how far each reached. */
int journal_check_marks(struct journal *j, struct err *e);
int journal_save_marks(struct journal *j, struct err *e);
/* LevelDB refused the store: says in e what is damaged, in our terms. */
void journal_explain(struct journal *j, struct err *e);

/* firehose.c */

/* Numbers new commits after the last log entry of an earlier run. */
int journal_fh_recover(struct journal *j, struct err *e);
/* A commit's seq (0: none) and its log entry in t's batch; then done. */
uint64_t journal_fh_begin(struct journal *j, struct journal_txn *t);
void journal_fh_end(struct journal *j, uint64_t seq);
/* The first revision of idx a .live reader may need (UINT64_MAX: none). */
uint64_t journal_firehose_keep(struct journal *j, uint32_t idx);

/* compact.c */

/* One more change staged in b: writes b every JOURNAL_COMPACT_BATCH. */
int journal_batch_step(struct journal *j, struct store_batch *b, int *n,
    bool sync, struct err *e);
/* Deletes d's event and index keys below (rev, offset).  No lock held. */
int journal_delete_below(struct journal *j, struct device *d, uint64_t rev,
    uint64_t offset, struct err *e);

#endif
