/*
 * journal: see journal.h.
 *
 * Devices live in a chunked table (JOURNAL_CHUNK pointers a chunk) so that
 * a device pointer never moves and readers can index it without a lock; an
 * open-addressing hash from id to index sits beside it under table_lock.
 * Only creation writes the table.
 *
 * The store holds, per device, a record ('D' key) with what never changes
 * (devno, epoch, creation time, source) and what only snapshots and
 * compaction change (first retained revision and offset, snapshot
 * revision).  Head and end offset are not stored: they are read back from
 * the last event key at open, so an append writes its events and nothing
 * else.  In memory, head and end are atomics written by the appender after
 * the batch is in the store (release) and read by anyone (acquire): a
 * reader that sees a head can always read that event.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "config.h"
#include "journal.h"
#include "keys.h"
#include "log.h"
#include "marks.h"
#include "store.h"

#define JOURNAL_CHUNK_SHIFT	10
#define JOURNAL_CHUNK		(1u << JOURNAL_CHUNK_SHIFT)
#define JOURNAL_NCHUNKS		(JOURNAL_MAX_DEVICES / JOURNAL_CHUNK)
#define DEVREC_VERSION		2	/* 2: a flags byte; 1 is read too */
#define DEVREC_MAX		(1 + 4 + 8 * 6 + 1 + 1 + JOURNAL_NODE_MAX)
#define DEVREC_HELD		0x01	/* our id as source, a wiped node's old
					   journal: held as a replica */

struct device {
	pthread_mutex_t lock;		/* serialises appends */
	pthread_mutex_t meta_lock;	/* serialises record writes: snapshot
					   installs and compactions */
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

	pthread_mutex_t create_lock;	/* serialises journal_create */
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
	_Atomic uint64_t fh_low;	/* the slowest reader's seq, at most */

	pthread_mutex_t pins_lock;	/* protects pins (the list) */
	struct journal_pin *pins;
};

struct journal_pin {
	uint32_t idx;
	_Atomic uint64_t offset;	/* UINT64_MAX: not an offset pin */
	_Atomic uint64_t rev;		/* UINT64_MAX: not a revision pin */
	struct journal_pin *prev, *next;
};

struct journal_snap {
	struct journal *j;
	struct device *d;
	struct store_iter *it;		/* the consistent view */
	uint64_t rev, len;
};

#define JOURNAL_SNAP_CHUNK	(64u << 10)
#define JOURNAL_COMPACT_BATCH	10000
#define JOURNAL_FH_KEEP_SCAN	100000	/* firehose entries a compaction reads */

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

static struct device *
journal_dev(struct journal *j, uint32_t idx)
{
	return j->chunks[idx >> JOURNAL_CHUNK_SHIFT][idx & (JOURNAL_CHUNK - 1)];
}

static uint64_t
journal_hash_id(const char *id, size_t len)
{
	uint64_t h = 14695981039346656037ull;

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)id[i];
		h *= 1099511628211ull;
	}
	return h;
}

/* Caller holds table_lock (read or write). */
static int
journal_hash_find(struct journal *j, const char *id, size_t len, uint32_t *idx)
{
	size_t mask = j->hash_cap - 1;

	for (size_t i = journal_hash_id(id, len) & mask;; i = (i + 1) & mask) {
		uint32_t slot = j->hash[i];
		struct device *d;

		if (slot == 0)
			return -ENOENT;
		d = journal_dev(j, slot - 1);
		if (d->idlen == len && memcmp(d->id, id, len) == 0) {
			*idx = slot - 1;
			return 0;
		}
	}
}

/* Caller holds table_lock for writing; there is room (load < 1/2). */
static void
journal_hash_insert(uint32_t *hash, size_t cap, const struct device *d,
    uint32_t idx)
{
	size_t mask = cap - 1;
	size_t i = journal_hash_id(d->id, d->idlen) & mask;

	while (hash[i] != 0)
		i = (i + 1) & mask;
	hash[i] = idx + 1;
}

/* Adds d to the table as the next index.  Caller holds create_lock. */
static int
journal_table_add(struct journal *j, struct device *d, uint32_t *idx)
{
	uint32_t n = atomic_load(&j->count);
	struct device **chunk;
	int rc = 0;

	if (n >= JOURNAL_MAX_DEVICES)
		return -ENOSPC;
	chunk = j->chunks[n >> JOURNAL_CHUNK_SHIFT];
	if (chunk == NULL) {
		chunk = calloc(JOURNAL_CHUNK, sizeof(*chunk));
		if (chunk == NULL)
			return -ENOMEM;
		j->chunks[n >> JOURNAL_CHUNK_SHIFT] = chunk;
	}
	pthread_rwlock_wrlock(&j->table_lock);
	if ((size_t)(n + 1) * 2 > j->hash_cap) {
		size_t cap = j->hash_cap ? j->hash_cap * 2 : 1024;
		uint32_t *h = calloc(cap, sizeof(*h));

		if (h == NULL) {
			rc = -ENOMEM;
			goto out;
		}
		for (uint32_t i = 0; i < n; i++)
			journal_hash_insert(h, cap, journal_dev(j, i), i);
		free(j->hash);
		j->hash = h;
		j->hash_cap = cap;
	}
	chunk[n & (JOURNAL_CHUNK - 1)] = d;
	journal_hash_insert(j->hash, j->hash_cap, d, n);
	atomic_store(&j->count, n + 1);
	*idx = n;
out:
	pthread_rwlock_unlock(&j->table_lock);
	return rc;
}

static size_t
devrec_encode(const struct device *d, unsigned char *p)
{
	size_t srclen = strlen(d->source);
	unsigned char *q = p;

	/* version 1 unless it needs the flags: an older odofs reads it */
	*q++ = d->held ? DEVREC_VERSION : 1;
	keys_put_u32(q, d->devno), q += 4;
	keys_put_u64(q, d->epoch), q += 8;
	keys_put_u64(q, d->created_ns), q += 8;
	keys_put_u64(q, atomic_load(&d->first)), q += 8;
	keys_put_u64(q, atomic_load(&d->first_offset)), q += 8;
	keys_put_u64(q, atomic_load(&d->snapshot_rev)), q += 8;
	keys_put_u64(q, atomic_load(&d->snapshot_len)), q += 8;
	if (d->held)
		*q++ = DEVREC_HELD;
	*q++ = (unsigned char)srclen;
	memcpy(q, d->source, srclen);
	return (size_t)(q - p) + srclen;
}

static int
devrec_decode(struct device *d, const unsigned char *p, size_t len)
{
	size_t srclen, at = 53;		/* the flags (2), or srclen (1) */

	if (len < 1 + 4 + 8 * 6 + 1 || (p[0] != 1 && p[0] != DEVREC_VERSION) ||
	    (p[0] == 2 && len < 1 + 4 + 8 * 6 + 2))
		return -EPROTO;
	d->devno = keys_get_u32(p + 1);
	d->epoch = keys_get_u64(p + 5);
	d->created_ns = keys_get_u64(p + 13);
	atomic_store(&d->first, keys_get_u64(p + 21));
	atomic_store(&d->first_offset, keys_get_u64(p + 29));
	atomic_store(&d->snapshot_rev, keys_get_u64(p + 37));
	atomic_store(&d->snapshot_len, keys_get_u64(p + 45));
	if (p[0] == 2) {
		if ((p[at] & ~DEVREC_HELD) != 0)
			return -EPROTO;
		d->held = (p[at++] & DEVREC_HELD) != 0;
	}
	srclen = p[at++];
	if (srclen > JOURNAL_NODE_MAX || len != at + srclen)
		return -EPROTO;
	memcpy(d->source, p + at, srclen);
	d->source[srclen] = '\0';
	return 0;
}

static struct device *
device_new(const char *id, size_t len)
{
	struct device *d = calloc(1, sizeof(*d));

	if (d == NULL)
		return NULL;
	pthread_mutex_init(&d->lock, NULL);
	pthread_mutex_init(&d->meta_lock, NULL);
	pthread_mutex_init(&d->repl_lock, NULL);
	memcpy(d->id, id, len);
	d->id[len] = '\0';
	d->idlen = len;
	return d;
}

