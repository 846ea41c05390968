/*
 * journal: see journal.h; the structures and their lock rules are in
 * journal_int.h.
 *
 * Open and close, transactions (appends from this node, applies from a
 * replica's upstream), a replica's reset from a snapshot, and reads by
 * offset and by revision.  An append writes its events and nothing else,
 * in one store batch under the device's lock.  In memory, head and end are
 * atomics written by the appender after the batch is in the store
 * (release) and read by anyone (acquire): a reader that sees a head can
 * always read that event.  Readers read from a store view and take no lock.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "journal.h"
#include "journal_int.h"
#include "keys.h"
#include "log.h"
#include "store.h"

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
		journal_device_free(journal_dev(j, i));
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

uint64_t
journal_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
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
ssize_t
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
int
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

/* Parses the event key under it (klen is set before it is read). */
bool
journal_iter_event(struct store_iter *it, uint32_t devno, uint64_t *off,
    uint64_t *rev)
{
	size_t klen;
	const void *key = store_iter_key(it, &klen);

	return keys_event_parse(key, klen, devno, off, rev);
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
