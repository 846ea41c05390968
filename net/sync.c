/*
 * sync: see sync.h.
 *
 * State, all owned by the net thread:
 *  - per active peer (struct sync_peer): its catalogue (a hash from device
 *    id to the last entry it sent), the streams we serve it (one per device
 *    it subscribed to: a cursor over our store, and a snapshot in flight),
 *    the journal clock up to which it has our catalogue, and counters;
 *  - per device of ours (struct follow, indexed like the journal): whom we
 *    follow it from, the subscription number, when it last progressed, a
 *    peer to avoid after a stall or a refusal, and a snapshot being
 *    received.
 * Memory grows with devices and peers only: a stream is a cursor, events
 * are read from the store into one reused buffer, and how much is in
 * flight to a peer is bounded by its connection's send queue.
 *
 * The catalogues are also read by FUSE threads (sync_known), so they are
 * changed under cat_lock; the conflicts and the per-peer counters shown in
 * .status and .metrics are published under view_lock.
 */
#include <errno.h>
#include <fnmatch.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "history.h"
#include "jobs.h"
#include "log.h"
#include "loop.h"
#include "sync.h"
#include "wire.h"

#define SYNC_BATCH		(1u << 20)	/* bytes of events per frame, most */
#define SYNC_FRAME_MIN		(4u << 10)	/* ... and least, a slow link's */
#define SYNC_FRAME_MS		250		/* a frame's time on the link */
#define SYNC_FRAME_START	(16u << 10)	/* before the link is measured */
#define SYNC_AVOID_MS		60000		/* how long a refusal is avoided */
#define SYNC_MAX_CONFLICTS	256
#define SYNC_SETTLE_MS		1000		/* a new id waits for every epoch */
#define SYNC_EVENT_MAX		JOURNAL_EVENT_MAX
#define SYNC_RESERVE		(1u << 20)	/* send queue kept for control */
#define SYNC_CAT_PEER_MAX	JOURNAL_MAX_DEVICES /* entries from one peer */
#define SYNC_SANE		(1ull << 62)	/* revisions, offsets below it */
#define SYNC_HOPS_MAX		32		/* a longer chain: no path */
#define SYNC_APPLY_MAX		(8u << 20)	/* received, not yet written, a peer */

struct cat {
	struct wire_cat_entry *e;	/* entries, in arrival order */
	size_t n, cap;
	uint32_t *hash;			/* index + 1; 0 = empty */
	size_t hcap;			/* power of two, > 2n */
};

struct serve {
	uint32_t idx;			/* our device */
	uint32_t sub;			/* the subscriber's number */
	uint64_t next;			/* next revision to send */
	uint64_t snap_sent;		/* latest snapshot it has from us */
	struct journal_snap *snap;	/* a snapshot in flight */
	uint8_t snap_mode;
	uint64_t snap_at, snap_offset;
	bool waiting;			/* rejected, or ahead of us: idle */
};

struct sync_peer {
	struct sync *s;
	char id[WIRE_ID_MAX + 1];
	struct conn *conn;
	struct cat cat;			/* under s->cat_lock */
	struct serve *serves;
	size_t nserves, capserves, rr;
	uint64_t cat_clock;		/* our changes it has heard of */
	bool cat_busy;			/* a catalogue pass is under way */
	bool cat_full;			/* ... and it is the whole catalogue */
	bool cat_first;			/* its first frame is not sent yet */
	uint64_t cat_since, cat_upto;	/* changes in (since, upto] */
	uint64_t head_clock, head_since;	/* the same, for appends */
	bool cat_refresh;		/* ... and the pass sends appends */
	uint64_t next_refresh_ms;
	uint32_t cat_next;		/* next device of the pass */
	uint64_t events_in, events_out, bytes_in, bytes_out;
	/* the link, measured each tick (sync_link) */
	size_t budget;			/* bytes of a bulk frame */
	uint64_t rate;			/* bytes/s drained while backlogged */
	uint64_t mark_out, mark_ms;
	bool limited;			/* the pump waited for the link */
	size_t partial;			/* of the bulk frame being received */
	uint64_t bulk_rx_ms;		/* when bulk bytes last came from it */
	uint64_t added_ms;		/* when it became active */
	size_t applying;		/* bytes posted to the job thread */
	unsigned jobs;			/* its jobs not done yet */
	bool paused;			/* not reading: too much applying */
	bool gone;			/* deleted; freed by its last job */
	struct sync_peer *next;
};

struct snap_rx {
	uint8_t mode;
	uint64_t rev, offset, total;
	struct buf data;
};

struct follow {
	struct sync_peer *up;		/* NULL: following no one */
	uint32_t sub;
	uint64_t progress_ms;		/* subscribed, or last applied */
	uint64_t head_seen;		/* our head at progress_ms */
	uint64_t up_head;		/* the upstream's, from its stream */
	uint64_t queued;		/* the last revision posted to be written */
	uint64_t hold_until_ms;		/* followed from no one till then */
	uint8_t hops;			/* ours, while up != NULL */
	char avoid[WIRE_ID_MAX + 1];	/* a peer that stalled or refused */
	uint64_t avoid_until_ms;
	struct snap_rx *rx;
};

/* A holder of a device we might follow. */
struct cand {
	struct sync_peer *sp;		/* NULL: none */
	const struct wire_cat_entry *e;
	unsigned hops;
};

struct conflict {
	char device[WIRE_DEVICE_MAX + 1];
	char peer[WIRE_ID_MAX + 1];
	uint64_t ours_epoch, theirs_epoch;
	char ours_source[WIRE_ID_MAX + 1], theirs_source[WIRE_ID_MAX + 1];
	time_t since;
};

struct peer_counters {
	char id[WIRE_ID_MAX + 1];
	uint64_t events_in, events_out, bytes_in, bytes_out;
	size_t serves;
	size_t queued;		/* bytes in the connection's send queue */
	uint64_t rate;		/* the link, bytes/s, as measured */
	size_t budget;		/* bytes of a bulk frame */
	uint64_t wire_in, wire_out;	/* every frame's bytes */
};

struct sync {
	const struct config *cfg;
	struct journal *journal;
	struct jobs *jobs;		/* the store writes of replication */
	pthread_mutex_t cat_lock;	/* protects every peer's cat, peers list */
	struct sync_peer *peers;
	struct follow *follow;		/* net thread */
	size_t nfollow;
	uint32_t next_sub;
	uint64_t next_eval_ms;
	char *evbuf;			/* reused read buffer for EVENTS */
	size_t evcap;
	struct buf frame;		/* reused encoding buffer */
	struct wire_cat_entry *catbuf;	/* WIRE_CAT_MAX entries, reused */
	/* written by the net thread, read by renderers */
	_Atomic uint64_t applied;	/* events applied from upstreams */
	_Atomic uint64_t discarded;	/* EVENTS of no current subscription */
	_Atomic uint32_t streams;	/* serves over every peer */
	_Atomic uint64_t cat_in;	/* catalogue entries received */
	_Atomic uint64_t subscribed;	/* subscriptions started */
	_Atomic uint64_t evaluations;	/* passes over every device */
	struct cat seen;		/* new ids: created_ns is when first seen */
	bool unsettled;			/* some new id waits in seen */

	pthread_mutex_t view_lock;	/* protects what follows */
	struct conflict *conflicts;
	size_t nconflicts;
	struct peer_counters *counters;
	size_t ncounters;
};

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