static void
device_free(struct device *d)
{
	if (d == NULL)
		return;
	pthread_mutex_destroy(&d->meta_lock);
	pthread_mutex_destroy(&d->repl_lock);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

/*
 * Checking a device at load (SPEC §1): from the first retained offset on,
 * its event keys must be revisions first, first + 1, ... each at the
 * offset where the one before it ended, and every indexed revision in
 * that range must have its index entry, naming that offset.  Keys below
 * the first offset are what a compaction or reset cut short left behind
 * (the next compaction deletes them).  One pass over the events (values
 * are not copied) and one over the index, with point reads for 1 in
 * KEYS_REV_STRIDE revisions.
 */
struct journal_check {
	uint64_t head, end;		/* the intact run: its last revision, end */
	uint64_t bad;			/* first revision that breaks it; 0: none */
	uint64_t after, after_bytes;	/* events in the store from the break on */
	uint64_t last;			/* the highest revision among them */
	bool index_bad;			/* the revision index does not match */
	char why[160];
};

static bool journal_iter_event(struct store_iter *it, uint32_t devno,
    uint64_t *off, uint64_t *rev);

static int
journal_check_events(struct journal *j, struct device *d,
    struct journal_check *c, struct err *e)
{
	unsigned char k[KEYS_EVENT_LEN];
	uint64_t rev = atomic_load(&d->first), off = atomic_load(&d->first_offset);
	uint64_t r, o;
	struct store_iter *it;
	int rc;

	if ((it = store_iter_new(j->store, false)) == NULL)
		return err_set(e, -ENOMEM, "out of memory");
	keys_event(k, d->devno, off, 0);
	for (store_iter_seek(it, k, sizeof(k)); store_iter_valid(it);
	    store_iter_next(it)) {
		size_t vlen;

		if (!journal_iter_event(it, d->devno, &o, &r))
			break;
		(void)store_iter_value(it, &vlen);
		if (c->bad == 0 && r == rev && o == off) {
			rev++;
			off = o + vlen + 1;
			continue;
		}
		if (c->bad == 0) {
			c->bad = rev;
			if (r < rev || (r == rev && o != off))
				snprintf(c->why, sizeof(c->why), "revision %llu "
				    "again at offset %llu after revision %llu",
				    (unsigned long long)r, (unsigned long long)o,
				    (unsigned long long)rev - 1);
			else
				snprintf(c->why, sizeof(c->why), "revisions "
				    "%llu-%llu missing (offsets %llu-%llu)",
				    (unsigned long long)rev,
				    (unsigned long long)r - 1,
				    (unsigned long long)off,
				    (unsigned long long)o);
		}
		c->after++;
		c->after_bytes += vlen + 1;
		if (r > c->last)
			c->last = r;
	}
	c->head = rev - 1;
	c->end = off;
	rc = store_iter_status(it, e);
	store_iter_free(it);
	return rc;
}

static int
journal_check_index(struct journal *j, struct device *d,
    struct journal_check *c, struct err *e)
{
	unsigned char k[KEYS_EVENT_LEN > KEYS_REV_LEN ? KEYS_EVENT_LEN :
	    KEYS_REV_LEN];
	uint64_t first = atomic_load(&d->first), want = first, r;
	struct store_iter *it;
	char dummy[1];
	size_t n;
	int rc;

	while (want <= c->head && !keys_rev_indexed(want))
		want++;
	if ((it = store_iter_new(j->store, false)) == NULL)
		return err_set(e, -ENOMEM, "out of memory");
	keys_rev(k, d->devno, first);
	for (store_iter_seek(it, k, KEYS_REV_LEN); store_iter_valid(it) &&
	    !c->index_bad; store_iter_next(it)) {
		size_t klen, vlen;
		const void *key = store_iter_key(it, &klen);
		const unsigned char *v = store_iter_value(it, &vlen);

		if (!keys_rev_parse(key, klen, d->devno, &r) || r > c->head)
			break;
		if (r != want || vlen != 8) {
			c->index_bad = true;
			break;
		}
		/* the event it names is there */
		keys_event(k, d->devno, keys_get_u64(v), r);
		rc = store_get(j->store, k, KEYS_EVENT_LEN, dummy, 0, &n, e);
		if (rc == -ENOENT) {
			c->index_bad = true;
			break;
		}
		if (rc < 0 && rc != -EOVERFLOW) {
			store_iter_free(it);
			return rc;
		}
		want += KEYS_REV_STRIDE;
	}
	if (!c->index_bad && want <= c->head)
		c->index_bad = true;	/* entries missing at the end */
	if (c->index_bad && c->why[0] == '\0')
		snprintf(c->why, sizeof(c->why), "the revision index does not "
		    "match the events from revision %llu on",
		    (unsigned long long)want);
	rc = store_iter_status(it, e);
	store_iter_free(it);
	return rc;
}

/*
 * One more change staged in b: every JOURNAL_COMPACT_BATCH of them, b is
 * written (and cleared), so that long deletions go in bounded batches.
 */
static int
journal_batch_step(struct journal *j, struct store_batch *b, int *n, bool sync,
    struct err *e)
{
	int rc;

	if (++*n < JOURNAL_COMPACT_BATCH)
		return 0;
	rc = store_write(j->store, b, sync, e);
	store_batch_clear(b);
	*n = 0;
	return rc;
}

/*
 * --repair: cuts d at c->bad (deletes every event key from c->end on) and
 * writes the revision index of what is kept again.
 */
static int
journal_repair_device(struct journal *j, struct device *d,
    const struct journal_check *c, struct err *e)
{
	unsigned char k[KEYS_EVENT_LEN], rk[KEYS_REV_LEN], rv[8];
	uint64_t first = atomic_load(&d->first), o, r;
	struct store_batch *b;
	struct store_iter *it;
	int n = 0, rc = 0;

	if ((b = store_batch_new()) == NULL ||
	    (it = store_iter_new(j->store, false)) == NULL) {
		store_batch_free(b);
		return err_set(e, -ENOMEM, "out of memory");
	}
	keys_event(k, d->devno, c->end, 0);
	for (store_iter_seek(it, k, sizeof(k)); rc == 0 &&
	    store_iter_valid(it) && journal_iter_event(it, d->devno, &o, &r);
	    store_iter_next(it)) {
		size_t klen;
		const void *key = store_iter_key(it, &klen);

		store_batch_delete(b, key, klen);
		rc = journal_batch_step(j, b, &n, true, e);
	}
	keys_rev(rk, d->devno, first);
	for (store_iter_seek(it, rk, sizeof(rk)); rc == 0 &&
	    store_iter_valid(it); store_iter_next(it)) {
		size_t klen;
		const void *key = store_iter_key(it, &klen);

		if (!keys_rev_parse(key, klen, d->devno, &r))
			break;
		store_batch_delete(b, key, klen);
		rc = journal_batch_step(j, b, &n, true, e);
	}
	keys_event(k, d->devno, atomic_load(&d->first_offset), 0);
	for (store_iter_seek(it, k, sizeof(k)); rc == 0 &&
	    store_iter_valid(it) && journal_iter_event(it, d->devno, &o, &r) &&
	    o < c->end; store_iter_next(it)) {
		if (!keys_rev_indexed(r))
			continue;
		keys_rev(rk, d->devno, r);
		keys_put_u64(rv, o);
		store_batch_put(b, rk, sizeof(rk), rv, sizeof(rv));
		rc = journal_batch_step(j, b, &n, true, e);
	}
	if (rc == 0)
		rc = store_iter_status(it, e);
	if (rc == 0)
		rc = store_write(j->store, b, true, e);
	store_iter_free(it);
	store_batch_free(b);
	return rc;
}

static void journal_put_record(struct store_batch *b, const struct device *d);

/*
 * A source cut by --repair on a node with peers: its replicas may hold
 * the revisions cut, so appending after the cut would make two journals
 * of one epoch.  It is held instead, a read-only replica of itself that
 * fetches the rest from its peers, as a wiped source's journal is (SPEC
 * §8.9).
 */
static int
journal_hold_cut(struct journal *j, struct device *d, struct err *e)
{
	struct store_batch *b = store_batch_new();
	int rc;

	if (b == NULL)
		return err_set(e, -ENOMEM, "out of memory");
	d->held = true;
	d->local = false;
	journal_put_record(b, d);
	rc = store_write(j->store, b, true, e);
	store_batch_free(b);
	return rc;
}

/*
 * Loads d's bounds from its keys and checks them; damage refuses the
 * store (naming the device and revisions), or with o->repair cuts the
 * device at its first bad revision and says what went.
 */
static int
journal_load_device(struct journal *j, struct device *d, struct err *e)
{
	struct journal_check c;
	bool local;
	int rc;

	memset(&c, 0, sizeof(c));
	if ((rc = journal_check_events(j, d, &c, e)) < 0 ||
	    (rc = journal_check_index(j, d, &c, e)) < 0)
		return rc;
	if ((c.bad != 0 || c.index_bad) && !j->repair)
		return err_set(e, -EUCLEAN, "device %s: %s: the store is "
		    "damaged; run odofs --repair %s", d->id, c.why,
		    j->data_dir);
	if (c.bad != 0 || c.index_bad) {
		if ((rc = journal_repair_device(j, d, &c, e)) < 0)
			return rc;
		d->cut = c.bad != 0;
		local = d->local;	/* reported as what it was */
		if (d->cut && d->local && j->repair_hold &&
		    (rc = journal_hold_cut(j, d, e)) < 0)
			return rc;
		if (j->report != NULL && c.bad != 0)
			j->report(j->report_arg, d->id, local, c.bad,
			    c.last > c.bad ? c.last : c.bad, c.after,
			    c.after_bytes, c.why);
		else if (j->report != NULL)
			j->report(j->report_arg, d->id, local, 0, 0, 0, 0,
			    c.why);
	}
	atomic_store(&d->head, c.head);
	atomic_store(&d->end_offset, c.end);
	return 0;
}

static int
journal_load(struct journal *j, struct err *e)
{
	struct store_iter *it;
	const unsigned char *k;
	struct device *d;
	size_t klen, vlen;
	uint32_t idx;
	int rc = 0;

	if ((it = store_iter_new(j->store, false)) == NULL)
		return err_set(e, -ENOMEM, "out of memory");
	for (store_iter_seek(it, "D", 1); store_iter_valid(it);
	    store_iter_next(it)) {
		k = store_iter_key(it, &klen);
		if (klen < 2 || k[0] != 'D')
			break;
		if (klen - 1 > JOURNAL_ID_MAX) {
			rc = err_set(e, -EPROTO, "store: device key too long");
			goto out;
		}
		if ((d = device_new((const char *)k + 1, klen - 1)) == NULL) {
			rc = err_set(e, -ENOMEM, "out of memory");
			goto out;
		}
		const unsigned char *v = store_iter_value(it, &vlen);
		if (devrec_decode(d, v, vlen) < 0) {
			rc = err_set(e, -EPROTO, "store: bad record for device %s",
			    d->id);
			device_free(d);
			goto out;
		}
		d->local = strcmp(d->source, j->node_id) == 0 && !d->held;
		d->hops = JOURNAL_HOPS_NONE;
		atomic_store(&d->mtime_ns, d->created_ns);
		if ((rc = journal_load_device(j, d, e)) < 0 ||
		    (rc = journal_table_add(j, d, &idx)) < 0) {
			if (rc != -EIO && rc != -EUCLEAN)
				err_set(e, rc, "device %s: cannot load", d->id);
			device_free(d);
			goto out;
		}
		if (d->devno >= j->next_devno)
			j->next_devno = d->devno + 1;
	}
	rc = store_iter_status(it, e);
out:
	store_iter_free(it);
	return rc;
}

/*
 * Each journal against its mark (marks.h): one that ends below how far it
 * reached when odofs last stopped cleanly lost acknowledged events, though
 * what is left of it is whole (damage that took the store's last records).
 */
static int
journal_check_marks(struct journal *j, struct err *e)
{
	struct mark *m;
	size_t n;
	int rc;

	if ((rc = marks_load(j->data_dir, &m, &n, e)) < 0) {
		if (!j->repair)
			return rc;
		log_warnx("%s: ignored", e->msg);	/* saved again below */
		return 0;
	}
	for (size_t i = 0; i < n && rc == 0; i++) {
		char why[200];
		uint32_t idx;
		uint64_t head = 0;
		bool local = false;

		if (journal_lookup(j, m[i].id, strlen(m[i].id), &idx) == 0) {
			struct device *d = journal_dev(j, idx);

			head = atomic_load(&d->head);
			local = d->local;
			if (d->epoch != m[i].epoch || head >= m[i].head ||
			    d->cut)	/* reported with its cut */
				continue;
			snprintf(why, sizeof(why), "revisions %llu-%llu missing "
			    "(it reached revision %llu when odofs last stopped)",
			    (unsigned long long)head + 1,
			    (unsigned long long)m[i].head,
			    (unsigned long long)m[i].head);
		} else {
			snprintf(why, sizeof(why), "missing from the store (it "
			    "reached revision %llu when odofs last stopped)",
			    (unsigned long long)m[i].head);
		}
		if (!j->repair)
			rc = err_set(e, -EUCLEAN, "device %s: %s: the store is "
			    "damaged; run odofs --repair %s", m[i].id, why,
			    j->data_dir);
		else if (j->report != NULL)
			j->report(j->report_arg, m[i].id, local, head + 1,
			    m[i].head, 0, 0, why);
	}
	free(m);
	return rc;
}

/* Records how far every journal reached (at a clean stop, after repair). */
static int
journal_save_marks(struct journal *j, struct err *e)
{
	uint32_t n = atomic_load(&j->count);
	struct mark *m = calloc(n ? n : 1, sizeof(*m));
	int rc;

	if (m == NULL)
		return err_set(e, -ENOMEM, "out of memory");
	for (uint32_t i = 0; i < n; i++) {
		struct device *d = journal_dev(j, i);

		snprintf(m[i].id, sizeof(m[i].id), "%s", d->id);
		m[i].epoch = d->epoch;
		m[i].head = atomic_load(&d->head);
	}
	rc = marks_save(j->data_dir, m, n, e);
	free(m);
	return rc;
}

/* Numbers new commits after the last log entry left by an earlier run. */
static int
journal_fh_recover(struct journal *j, struct err *e)
{
	struct store_iter *it;
	const void *key;
	size_t klen;
	uint64_t seq;
	int rc;

	if ((it = store_iter_new(j->store, false)) == NULL)
		return err_set(e, -ENOMEM, "out of memory");
	store_iter_seek(it, "H", 1);
	if (store_iter_valid(it))
		store_iter_prev(it);
	else
		store_iter_seek_last(it);
	if (store_iter_valid(it)) {
		key = store_iter_key(it, &klen);
		if (keys_fh_parse(key, klen, &seq)) {
			j->fh_next = seq + 1;
			atomic_store(&j->fh_watermark, seq + 1);
		}
	}
	rc = store_iter_status(it, e);
	store_iter_free(it);
	return rc;
}

/*
 * LevelDB refused a damaged store (e says why): what is damaged, in our
 * terms.  A scratch copy (store_open_scratch) is opened skipping what
 * cannot be read and checked as a start would; a device that breaks there
 * names the device and revisions in e.  Nothing of the data dir changes.
 */
static void
journal_explain(struct journal *j, struct err *e)
{
	char scratch[4300], leveldb[160];
	struct store *st;
	struct err e2;
	const char *why = strstr(e->msg, "damaged: ");
	int rc;

	err_clear(&e2);
	snprintf(leveldb, sizeof(leveldb), "%s", why != NULL ? why + 9 : "");
	leveldb[strcspn(leveldb, ";")] = '\0';
	if (store_open_scratch(&st, j->data_dir, scratch, sizeof(scratch),
	    &e2) < 0)
		return;
	j->store = st;
	pthread_mutex_lock(&j->create_lock);
	rc = journal_load(j, &e2);
	pthread_mutex_unlock(&j->create_lock);
	if (rc == 0)
		rc = journal_check_marks(j, &e2);
	if (rc == -EUCLEAN)
		err_set(e, -EUCLEAN, "%s (LevelDB: %s)", e2.msg, leveldb);
	store_close_scratch(st, scratch);
	j->store = NULL;
}

int
journal_open(struct journal **out, const struct journal_opts *o, struct err *e)
{
	struct journal *j;
	int rc;

	*out = NULL;
	if (strlen(o->node_id) > JOURNAL_NODE_MAX)
		return err_set(e, -EINVAL, "node id too long");
	if ((j = calloc(1, sizeof(*j))) == NULL)
		return err_set(e, -ENOMEM, "out of memory");
	snprintf(j->node_id, sizeof(j->node_id), "%s", o->node_id);
	if ((j->data_dir = strdup(o->data_dir)) == NULL) {
		free(j);
		return err_set(e, -ENOMEM, "out of memory");
	}
	j->repair = o->repair;
	j->repair_hold = o->repair_hold;
	j->report = o->report;
	j->report_arg = o->report_arg;
	j->sync = o->sync;
	j->max_event_bytes = o->max_event_bytes;
	pthread_mutex_init(&j->create_lock, NULL);
	pthread_rwlock_init(&j->table_lock, NULL);
	pthread_mutex_init(&j->fh_lock, NULL);
	pthread_mutex_init(&j->pins_lock, NULL);
	j->fh_next = 1;
	atomic_store(&j->fh_watermark, 1);
	if ((rc = store_open(&j->store, o->data_dir, o->cache_bytes, e)) < 0) {
		if (rc == -EUCLEAN && !o->repair)
			journal_explain(j, e);
		goto fail;
	}
	pthread_mutex_lock(&j->create_lock);
	rc = journal_load(j, e);
	pthread_mutex_unlock(&j->create_lock);
	if (rc < 0)
		goto fail;
	if ((rc = journal_check_marks(j, e)) < 0 ||
	    (j->repair && (rc = journal_save_marks(j, e)) < 0))
		goto fail;
	/* the firehose log of an earlier run has no reader: go past it */
	if ((rc = journal_fh_recover(j, e)) < 0)
		goto fail;
	journal_firehose_prune(j, UINT64_MAX);
	j->opened = !j->repair;
	*out = j;
	return 0;
fail:
	journal_close(j);
	return rc;
}

void
journal_close(struct journal *j)
{
	uint32_t n;

	if (j == NULL)
		return;
	if (j->opened) {
		struct err e;

		/* the store on disk first: a mark never runs ahead of it */
		err_clear(&e);
		if (store_sync(j->store, &e) < 0 ||
		    journal_save_marks(j, &e) < 0)
			log_warnx("%s: how far each journal reached is not "
			    "recorded", e.msg);
	}
	n = atomic_load(&j->count);
	for (uint32_t i = 0; i < n; i++)
		device_free(journal_dev(j, i));
	for (size_t c = 0; c < JOURNAL_NCHUNKS; c++)
		free(j->chunks[c]);
	free(j->hash);
	free(j->fh_inflight);
	store_close(j->store);
	pthread_mutex_destroy(&j->fh_lock);
	pthread_mutex_destroy(&j->pins_lock);
	pthread_rwlock_destroy(&j->table_lock);
	pthread_mutex_destroy(&j->create_lock);
	free(j->data_dir);
	free(j);
}

struct store *
journal_store(struct journal *j)
{
	return j->store;
}

void
journal_set_notify(struct journal *j, journal_notify_fn fn, void *arg)
{
	j->notify = fn;
	j->notify_arg = arg;
}

void
journal_set_snapshot_notify(struct journal *j, journal_snap_fn fn, void *arg)
{
	j->snap_notify = fn;
	j->snap_notify_arg = arg;
}

uint32_t
journal_count(struct journal *j)
{
	return atomic_load(&j->count);
}

int
journal_lookup(struct journal *j, const char *id, size_t len, uint32_t *idx)
{
	int rc;

	if (len == 0 || len > JOURNAL_ID_MAX)
		return -ENOENT;
	pthread_rwlock_rdlock(&j->table_lock);
	rc = j->hash_cap ? journal_hash_find(j, id, len, idx) : -ENOENT;
	pthread_rwlock_unlock(&j->table_lock);
	return rc;
}

static uint64_t
journal_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int journal_create_device(struct journal *j, const char *id,
    size_t len, const uint64_t *epoch, const char *source,
    uint64_t created_ns, uint32_t *idx, struct err *e);

int
journal_create(struct journal *j, const char *id, size_t len, uint32_t *idx,
    struct err *e)
{
	return journal_create_device(j, id, len, NULL, j->node_id, 0, idx, e);
}

int
journal_create_replica(struct journal *j, const char *id, size_t len,
    uint64_t epoch, const char *source, uint64_t created_ns, uint32_t *idx,
    struct err *e)
{
	return journal_create_device(j, id, len, &epoch, source, created_ns,
	    idx, e);
}

static int
journal_create_device(struct journal *j, const char *id, size_t len,
    const uint64_t *epoch, const char *source, uint64_t created_ns,
    uint32_t *idx, struct err *e)
{
	unsigned char key[KEYS_DEV_MAX], rec[DEVREC_MAX];
	struct store_batch *b = NULL;
	struct device *d = NULL;
	uint32_t found;
	int rc;

	if (!config_valid_id(id, len, JOURNAL_ID_MAX))
		return err_set(e, -EINVAL, "invalid device id");
	pthread_mutex_lock(&j->create_lock);
	if (journal_lookup(j, id, len, &found) == 0) {
		rc = err_set(e, -EEXIST, "device %.*s exists", (int)len, id);
		goto out;
	}
	if (atomic_load(&j->count) >= JOURNAL_MAX_DEVICES) {
		rc = err_set(e, -ENOSPC, "too many devices");
		goto out;
	}
	if ((d = device_new(id, len)) == NULL ||
	    (b = store_batch_new()) == NULL) {
		rc = err_set(e, -ENOMEM, "out of memory");
		goto out;
	}
	d->devno = j->next_devno;
	if (epoch != NULL) {
		d->epoch = *epoch;
		d->created_ns = created_ns;
	} else {
		if (getrandom(&d->epoch, sizeof(d->epoch), 0) !=
		    sizeof(d->epoch)) {
			rc = err_set(e, -EIO, "getrandom: %s", strerror(errno));
			goto out;
		}
		d->created_ns = journal_now_ns();
	}
	atomic_store(&d->mtime_ns, d->created_ns);
	snprintf(d->source, sizeof(d->source), "%s", source);
	/* a journal of ours that we do not hold: a replica (SPEC §8.9) */
	d->held = epoch != NULL && strcmp(source, j->node_id) == 0;
	d->local = strcmp(source, j->node_id) == 0 && !d->held;
	d->hops = JOURNAL_HOPS_NONE;
	atomic_store(&d->first, 1);
	atomic_store(&d->head, 0);
	store_batch_put(b, key, keys_dev(key, id, len), rec,
	    devrec_encode(d, rec));
	if ((rc = store_write(j->store, b, j->sync, e)) < 0)
		goto out;
	if ((rc = journal_table_add(j, d, idx)) < 0) {
		err_set(e, rc, "device %s: cannot add", d->id);
		goto out;
	}
	j->next_devno++;
	atomic_store(&d->version, atomic_fetch_add(&j->clock, 1) + 1);
	atomic_store(&d->meta_version, atomic_load(&d->version));
	d = NULL;
out:
	pthread_mutex_unlock(&j->create_lock);
	store_batch_free(b);
	device_free(d);
	return rc;
}

void
journal_info(struct journal *j, uint32_t idx, struct journal_info *out)
{
	struct device *d = journal_dev(j, idx);

	memcpy(out->id, d->id, d->idlen + 1);
	memcpy(out->source, d->source, sizeof(out->source));
	out->epoch = d->epoch;
	out->created_ns = d->created_ns;
	out->local = d->local;
	out->held = d->held;
	/* head/end before first: a reader never sees first > head + 1 */
	out->end_offset = atomic_load(&d->end_offset);
	out->head = atomic_load(&d->head);
	out->first = atomic_load(&d->first);
	out->first_offset = atomic_load(&d->first_offset);
	out->snapshot_rev = atomic_load(&d->snapshot_rev);
	out->snapshot_len = atomic_load(&d->snapshot_len);
	out->mtime_ns = atomic_load(&d->mtime_ns);
}

const char *
journal_id(struct journal *j, uint32_t idx, size_t *len)
{
	struct device *d = journal_dev(j, idx);

	*len = d->idlen;
	return d->id;
}

uint64_t
journal_head(struct journal *j, uint32_t idx)
{
	return atomic_load(&journal_dev(j, idx)->head);
}

uint64_t
journal_first(struct journal *j, uint32_t idx)
{
	return atomic_load(&journal_dev(j, idx)->first);
}

uint64_t
journal_epoch(struct journal *j, uint32_t idx)
{
	return journal_dev(j, idx)->epoch;
}

const char *
journal_source(struct journal *j, uint32_t idx)
{
	return journal_dev(j, idx)->source;
}

bool
journal_is_local(struct journal *j, uint32_t idx)
{
	return journal_dev(j, idx)->local;
}

void
journal_stats(struct journal *j, struct journal_stats *out)
{
	uint32_t n = atomic_load(&j->count);

	out->devices = n;
	out->events = 0;
	for (uint32_t i = 0; i < n; i++) {
		struct device *d = journal_dev(j, i);
		uint64_t head = atomic_load(&d->head);
		uint64_t first = atomic_load(&d->first);

		out->events += head >= first ? head - first + 1 : 0;
	}
	out->events_appended = atomic_load(&j->events_appended);
	out->bytes_appended = atomic_load(&j->bytes_appended);
	out->commits = atomic_load(&j->commits);
	out->syncs = store_syncs(j->store);
}

static int
journal_txn_open(struct journal *j, uint32_t idx, bool replica,
    struct journal_txn **out, struct err *e)
{
	struct device *d = journal_dev(j, idx);
	struct journal_txn *t;

	*out = NULL;
	if (d->local == replica)
		return replica ? err_set(e, -EPERM, "device %s: this node is "
		    "its source", d->id) : err_set(e, -EROFS, "device %s is a "
		    "replica (source %s)", d->id, d->source);
	if ((t = calloc(1, sizeof(*t))) == NULL ||
	    (t->batch = store_batch_new()) == NULL) {
		free(t);
		return err_set(e, -ENOMEM, "out of memory");
	}
	t->j = j;
	t->d = d;
	t->idx = idx;
	t->replica = replica;
	pthread_mutex_lock(&d->lock);
	t->rev = atomic_load(&d->head) + 1;
	t->first_rev = t->rev;
	t->offset = atomic_load(&d->end_offset);
	t->start_offset = t->offset;
	*out = t;
	return 0;
}

int
journal_txn_begin(struct journal *j, uint32_t idx, struct journal_txn **out,
    struct err *e)
{
	return journal_txn_open(j, idx, false, out, e);
}

/* Bumps the journal's clock into d: something of d changed. */
static void
journal_touch(struct journal *j, struct device *d)
{
	uint64_t v = atomic_fetch_add(&j->clock, 1) + 1;

	atomic_store(&d->version, v);
	atomic_store(&d->meta_version, v);
}

/* ... its head only. */
static void
journal_touch_head(struct journal *j, struct device *d)
{
	atomic_store(&d->version, atomic_fetch_add(&j->clock, 1) + 1);
}

int
journal_txn_add(struct journal_txn *t, const char *data, size_t len,
    struct err *e)
{
	unsigned char k[KEYS_EVENT_LEN], rk[KEYS_REV_LEN], rv[8];
	uint32_t max = t->replica ? JOURNAL_EVENT_MAX : t->j->max_event_bytes;

	if (len > max)
		return err_set(e, -EFBIG, "event of %zu bytes over the limit "
		    "of %u", len, max);
	if (memchr(data, '\n', len) != NULL)
		return err_set(e, -EINVAL, "event holds a newline");
	keys_event(k, t->d->devno, t->offset, t->rev);
	store_batch_put(t->batch, k, sizeof(k), data, len);
	if (keys_rev_indexed(t->rev)) {
		keys_rev(rk, t->d->devno, t->rev);
		keys_put_u64(rv, t->offset);
		store_batch_put(t->batch, rk, sizeof(rk), rv, sizeof(rv));
	}
	t->rev++;
	t->offset += len + 1;
	t->count++;
	return 0;
}

uint32_t
journal_txn_count(const struct journal_txn *t)
{
	return t->count;
}

static void
journal_txn_end(struct journal_txn *t)
{
	pthread_mutex_unlock(&t->d->lock);
	store_batch_free(t->batch);
	free(t);
}

/*
 * Takes a firehose seq for a commit and stages its log entry, when anyone
 * reads the firehose.  Returns the seq, or 0 for none.
 */
static uint64_t
journal_fh_begin(struct journal *j, struct journal_txn *t)
{
	unsigned char k[KEYS_FH_LEN], v[KEYS_FH_VAL_LEN];
	uint64_t seq = 0;

	if (atomic_load(&j->fh_readers) == 0)
		return 0;
	pthread_mutex_lock(&j->fh_lock);
	if (atomic_load(&j->fh_readers) > 0) {
		if (j->fh_ninflight == j->fh_capinflight) {
			size_t cap = j->fh_capinflight ? j->fh_capinflight * 2 : 16;
			uint64_t *p = realloc(j->fh_inflight, cap * sizeof(*p));

			if (p == NULL) {
				/* the readers miss this commit; say so */
				log_warnx("firehose: out of memory, commit of %s "
				    "not logged", t->d->id);
				goto out;
			}
			j->fh_inflight = p;
			j->fh_capinflight = cap;
		}
		seq = j->fh_next++;
		j->fh_inflight[j->fh_ninflight++] = seq;
	}
out:
	pthread_mutex_unlock(&j->fh_lock);
	if (seq != 0) {
		keys_fh(k, seq);
		keys_fh_val(v, t->idx, t->first_rev, t->count);
		store_batch_put(t->batch, k, sizeof(k), v, sizeof(v));
	}
	return seq;
}

/* The commit of seq is done (written or failed): move the watermark. */
static void
journal_fh_end(struct journal *j, uint64_t seq)
{
	uint64_t low;

	if (seq == 0)
		return;
	pthread_mutex_lock(&j->fh_lock);
	for (size_t i = 0; i < j->fh_ninflight; i++) {
		if (j->fh_inflight[i] == seq) {
			j->fh_inflight[i] = j->fh_inflight[--j->fh_ninflight];
			break;
		}
	}
	low = j->fh_next;
	for (size_t i = 0; i < j->fh_ninflight; i++)
		if (j->fh_inflight[i] < low)
			low = j->fh_inflight[i];
	atomic_store(&j->fh_watermark, low);
	pthread_mutex_unlock(&j->fh_lock);
}

int
journal_txn_commit(struct journal_txn *t, uint64_t *first_rev, struct err *e)
{
	struct journal *j = t->j;
	struct device *d = t->d;
	uint64_t seq, head = 0;
	int rc = 0;

	if (t->count > 0) {
		seq = journal_fh_begin(j, t);
		rc = store_write(j->store, t->batch, j->sync, e);
		if (rc < 0) {
			journal_fh_end(j, seq);
			/* the watermark moved: commits behind it are readable */
			if (seq != 0)
				head = atomic_load(&d->head);
			log_warnx("append failed: device %s, revisions %llu+%u: %s",
			    d->id, (unsigned long long)t->first_rev, t->count,
			    e ? e->msg : "store write");
			goto out;
		}
		atomic_store(&d->mtime_ns, journal_now_ns());
		if (t->replica)
			atomic_store(&d->progress_ns, atomic_load(&d->mtime_ns));
		atomic_store(&d->end_offset, t->offset);
		atomic_store(&d->head, t->rev - 1);
		journal_touch_head(j, d);
		head = t->rev - 1;
		journal_fh_end(j, seq);
		atomic_fetch_add(&j->events_appended, t->count);
		atomic_fetch_add(&j->bytes_appended,
		    t->offset - t->start_offset);
		atomic_fetch_add(&j->commits, 1);
	}
	if (first_rev != NULL)
		*first_rev = t->first_rev;
out:
	{
		uint32_t idx = t->idx;

		journal_txn_end(t);
		if (head != 0 && j->notify != NULL)
			j->notify(j->notify_arg, idx, head);
	}
	return rc;
}

void
journal_txn_abort(struct journal_txn *t)
{
	if (t != NULL)
		journal_txn_end(t);
}

int
journal_append_lines(struct journal *j, uint32_t idx, const char *buf,
    size_t len, struct err *e)
{
	struct journal_txn *t;
	const char *p = buf, *end = buf + len, *nl;
	int rc;

	if (len == 0)
		return 0;
	if (buf[len - 1] != '\n')
		return err_set(e, -EINVAL, "append: not whole lines");
	if ((rc = journal_txn_begin(j, idx, &t, e)) < 0)
		return rc;
	for (; p < end; p = nl + 1) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if ((rc = journal_txn_add(t, p, (size_t)(nl - p), e)) < 0) {
			journal_txn_abort(t);
			return rc;
		}
	}
	rc = (int)journal_txn_count(t);
	if (journal_txn_commit(t, NULL, e) < 0)
		return -EIO;
	return rc;
}

