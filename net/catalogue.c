/*
 * catalogue: SPEC §8.1.  A peer gets our whole catalogue when it becomes
 * active, then what changed: any change of a device but an append at once,
 * appends (heads) only once per sync.evaluate_ms and never to a peer that
 * follows the device from us (its stream carries our head) or to its
 * source.  What a peer sends is kept in a hash per peer; an entry new to
 * us makes a replica (after the epochs of every peer are in, SPEC §8.9),
 * one of another epoch or source is a conflict.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "loop.h"

#include "sync_impl.h"

/*
 * The catalogue hash: device id -> entry.
 */
static uint64_t
cat_hash(const char *s)
{
	uint64_t h = 14695981039346656037ull;

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ull;
	}
	return h;
}

struct wire_cat_entry *
cat_find(const struct cat *c, const char *dev)
{
	if (c->hcap == 0)
		return NULL;
	for (size_t i = cat_hash(dev) & (c->hcap - 1);; i = (i + 1) & (c->hcap - 1)) {
		if (c->hash[i] == 0)
			return NULL;
		if (strcmp(c->e[c->hash[i] - 1].device, dev) == 0)
			return &c->e[c->hash[i] - 1];
	}
}

static int
cat_put(struct cat *c, const struct wire_cat_entry *in)
{
	struct wire_cat_entry *old = cat_find(c, in->device);

	if (old != NULL) {
		*old = *in;
		return 0;
	}
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 64;
		struct wire_cat_entry *e = realloc(c->e, cap * sizeof(*e));

		if (e == NULL)
			return -ENOMEM;
		c->e = e;
		c->cap = cap;
	}
	if ((c->n + 1) * 2 > c->hcap) {
		size_t hcap = c->hcap ? c->hcap * 2 : 128;
		uint32_t *h = calloc(hcap, sizeof(*h));

		if (h == NULL)
			return -ENOMEM;
		free(c->hash);
		c->hash = h;
		c->hcap = hcap;
		for (size_t k = 0; k < c->n; k++) {
			size_t i = cat_hash(c->e[k].device) & (hcap - 1);

			while (h[i] != 0)
				i = (i + 1) & (hcap - 1);
			h[i] = (uint32_t)k + 1;
		}
	}
	c->e[c->n] = *in;
	{
		size_t i = cat_hash(in->device) & (c->hcap - 1);

		while (c->hash[i] != 0)
			i = (i + 1) & (c->hcap - 1);
		c->hash[i] = (uint32_t)c->n + 1;
	}
	c->n++;
	return 0;
}

void
cat_clear(struct cat *c)
{
	c->n = 0;
	if (c->hash != NULL)
		memset(c->hash, 0, c->hcap * sizeof(*c->hash));
}

void
cat_free(struct cat *c)
{
	free(c->e);
	free(c->hash);
	memset(c, 0, sizeof(*c));
}

static void
sync_entry(struct sync *s, uint32_t idx, struct wire_cat_entry *e)
{
	struct journal_info in;
	struct follow *f = idx < s->nfollow ? &s->follow[idx] : NULL;

	journal_info(s->journal, idx, &in);
	memset(e, 0, sizeof(*e));
	snprintf(e->device, sizeof(e->device), "%s", in.id);
	e->epoch = in.epoch;
	snprintf(e->source, sizeof(e->source), "%s", in.source);
	e->created_ns = in.created_ns;
	e->first = in.first;
	e->head = in.head;
	e->snapshot = in.snapshot_rev;
	e->role = in.local ? WIRE_ROLE_SOURCE : WIRE_ROLE_REPLICA;
	e->hops = in.local ? 0 : WIRE_HOPS_NONE;
	if (f != NULL && f->up != NULL) {
		snprintf(e->upstream, sizeof(e->upstream), "%s", f->up->id);
		e->hops = f->hops;
	}
}

/* Whether an entry makes a valid CATALOGUE entry (a bad one is skipped). */
static bool
sync_entry_ok(const struct wire_cat_entry *e)
{
	return e->first >= 1 && e->head < SYNC_SANE && e->first <= e->head + 1 &&
	    e->snapshot <= e->head;
}

/*
 * Whether device i goes into sp's delta catalogue pass (SPEC §8.1: quiet
 * catalogues): any change but an append at once; an append (a head that
 * moved) only on a refresh pass, every sync.evaluate_ms, and never to a
 * peer that follows i from us (its stream carries our head, EVENTS say
 * it) or to i's source.
 */
static bool
sync_cat_wanted(struct sync *s, struct sync_peer *sp, uint32_t i)
{
	struct serve *sv;

	if (journal_meta_version(s->journal, i) > sp->cat_since)
		return true;
	if (!sp->cat_refresh || journal_version(s->journal, i) <= sp->head_since)
		return false;
	if (strcmp(journal_source(s->journal, i), sp->id) == 0)
		return false;
	return (sv = sync_serve_find(sp, i)) == NULL || sv->waiting;
}

/*
 * Continues sp's catalogue pass while its send queue has room for a frame
 * and the control reserve; the pass ends (and cat_clock moves) only when
 * every device was looked at, so a full queue delays it and loses nothing.
 */
