/*
 * holders: see holders.h.
 *
 * A vector of entries per device, indexed like the journal and grown when
 * a device first gets one.  A fleet's devices have a handful of holders
 * each, so lookups are linear.  Every change takes the next change number
 * (seq): a relay asks for what changed after the number it last sent, and
 * the save writes what changed after the number it last saved.
 */
#include <errno.h>
#include <fnmatch.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "grow.h"
#include "holders.h"
#include "keys.h"
#include "log.h"
#include "store.h"

struct holder {
	struct holder_ack a;
	uint64_t seq;			/* change number of its last change */
};

struct holdset {
	struct holder *v;
	size_t n, cap;
};

struct holders {
	struct journal *journal;
	pthread_mutex_t lock;		/* protects everything below */
	struct holdset *devs;		/* by device index */
	size_t ndevs;
	uint64_t seq;			/* the last change number given */
	uint64_t saved;			/* changes up to it are in the store */
	holders_notify_fn notify;	/* set before threads */
	void *notify_arg;
};

uint64_t
holders_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* idx's set, made on demand (NULL: no memory).  Under lock. */
static struct holdset *
holders_set(struct holders *h, uint32_t idx)
{
	struct holdset *d;

	if ((d = grow_to_index(h->devs, &h->ndevs, idx, sizeof(*d))) == NULL)
		return NULL;
	h->devs = d;
	return &h->devs[idx];
}

/* The entry of peer in ds, made when missing (NULL: no memory). */
static struct holder *
holders_entry(struct holdset *ds, const char *peer)
{
	struct holder *v;

	for (size_t i = 0; i < ds->n; i++)
		if (strcmp(ds->v[i].a.peer, peer) == 0)
			return &ds->v[i];
	if (ds->n == HOLDERS_MAX) {
		/* the oldest acknowledgement makes room */
		size_t old = 0;

		for (size_t i = 1; i < ds->n; i++)
			if (ds->v[i].a.at_ms < ds->v[old].a.at_ms)
				old = i;
		log_warnx("holders: more than %d holders of a device; %s, "
		    "the longest silent, is forgotten", HOLDERS_MAX,
		    ds->v[old].a.peer);
		ds->v[old] = ds->v[--ds->n];
	}
	if (ds->n == ds->cap) {
		size_t cap = ds->cap ? ds->cap * 2 : 4;

		if ((v = realloc(ds->v, cap * sizeof(*v))) == NULL)
			return NULL;
		ds->v = v;
		ds->cap = cap;
	}
	v = &ds->v[ds->n++];
	memset(v, 0, sizeof(*v));
	snprintf(v->a.peer, sizeof(v->a.peer), "%s", peer);
	return v;
}

/*
 * Merges a into its entry: 1 when it changed, 0 when not, -ENOMEM when
 * there was no room for it.  Under lock.
 */
static int
holders_merge(struct holders *h, uint32_t idx, const struct holder_ack *a,
    bool *durable_up)
{
	struct holdset *ds = holders_set(h, idx);
	struct holder *v;
	bool changed = false;

	*durable_up = false;
	if (ds == NULL || (v = holders_entry(ds, a->peer)) == NULL)
		return -ENOMEM;
	if (v->a.epoch != a->epoch) {
		/* new, or the device was made again: start over */
		v->a.epoch = a->epoch;
		v->a.head = v->a.durable = v->a.at_ms = 0;
		changed = true;
	}
	if (a->head > v->a.head) {
		v->a.head = a->head;
		changed = true;
	}
	if (a->durable > v->a.durable) {
		v->a.durable = a->durable;
		*durable_up = true;
		changed = true;
	}
	if (v->a.durable > v->a.head) {
		v->a.head = v->a.durable;
		changed = true;
	}
	if (a->at_ms > v->a.at_ms) {
		v->a.at_ms = a->at_ms;
		changed = true;
	}
	if (changed)
		v->seq = ++h->seq;
	return changed ? 1 : 0;
}

/*
 * Whether a holder record is sound: a key that names a device and a
 * holder, and a value of the right size.  Sets dev and node (when the key
 * can be read).
 */
static bool
holders_record_ok(const void *k, size_t klen, size_t vlen, const char **dev,
    size_t *devlen, const char **node, size_t *nodelen)
{
	if (!keys_holder_parse(k, klen, dev, devlen, node, nodelen)) {
		*dev = *node = NULL;
		return false;
	}
	return *nodelen <= JOURNAL_NODE_MAX && vlen == KEYS_HOLDER_VAL_LEN;
}

/*
 * One holder record, as the walk gives it: the key, the value, and (when
 * the key can be read) the device and holder it names; ok says whether
 * the record is sound.
 */
struct holder_rec {
	const void *k;
	size_t klen;
	const unsigned char *v;
	size_t vlen;
	const char *dev, *node;
	size_t devlen, nodelen;
	bool ok;
};