int
journal_sync(struct journal *j, struct err *e)
{
	return store_sync(j->store, e);
}

/*
 * Positions it on the event of d that holds byte off (off must be below
 * the end).  Returns the number of bytes of that event to skip, or -EIO if
 * no such event is found (the store lost it).
 */
static ssize_t
journal_seek_offset(struct store_iter *it, const struct device *d,
    uint64_t off)
{
	unsigned char k[KEYS_EVENT_LEN];
	uint64_t evoff, rev;
	const void *key;
	size_t klen;

	keys_event(k, d->devno, off, 0);
	store_iter_seek(it, k, sizeof(k));
	if (store_iter_valid(it)) {
		key = store_iter_key(it, &klen);
		if (keys_event_parse(key, klen, d->devno, &evoff, &rev) &&
		    evoff == off)
			return 0;
		store_iter_prev(it);
	} else {
		store_iter_seek_last(it);
	}
	if (!store_iter_valid(it))
		return -EIO;
	key = store_iter_key(it, &klen);
	if (!keys_event_parse(key, klen, d->devno, &evoff, &rev) || evoff > off)
		return -EIO;
	return (ssize_t)(off - evoff);
}

/*
 * Positions it on revision rev of d (first <= rev <= head): one seek in the
 * sparse revision index, one in the events, then fewer than
 * KEYS_REV_STRIDE steps.  Returns 0 or -EIO.
 */
