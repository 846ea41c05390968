/*
 * devtable: the device table and the device record (the structures and
 * their lock rules are in journal_int.h).
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
 * else.
 *
 * Here too are what reads a device's state (info, accessors, stats), the
 * journal's change clock, and what info shows of replication.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "config.h"
#include "journal.h"
#include "journal_int.h"
#include "keys.h"
#include "store.h"

#define DEVREC_VERSION		2	/* 2: a flags byte; 1 is read too */
#define DEVREC_MAX		(1 + 4 + 8 * 6 + 1 + 1 + JOURNAL_NODE_MAX)
#define DEVREC_HELD		0x01	/* our id as source, a wiped node's old
					   journal: held as a replica */

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
int
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

int
journal_devrec_decode(struct device *d, const unsigned char *p, size_t len)
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

struct device *
journal_device_new(const char *id, size_t len)
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

void
journal_device_free(struct device *d)
{
	if (d == NULL)
		return;
	pthread_mutex_destroy(&d->meta_lock);
	pthread_mutex_destroy(&d->repl_lock);
	pthread_mutex_destroy(&d->lock);
	free(d);
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
	if ((d = journal_device_new(id, len)) == NULL ||
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
	journal_device_free(d);
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

/* Bumps the journal's clock into d: something of d changed. */
void
journal_touch(struct journal *j, struct device *d)
{
	uint64_t v = atomic_fetch_add(&j->clock, 1) + 1;

	atomic_store(&d->version, v);
	atomic_store(&d->meta_version, v);
}

/* ... its head only. */
void
journal_touch_head(struct journal *j, struct device *d)
{
	atomic_store(&d->version, atomic_fetch_add(&j->clock, 1) + 1);
}

/* Writes d's record into b.  Caller holds d->meta_lock. */
void
journal_put_record(struct store_batch *b, const struct device *d)
{
	unsigned char key[KEYS_DEV_MAX], rec[DEVREC_MAX];

	store_batch_put(b, key, keys_dev(key, d->id, d->idlen), rec,
	    devrec_encode(d, rec));
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
