/*
 * firehose: the log behind `.live` (see journal.h).  While a reader is
 * open, each commit takes a seq (journal_fh_begin) and stages its log entry
 * in its own batch; journal_fh_end then moves the watermark, below which
 * every commit is done.  A reader is a cursor over the log, reading the
 * events through journal_read_range.  Entries are pruned once every reader
 * is past them, and compaction asks journal_firehose_keep what the slowest
 * reader still needs.  The fh_* fields of struct journal are this file's.
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

#define JOURNAL_FH_KEEP_SCAN	100000	/* firehose entries a compaction reads */

/* Numbers new commits after the last log entry left by an earlier run. */
int
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
 * Takes a firehose seq for a commit and stages its log entry, when anyone
 * reads the firehose.  Returns the seq, or 0 for none.
 */
uint64_t
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
void
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

/*
 * The first revision of device idx that a .live reader may still need:
 * that of the first firehose log entry of idx at or after the slowest
 * reader's position (revisions of a device grow with the log's sequence).
 * UINT64_MAX when no reader is open or none needs idx; 0 (keep all) when
 * the log is too long to look through now.  Reads only the log.
 */
uint64_t
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
