/*
 * compact: pins and compaction.  A pin is what one open reader still needs
 * (a byte offset or a revision).  Compaction moves a device's first
 * retained revision up, never past its snapshot, a pin, or what a .live
 * reader has not read, and writes the record under meta_lock; then it
 * deletes the keys below in bounded batches holding no lock, and compacts
 * the range on disk.  The bounded batches (journal_batch_step) serve
 * --repair too.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "journal.h"
#include "journal_int.h"
#include "keys.h"
#include "log.h"
#include "store.h"

#define JOURNAL_COMPACT_BATCH	10000

struct journal_pin {
	uint32_t idx;
	_Atomic uint64_t offset;	/* UINT64_MAX: not an offset pin */
	_Atomic uint64_t rev;		/* UINT64_MAX: not a revision pin */
	struct journal_pin *prev, *next;
};

/*
 * One more change staged in b: every JOURNAL_COMPACT_BATCH of them, b is
 * written (and cleared), so that long deletions go in bounded batches.
 */
int
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
int
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