void
sync_catalogue_pump(struct sync *s, struct sync_peer *sp)
{
	uint32_t n = journal_count(s->journal);

	while (sp->cat_busy && conn_send_space(sp->conn) >= 2 * SYNC_RESERVE) {
		size_t k = 0;

		while (sp->cat_next < n && k < WIRE_CAT_MAX) {
			uint32_t i = sp->cat_next++;

			if (!sp->cat_full && !sync_cat_wanted(s, sp, i))
				continue;
			sync_entry(s, i, &s->catbuf[k]);
			if (sync_entry_ok(&s->catbuf[k]))
				k++;
		}
		if (k > 0 || (sp->cat_full && sp->cat_first)) {
			buf_reset(&s->frame);
			if (wire_catalogue_encode(&s->frame, sp->cat_full &&
			    sp->cat_first ? WIRE_CAT_FULL : 0, s->catbuf, k) == 0)
				sync_send(sp);
			sp->cat_first = false;
		}
		if (sp->cat_next >= n) {
			sp->cat_busy = false;
			sp->cat_clock = sp->cat_upto;
			if (sp->cat_refresh)
				sp->head_clock = sp->cat_upto;
		}
	}
}

/* Starts a catalogue pass: the whole one, or what changed since. */
void
sync_catalogue_start(struct sync *s, struct sync_peer *sp, bool full)
{
	uint64_t now = loop_now_ms();

	sp->cat_busy = true;
	sp->cat_full = full;
	sp->cat_first = true;
	sp->cat_refresh = full || now >= sp->next_refresh_ms;
	if (sp->cat_refresh)
		sp->next_refresh_ms = now + s->cfg->evaluate_ms;
	sp->head_since = sp->head_clock;
	sp->cat_since = sp->cat_clock;
	sp->cat_upto = journal_clock(s->journal);
	sp->cat_next = 0;
	sync_catalogue_pump(s, sp);
}

/* Whether a's entry should be preferred over b's to create a device. */
static bool
sync_older(const struct wire_cat_entry *a, const struct wire_cat_entry *b)
{
	if (a->created_ns != b->created_ns)
		return a->created_ns < b->created_ns;
	return strcmp(a->source, b->source) < 0;
}

static void
sync_conflict(struct sync *s, uint32_t idx, struct sync_peer *sp,
    const struct wire_cat_entry *e)
{
	struct conflict *c;

	pthread_mutex_lock(&s->view_lock);
	for (size_t i = 0; i < s->nconflicts; i++) {
		c = &s->conflicts[i];
		if (strcmp(c->device, e->device) == 0 &&
		    strcmp(c->peer, sp->id) == 0 && c->theirs_epoch == e->epoch &&
		    strcmp(c->theirs_source, e->source) == 0) {
			pthread_mutex_unlock(&s->view_lock);
			return;
		}
	}
	if (s->nconflicts == SYNC_MAX_CONFLICTS) {
		pthread_mutex_unlock(&s->view_lock);
		return;
	}
	c = &s->conflicts[s->nconflicts++];
	memset(c, 0, sizeof(*c));
	snprintf(c->device, sizeof(c->device), "%s", e->device);
	snprintf(c->peer, sizeof(c->peer), "%s", sp->id);
	c->ours_epoch = journal_epoch(s->journal, idx);
	snprintf(c->ours_source, sizeof(c->ours_source), "%s",
	    journal_source(s->journal, idx));
	c->theirs_epoch = e->epoch;
	snprintf(c->theirs_source, sizeof(c->theirs_source), "%s", e->source);
	c->since = time(NULL);
	pthread_mutex_unlock(&s->view_lock);
	log_warnx("conflict: device %s: we hold epoch %016llx from %s, peer %s "
	    "has epoch %016llx from %s; nothing is merged", e->device,
	    (unsigned long long)c->ours_epoch, c->ours_source, sp->id,
	    (unsigned long long)e->epoch, e->source);
}

/* Whether every peer has been active for SYNC_SETTLE_MS. */
static bool
sync_settled(struct sync *s)
{
	uint64_t now = loop_now_ms();

	for (struct sync_peer *sp = s->peers; sp != NULL; sp = sp->next)
		if (now - sp->added_ms < SYNC_SETTLE_MS)
			return false;
	return true;
}

/*
 * Making a replica is a store write (synced with durability.sync): the
 * job thread makes it, and the done call, back here, notes conflicts and
 * chooses its upstream.  Ids being made are kept in s->creating meanwhile.
 */
struct create_job {
	struct sync *s;
	struct wire_cat_entry pick;
	uint32_t idx;
	int rc;
	struct err e;
};

static void
sync_create_run(void *arg)
{
	struct create_job *c = arg;

	err_clear(&c->e);
	c->rc = journal_create_replica(c->s->journal, c->pick.device,
	    strlen(c->pick.device), c->pick.epoch, c->pick.source,
	    c->pick.created_ns, &c->idx, &c->e);
}

