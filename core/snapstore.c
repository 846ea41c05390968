/*
 * snapstore: snapshot storage.  A device's latest snapshot is kept in
 * JOURNAL_SNAP_CHUNK chunks ('S' keys); the device record names its
 * revision and length.  An install writes the chunks, deletes the old ones
 * past the new length and writes the record in one batch, under the
 * device's meta_lock.  A reader holds a store view and reads the record as
 * that view has it, so revision, length and chunks always match.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "journal.h"
#include "journal_int.h"
#include "keys.h"
#include "log.h"
#include "store.h"

#define JOURNAL_SNAP_CHUNK	(64u << 10)

struct journal_snap {
	struct journal *j;
	struct device *d;
	struct store_iter *it;		/* the consistent view */
	uint64_t rev, len;
};

/* 'S' <devno u32> <chunk u32>: the snapshot payload in 64 KiB chunks. */
static void
journal_snap_key(unsigned char *k, uint32_t devno, uint32_t chunk)
{
	k[0] = 'S';
	keys_put_u32(k + 1, devno);
	keys_put_u32(k + 5, chunk);
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
		    journal_devrec_decode(&rec, v, vlen) == 0) {
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
