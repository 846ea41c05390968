/*
 * upstream: SPEC §8.2 and §8.7.  Whom each replicated device follows:
 * loop-free (a holder whose chain of upstreams leads back to us is never
 * followed; hop counts bound what we cannot see), closest to the source,
 * and stable (kept unless a holder is strictly closer, the upstream goes,
 * refuses, or stalls while a holder is ahead).  What arrives is checked
 * against the stream here and written by the job thread, in order.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "loop.h"

#include "sync_impl.h"

/* A holder of a device we might follow. */
struct cand {
	struct sync_peer *sp;		/* NULL: none */
	const struct wire_cat_entry *e;
	unsigned hops;
};

/* The follow entry of idx, growing the array to the journal's size. */
struct follow *
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

void
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
	sync_follow_drop(s, idx, f);
}

/* Follows no one any more (the upstream is not told: it may be gone). */
void
sync_follow_drop(struct sync *s, uint32_t idx, struct follow *f)
{
	f->up = NULL;
	if (f->rx != NULL) {
		buf_release(&f->rx->data);
		free(f->rx);
		f->rx = NULL;
	}
	f->hops = WIRE_HOPS_NONE;
	journal_repl_set(s->journal, idx, "", 0, WIRE_HOPS_NONE);
}

/* Records that f follows c (its hops, shown and advertised). */
static void
sync_follow_note(struct sync *s, uint32_t idx, struct follow *f,
    const struct cand *c)
{
	f->hops = c->hops + 1 >= SYNC_HOPS_MAX ? WIRE_HOPS_NONE :
	    (uint8_t)(c->hops + 1);
	journal_repl_set(s->journal, idx, c->sp->id, c->e->head > f->up_head ?
	    c->e->head : f->up_head, f->hops);
}

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
	sync_acks_upstream_changed(s, idx, f);
	log_info("device %s: following %s from revision %llu", m.device,
	    up->id, (unsigned long long)m.from);
}

/* Whether e (from a peer) is the same journal as our device idx. */
bool
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
void
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
		/*
		 * A holder with a path to the source gets what we lack in
		 * time (its head as we heard it can be old: catalogues send
		 * heads only now and then); one without must have more now.
		 */
		if (c.hops == WIRE_HOPS_NONE && e->head <= head)
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

void
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

/*
 * Reads again from the peers paused for their writes once those drained:
 * its own under half of SYNC_APPLY_MAX and everyone's (peers gone
 * included) under half of SYNC_APPLY_ALL.
 */
static void
sync_write_resume(struct sync *s)
{
	if (s->applying > SYNC_APPLY_ALL / 2)
		return;
	for (struct sync_peer *sp = s->peers; sp != NULL; sp = sp->next) {
		if (sp->paused && sp->applying <= SYNC_APPLY_MAX / 2) {
			sp->paused = false;
			conn_set_reading(sp->conn, true);
		}
	}
}

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
	s->applying -= w->len;
	sync_write_resume(s);
	if (w->rc == 0 && f != NULL)
		sync_acks_applied(s, w->idx, f);
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
		/*
		 * What the current subscription queued after it fails the
		 * same way; it subscribes again from what is held.  A failure
		 * of an older subscription changes nothing: the current one
		 * learns of a gap from its own writes.
		 */
		if (current && w->kind == WRITE_EVENTS)
			f->queued = journal_head(s->journal, w->idx);
		if (w->rc == -EPROTO && !sp->gone) {
			conn_close(sp->conn, "bad events from the peer");
		} else if (w->rc == -EFBIG && current) {
			/*
			 * Over JOURNAL_EVENT_MAX: every holder has the same
			 * event, so the device waits, and asks again after
			 * SYNC_AVOID_MS (a holder may have been wrong).
			 */
			sync_unsubscribe(s, w->idx, f);
			f->hold_until_ms = loop_now_ms() + SYNC_AVOID_MS;
		} else if ((w->rc == -ENOSPC || w->rc == -EDQUOT ||
		    w->rc == -EIO) && current) {
			/*
			 * Our store takes no writes (a full or failing disk)
			 * until it is reopened: asking again at once would
			 * only fetch the same events again and again.
			 */
			sync_unsubscribe(s, w->idx, f);
			f->hold_until_ms = loop_now_ms() + SYNC_STORE_RETRY_MS;
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
	s->applying += w->len;
	if (!sp->paused && (sp->applying > SYNC_APPLY_MAX ||
	    s->applying > SYNC_APPLY_ALL)) {
		sp->paused = true;
		conn_set_reading(sp->conn, false);
	}
	return true;
}

int
sync_on_events(struct sync *s, struct sync_peer *sp, const uint8_t *p,
    size_t n)
{
	struct wire_events m;
	struct write_job *w;
	struct follow *f;
	uint32_t idx;

	if (wire_events_decode(p, n, &m) < 0 || m.head >= SYNC_SANE)
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
	f->progress_ms = loop_now_ms();	/* received is progress */
	return 0;
}

int
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
		/* one snapshot at a time from a peer: its memory is bounded */
		for (size_t i = 0; i < s->nfollow; i++)
			if (s->follow[i].up == sp && s->follow[i].rx != NULL &&
			    &s->follow[i] != f)
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

int
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

/*
 * Once a tick: progress (a head that moved, or bulk bytes arriving from
 * the upstream), what info shows of the upstream, and stalls: no progress
 * for sync.stall_ms while a holder (the upstream or another) is ahead
 * moves the device to another holder.
 */
void
sync_follow_tick(struct sync *s, uint64_t now)
{
	for (size_t i = 0; i < s->nfollow; i++) {
		struct follow *f = &s->follow[i];
		const struct wire_cat_entry *e;
		const char *id;
		uint64_t head, ahead;

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
		/* what we hold, or have received and is being written */
		if (f->queued > head)
			head = f->queued;
		ahead = f->up_head;
		for (struct sync_peer *sp = s->peers; sp != NULL; sp = sp->next) {
			const struct wire_cat_entry *o = cat_find(&sp->cat, id);

			if (o != NULL && sync_same(s, (uint32_t)i, o) &&
			    o->head > ahead)
				ahead = o->head;
		}
		if (ahead <= head) {
			f->behind_ms = 0;
			continue;
		}
		/* no progress for stall_ms since we fell behind */
		if (f->behind_ms == 0)
			f->behind_ms = now;
		if (now - (f->progress_ms > f->behind_ms ? f->progress_ms :
		    f->behind_ms) < s->cfg->stall_ms)
			continue;
		log_warnx("device %s: no progress from %s for %llu ms while a "
		    "holder is %llu ahead; moving", id, f->up->id,
		    (unsigned long long)(now - f->progress_ms),
		    (unsigned long long)(ahead - head));
		snprintf(f->avoid, sizeof(f->avoid), "%s", f->up->id);
		f->avoid_until_ms = now + s->cfg->stall_ms * 4;
		f->behind_ms = 0;
		sync_unsubscribe(s, (uint32_t)i, f);
		sync_evaluate_device(s, (uint32_t)i);
	}
}