static struct wire_cat_entry *
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

static void
cat_clear(struct cat *c)
{
	c->n = 0;
	if (c->hash != NULL)
		memset(c->hash, 0, c->hcap * sizeof(*c->hash));
}

static void
cat_free(struct cat *c)
{
	free(c->e);
	free(c->hash);
	memset(c, 0, sizeof(*c));
}

/*
 * Helpers.
 */
static bool
sync_selected(const struct sync *s, const char *dev)
{
	for (size_t i = 0; i < s->cfg->ndevices; i++)
		if (fnmatch(s->cfg->devices[i], dev, 0) == 0)
			return true;
	return false;
}

/* The follow entry of idx, growing the array to the journal's size. */
static struct follow *
sync_follow(struct sync *s, uint32_t idx)
{
	uint32_t n = journal_count(s->journal);

	if (idx >= n)
		return NULL;
	if (n > s->nfollow) {
		struct follow *f = realloc(s->follow, n * sizeof(*f));

		if (f == NULL)
			return NULL;
		memset(f + s->nfollow, 0, (n - s->nfollow) * sizeof(*f));
		s->follow = f;
		s->nfollow = n;
	}
	return &s->follow[idx];
}

static void
sync_send(struct sync_peer *sp)
{
	int rc = conn_send(sp->conn, sp->s->frame.data, sp->s->frame.len);

	if (rc < 0 && rc != -EPIPE)
		log_warnx("peer %s: replication frame not sent: %s", sp->id,
		    strerror(-rc));
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

static struct serve *sync_serve_find(struct sync_peer *sp, uint32_t idx);

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
static void
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
static void
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

static void
sync_counters_publish(struct sync *s)
{
	struct peer_counters *c;
	struct conn_stats st;
	size_t n = 0, i = 0;

	for (struct sync_peer *sp = s->peers; sp != NULL; sp = sp->next)
		n++;
	if ((c = calloc(n ? n : 1, sizeof(*c))) == NULL)
		return;
	for (struct sync_peer *sp = s->peers; sp != NULL; sp = sp->next, i++) {
		snprintf(c[i].id, sizeof(c[i].id), "%s", sp->id);
		c[i].events_in = sp->events_in;
		c[i].events_out = sp->events_out;
		c[i].bytes_in = sp->bytes_in;
		c[i].bytes_out = sp->bytes_out;
		c[i].serves = sp->nserves;
		conn_stats(sp->conn, &st);
		c[i].queued = st.send_queued;
		c[i].rate = sp->rate;
		c[i].budget = sp->budget;
		c[i].wire_in = st.bytes_in;
		c[i].wire_out = st.bytes_out;
	}
	pthread_mutex_lock(&s->view_lock);
	free(s->counters);
	s->counters = c;
	s->ncounters = n;
	pthread_mutex_unlock(&s->view_lock);
}

/*
 * Following.
 */
static void
sync_unsubscribe(struct sync *s, uint32_t idx, struct follow *f)
{
	struct wire_sub m;

	if (f->up == NULL)
		return;
	memset(&m, 0, sizeof(m));
	snprintf(m.device, sizeof(m.device), "%s",
	    journal_id(s->journal, idx, &(size_t){0}));
	m.sub = f->sub;
	buf_reset(&s->frame);
	if (wire_unsubscribe_encode(&s->frame, &m) == 0)
		sync_send(f->up);
	f->up = NULL;
	if (f->rx != NULL) {
		buf_release(&f->rx->data);
		free(f->rx);
		f->rx = NULL;
	}
	f->hops = WIRE_HOPS_NONE;
	journal_repl_set(s->journal, idx, "", 0, WIRE_HOPS_NONE);
}

static void
sync_follow_note(struct sync *s, uint32_t idx, struct follow *f,
    const struct cand *c);

static void
sync_subscribe(struct sync *s, uint32_t idx, struct follow *f,
    const struct cand *c)
{
	struct sync_peer *up = c->sp;
	struct wire_sub m;

	memset(&m, 0, sizeof(m));
	snprintf(m.device, sizeof(m.device), "%s",
	    journal_id(s->journal, idx, &(size_t){0}));
	m.epoch = journal_epoch(s->journal, idx);
	/* after what is held, and what is on its way to the store */
	m.from = journal_head(s->journal, idx);
	if (f->queued > m.from)
		m.from = f->queued;
	m.from++;
	f->queued = m.from - 1;
	m.sub = ++s->next_sub;
	buf_reset(&s->frame);
	if (wire_subscribe_encode(&s->frame, &m) < 0)
		return;
	sync_send(up);
	f->up = up;
	f->sub = m.sub;
	f->progress_ms = loop_now_ms();
	f->head_seen = m.from - 1;
	f->up_head = c->e->head;
	atomic_fetch_add_explicit(&s->subscribed, 1, memory_order_relaxed);
	sync_follow_note(s, idx, f, c);
	log_info("device %s: following %s from revision %llu", m.device,
	    up->id, (unsigned long long)m.from);
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

/* Whether e (from a peer) is the same journal as our device idx. */
static bool
sync_same(struct sync *s, uint32_t idx, const struct wire_cat_entry *e)
{
	return e->epoch == journal_epoch(s->journal, idx) &&
	    strcmp(e->source, journal_source(s->journal, idx)) == 0;
}

static struct sync_peer *
sync_peer_find(struct sync *s, const char *id)
{
	for (struct sync_peer *sp = s->peers; sp != NULL; sp = sp->next)
		if (strcmp(sp->id, id) == 0)
			return sp;
	return NULL;
}

/* e's holder's distance to the source; WIRE_HOPS_NONE: no known path. */
static unsigned
sync_hops(const struct wire_cat_entry *e)
{
	if (e->role == WIRE_ROLE_SOURCE)
		return 0;
	if (e->upstream[0] == '\0' || e->hops >= SYNC_HOPS_MAX)
		return WIRE_HOPS_NONE;
	return e->hops;
}

/*
 * Whether following e's holder would close a loop: its chain of upstreams
 * leads back to us, as far as our peers' catalogues show the chain.
 * Beyond them, hop counts bound a loop: each lap adds one, and a chain
 * past SYNC_HOPS_MAX counts as no path.
 */
static bool
sync_loops(struct sync *s, const char *dev, const struct wire_cat_entry *e)
{
	for (unsigned k = 0; k <= SYNC_HOPS_MAX; k++) {
		struct sync_peer *q;

		if (e->role == WIRE_ROLE_SOURCE || e->upstream[0] == '\0')
			return false;
		if (strcmp(e->upstream, s->cfg->node_id) == 0)
			return true;
		if ((q = sync_peer_find(s, e->upstream)) == NULL ||
		    (e = cat_find(&q->cat, dev)) == NULL)
			return false;
	}
	return true;
}

/* Whether x ranks before y: closer to the source, further ahead, smaller id. */
static bool
sync_ranks_before(const struct cand *x, const struct cand *y)
{
	if (y->sp == NULL)
		return true;
	if (x->hops != y->hops)
		return x->hops < y->hops;
	if (x->e->head != y->e->head)
		return x->e->head > y->e->head;
	return strcmp(x->sp->id, y->sp->id) < 0;
}

/* Records that f follows c (its hops, shown and advertised). */
static void
sync_follow_note(struct sync *s, uint32_t idx, struct follow *f,
    const struct cand *c)
{
	f->hops = c->hops + 1 >= SYNC_HOPS_MAX ? WIRE_HOPS_NONE :
	    (uint8_t)(c->hops + 1);
	journal_repl_set(s->journal, idx, c->sp->id, c->e->head, f->hops);
}

/*
 * Chooses the upstream of device idx (a replica), SPEC §8.2.  Holders of
 * the same journal whose chain does not lead back to us, and that are at
 * least as far ahead as we are, rank by distance to the source (the
 * source first), then head, then id; a holder with no path to the source
 * only while it is strictly ahead (relay while the source is away).  The
 * current upstream is kept unless a holder is strictly closer to the
 * source, so a steady mesh never switches; a peer to avoid (it stalled or
 * refused) only when there is no other.
 */
static void
sync_evaluate_device(struct sync *s, uint32_t idx)
{
	struct follow *f = sync_follow(s, idx);
	struct cand best = { 0 }, best_avoided = { 0 }, cur = { 0 };
	uint64_t now = loop_now_ms(), head;
	const char *id;

	if (f == NULL || journal_is_local(s->journal, idx) ||
	    now < f->hold_until_ms)
		return;
	id = journal_id(s->journal, idx, &(size_t){0});
	head = journal_head(s->journal, idx);
	for (struct sync_peer *sp = s->peers; sp != NULL; sp = sp->next) {
		const struct wire_cat_entry *e = cat_find(&sp->cat, id);
		struct cand c;

		if (e == NULL || !sync_same(s, idx, e) || sync_loops(s, id, e))
			continue;
		c.sp = sp;
		c.e = e;
		c.hops = sync_hops(e);
		if (sp == f->up)
			cur = c;
		/* the source has everything; others must have more than us */
		if (c.hops != 0 && (e->head < head ||
		    (c.hops == WIRE_HOPS_NONE && e->head == head)))
			continue;
		if (now < f->avoid_until_ms && strcmp(f->avoid, sp->id) == 0) {
			if (sync_ranks_before(&c, &best_avoided))
				best_avoided = c;
		} else if (sync_ranks_before(&c, &best)) {
			best = c;
		}
	}
	if (best.sp == NULL)
		best = best_avoided;
	if (cur.sp != NULL && !(now < f->avoid_until_ms &&
	    strcmp(f->avoid, cur.sp->id) == 0)) {
		bool keep;

		if (cur.hops != WIRE_HOPS_NONE)
			keep = best.sp == NULL || best.hops >= cur.hops;
		else	/* no path either: while it has more, or is sending */
			keep = (best.sp == NULL || best.hops == WIRE_HOPS_NONE) &&
			    (cur.e->head > head ||
			    now - f->progress_ms < s->cfg->stall_ms);
		if (keep)
			best = cur;
	}
	if (best.sp != NULL && best.sp == f->up) {
		sync_follow_note(s, idx, f, &best);
		return;
	}
	sync_unsubscribe(s, idx, f);
	if (best.sp != NULL)
		sync_subscribe(s, idx, f, &best);
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

/* A catalogue entry from sp: create the device if new, note conflicts. */
static void
sync_consider(struct sync *s, struct sync_peer *sp,
    const struct wire_cat_entry *e)
{
	struct wire_cat_entry pick = *e;
	uint32_t idx;
	struct err err;

	if (journal_lookup(s->journal, e->device, strlen(e->device), &idx) == 0) {
		if (!sync_same(s, idx, e)) {
			sync_conflict(s, idx, sp, e);
			return;
		}
		sync_evaluate_device(s, idx);
		return;
	}
	if (!sync_selected(s, e->device) ||
	    strcmp(e->source, s->cfg->node_id) == 0)
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
	err_clear(&err);
	if (journal_create_replica(s->journal, pick.device,
	    strlen(pick.device), pick.epoch, pick.source, pick.created_ns, &idx,
	    &err) < 0) {
		log_warnx("device %s: replica not created: %s", pick.device,
		    err.msg);
		return;
	}
	log_info("device %s: replica of %s (epoch %016llx) created",
	    pick.device, pick.source, (unsigned long long)pick.epoch);
	/* every peer's entry may now conflict with the one we chose */
	for (struct sync_peer *q = s->peers; q != NULL; q = q->next) {
		const struct wire_cat_entry *o = cat_find(&q->cat, e->device);

		if (o != NULL && !sync_same(s, idx, o))
			sync_conflict(s, idx, q, o);
	}
	sync_evaluate_device(s, idx);
}

static void
sync_evaluate_all(struct sync *s)
{
	uint32_t n = journal_count(s->journal);

	for (struct sync_peer *sp = s->peers; sp != NULL; sp = sp->next)
		for (size_t i = 0; i < sp->cat.n; i++)
			if (journal_lookup(s->journal, sp->cat.e[i].device,
			    strlen(sp->cat.e[i].device), &(uint32_t){0}) < 0)
				sync_consider(s, sp, &sp->cat.e[i]);
	for (uint32_t i = 0; i < n; i++)
		sync_evaluate_device(s, i);
}

/*
 * Serving.
 */
static struct serve *
sync_serve_find(struct sync_peer *sp, uint32_t idx)
{
	for (size_t i = 0; i < sp->nserves; i++)
		if (sp->serves[i].idx == idx)
			return &sp->serves[i];
	return NULL;
}

static void
sync_serve_drop(struct sync_peer *sp, struct serve *sv)
{
	journal_snap_close(sv->snap);
	*sv = sp->serves[--sp->nserves];
	atomic_fetch_sub(&sp->s->streams, 1);
}

static void
sync_reject(struct sync *s, struct sync_peer *sp, const char *dev,
    uint32_t sub, const char *reason)
{
	struct wire_sub m;

	memset(&m, 0, sizeof(m));
	snprintf(m.device, sizeof(m.device), "%s", dev);
	m.sub = sub;
	snprintf(m.reason, sizeof(m.reason), "%s", reason);
	buf_reset(&s->frame);
	if (wire_reject_encode(&s->frame, &m) == 0)
		sync_send(sp);
}

/* Starts sending our snapshot of sv's device. */
static int
sync_serve_snapshot(struct sync *s, struct serve *sv, uint8_t mode)
{
	struct err e;

	if (journal_snap_open(s->journal, sv->idx, &sv->snap, &e) < 0)
		return -ENOMEM;
	sv->snap_mode = mode;
	sv->snap_at = 0;
	sv->snap_offset = 0;
	if (mode == WIRE_SNAP_RESET) {
		uint64_t rev = journal_snap_rev(sv->snap);

		sv->snap_offset = journal_rev_offset(s->journal, sv->idx, rev + 1);
		if (sv->snap_offset == UINT64_MAX ||
		    rev + 1 < journal_first(s->journal, sv->idx)) {
			journal_snap_close(sv->snap);
			sv->snap = NULL;
			return -ERANGE;
		}
	}
	return 0;
}

/*
 * One frame of sv, if it has one to send: a snapshot chunk, events, or a
 * newer snapshot.  Returns true when a frame was queued.
 */
static bool
sync_serve_step(struct sync *s, struct sync_peer *sp, struct serve *sv)
{
	const char *dev = journal_id(s->journal, sv->idx, &(size_t){0});
	uint64_t head = journal_head(s->journal, sv->idx);
	uint64_t first = journal_first(s->journal, sv->idx);
	struct err e;

	if (sv->waiting && sv->next > head)
		return false;
	sv->waiting = false;
	if (sv->snap == NULL && sv->next < first) {
		/* behind our first retained event: the snapshot first */
		if (sync_serve_snapshot(s, sv, WIRE_SNAP_RESET) < 0) {
			sync_reject(s, sp, dev, sv->sub, "compacted past the "
			    "requested revision and no snapshot covers it");
			sv->waiting = true;
			sv->next = UINT64_MAX;
			return true;
		}
	}
	if (sv->snap != NULL) {
		struct wire_snapshot m;
		uint64_t total = journal_snap_len(sv->snap);
		ssize_t n = 0;

		memset(&m, 0, sizeof(m));
		if (total > sv->snap_at) {
			size_t want = total - sv->snap_at < sp->budget ?
			    total - sv->snap_at : sp->budget;

			n = journal_snap_read(sv->snap, sv->snap_at, s->evbuf,
			    want, &e);
			if (n <= 0) {
				log_warnx("device %s: snapshot read: %s", dev,
				    n < 0 ? e.msg : "short");
				journal_snap_close(sv->snap);
				sv->snap = NULL;
				return false;
			}
		}
		snprintf(m.device, sizeof(m.device), "%s", dev);
		m.sub = sv->sub;
		m.mode = sv->snap_mode;
		m.rev = journal_snap_rev(sv->snap);
		m.offset = sv->snap_offset;
		m.total = total;
		m.at = sv->snap_at;
		m.data = (const uint8_t *)s->evbuf;
		m.len = (uint32_t)n;
		buf_reset(&s->frame);
		if (wire_snapshot_encode(&s->frame, &m) == 0)
			sync_send(sp);
		sv->snap_at += (uint64_t)n;
		if (sv->snap_at >= total) {
			sv->snap_sent = m.rev;
			if (sv->snap_mode == WIRE_SNAP_RESET)
				sv->next = m.rev + 1;
			journal_snap_close(sv->snap);
			sv->snap = NULL;
		}
		return true;
	}
	if (sv->next <= head) {
		struct wire_events m;
		uint64_t rev = sv->next;
		size_t skip = 0;
		ssize_t n;

		/*
		 * A frame the link carries in about SYNC_FRAME_MS; an event
		 * larger than that goes whole in a frame of its own.
		 */
		n = journal_read_range(s->journal, sv->idx, &rev, &skip, head,
		    false, s->evbuf, sp->budget, &e);
		if (n > 0 && skip > 0 && rev == sv->next) {
			skip = 0;
			n = journal_read_range(s->journal, sv->idx, &rev, &skip,
			    sv->next, false, s->evbuf, s->evcap, &e);
		}
		if (n <= 0) {
			if (n < 0 && n != -ERANGE)
				log_warnx("device %s: read for %s: %s", dev,
				    sp->id, e.msg);
			return false;	/* -ERANGE: compacted; snapshot next */
		}
		if (skip > 0) {
			/* whole events only: cut back to the last newline */
			while (n > 0 && s->evbuf[n - 1] != '\n')
				n--;
		}
		memset(&m, 0, sizeof(m));
		snprintf(m.device, sizeof(m.device), "%s", dev);
		m.sub = sv->sub;
		m.first = sv->next;
		m.count = (uint32_t)(rev - sv->next);
		m.head = head;
		m.lines = (const uint8_t *)s->evbuf;
		m.len = (uint32_t)n;
		if (m.count == 0)
			return false;
		buf_reset(&s->frame);
		if (wire_events_encode(&s->frame, &m) == 0) {
			sync_send(sp);
			sp->events_out += m.count;
			sp->bytes_out += m.len;
		}
		sv->next = rev;
		return true;
	}
	/* caught up: a newer snapshot of events it holds follows them */
	{
		struct journal_info in;

		journal_info(s->journal, sv->idx, &in);
		if (in.snapshot_rev > sv->snap_sent && in.snapshot_rev < sv->next &&
		    sync_serve_snapshot(s, sv, WIRE_SNAP_INSTALL) == 0)
			return true;
	}
	return false;
}

/*
 * Streams to sp one bulk frame at a time: the next goes into the send
 * queue once the last has gone into the socket.  The link stays busy (the
 * socket holds up to CONN_UNSENT_MAX not yet sent, and what is in flight)
 * while a control frame or another device's frame queued now waits for at
 * most the rest of one frame and that.  Devices take turns, a frame each.
 */
static void
sync_serve_pump(struct sync *s, struct sync_peer *sp)
{
	size_t idle = 0;

	while (sp->nserves > 0 && idle < sp->nserves) {
		struct serve *sv = NULL;

		if (conn_send_queued(sp->conn) > 0) {
			sp->limited = true;
			conn_want_writable(sp->conn, 0);
			return;
		}
		/*
		 * One snapshot at a time per peer, to its end: a subscriber
		 * then assembles one, not one per device it catches up.
		 */
		for (size_t i = 0; i < sp->nserves; i++)
			if (sp->serves[i].snap != NULL)
				sv = &sp->serves[i];
		if (sv == NULL) {
			if (sp->rr >= sp->nserves)
				sp->rr = 0;
			sv = &sp->serves[sp->rr++];
		}
		if (sync_serve_step(s, sp, sv))
			idle = 0;
		else
			idle++;
	}
}

void
sync_pump(struct sync *s)
{
	for (struct sync_peer *sp = s->peers; sp != NULL; sp = sp->next)
		sync_serve_pump(s, sp);
}

void
sync_writable(struct sync *s, struct sync_peer *sp)
{
	sync_catalogue_pump(s, sp);
	sync_serve_pump(s, sp);
}

/*
 * Frames.
 */
static int
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

static int
sync_on_subscribe(struct sync *s, struct sync_peer *sp, const uint8_t *p,
    size_t n)
{
	struct wire_sub m;
	struct serve *sv;
	uint32_t idx;

	if (wire_subscribe_decode(p, n, &m) < 0)
		return -EPROTO;
	if (journal_lookup(s->journal, m.device, strlen(m.device), &idx) < 0 ||
	    journal_epoch(s->journal, idx) != m.epoch) {
		sync_reject(s, sp, m.device, m.sub, "no such journal here");
		return 0;
	}
	if ((sv = sync_serve_find(sp, idx)) != NULL) {
		journal_snap_close(sv->snap);
	} else {
		if (sp->nserves == sp->capserves) {
			size_t cap = sp->capserves ? sp->capserves * 2 : 16;
			struct serve *a = realloc(sp->serves, cap * sizeof(*a));

			if (a == NULL) {
				sync_reject(s, sp, m.device, m.sub, "out of memory");
				return 0;
			}
			sp->serves = a;
			sp->capserves = cap;
		}
		sv = &sp->serves[sp->nserves++];
		/* before the first pump: commits from now on wake us */
		atomic_fetch_add(&s->streams, 1);
	}
	memset(sv, 0, sizeof(*sv));
	sv->idx = idx;
	sv->sub = m.sub;
	sv->next = m.from;
	{
		/* what snapshot it has: its catalogue says */
		const struct wire_cat_entry *ce = cat_find(&sp->cat, m.device);

		sv->snap_sent = ce != NULL && ce->epoch == m.epoch ? ce->snapshot : 0;
	}
	sync_serve_pump(s, sp);
	return 0;
}

static int
sync_on_unsubscribe(struct sync *s, struct sync_peer *sp, const uint8_t *p,
    size_t n)
{
	struct wire_sub m;
	struct serve *sv;
	uint32_t idx;

	if (wire_unsubscribe_decode(p, n, &m) < 0)
		return -EPROTO;
	if (journal_lookup(s->journal, m.device, strlen(m.device), &idx) == 0 &&
	    (sv = sync_serve_find(sp, idx)) != NULL && sv->sub == m.sub)
		sync_serve_drop(sp, sv);
	return 0;
}

/* The follow entry of a device that sp streams to us under sub. */
static struct follow *
sync_stream(struct sync *s, struct sync_peer *sp, const char *dev,
    uint32_t sub, uint32_t *idx)
{
	struct follow *f;

	if (journal_lookup(s->journal, dev, strlen(dev), idx) < 0 ||
	    (f = sync_follow(s, *idx)) == NULL || f->up != sp || f->sub != sub)
		return NULL;
	return f;
}

static void
sync_resubscribe(struct sync *s, uint32_t idx, struct follow *f)
{
	struct sync_peer *up = f->up;
	const struct wire_cat_entry *e = cat_find(&up->cat,
	    journal_id(s->journal, idx, &(size_t){0}));
	struct cand c = { up, e, e != NULL ? sync_hops(e) : 0 };

	sync_unsubscribe(s, idx, f);
	if (e != NULL)
		sync_subscribe(s, idx, f, &c);
	else
		sync_evaluate_device(s, idx);
}

/*
 * Writing to the store: a job (jobs.h) per EVENTS frame and per snapshot
 * received whole.  The net thread checks a frame against the stream and
 * hands over a copy; the job thread writes; the done call, back in the net
 * thread, notes progress or subscribes again.  A peer whose writes pile up
 * past SYNC_APPLY_MAX is not read from until they drain (TCP pushes back).
 */
enum write_kind { WRITE_EVENTS, WRITE_RESET, WRITE_INSTALL };

struct write_job {
	struct sync *s;
	struct sync_peer *sp;
	enum write_kind kind;
	uint32_t idx, sub;
	uint64_t first, head;		/* EVENTS: first revision, sender's head */
	uint32_t count;
	uint64_t rev, offset;		/* snapshots */
	struct buf snap;		/* snapshots: the payload */
	size_t len;
	int rc;
	struct err e;
	char lines[];			/* EVENTS */
};

static void
sync_write_run(void *arg)
{
	struct write_job *w = arg;
	struct journal *j = w->s->journal;
	const char *snap = w->snap.data ? w->snap.data : "";

	err_clear(&w->e);
	switch (w->kind) {
	case WRITE_EVENTS:
		w->rc = journal_apply(j, w->idx, w->first, w->lines, w->len,
		    w->count, &w->e);
		break;
	case WRITE_RESET:
		w->rc = journal_replica_reset(j, w->idx, w->rev, w->offset, snap,
		    w->snap.len, &w->e);
		break;
	case WRITE_INSTALL: {
		struct journal_info in;

		/* a newer snapshot of events held (those before it written) */
		journal_info(j, w->idx, &in);
		w->rc = w->rev <= in.head && w->rev > in.snapshot_rev ?
		    journal_snapshot_install(j, w->idx, w->rev, snap,
		    w->snap.len, &w->e) : 0;
		break;
	}
	}
}

static void sync_peer_free(struct sync_peer *sp);

static void
sync_write_done(void *arg)
{
	struct write_job *w = arg;
	struct sync *s = w->s;
	struct sync_peer *sp = w->sp;
	const char *dev = journal_id(s->journal, w->idx, &(size_t){0});
	struct follow *f = sync_follow(s, w->idx);
	bool current = !sp->gone && f != NULL && f->up == sp && f->sub == w->sub;

	sp->applying -= w->len;
	if (sp->paused && !sp->gone && sp->applying <= SYNC_APPLY_MAX / 2) {
		sp->paused = false;
		conn_set_reading(sp->conn, true);
	}
	if (w->rc == 0 && w->kind == WRITE_EVENTS) {
		atomic_fetch_add_explicit(&s->applied, w->count,
		    memory_order_relaxed);
		sp->events_in += w->count;
		sp->bytes_in += w->len;
		if (current) {
			f->progress_ms = loop_now_ms();
			f->head_seen = w->first + w->count - 1;
			if (w->head > f->up_head)
				f->up_head = w->head;
		}
	} else if (w->rc == 0 && current) {
		f->progress_ms = loop_now_ms();
	} else if (w->rc < 0) {
		log_warnx("device %s: %s from %s not applied: %s", dev,
		    w->kind == WRITE_EVENTS ? "events" : "snapshot",
		    sp->gone ? "a peer now gone" : sp->id, w->e.msg);
		if (f != NULL) {
			/* what follows it in the queue fails the same way */
			f->queued = journal_head(s->journal, w->idx);
		}
		if (w->rc == -EPROTO && !sp->gone) {
			conn_close(sp->conn, "bad events from the peer");
		} else if (w->rc == -EFBIG && current) {
			/*
			 * Over our limits.max_event_bytes: every holder has
			 * the same event, so the device waits (asked again
			 * after SYNC_AVOID_MS, in case the limit was raised).
			 */
			sync_unsubscribe(s, w->idx, f);
			f->hold_until_ms = loop_now_ms() + SYNC_AVOID_MS;
		} else if (current) {
			sync_resubscribe(s, w->idx, f);
		}
	}
	buf_release(&w->snap);
	if (--sp->jobs == 0 && sp->gone)
		sync_peer_free(sp);
	free(w);
}

/* Hands w to the job thread; false (w freed) when out of memory. */
static bool
sync_write_post(struct sync *s, struct sync_peer *sp, struct write_job *w)
{
	w->s = s;
	w->sp = sp;
	if (jobs_post(s->jobs, sync_write_run, sync_write_done, w) < 0) {
		buf_release(&w->snap);
		free(w);
		return false;
	}
	sp->jobs++;
	sp->applying += w->len;
	if (!sp->paused && sp->applying > SYNC_APPLY_MAX) {
		sp->paused = true;
		conn_set_reading(sp->conn, false);
	}
	return true;
}

static int
sync_on_events(struct sync *s, struct sync_peer *sp, const uint8_t *p,
    size_t n)
{
	struct wire_events m;
	struct write_job *w;
	struct follow *f;
	uint32_t idx;

	if (wire_events_decode(p, n, &m) < 0)
		return -EPROTO;
	if ((f = sync_stream(s, sp, m.device, m.sub, &idx)) == NULL) {
		atomic_fetch_add_explicit(&s->discarded, 1,
		    memory_order_relaxed);
		return 0;	/* an old subscription's frames in flight */
	}
	if (m.first != f->queued + 1) {
		log_warnx("device %s: events from %s discarded: revision %llu "
		    "is not the next (%llu); subscribing again", m.device,
		    sp->id, (unsigned long long)m.first,
		    (unsigned long long)f->queued + 1);
		sync_resubscribe(s, idx, f);
		return 0;
	}
	if ((w = calloc(1, sizeof(*w) + m.len)) == NULL) {
		sync_resubscribe(s, idx, f);	/* nothing lost: asked again */
		return 0;
	}
	w->kind = WRITE_EVENTS;
	w->idx = idx;
	w->sub = m.sub;
	w->first = m.first;
	w->head = m.head;
	w->count = m.count;
	w->len = m.len;
	memcpy(w->lines, m.lines, m.len);
	if (!sync_write_post(s, sp, w)) {
		sync_resubscribe(s, idx, f);
		return 0;
	}
	f->queued = m.first + m.count - 1;
	return 0;
}

static int
sync_on_snapshot(struct sync *s, struct sync_peer *sp, const uint8_t *p,
    size_t n)
{
	struct wire_snapshot m;
	struct follow *f;
	uint32_t idx;

	if (wire_snapshot_decode(p, n, &m) < 0 || m.total > JOURNAL_SNAPSHOT_MAX)
		return -EPROTO;
	if ((f = sync_stream(s, sp, m.device, m.sub, &idx)) == NULL)
		return 0;
	if (m.at == 0) {
		/*
		 * Not checked against its catalogue: that is sent once a tick,
		 * and a snapshot taken since (while we follow live) is newer
		 * than what it says.  An INSTALL beyond our head is ignored
		 * below; a RESET is what the server holds.
		 */
		if (m.rev >= SYNC_SANE || m.offset >= SYNC_SANE)
			return -EPROTO;
		if (f->rx != NULL)
			buf_release(&f->rx->data);
		else if ((f->rx = calloc(1, sizeof(*f->rx))) == NULL)
			return 0;
		buf_init(&f->rx->data, JOURNAL_SNAPSHOT_MAX);
		f->rx->mode = m.mode;
		f->rx->rev = m.rev;
		f->rx->offset = m.offset;
		f->rx->total = m.total;
	}
	if (f->rx == NULL || m.at != f->rx->data.len || m.rev != f->rx->rev ||
	    m.total != f->rx->total || m.mode != f->rx->mode)
		return -EPROTO;
	if (buf_append(&f->rx->data, m.data, m.len) < 0)
		return -EPROTO;
	f->progress_ms = loop_now_ms();		/* a chunk is progress */
	if (f->rx->data.len < f->rx->total)
		return 0;
	{
		struct write_job *w = calloc(1, sizeof(*w));

		if (w == NULL) {
			buf_release(&f->rx->data);
			free(f->rx);
			f->rx = NULL;
			sync_resubscribe(s, idx, f);
			return 0;
		}
		w->kind = f->rx->mode == WIRE_SNAP_RESET ? WRITE_RESET :
		    WRITE_INSTALL;
		w->idx = idx;
		w->sub = m.sub;
		w->rev = f->rx->rev;
		w->offset = f->rx->offset;
		w->snap = f->rx->data;		/* the job's now */
		w->len = w->snap.len;
		free(f->rx);
		f->rx = NULL;
		if (w->kind == WRITE_RESET && w->rev > f->queued)
			f->queued = w->rev;
		if (!sync_write_post(s, sp, w))
			sync_resubscribe(s, idx, f);
	}
	return 0;
}

static int
sync_on_reject(struct sync *s, struct sync_peer *sp, const uint8_t *p,
    size_t n)
{
	struct wire_sub m;
	struct follow *f;
	uint32_t idx;

	if (wire_reject_decode(p, n, &m) < 0)
		return -EPROTO;
	if ((f = sync_stream(s, sp, m.device, m.sub, &idx)) == NULL)
		return 0;
	log_warnx("device %s: %s refused to serve it: %s", m.device, sp->id,
	    m.reason);
	snprintf(f->avoid, sizeof(f->avoid), "%s", sp->id);
	f->avoid_until_ms = loop_now_ms() + SYNC_AVOID_MS;
	sync_unsubscribe(s, idx, f);
	sync_evaluate_device(s, idx);
	return 0;
}

int
sync_frame(struct sync *s, struct sync_peer *sp, uint8_t type,
    const uint8_t *payload, size_t len, char *why, size_t whysz)
{
	int rc;

	switch (type) {
	case WIRE_CATALOGUE:
		rc = sync_on_catalogue(s, sp, payload, len);
		break;
	case WIRE_SUBSCRIBE:
		rc = sync_on_subscribe(s, sp, payload, len);
		break;
	case WIRE_UNSUBSCRIBE:
		rc = sync_on_unsubscribe(s, sp, payload, len);
		break;
	case WIRE_EVENTS:
		rc = sync_on_events(s, sp, payload, len);
		break;
	case WIRE_SNAPSHOT:
		rc = sync_on_snapshot(s, sp, payload, len);
		break;
	case WIRE_REJECT:
		rc = sync_on_reject(s, sp, payload, len);
		break;
	default:
		rc = -EPROTO;
		break;
	}
	if (rc < 0) {
		char tmp[32];

		snprintf(why, whysz, "bad %s frame",
		    wire_type_name(type, tmp, sizeof(tmp)));
		return -EPROTO;
	}
	return 0;
}

/*
 * Peers.
 */
struct sync_peer *
sync_peer_add(struct sync *s, const char *id, struct conn *c)
{
	struct sync_peer *sp = calloc(1, sizeof(*sp));

	if (sp == NULL)
		return NULL;
	sp->s = s;
	snprintf(sp->id, sizeof(sp->id), "%s", id);
	sp->conn = c;
	sp->budget = SYNC_FRAME_START;
	sp->mark_ms = sp->added_ms = loop_now_ms();
	pthread_mutex_lock(&s->cat_lock);
	sp->next = s->peers;
	s->peers = sp;
	pthread_mutex_unlock(&s->cat_lock);
	sync_catalogue_start(s, sp, true);
	sync_counters_publish(s);
	return sp;
}

void
sync_peer_del(struct sync *s, struct sync_peer *sp)
{
	if (sp == NULL)
		return;
	pthread_mutex_lock(&s->cat_lock);
	for (struct sync_peer **pp = &s->peers; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == sp) {
			*pp = sp->next;
			break;
		}
	}
	pthread_mutex_unlock(&s->cat_lock);
	/* what we followed from it: choose again */
	for (size_t i = 0; i < s->nfollow; i++) {
		struct follow *f = &s->follow[i];

		if (f->up != sp)
			continue;
		f->up = NULL;
		if (f->rx != NULL) {
			buf_release(&f->rx->data);
			free(f->rx);
			f->rx = NULL;
		}
		f->hops = WIRE_HOPS_NONE;
		journal_repl_set(s->journal, (uint32_t)i, "", 0,
		    WIRE_HOPS_NONE);
		sync_evaluate_device(s, (uint32_t)i);
	}
	while (sp->nserves > 0)
		sync_serve_drop(sp, &sp->serves[0]);
	free(sp->serves);
	sp->serves = NULL;
	cat_free(&sp->cat);
	sp->conn = NULL;
	sp->gone = true;
	if (sp->jobs == 0)
		sync_peer_free(sp);	/* else its last job's done frees it */
	sync_counters_publish(s);
}

static void
sync_peer_free(struct sync_peer *sp)
{
	free(sp);
}

/*
 * Measures sp's link once a tick.  While the pump waited for the link,
 * what went into the socket is what the link carried (the socket holds
 * little: CONN_UNSENT_MAX), and a bulk frame is sized to SYNC_FRAME_MS of
 * it, so a 10 KB/s link carries a frame in a fraction of a second and a
 * fast one carries SYNC_BATCH.  Bytes of a bulk frame still being received
 * count as progress of what we follow from sp.
 */
static void
sync_link(struct sync_peer *sp, uint64_t now)
{
	struct conn_stats st;
	uint8_t type = 0;
	size_t partial;

	conn_stats(sp->conn, &st);
	if (sp->limited && now > sp->mark_ms) {
		uint64_t rate = (st.bytes_out - sp->mark_out) * 1000 /
		    (now - sp->mark_ms);
		uint64_t b;

		sp->rate = sp->rate == 0 ? rate : (3 * sp->rate + rate) / 4;
		b = sp->rate * SYNC_FRAME_MS / 1000;
		sp->budget = b < SYNC_FRAME_MIN ? SYNC_FRAME_MIN :
		    b > SYNC_BATCH ? SYNC_BATCH : (size_t)b;
	}
	sp->limited = false;
	sp->mark_out = st.bytes_out;
	sp->mark_ms = now;
	partial = conn_recv_partial(sp->conn, &type);
	if (partial > 0 && (type == WIRE_EVENTS || type == WIRE_SNAPSHOT) &&
	    partial != sp->partial)
		sp->bulk_rx_ms = now;
	sp->partial = partial;
}

void
sync_tick(struct sync *s)
{
	uint64_t now = loop_now_ms(), clock = journal_clock(s->journal);

	/* what changed since each peer last heard */
	for (struct sync_peer *sp = s->peers; sp != NULL; sp = sp->next) {
		sync_link(sp, now);
		if (sp->cat_busy)
			sync_catalogue_pump(s, sp);
		else if (clock > sp->cat_clock)
			sync_catalogue_start(s, sp, false);
	}
	/* stalls: no progress while a holder (the upstream or another) is ahead */
	for (size_t i = 0; i < s->nfollow; i++) {
		struct follow *f = &s->follow[i];
		const struct wire_cat_entry *e;
		const char *id;
		uint64_t head, ahead = 0;

		if (f->up == NULL)
			continue;
		id = journal_id(s->journal, (uint32_t)i, &(size_t){0});
		head = journal_head(s->journal, (uint32_t)i);
		if (head != f->head_seen) {
			f->head_seen = head;
			f->progress_ms = now;
		}
		if (f->up->bulk_rx_ms > f->progress_ms)
			f->progress_ms = f->up->bulk_rx_ms;	/* bytes flow */
		if ((e = cat_find(&f->up->cat, id)) == NULL)
			continue;
		/* its catalogue leaves out heads its stream carries */
		if (e->head > f->up_head)
			f->up_head = e->head;
		journal_repl_set(s->journal, (uint32_t)i, f->up->id, f->up_head,
		    f->hops);
		if (now - f->progress_ms < s->cfg->stall_ms)
			continue;
		ahead = f->up_head;
		for (struct sync_peer *sp = s->peers; sp != NULL; sp = sp->next) {
			const struct wire_cat_entry *o = cat_find(&sp->cat, id);

			if (o != NULL && sync_same(s, (uint32_t)i, o) &&
			    o->head > ahead)
				ahead = o->head;
		}
		if (ahead > head) {
			log_warnx("device %s: no progress from %s for %llu ms "
			    "while a holder is %llu ahead; moving", id,
			    f->up->id, (unsigned long long)(now - f->progress_ms),
			    (unsigned long long)(ahead - head));
			snprintf(f->avoid, sizeof(f->avoid), "%s", f->up->id);
			f->avoid_until_ms = now + s->cfg->stall_ms * 4;
			sync_unsubscribe(s, (uint32_t)i, f);
			sync_evaluate_device(s, (uint32_t)i);
		}
	}
	if (now >= s->next_eval_ms || s->unsettled) {
		if (s->unsettled) {
			s->unsettled = false;
			for (size_t i = 0; i < s->seen.n; i++)
				if (journal_lookup(s->journal, s->seen.e[i].device,
				    strlen(s->seen.e[i].device), &(uint32_t){0}) < 0)
					s->unsettled = true;
		}
		sync_evaluate_all(s);
		atomic_fetch_add_explicit(&s->evaluations, 1,
		    memory_order_relaxed);
		if (!s->unsettled)
			cat_clear(&s->seen);
		if (now >= s->next_eval_ms)
			s->next_eval_ms = now + s->cfg->evaluate_ms;
	}
	sync_pump(s);
	sync_counters_publish(s);
}

int
sync_open(struct sync **out, const struct config *cfg, struct journal *j,
    struct loop *l, struct err *e)
{
	struct sync *s;
	int rc;

	*out = NULL;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return err_set(e, -ENOMEM, "out of memory");
	s->cfg = cfg;
	s->journal = j;
	pthread_mutex_init(&s->cat_lock, NULL);
	pthread_mutex_init(&s->view_lock, NULL);
	/* whole events of any source: the largest limit a node may have */
	s->evcap = SYNC_EVENT_MAX + 1 > SYNC_BATCH ? SYNC_EVENT_MAX + 1 :
	    SYNC_BATCH;
	buf_init(&s->frame, WIRE_FRAME_MAX + WIRE_HEADER);
	if ((s->evbuf = malloc(s->evcap)) == NULL ||
	    (s->catbuf = calloc(WIRE_CAT_MAX, sizeof(*s->catbuf))) == NULL ||
	    (s->conflicts = calloc(SYNC_MAX_CONFLICTS,
	    sizeof(*s->conflicts))) == NULL) {
		sync_close(s);
		return err_set(e, -ENOMEM, "out of memory");
	}
	if ((rc = jobs_open(&s->jobs, l, e)) < 0) {
		sync_close(s);
		return rc;
	}
	*out = s;
	return 0;
}

void
sync_close(struct sync *s)
{
	if (s == NULL)
		return;
	while (s->peers != NULL)
		sync_peer_del(s, s->peers);
	jobs_close(s->jobs);	/* the writes received are made; peers freed */
	for (size_t i = 0; i < s->nfollow; i++) {
		if (s->follow[i].rx != NULL) {
			buf_release(&s->follow[i].rx->data);
			free(s->follow[i].rx);
		}
	}
	cat_free(&s->seen);
	free(s->follow);
	free(s->evbuf);
	free(s->catbuf);
	free(s->conflicts);
	free(s->counters);
	buf_release(&s->frame);
	pthread_mutex_destroy(&s->cat_lock);
	pthread_mutex_destroy(&s->view_lock);
	free(s);
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

int
sync_render_json(struct sync *s, struct buf *out)
{
	uint32_t n = journal_count(s->journal);
	int rc = buf_printf(out, "\"conflicts\":[");

	pthread_mutex_lock(&s->view_lock);
	for (size_t i = 0; i < s->nconflicts && rc == 0; i++) {
		const struct conflict *c = &s->conflicts[i];

		rc |= buf_printf(out, "%s{\"device\":", i ? "," : "");
		rc |= buf_json_str(out, c->device, strlen(c->device));
		rc |= buf_printf(out, ",\"ours\":{\"epoch\":\"%016llx\",\"source\":",
		    (unsigned long long)c->ours_epoch);
		rc |= buf_json_str(out, c->ours_source, strlen(c->ours_source));
		rc |= buf_printf(out, "},\"peer\":");
		rc |= buf_json_str(out, c->peer, strlen(c->peer));
		rc |= buf_printf(out, ",\"theirs\":{\"epoch\":\"%016llx\","
		    "\"source\":", (unsigned long long)c->theirs_epoch);
		rc |= buf_json_str(out, c->theirs_source,
		    strlen(c->theirs_source));
		rc |= buf_printf(out, "},\"since\":%lld}", (long long)c->since);
	}
	pthread_mutex_unlock(&s->view_lock);
	rc |= buf_printf(out, "],\"subscriptions\":[");
	for (uint32_t i = 0, k = 0; i < n && rc == 0; i++) {
		struct journal_repl r;
		uint64_t head;
		size_t len;
		const char *id;

		if (journal_is_local(s->journal, i))
			continue;
		journal_repl_get(s->journal, i, &r);
		head = journal_head(s->journal, i);
		id = journal_id(s->journal, i, &len);
		rc |= buf_printf(out, "%s{\"device\":", k++ ? "," : "");
		rc |= buf_json_str(out, id, len);
		rc |= buf_printf(out, ",\"upstream\":");
		rc |= r.upstream[0] ? buf_json_str(out, r.upstream,
		    strlen(r.upstream)) : buf_printf(out, "null");
		rc |= buf_printf(out, ",\"head\":%llu,\"lag\":%llu,"
		    "\"last_progress\":%.3f}", (unsigned long long)head,
		    (unsigned long long)(r.upstream_head > head ?
		    r.upstream_head - head : 0), r.progress_ns / 1e9);
	}
	rc |= buf_append(out, "]", 1);
	return rc ? -E2BIG : 0;
}

int
sync_render_metrics(struct sync *s, struct buf *out)
{
	uint32_t n = journal_count(s->journal);
	int rc = buf_printf(out,
	    "# HELP odofs_peer_events_in_total Events applied from a peer.\n"
	    "# TYPE odofs_peer_events_in_total counter\n"
	    "# HELP odofs_peer_events_out_total Events sent to a peer.\n"
	    "# TYPE odofs_peer_events_out_total counter\n"
	    "# HELP odofs_peer_bytes_in_total Event bytes applied from a peer.\n"
	    "# TYPE odofs_peer_bytes_in_total counter\n"
	    "# HELP odofs_peer_bytes_out_total Event bytes sent to a peer.\n"
	    "# TYPE odofs_peer_bytes_out_total counter\n"
	    "# HELP odofs_peer_streams Devices a peer is subscribed to here.\n"
	    "# TYPE odofs_peer_streams gauge\n"
	    "# HELP odofs_peer_send_queued_bytes Bytes waiting to be sent to "
	    "a peer.\n"
	    "# TYPE odofs_peer_send_queued_bytes gauge\n"
	    "# HELP odofs_peer_link_bytes_per_second What the link to a peer "
	    "carried while bulk data waited for it (0: not measured yet).\n"
	    "# TYPE odofs_peer_link_bytes_per_second gauge\n"
	    "# HELP odofs_peer_frame_bytes Bytes of a bulk frame to a peer "
	    "(sized to the link).\n"
	    "# TYPE odofs_peer_frame_bytes gauge\n"
	    "# HELP odofs_peer_wire_bytes_in_total Bytes of every frame "
	    "received from a peer on its current connection (TLS payload).\n"
	    "# TYPE odofs_peer_wire_bytes_in_total counter\n"
	    "# HELP odofs_peer_wire_bytes_out_total Bytes of every frame sent "
	    "to a peer on its current connection.\n"
	    "# TYPE odofs_peer_wire_bytes_out_total counter\n"
	    "# HELP odofs_events_applied_total Events applied from upstreams.\n"
	    "# TYPE odofs_events_applied_total counter\n"
	    "odofs_events_applied_total %llu\n"
	    "# HELP odofs_event_frames_discarded_total Event frames of no "
	    "current subscription (old or not from the upstream).\n"
	    "# TYPE odofs_event_frames_discarded_total counter\n"
	    "odofs_event_frames_discarded_total %llu\n"
	    "# HELP odofs_catalogue_entries_received_total Catalogue entries "
	    "received from peers.\n"
	    "# TYPE odofs_catalogue_entries_received_total counter\n"
	    "odofs_catalogue_entries_received_total %llu\n"
	    "# HELP odofs_subscriptions_total Subscriptions started (the first "
	    "of each device and every switch of upstream).\n"
	    "# TYPE odofs_subscriptions_total counter\n"
	    "odofs_subscriptions_total %llu\n"
	    "# HELP odofs_upstream_evaluations_total Passes that chose the "
	    "upstream of every device again.\n"
	    "# TYPE odofs_upstream_evaluations_total counter\n"
	    "odofs_upstream_evaluations_total %llu\n",
	    (unsigned long long)atomic_load(&s->applied),
	    (unsigned long long)atomic_load(&s->discarded),
	    (unsigned long long)atomic_load(&s->cat_in),
	    (unsigned long long)atomic_load(&s->subscribed),
	    (unsigned long long)atomic_load(&s->evaluations));

	pthread_mutex_lock(&s->view_lock);
	for (size_t i = 0; i < s->ncounters && rc == 0; i++) {
		const struct peer_counters *c = &s->counters[i];

		rc |= buf_printf(out,
		    "odofs_peer_events_in_total{peer=\"%s\"} %llu\n"
		    "odofs_peer_events_out_total{peer=\"%s\"} %llu\n"
		    "odofs_peer_bytes_in_total{peer=\"%s\"} %llu\n"
		    "odofs_peer_bytes_out_total{peer=\"%s\"} %llu\n"
		    "odofs_peer_streams{peer=\"%s\"} %zu\n"
		    "odofs_peer_send_queued_bytes{peer=\"%s\"} %zu\n"
		    "odofs_peer_link_bytes_per_second{peer=\"%s\"} %llu\n"
		    "odofs_peer_frame_bytes{peer=\"%s\"} %zu\n"
		    "odofs_peer_wire_bytes_in_total{peer=\"%s\"} %llu\n"
		    "odofs_peer_wire_bytes_out_total{peer=\"%s\"} %llu\n",
		    c->id, (unsigned long long)c->events_in,
		    c->id, (unsigned long long)c->events_out,
		    c->id, (unsigned long long)c->bytes_in,
		    c->id, (unsigned long long)c->bytes_out, c->id, c->serves,
		    c->id, c->queued, c->id, (unsigned long long)c->rate,
		    c->id, c->budget, c->id, (unsigned long long)c->wire_in,
		    c->id, (unsigned long long)c->wire_out);
	}
	pthread_mutex_unlock(&s->view_lock);
	rc |= buf_printf(out,
	    "# HELP odofs_device_lag Revisions the upstream is ahead of us.\n"
	    "# TYPE odofs_device_lag gauge\n"
	    "# HELP odofs_device_head Last revision held.\n"
	    "# TYPE odofs_device_head gauge\n");
	for (uint32_t i = 0; i < n && rc == 0; i++) {
		struct journal_repl r;
		uint64_t head = journal_head(s->journal, i);
		size_t len;
		const char *id = journal_id(s->journal, i, &len);

		journal_repl_get(s->journal, i, &r);
		rc |= buf_printf(out, "odofs_device_head{device=\"%s\"} %llu\n",
		    id, (unsigned long long)head);
		if (!journal_is_local(s->journal, i))
			rc |= buf_printf(out,
			    "odofs_device_lag{device=\"%s\"} %llu\n", id,
			    (unsigned long long)(r.upstream_head > head ?
			    r.upstream_head - head : 0));
	}
	return rc ? -E2BIG : 0;
}

bool
sync_streaming(struct sync *s)
{
	return atomic_load(&s->streams) > 0;
}