static int
journal_seek_rev(struct store_iter *it, const struct device *d, uint64_t rev)
{
	unsigned char k[KEYS_EVENT_LEN];
	uint64_t first = atomic_load(&d->first);
	uint64_t r0 = first, off0 = atomic_load(&d->first_offset);
	uint64_t r, evoff;
	const void *key, *val;
	size_t klen, vlen;

	keys_rev(k, d->devno, rev);
	store_iter_seek(it, k, KEYS_REV_LEN);
	if (store_iter_valid(it)) {
		key = store_iter_key(it, &klen);
		if (!keys_rev_parse(key, klen, d->devno, &r) || r != rev)
			store_iter_prev(it);
	} else {
		store_iter_seek_last(it);
	}
	if (store_iter_valid(it)) {
		key = store_iter_key(it, &klen);
		val = store_iter_value(it, &vlen);
		if (keys_rev_parse(key, klen, d->devno, &r) && r <= rev &&
		    r >= first && vlen == 8) {
			r0 = r;
			off0 = keys_get_u64(val);
		}
	}
	keys_event(k, d->devno, off0, r0);
	store_iter_seek(it, k, sizeof(k));
	for (;;) {
		if (!store_iter_valid(it))
			return -EIO;
		key = store_iter_key(it, &klen);
		if (!keys_event_parse(key, klen, d->devno, &evoff, &r) || r > rev)
			return -EIO;
		if (r == rev)
			return 0;
		store_iter_next(it);
	}
}