static void
sync_create_done(void *arg)
{
	struct create_job *c = arg;
	struct sync *s = c->s;

	if (--s->ncreating == 0)
		cat_clear(&s->creating);
	if (c->rc < 0) {
		log_warnx("device %s: replica not created: %s", c->pick.device,
		    c->e.msg);
		free(c);
		return;
	}
	log_info("device %s: replica of %s (epoch %016llx) created",
	    c->pick.device, c->pick.source, (unsigned long long)c->pick.epoch);
	/* every peer's entry may now conflict with the one we chose */
	for (struct sync_peer *q = s->peers; q != NULL; q = q->next) {
		const struct wire_cat_entry *o = cat_find(&q->cat,
		    c->pick.device);

		if (o != NULL && !sync_same(s, c->idx, o))
			sync_conflict(s, c->idx, q, o);
	}
	sync_evaluate_device(s, c->idx);
	free(c);
}

static void
sync_create(struct sync *s, const struct wire_cat_entry *pick)
{
	struct create_job *c;

	if (cat_find(&s->creating, pick->device) != NULL ||
	    (c = calloc(1, sizeof(*c))) == NULL)
		return;		/* under way; or asked again next catalogue */
	c->s = s;
	c->pick = *pick;
	if (cat_put(&s->creating, pick) < 0 ||
	    jobs_post(s->jobs, sync_create_run, sync_create_done, c) < 0) {
		free(c);
		if (s->ncreating == 0)
			cat_clear(&s->creating);
		return;
	}
	s->ncreating++;
}

/* A catalogue entry from sp: create the device if new, note conflicts. */
void
sync_consider(struct sync *s, struct sync_peer *sp,
    const struct wire_cat_entry *e)
{
	struct wire_cat_entry pick = *e;
	uint32_t idx;

	if (journal_lookup(s->journal, e->device, strlen(e->device), &idx) == 0) {
		if (!sync_same(s, idx, e)) {
			sync_conflict(s, idx, sp, e);
			return;
		}
		sync_evaluate_device(s, idx);
		return;
	}
	/* one of ours that we do not hold (a wiped data dir) is held too */
	if (!sync_selected(s, e->device))
		return;
	/*
	 * New to us.  Peers connecting at about the same time may hold other
	 * epochs of it: wait SYNC_SETTLE_MS from first sight, then follow,
	 * of every epoch they hold, the oldest creation (SPEC §8.9).  When
	 * every peer has been with us that long, their catalogues told us of
	 * every epoch they hold already: a device made since needs no wait.
	 */
	if (!sync_settled(s)) {
		const struct wire_cat_entry *seen = cat_find(&s->seen, e->device);
		uint64_t now = loop_now_ms();

		if (seen == NULL) {
			struct wire_cat_entry mark;

			memset(&mark, 0, sizeof(mark));
			snprintf(mark.device, sizeof(mark.device), "%s", e->device);
			mark.created_ns = now;
			if (cat_put(&s->seen, &mark) == 0) {
				s->unsettled = true;
				return;
			}
		} else if (now - seen->created_ns < SYNC_SETTLE_MS) {
			return;
		}
	}
	for (struct sync_peer *q = s->peers; q != NULL; q = q->next) {
		const struct wire_cat_entry *o = cat_find(&q->cat, e->device);

		if (o != NULL && sync_older(o, &pick))
			pick = *o;
	}
	sync_create(s, &pick);
}

int
sync_on_catalogue(struct sync *s, struct sync_peer *sp, const uint8_t *p,
    size_t n)
{
	uint8_t flags;
	size_t count;
	int rc;

	rc = wire_catalogue_decode(p, n, &flags, s->catbuf, WIRE_CAT_MAX, &count);
	if (rc < 0)
		return -EPROTO;
	atomic_fetch_add_explicit(&s->cat_in, count, memory_order_relaxed);
	pthread_mutex_lock(&s->cat_lock);
	if (flags & WIRE_CAT_FULL)
		cat_clear(&sp->cat);
	for (size_t i = 0; i < count && rc == 0; i++)
		rc = sp->cat.n < SYNC_CAT_PEER_MAX ||
		    cat_find(&sp->cat, s->catbuf[i].device) != NULL ?
		    cat_put(&sp->cat, &s->catbuf[i]) : -ENOSPC;
	pthread_mutex_unlock(&s->cat_lock);
	if (rc < 0)
		log_warnx("peer %s: catalogue not kept whole: %s", sp->id,
		    strerror(-rc));
	for (size_t i = 0; i < count; i++) {
		/* the entry may have moved: find it again */
		const struct wire_cat_entry *e = cat_find(&sp->cat,
		    s->catbuf[i].device);

		if (e != NULL)
			sync_consider(s, sp, e);
	}
	return 0;
}

bool
sync_known(struct sync *s, const char *id, size_t len)
{
	char dev[WIRE_DEVICE_MAX + 1];
	bool found = false;

	if (len > WIRE_DEVICE_MAX)
		return false;
	memcpy(dev, id, len);
	dev[len] = '\0';
	pthread_mutex_lock(&s->cat_lock);
	for (struct sync_peer *sp = s->peers; sp != NULL && !found; sp = sp->next)
		found = cat_find(&sp->cat, dev) != NULL;
	pthread_mutex_unlock(&s->cat_lock);
	return found;
}
