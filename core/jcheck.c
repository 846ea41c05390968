/*
 * jcheck: the checks at open (SPEC §1).  Each device record is loaded and
 * the device's events and revision index are checked against it; damage
 * refuses the store, naming the device and revisions, or --repair cuts the
 * device at its first bad revision and says what went.  Then each journal
 * is checked against how far it reached at the last clean stop (marks.h).
 * When LevelDB itself refuses the store, journal_explain() runs the same
 * checks on a scratch copy to say what is damaged in our terms.  All of it
 * runs inside journal_open, before any other thread has the journal.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journal.h"
#include "journal_int.h"
#include "keys.h"
#include "log.h"
#include "marks.h"
#include "store.h"

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

int
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
		if ((d = journal_device_new((const char *)k + 1, klen - 1)) == NULL) {
			rc = err_set(e, -ENOMEM, "out of memory");
			goto out;
		}
		const unsigned char *v = store_iter_value(it, &vlen);
		if (journal_devrec_decode(d, v, vlen) < 0) {
			rc = err_set(e, -EPROTO, "store: bad record for device %s",
			    d->id);
			journal_device_free(d);
			goto out;
		}
		d->local = strcmp(d->source, j->node_id) == 0 && !d->held;
		d->hops = JOURNAL_HOPS_NONE;
		atomic_store(&d->mtime_ns, d->created_ns);
		if ((rc = journal_load_device(j, d, e)) < 0 ||
		    (rc = journal_table_add(j, d, &idx)) < 0) {
			if (rc != -EIO && rc != -EUCLEAN)
				err_set(e, rc, "device %s: cannot load", d->id);
			journal_device_free(d);
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
int
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
int
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

/*
 * LevelDB refused a damaged store (e says why): what is damaged, in our
 * terms.  A scratch copy (store_open_scratch) is opened skipping what
 * cannot be read and checked as a start would; a device that breaks there
 * names the device and revisions in e.  Nothing of the data dir changes.
 */
void
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