/* Copies bytes [skip, ...) of the concatenation of parts into dst. */
static size_t
journal_copy_parts(char *dst, size_t room, const char *const *part,
    const size_t *plen, int nparts, size_t *skip)
{
	size_t done = 0, s = *skip;

	for (int i = 0; i < nparts && done < room; i++) {
		size_t n;

		if (s >= plen[i]) {
			s -= plen[i];
			continue;
		}
		n = plen[i] - s;
		if (n > room - done)
			n = room - done;
		memcpy(dst + done, part[i] + s, n);
		done += n;
		s = 0;
	}
	*skip += done;
	return done;
}

ssize_t
journal_read(struct journal *j, uint32_t idx, uint64_t *offp, char *buf,
    size_t size, struct err *e)
{
	uint64_t off = *offp;
	struct device *d = journal_dev(j, idx);
	uint64_t end = atomic_load(&d->end_offset);
	struct store_iter *it;
	size_t done = 0, skip;
	uint64_t next_off, next_rev;
	ssize_t s;

	if (off >= end || size == 0)
		return 0;
	/*
	 * The view is taken after end was read (so it holds every byte below
	 * end) and before first_offset is (a compaction moves first_offset
	 * before it deletes, so the view holds everything from it on).
	 */
	if ((it = store_iter_new(j->store, true)) == NULL)
		return err_set(e, -ENOMEM, "out of memory");
	if (off < atomic_load(&d->first_offset))
		off = atomic_load(&d->first_offset);
	*offp = off;
	if (off >= end) {
		/* everything was compacted away */
		store_iter_free(it);
		return 0;
	}
	if ((s = journal_seek_offset(it, d, off)) < 0) {
		s = err_set(e, -EIO, "device %s: no event at offset %llu",
		    d->id, (unsigned long long)off);
		goto out;
	}
	skip = (size_t)s;
	/* each event where the one before it ended, revisions in order */
	next_off = off - skip;
	next_rev = 0;
	while (done < size && next_off < end) {
		size_t klen = 0, vlen;
		uint64_t evoff, rev;
		const char *part[2];
		size_t plen[2];
		const void *key = store_iter_valid(it) ?
		    store_iter_key(it, &klen) : NULL;

		if (key == NULL ||
		    !keys_event_parse(key, klen, d->devno, &evoff, &rev) ||
		    evoff != next_off || (next_rev != 0 && rev != next_rev)) {
			if (store_iter_status(it, NULL) < 0)
				break;
			/* a reset or compaction moved the journal's start */
			if (atomic_load(&d->first_offset) > next_off) {
				s = (ssize_t)done;
				goto out;
			}
			log_warnx("device %s: the event at offset %llu (after "
			    "revision %llu) is missing from the store",
			    d->id, (unsigned long long)next_off,
			    (unsigned long long)next_rev - 1);
			if (done == 0)
				s = err_set(e, -EIO, "device %s: no event at "
				    "offset %llu", d->id,
				    (unsigned long long)next_off);
			goto out_done;
		}
		part[0] = store_iter_value(it, &vlen);
		next_off = evoff + vlen + 1;
		next_rev = rev + 1;
		plen[0] = vlen;
		part[1] = "\n";
		plen[1] = 1;
		done += journal_copy_parts(buf + done, size - done, part, plen,
		    2, &skip);
		skip = 0;
		store_iter_next(it);
	}
	if ((s = store_iter_status(it, e)) == 0)
		s = (ssize_t)done;
	goto out;
out_done:
	if (done > 0)
		s = (ssize_t)done;	/* the next read gets the error */
out:
	store_iter_free(it);
	return s;
}

ssize_t
journal_read_range(struct journal *j, uint32_t idx, uint64_t *rev,
    size_t *skip, uint64_t last, bool tagged, char *buf, size_t size,
    struct err *e)
{
	struct device *d = journal_dev(j, idx);
	uint64_t head = atomic_load(&d->head);
	struct store_iter *it;
	size_t done = 0;
	ssize_t rc;