/*
 * Calls fn for every holder record of j's store, in key order, until it
 * returns non-zero.  Returns that, or -EIO with e when the store could
 * not be read to the end, or 0.
 */
static int
holders_walk(struct journal *j, int (*fn)(void *, const struct holder_rec *,
    struct err *), void *arg, struct err *e)
{
	struct store_iter *it;
	unsigned char k0 = 'H';
	int rc = 0;

	if ((it = store_iter_new(journal_store(j), false)) == NULL)
		return err_set(e, -ENOMEM, "out of memory");
	for (store_iter_seek(it, &k0, 1); rc == 0 && store_iter_valid(it);
	    store_iter_next(it)) {
		struct holder_rec r;

		r.k = store_iter_key(it, &r.klen);
		r.v = store_iter_value(it, &r.vlen);
		if (r.klen == 0 || *(const unsigned char *)r.k != 'H')
			break;
		r.ok = holders_record_ok(r.k, r.klen, r.vlen, &r.dev,
		    &r.devlen, &r.node, &r.nodelen);
		rc = fn(arg, &r, e);
	}
	if (rc == 0)
		rc = store_iter_status(it, e);
	store_iter_free(it);
	return rc;
}

/* holders_walk(): takes a saved entry into h. */
static int
holders_load_one(void *arg, const struct holder_rec *r, struct err *e)
{
	struct holders *h = arg;
	struct holder_ack a;
	uint32_t idx;
	bool up;

	if (!r->ok)
		return err_set(e, -EUCLEAN, "store: a damaged holder record "
		    "(run odofs --repair)");
	if (journal_lookup(h->journal, r->dev, r->devlen, &idx) < 0)
		return 0;	/* a device no longer here */
	memcpy(a.peer, r->node, r->nodelen);
	a.peer[r->nodelen] = '\0';
	a.epoch = keys_get_u64(r->v);
	a.head = keys_get_u64(r->v + 8);
	a.durable = keys_get_u64(r->v + 16);
	a.at_ms = keys_get_u64(r->v + 24);
	if (a.epoch != journal_epoch(h->journal, idx))
		return 0;
	if (holders_merge(h, idx, &a, &up) < 0)
		return err_set(e, -ENOMEM, "out of memory");
	return 0;
}

static int
holders_load(struct holders *h, struct err *e)
{
	int rc = holders_walk(h->journal, holders_load_one, h, e);

	h->saved = h->seq;
	return rc;
}

struct holders_mend {
	struct journal *journal;
	struct store_batch *b;
	holders_repair_fn report;
	void *arg;
	int n;
};

/* holders_walk() for holders_repair(): mends a damaged record. */
static int
holders_repair_one(void *arg, const struct holder_rec *r, struct err *e)
{
	struct holders_mend *m = arg;
	unsigned char v[KEYS_HOLDER_VAL_LEN];
	uint32_t idx;
	bool kept;

	(void)e;
	if (r->ok)
		return 0;
	kept = r->dev != NULL && r->nodelen <= JOURNAL_NODE_MAX &&
	    journal_lookup(m->journal, r->dev, r->devlen, &idx) == 0;
	if (kept) {
		memset(v, 0, sizeof(v));
		keys_put_u64(v, journal_epoch(m->journal, idx));
		store_batch_put(m->b, r->k, r->klen, v, sizeof(v));
	} else {
		store_batch_delete(m->b, r->k, r->klen);
	}
	m->report(m->arg, r->dev, r->dev != NULL ? r->devlen : 0, r->node,
	    r->node != NULL ? r->nodelen : 0, r->klen, kept);
	m->n++;
	return 0;
}

int
holders_repair(struct journal *j, holders_repair_fn report, void *arg,
    struct err *e)
{
	struct holders_mend m = { j, NULL, report, arg, 0 };
	int rc;

	if ((m.b = store_batch_new()) == NULL)
		return err_set(e, -ENOMEM, "out of memory");
	rc = holders_walk(j, holders_repair_one, &m, e);
	if (rc == 0 && m.n > 0)
		rc = store_write(journal_store(j), m.b, true, e);
	store_batch_free(m.b);
	return rc < 0 ? rc : m.n;
}

int
holders_open(struct holders **out, struct journal *j, struct err *e)
{
	struct holders *h;
	int rc;

	*out = NULL;
	if ((h = calloc(1, sizeof(*h))) == NULL)
		return err_set(e, -ENOMEM, "out of memory");
	h->journal = j;
	pthread_mutex_init(&h->lock, NULL);
	if ((rc = holders_load(h, e)) < 0) {
		holders_close(h);
		return rc;
	}
	*out = h;
	return 0;
}