	if (last < head)
		head = last;
	if (*rev > head || size == 0)
		return *rev < atomic_load(&d->first) ? err_set(e, -ERANGE,
		    "device %s: revision %llu is compacted", d->id,
		    (unsigned long long)*rev) : 0;
	/* as in journal_read: the view, then the first retained revision */
	if ((it = store_iter_new(j->store, true)) == NULL)
		return err_set(e, -ENOMEM, "out of memory");
	if (*rev < atomic_load(&d->first)) {
		store_iter_free(it);
		return err_set(e, -ERANGE, "device %s: revision %llu is "
		    "compacted", d->id, (unsigned long long)*rev);
	}
	if (journal_seek_rev(it, d, *rev) < 0) {
		rc = err_set(e, -EIO, "device %s: revision %llu not found",
		    d->id, (unsigned long long)*rev);
		goto out;
	}
	while (done < size && *rev <= head) {
		char tag[JOURNAL_ID_MAX + 32];
		const char *part[3];
		size_t plen[3], klen = 0, vlen, total;
		uint64_t evoff, r;
		const void *key = store_iter_valid(it) ?
		    store_iter_key(it, &klen) : NULL;
		int np = 0;

		if (key == NULL && store_iter_status(it, NULL) < 0)
			break;
		if (key == NULL ||
		    !keys_event_parse(key, klen, d->devno, &evoff, &r) ||
		    r != *rev) {
			/* never a revision twice or out of order */
			log_warnx("device %s: revision %llu is missing from the "
			    "store", d->id, (unsigned long long)*rev);
			if (done == 0)
				rc = err_set(e, -EIO, "device %s: revision %llu "
				    "not found", d->id,
				    (unsigned long long)*rev);
			else
				rc = (ssize_t)done;
			goto out;
		}
		if (tagged) {
			int n = snprintf(tag, sizeof(tag), "%s\t%llu\t", d->id,
			    (unsigned long long)r);
			part[np] = tag;
			plen[np++] = (size_t)n;
		}
		part[np] = store_iter_value(it, &vlen);
		plen[np++] = vlen;
		part[np] = "\n";
		plen[np++] = 1;
		total = 0;
		for (int i = 0; i < np; i++)
			total += plen[i];
		done += journal_copy_parts(buf + done, size - done, part, plen,
		    np, skip);
		if (*skip < total)
			break;		/* buf is full inside this line */
		*skip = 0;
		(*rev)++;
		store_iter_next(it);
	}
	if ((rc = store_iter_status(it, e)) == 0)
		rc = (ssize_t)done;
out:
	store_iter_free(it);
	return rc;
}

ssize_t
journal_read_from(struct journal *j, uint32_t idx, uint64_t *rev,
    size_t *skip, bool tagged, char *buf, size_t size, struct err *e)
{
	return journal_read_range(j, idx, rev, skip, UINT64_MAX, tagged, buf,
	    size, e);
}

void
journal_firehose_open(struct journal *j, struct journal_fh_cursor *c)
{
	pthread_mutex_lock(&j->fh_lock);
	atomic_fetch_add(&j->fh_readers, 1);
	c->seq = j->fh_next;
	c->rev = 0;
	c->skip = 0;
	pthread_mutex_unlock(&j->fh_lock);
}

void
journal_firehose_close(struct journal *j)
{
	pthread_mutex_lock(&j->fh_lock);
	atomic_fetch_sub(&j->fh_readers, 1);
	pthread_mutex_unlock(&j->fh_lock);
}

uint64_t
journal_firehose_watermark(struct journal *j)
{
	return atomic_load(&j->fh_watermark);
}

bool
journal_firehose_ready(struct journal *j, const struct journal_fh_cursor *c)
{
	return c->seq < atomic_load(&j->fh_watermark);
}

ssize_t
journal_firehose_read(struct journal *j, struct journal_fh_cursor *c,
    char *buf, size_t size, struct err *e)
{
	unsigned char k[KEYS_FH_LEN], v[KEYS_FH_VAL_LEN];
	size_t done = 0, vlen;
	ssize_t n;
	int rc;

	while (done < size && journal_firehose_ready(j, c)) {
		uint32_t idx, count;
		uint64_t first, last;

		keys_fh(k, c->seq);
		rc = store_get(j->store, k, sizeof(k), v, sizeof(v), &vlen, e);
		if (rc == -ENOENT) {
			/* a commit that failed after taking its seq */
			c->seq++;
			continue;
		}
		if (rc < 0 || !keys_fh_val_parse(v, vlen, &idx, &first, &count))
			return done ? (ssize_t)done :
			    err_set(e, -EIO, "firehose: bad log entry %llu",
			    (unsigned long long)c->seq);
		last = first + count - 1;
		if (idx >= atomic_load(&j->count))
			return done ? (ssize_t)done :
			    err_set(e, -EIO, "firehose: bad device");
		if (c->rev < first)
			c->rev = first;
		/* compacted meanwhile: what is gone is skipped */
		if (c->rev < atomic_load(&journal_dev(j, idx)->first)) {
			c->rev = atomic_load(&journal_dev(j, idx)->first);
			c->skip = 0;
		}
		if (c->rev <= last) {
			n = journal_read_range(j, idx, &c->rev, &c->skip, last,
			    true, buf + done, size - done, e);
			if (n < 0)
				return done ? (ssize_t)done : n;
			done += (size_t)n;
		}
		if (c->rev > last) {
			c->seq++;
			c->rev = 0;
			c->skip = 0;
		}
	}
	return (ssize_t)done;
}

void
journal_firehose_prune(struct journal *j, uint64_t seq)
{
	unsigned char k[KEYS_FH_LEN];
	struct store_batch *b;
	struct store_iter *it;
	uint64_t s, from;
	int n = 0;

	if (seq == UINT64_MAX)
		seq = atomic_load(&j->fh_watermark);
	atomic_store(&j->fh_low, seq);
	pthread_mutex_lock(&j->fh_lock);
	from = j->fh_pruned;
	pthread_mutex_unlock(&j->fh_lock);
	if (seq <= from && from != 0)
		return;
	if ((b = store_batch_new()) == NULL)
		return;
	if ((it = store_iter_new(j->store, false)) == NULL) {
		store_batch_free(b);
		return;
	}
	keys_fh(k, from);
	for (store_iter_seek(it, k, sizeof(k)); store_iter_valid(it);
	    store_iter_next(it)) {
		size_t klen;
		const void *key = store_iter_key(it, &klen);

		if (!keys_fh_parse(key, klen, &s) || s >= seq)
			break;
		store_batch_delete(b, key, klen);
		if (++n == 1024) {
			store_write(j->store, b, false, NULL);
			store_batch_clear(b);
			n = 0;
		}
	}
	if (n > 0)
		store_write(j->store, b, false, NULL);
	store_iter_free(it);
	store_batch_free(b);
	pthread_mutex_lock(&j->fh_lock);
	if (seq > j->fh_pruned)
		j->fh_pruned = seq;
	pthread_mutex_unlock(&j->fh_lock);
}

/* 'S' <devno u32> <chunk u32>: the snapshot payload in 64 KiB chunks. */
static void
journal_snap_key(unsigned char *k, uint32_t devno, uint32_t chunk)
{
	k[0] = 'S';
	keys_put_u32(k + 1, devno);
	keys_put_u32(k + 5, chunk);
}

/* Writes d's record into b.  Caller holds d->meta_lock. */
static void
journal_put_record(struct store_batch *b, const struct device *d)
{
	unsigned char key[KEYS_DEV_MAX], rec[DEVREC_MAX];

	store_batch_put(b, key, keys_dev(key, d->id, d->idlen), rec,
	    devrec_encode(d, rec));
}

int
journal_snapshot_install(struct journal *j, uint32_t idx, uint64_t rev,
    const char *data, size_t len, struct err *e)
{
	struct device *d = journal_dev(j, idx);
	unsigned char k[9];
	struct store_batch *b;
	uint64_t old_len, old_rev;
	uint32_t nchunks, old_chunks;
	int rc;

	if (len > JOURNAL_SNAPSHOT_MAX)
		return err_set(e, -EFBIG, "snapshot of %zu bytes over the "
		    "limit of %u", len, JOURNAL_SNAPSHOT_MAX);
	if ((b = store_batch_new()) == NULL)
		return err_set(e, -ENOMEM, "out of memory");
	pthread_mutex_lock(&d->meta_lock);
	old_rev = atomic_load(&d->snapshot_rev);
	old_len = atomic_load(&d->snapshot_len);
	if (rev > atomic_load(&d->head) || rev < old_rev) {
		rc = err_set(e, -EINVAL, "device %s: snapshot at %llu: head is "
		    "%llu, latest snapshot %llu", d->id,
		    (unsigned long long)rev,
		    (unsigned long long)atomic_load(&d->head),
		    (unsigned long long)old_rev);
		goto out;
	}
	nchunks = (uint32_t)((len + JOURNAL_SNAP_CHUNK - 1) / JOURNAL_SNAP_CHUNK);
	old_chunks = (uint32_t)((old_len + JOURNAL_SNAP_CHUNK - 1) /
	    JOURNAL_SNAP_CHUNK);
	for (uint32_t c = 0; c < nchunks; c++) {
		size_t off = (size_t)c * JOURNAL_SNAP_CHUNK;
		size_t n = len - off < JOURNAL_SNAP_CHUNK ? len - off :
		    JOURNAL_SNAP_CHUNK;

		journal_snap_key(k, d->devno, c);
		store_batch_put(b, k, sizeof(k), data + off, n);
	}
	for (uint32_t c = nchunks; c < old_chunks; c++) {
		journal_snap_key(k, d->devno, c);
		store_batch_delete(b, k, sizeof(k));
	}
	atomic_store(&d->snapshot_rev, rev);
	atomic_store(&d->snapshot_len, len);
	journal_put_record(b, d);
	if ((rc = store_write(j->store, b, j->sync, e)) < 0) {
		atomic_store(&d->snapshot_rev, old_rev);
		atomic_store(&d->snapshot_len, old_len);
		goto out;
	}
	journal_touch(j, d);
	log_info("snapshot installed: device %s, revision %llu, %zu bytes",
	    d->id, (unsigned long long)rev, len);
out:
	pthread_mutex_unlock(&d->meta_lock);
	store_batch_free(b);
	if (rc == 0 && j->snap_notify != NULL)
		j->snap_notify(j->snap_notify_arg, idx);
	return rc;
}

int
journal_snap_open(struct journal *j, uint32_t idx, struct journal_snap **out,
    struct err *e)
{
	struct device *d = journal_dev(j, idx);
	struct journal_snap *s;
	unsigned char key[KEYS_DEV_MAX];
	size_t klen = keys_dev(key, d->id, d->idlen), vlen;
	struct device rec;

	*out = NULL;
	if ((s = calloc(1, sizeof(*s))) == NULL ||
	    (s->it = store_iter_new(j->store, true)) == NULL) {
		free(s);
		return err_set(e, -ENOMEM, "out of memory");
	}
	store_iter_hold_long(s->it);	/* kept while the snapshot is read */
	s->j = j;
	s->d = d;
	/* the record as this view has it: rev and length match the chunks */
	store_iter_seek(s->it, key, klen);
	memset(&rec, 0, sizeof(rec));
	if (store_iter_valid(s->it)) {
		size_t kl;
		const void *k = store_iter_key(s->it, &kl);
		const void *v = store_iter_value(s->it, &vlen);

		if (kl == klen && memcmp(k, key, klen) == 0 &&
		    devrec_decode(&rec, v, vlen) == 0) {
			s->rev = atomic_load(&rec.snapshot_rev);
			s->len = atomic_load(&rec.snapshot_len);
		}
	}
	*out = s;
	return 0;
}

void
journal_snap_close(struct journal_snap *s)
{
	if (s == NULL)
		return;
	store_iter_free(s->it);
	free(s);
}

uint64_t
journal_snap_rev(const struct journal_snap *s)
{
	return s->rev;
}

uint64_t
journal_snap_len(const struct journal_snap *s)
{
	return s->len;
}

ssize_t
journal_snap_read(struct journal_snap *s, uint64_t off, char *buf,
    size_t size, struct err *e)
{
	unsigned char k[9];
	size_t done = 0;

	while (done < size && off < s->len) {
		uint32_t c = (uint32_t)(off / JOURNAL_SNAP_CHUNK);
		size_t in = (size_t)(off % JOURNAL_SNAP_CHUNK), klen, vlen, n;
		const void *key;
		const char *v;

		journal_snap_key(k, s->d->devno, c);
		store_iter_seek(s->it, k, sizeof(k));
		if (!store_iter_valid(s->it))
			break;
		key = store_iter_key(s->it, &klen);
		if (klen != sizeof(k) || memcmp(key, k, sizeof(k)) != 0)
			break;
		v = store_iter_value(s->it, &vlen);
		if (in >= vlen)
			break;
		n = vlen - in < size - done ? vlen - in : size - done;
		memcpy(buf + done, v + in, n);
		done += n;
		off += n;
	}
	if (done < size && off < s->len)
		return err_set(e, -EIO, "device %s: snapshot chunk missing at "
		    "%llu", s->d->id, (unsigned long long)off);
	return (ssize_t)done;
}

struct journal_pin *
journal_pin_new(struct journal *j, uint32_t idx)
{
	struct journal_pin *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	p->idx = idx;
	atomic_store(&p->offset, UINT64_MAX);
	atomic_store(&p->rev, UINT64_MAX);
	pthread_mutex_lock(&j->pins_lock);
	p->next = j->pins;
	if (j->pins != NULL)
		j->pins->prev = p;
	j->pins = p;
	pthread_mutex_unlock(&j->pins_lock);
	return p;
}

void
journal_pin_offset(struct journal_pin *p, uint64_t offset)
{
	atomic_store(&p->offset, offset);
}

void
journal_pin_rev(struct journal_pin *p, uint64_t rev)
{
	atomic_store(&p->rev, rev);
}

void
journal_pin_free(struct journal *j, struct journal_pin *p)
{
	if (p == NULL)
		return;
	pthread_mutex_lock(&j->pins_lock);
	if (p->prev != NULL)
		p->prev->next = p->next;
	else
		j->pins = p->next;
	if (p->next != NULL)
		p->next->prev = p->prev;
	pthread_mutex_unlock(&j->pins_lock);
	free(p);
}

/* The lowest offset and revision pinned on idx (UINT64_MAX: none). */
static void
journal_pins_low(struct journal *j, uint32_t idx, uint64_t *off, uint64_t *rev)
{
	*off = UINT64_MAX;
	*rev = UINT64_MAX;
	pthread_mutex_lock(&j->pins_lock);
	for (struct journal_pin *p = j->pins; p != NULL; p = p->next) {
		uint64_t o = atomic_load(&p->offset), r = atomic_load(&p->rev);

		if (p->idx != idx)
			continue;
		if (o < *off)
			*off = o;
		if (r < *rev)
			*rev = r;
	}
	pthread_mutex_unlock(&j->pins_lock);
}

/*
 * Deletes the event and index keys of d below (rev, offset), in batches
 * of JOURNAL_COMPACT_BATCH, holding no lock: appenders never touch them,
 * and readers no longer look below the first retained event.
 */
static int
journal_delete_below(struct journal *j, struct device *d, uint64_t rev,
    uint64_t offset, struct err *e)
{
	unsigned char k[KEYS_EVENT_LEN], lim[KEYS_EVENT_LEN];
	struct store_batch *b;
	struct store_iter *it;
	uint64_t o, r;
	int n = 0, rc = 0;

	if ((b = store_batch_new()) == NULL ||
	    (it = store_iter_new(j->store, false)) == NULL) {
		store_batch_free(b);
		return err_set(e, -ENOMEM, "out of memory");
	}
	keys_event(k, d->devno, 0, 0);
	for (store_iter_seek(it, k, sizeof(k)); store_iter_valid(it) && rc == 0;
	    store_iter_next(it)) {
		size_t klen;
		const void *key = store_iter_key(it, &klen);

		if (!keys_event_parse(key, klen, d->devno, &o, &r) ||
		    o >= offset)
			break;
		store_batch_delete(b, key, klen);
		rc = journal_batch_step(j, b, &n, false, e);
	}
	keys_rev(k, d->devno, 0);
	for (store_iter_seek(it, k, KEYS_REV_LEN); store_iter_valid(it) &&
	    rc == 0; store_iter_next(it)) {
		size_t klen;
		const void *key = store_iter_key(it, &klen);

		if (!keys_rev_parse(key, klen, d->devno, &r) || r >= rev)
			break;
		store_batch_delete(b, key, klen);
		rc = journal_batch_step(j, b, &n, false, e);
	}
	if (rc == 0 && n > 0)
		rc = store_write(j->store, b, false, e);
	if (rc == 0)
		rc = store_iter_status(it, e);
	store_iter_free(it);
	store_batch_free(b);
	if (rc == 0) {
		/* give the space back: compact what was deleted */
		keys_event(k, d->devno, 0, 0);
		keys_event(lim, d->devno, offset, 0);
		store_compact(j->store, k, sizeof(k), lim, sizeof(lim));
	}
	return rc;
}

/* Parses the event key under it (klen is set before it is read). */
static bool
journal_iter_event(struct store_iter *it, uint32_t devno, uint64_t *off,
    uint64_t *rev)
{
	size_t klen;
	const void *key = store_iter_key(it, &klen);

	return keys_event_parse(key, klen, devno, off, rev);
}

/* After a failed record write: the offset of the first retained event. */
static uint64_t
journal_first_offset_of(struct journal *j, struct device *d)
{
	unsigned char k[KEYS_EVENT_LEN];
	struct store_iter *it = store_iter_new(j->store, false);
	uint64_t off = atomic_load(&d->end_offset), rev;

	if (it == NULL)
		return off;
	keys_event(k, d->devno, 0, 0);
	store_iter_seek(it, k, sizeof(k));
	for (; store_iter_valid(it); store_iter_next(it)) {
		if (!journal_iter_event(it, d->devno, &off, &rev)) {
			off = atomic_load(&d->end_offset);
			break;
		}
		if (rev >= atomic_load(&d->first))
			break;
	}
	store_iter_free(it);
	return off;
}

/*
 * The first revision of device idx that a .live reader may still need:
 * that of the first firehose log entry of idx at or after the slowest
 * reader's position (revisions of a device grow with the log's sequence).
 * UINT64_MAX when no reader is open or none needs idx; 0 (keep all) when
 * the log is too long to look through now.  Reads only the log.
 */
static uint64_t
journal_firehose_keep(struct journal *j, uint32_t idx)
{
	unsigned char k[KEYS_FH_LEN];
	struct store_iter *it;
	uint64_t keep = UINT64_MAX, seq, first;
	uint32_t dev, count;
	size_t n = 0;

	if (atomic_load(&j->fh_readers) == 0)
		return UINT64_MAX;
	if ((it = store_iter_new(j->store, false)) == NULL)
		return 0;
	keys_fh(k, atomic_load(&j->fh_low));
	for (store_iter_seek(it, k, sizeof(k)); store_iter_valid(it);
	    store_iter_next(it)) {
		size_t klen, vlen;
		const void *key = store_iter_key(it, &klen);
		const void *v = store_iter_value(it, &vlen);

		if (!keys_fh_parse(key, klen, &seq))
			break;
		if (++n > JOURNAL_FH_KEEP_SCAN ||
		    !keys_fh_val_parse(v, vlen, &dev, &first, &count)) {
			keep = 0;
			break;
		}
		if (dev == idx) {
			keep = first;
			break;
		}
	}
	if (store_iter_status(it, NULL) < 0)
		keep = 0;
	store_iter_free(it);
	return keep;
}