void
holders_close(struct holders *h)
{
	struct err e;

	if (h == NULL)
		return;
	if (holders_dirty(h) && holders_save(h, &e) < 0)
		log_warnx("holders not saved: %s", e.msg);
	for (size_t i = 0; i < h->ndevs; i++)
		free(h->devs[i].v);
	free(h->devs);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

void
holders_set_notify(struct holders *h, holders_notify_fn fn, void *arg)
{
	h->notify = fn;
	h->notify_arg = arg;
}

bool
holders_ack(struct holders *h, uint32_t idx, const struct holder_ack *a)
{
	bool changed, up;

	if (a->epoch != journal_epoch(h->journal, idx) || a->peer[0] == '\0')
		return false;
	pthread_mutex_lock(&h->lock);
	/* no memory: this one is lost, the holder's next one says it again */
	changed = holders_merge(h, idx, a, &up) > 0;
	pthread_mutex_unlock(&h->lock);
	if (up && h->notify != NULL)
		h->notify(h->notify_arg, idx);
	return changed;
}

static int
holders_by_seq(const void *a, const void *b)
{
	const struct holder *x = *(const struct holder *const *)a;
	const struct holder *y = *(const struct holder *const *)b;

	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

size_t
holders_get(struct holders *h, uint32_t idx, struct holder_ack *out,
    size_t max, uint64_t *since)
{
	static _Thread_local const struct holder *order[HOLDERS_MAX];
	size_t n = 0, total = 0;

	pthread_mutex_lock(&h->lock);
	if (idx < h->ndevs) {
		const struct holdset *ds = &h->devs[idx];

		for (size_t i = 0; i < ds->n; i++)
			if (since == NULL || ds->v[i].seq > *since)
				order[total++] = &ds->v[i];
		if (since != NULL)	/* oldest change first: pages */
			qsort(order, total, sizeof(order[0]), holders_by_seq);
		for (n = 0; n < total && n < max; n++)
			out[n] = order[n]->a;
		if (since != NULL && n > 0)
			*since = order[n - 1]->seq;
	}
	pthread_mutex_unlock(&h->lock);
	return since != NULL ? n : total;
}

unsigned
holders_durable_count(struct holders *h, uint32_t idx, uint64_t rev,
    const char *self)
{
	unsigned n = 0;

	pthread_mutex_lock(&h->lock);
	if (idx < h->ndevs) {
		const struct holdset *ds = &h->devs[idx];

		for (size_t i = 0; i < ds->n; i++)
			if (ds->v[i].a.durable >= rev &&
			    strcmp(ds->v[i].a.peer, self) != 0)
				n++;
	}
	pthread_mutex_unlock(&h->lock);
	return n;
}

uint64_t
holders_retain(struct holders *h, uint32_t idx,
    const char (*globs)[CONFIG_GLOB_MAX], size_t n, struct holder_ack *who)
{
	uint64_t low = UINT64_MAX;

	pthread_mutex_lock(&h->lock);
	if (idx < h->ndevs) {
		const struct holdset *ds = &h->devs[idx];

		for (size_t i = 0; i < ds->n; i++) {
			const struct holder_ack *a = &ds->v[i].a;
			bool match = false;

			for (size_t g = 0; g < n && !match; g++)
				match = fnmatch(globs[g], a->peer, 0) == 0;
			if (match && a->durable < low) {
				low = a->durable;
				if (who != NULL)
					*who = *a;
			}
		}
	}
	pthread_mutex_unlock(&h->lock);
	return low;
}

bool
holders_dirty(struct holders *h)
{
	bool dirty;

	pthread_mutex_lock(&h->lock);
	dirty = h->seq != h->saved;
	pthread_mutex_unlock(&h->lock);
	return dirty;
}

int
holders_save(struct holders *h, struct err *e)
{
	struct store_batch *b;
	uint64_t upto;
	int rc;

	if ((b = store_batch_new()) == NULL)
		return err_set(e, -ENOMEM, "out of memory");
	pthread_mutex_lock(&h->lock);
	upto = h->seq;
	for (size_t d = 0; d < h->ndevs; d++) {
		const struct holdset *ds = &h->devs[d];
		size_t idlen;
		const char *id;

		if (ds->n == 0)
			continue;
		id = journal_id(h->journal, (uint32_t)d, &idlen);
		for (size_t i = 0; i < ds->n; i++) {
			const struct holder_ack *a = &ds->v[i].a;
			unsigned char k[KEYS_HOLDER_MAX], v[KEYS_HOLDER_VAL_LEN];
			size_t klen;

			if (ds->v[i].seq <= h->saved)
				continue;
			klen = keys_holder(k, id, idlen, a->peer,
			    strlen(a->peer));
			keys_put_u64(v, a->epoch);
			keys_put_u64(v + 8, a->head);
			keys_put_u64(v + 16, a->durable);
			keys_put_u64(v + 24, a->at_ms);
			store_batch_put(b, k, klen, v, sizeof(v));
		}
	}
	pthread_mutex_unlock(&h->lock);
	rc = store_write(journal_store(h->journal), b, false, e);
	store_batch_free(b);
	if (rc == 0) {
		pthread_mutex_lock(&h->lock);
		if (h->saved < upto)
			h->saved = upto;
		pthread_mutex_unlock(&h->lock);
	}
	return rc;
}