int64_t
journal_compact(struct journal *j, uint32_t idx, uint64_t want, struct err *e)
{
	struct device *d = journal_dev(j, idx);
	uint64_t first, target, pin_off, pin_rev, fh_keep, offset = 0;
	struct store_batch *b = NULL;
	struct store_iter *it = NULL;
	int rc = 0;

	/*
	 * What .live readers need, read from the log before taking the lock:
	 * later commits only add revisions above anything compacted here.
	 */
	fh_keep = journal_firehose_keep(j, idx);
	pthread_mutex_lock(&d->meta_lock);
	first = atomic_load(&d->first);
	target = want;
	if (target > atomic_load(&d->snapshot_rev) + 1)
		target = atomic_load(&d->snapshot_rev) + 1;
	if (target > atomic_load(&d->head) + 1)
		target = atomic_load(&d->head) + 1;
	journal_pins_low(j, idx, &pin_off, &pin_rev);
	if (target > pin_rev)
		target = pin_rev;
	if (target <= first)
		goto out;
	/* .live readers pin too: what the slowest has not read stays */
	if (fh_keep < target)
		target = fh_keep;
	if (target <= first)
		goto out;
	if ((it = store_iter_new(j->store, false)) == NULL) {
		rc = err_set(e, -ENOMEM, "out of memory");
		goto out;
	}
	/* an offset pin holds the event it is inside of */
	if (pin_off < atomic_load(&d->end_offset)) {
		uint64_t o, r;

		if (journal_seek_offset(it, d, pin_off) < 0 ||
		    !journal_iter_event(it, d->devno, &o, &r)) {
			rc = err_set(e, -EIO, "device %s: no event at offset "
			    "%llu", d->id, (unsigned long long)pin_off);
			goto out;
		}
		if (target > r)
			target = r;
		if (target <= first)
			goto out;
	}
	{
		/*
		 * Where revision target starts: where target - 1 ends, read
		 * from the store.  Not head and end_offset: an append may
		 * move them between two loads, and an end that is newer than
		 * the head read would delete the events between them.
		 */
		uint64_t r, o;
		size_t vlen;

		if (journal_seek_rev(it, d, target - 1) < 0 ||
		    !journal_iter_event(it, d->devno, &o, &r)) {
			rc = err_set(e, -EIO, "device %s: revision %llu not found",
			    d->id, (unsigned long long)target - 1);
			goto out;
		}
		(void)store_iter_value(it, &vlen);
		offset = o + vlen + 1;
	}
	if ((b = store_batch_new()) == NULL) {
		rc = err_set(e, -ENOMEM, "out of memory");
		goto out;
	}
	/* readers stop looking below offset before anything is deleted */
	atomic_store(&d->first_offset, offset);
	atomic_store(&d->first, target);
	journal_put_record(b, d);
	if ((rc = store_write(j->store, b, j->sync, e)) < 0) {
		atomic_store(&d->first, first);
		atomic_store(&d->first_offset, journal_first_offset_of(j, d));
		goto out;
	}
	journal_touch(j, d);
	log_info("compacted: device %s, first retained revision %llu "
	    "(offset %llu)", d->id, (unsigned long long)target,
	    (unsigned long long)offset);
out:
	pthread_mutex_unlock(&d->meta_lock);
	store_iter_free(it);
	store_batch_free(b);
	if (rc == 0 && target > first)
		rc = journal_delete_below(j, d, target, offset, e);
	return rc < 0 ? rc : (int64_t)atomic_load(&d->first);
}

uint64_t
journal_version(struct journal *j, uint32_t idx)
{
	return atomic_load(&journal_dev(j, idx)->version);
}

uint64_t
journal_meta_version(struct journal *j, uint32_t idx)
{
	return atomic_load(&journal_dev(j, idx)->meta_version);
}

uint64_t
journal_clock(struct journal *j)
{
	return atomic_load(&j->clock);
}

int
journal_apply(struct journal *j, uint32_t idx, uint64_t first_rev,
    const char *lines, size_t len, uint32_t count, struct err *e)
{
	struct journal_txn *t;
	const char *p = lines, *end = lines + len, *nl;
	uint32_t n = 0;
	int rc;

	if ((rc = journal_txn_open(j, idx, true, &t, e)) < 0)
		return rc;
	if (first_rev != t->rev) {
		rc = err_set(e, -ESTALE, "device %s: revision %llu offered, "
		    "%llu expected", t->d->id, (unsigned long long)first_rev,
		    (unsigned long long)t->rev);
		journal_txn_abort(t);
		return rc;
	}
	for (; p < end; p = nl + 1, n++) {
		if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL ||
		    (rc = journal_txn_add(t, p, (size_t)(nl - p), e)) < 0) {
			journal_txn_abort(t);
			return nl == NULL ? err_set(e, -EPROTO, "device %s: "
			    "events not whole lines", t->d->id) : rc;
		}
	}
	if (n != count) {
		journal_txn_abort(t);
		return err_set(e, -EPROTO, "device %s: %u events said, %u given",
		    journal_dev(j, idx)->id, count, n);
	}
	return journal_txn_commit(t, NULL, e);
}

uint64_t
journal_rev_offset(struct journal *j, uint32_t idx, uint64_t rev)
{
	struct device *d = journal_dev(j, idx);
	struct store_iter *it;
	uint64_t off = UINT64_MAX, r;

	if (rev == atomic_load(&d->head) + 1)
		return atomic_load(&d->end_offset);
	if ((it = store_iter_new(j->store, false)) == NULL)
		return UINT64_MAX;
	if (rev >= atomic_load(&d->first) && rev <= atomic_load(&d->head) &&
	    journal_seek_rev(it, d, rev) == 0 &&
	    !journal_iter_event(it, d->devno, &off, &r))
		off = UINT64_MAX;
	store_iter_free(it);
	return off;
}

int
journal_replica_reset(struct journal *j, uint32_t idx, uint64_t rev,
    uint64_t offset, const char *snap, size_t len, struct err *e)
{
	struct device *d = journal_dev(j, idx);
	uint64_t old_first, old_first_off, old_head, old_end, old_snap;
	int rc;

	if (d->local)
		return err_set(e, -EPERM, "device %s: this node is its source",
		    d->id);
	/* appenders (the apply path) wait; the record moves with the snapshot */
	pthread_mutex_lock(&d->lock);
	old_head = atomic_load(&d->head);
	old_end = atomic_load(&d->end_offset);
	old_first = atomic_load(&d->first);
	old_first_off = atomic_load(&d->first_offset);
	if (rev <= old_head || offset < old_end) {
		pthread_mutex_unlock(&d->lock);
		return err_set(e, -ESTALE, "device %s: snapshot at %llu "
		    "(offset %llu) behind head %llu (offset %llu)", d->id,
		    (unsigned long long)rev, (unsigned long long)offset,
		    (unsigned long long)old_head, (unsigned long long)old_end);
	}
	/*
	 * Events below rev + 1 are covered by the snapshot: none is kept
	 * (head and end first: no reader ever sees first > head + 1).  Under
	 * meta_lock, as a compaction moves first: one running now finishes
	 * first, one that starts after finds nothing to do (first is past
	 * the old snapshot), so neither moves first back over the other.
	 */
	pthread_mutex_lock(&d->meta_lock);
	atomic_store(&d->end_offset, offset);
	atomic_store(&d->head, rev);
	atomic_store(&d->first_offset, offset);
	atomic_store(&d->first, rev + 1);
	old_snap = atomic_load(&d->snapshot_rev);
	pthread_mutex_unlock(&d->meta_lock);
	/* the snapshot may only go forward: it does, from below head */
	rc = journal_snapshot_install(j, idx, rev, snap, len, e);
	if (rc < 0) {
		pthread_mutex_lock(&d->meta_lock);
		atomic_store(&d->snapshot_rev, old_snap);
		atomic_store(&d->first_offset, old_first_off);
		atomic_store(&d->first, old_first);
		atomic_store(&d->end_offset, old_end);
		atomic_store(&d->head, old_head);
		pthread_mutex_unlock(&d->meta_lock);
		pthread_mutex_unlock(&d->lock);
		return rc;
	}
	atomic_store(&d->progress_ns, journal_now_ns());
	pthread_mutex_unlock(&d->lock);
	log_info("device %s: caught up from a snapshot at revision %llu",
	    d->id, (unsigned long long)rev);
	rc = journal_delete_below(j, d, rev + 1, offset, e);
	if (j->notify != NULL)
		j->notify(j->notify_arg, idx, rev);
	return rc;
}

void
journal_repl_set(struct journal *j, uint32_t idx, const char *upstream,
    uint64_t upstream_head, uint8_t hops)
{
	struct device *d = journal_dev(j, idx);
	bool changed;

	pthread_mutex_lock(&d->repl_lock);
	changed = d->hops != hops || strcmp(d->upstream, upstream) != 0;
	snprintf(d->upstream, sizeof(d->upstream), "%s", upstream);
	d->upstream_head = upstream_head;
	d->hops = hops;
	pthread_mutex_unlock(&d->repl_lock);
	if (changed)
		journal_touch(j, d);
}

void
journal_repl_get(struct journal *j, uint32_t idx, struct journal_repl *out)
{
	struct device *d = journal_dev(j, idx);

	pthread_mutex_lock(&d->repl_lock);
	memcpy(out->upstream, d->upstream, sizeof(out->upstream));
	out->upstream_head = d->upstream_head;
	out->hops = d->local ? 0 : d->hops;
	pthread_mutex_unlock(&d->repl_lock);
	out->progress_ns = atomic_load(&d->progress_ns);
}
