/*
 * acks: SPEC §8.10, acknowledgements.  Both ends of a subscription:
 *
 *  - As a replica: what the job thread applied is made durable in groups,
 *    by one store sync for every device (a job, after the writes it
 *    covers), at least every durability.ack_sync_ms while something is
 *    unsynced, and at once when the upstream said a source's fsync waits
 *    (WANT).  Then each device whose heads moved is acknowledged to its
 *    upstream: our entry (applied head, durable head, our clock) and the
 *    entries of the holders behind us that changed since the last ACK to
 *    that upstream (all of them to a new upstream).  So a relay passes on
 *    what its followers told it, aggregated: one entry per holder, however
 *    often it acknowledged.  ACKs go at once for SYNC_WANT_MS after a
 *    WANT of the device (an fsync waits for them); otherwise at most every
 *    sync.evaluate_ms, all those due together, so that acknowledging costs
 *    the wire a small part of the events it covers.
 *  - As an upstream: an ACK's entries go into the holders table (core's
 *    holders.h), which the source's fsync quorum, compaction for
 *    snapshot.retain_for and info read; a relay then owes its own upstream
 *    an ACK.  A WANT goes on to the peers that follow the device from us.
 *
 * Devices that need a sync or an ACK are kept in two lists (each device at
 * most once, flagged in struct follow), so a pass costs what changed, not
 * the number of devices.  Everything here runs in the net thread but the
 * sync job's run and sync_want_post().
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "loop.h"

#include "sync_impl.h"

/* A sync job: the heads it makes durable. */
struct ack_sync {
	struct sync *s;
	size_t n;
	uint32_t *idx;
	uint64_t *head;
	int rc;
	struct err e;
};

/* Adds idx to a list of devices (each at most once: *flag). */
static void
acks_list_add(struct idx_list *l, bool *flag, uint32_t idx)
{
	if (*flag)
		return;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		uint32_t *v = realloc(l->v, cap * sizeof(*v));

		if (v == NULL)
			return;		/* the next change adds it again */
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = idx;
	*flag = true;
}

/* Runs the timer in delay ms, unless it is due sooner already. */
static void
acks_arm_in(struct sync *s, uint64_t delay)
{
	uint64_t now = loop_now_ms();

	if (loop_timer_armed(s->ack_timer) && s->ack_timer_at <= now + delay)
		return;
	loop_timer_arm(s->ack_timer, delay);
	s->ack_timer_at = now + delay;
}

/* Runs the timer now, or within durability.ack_sync_ms. */
static void
acks_arm(struct sync *s, bool now)
{
	acks_arm_in(s, now ? 0 : s->cfg->ack_sync_ms);
}

/*
 * A sync is owed: at once when an fsync waits for it (after the one in
 * flight, if any), else within durability.ack_sync_ms.
 */
static void
acks_sync_soon(struct sync *s, bool now)
{
	if (now && s->syncing)
		s->sync_again = true;	/* acks_sync_done arms it */
	else if (!s->sync_failing)
		acks_arm(s, now);
}

void
sync_acks_applied(struct sync *s, uint32_t idx, struct follow *f)
{
	if (s->cfg->sync) {
		/* every write was synchronous: durable already */
		f->durable = journal_head(s->journal, idx);
		acks_list_add(&s->ack_due, &f->ack_due, idx);
		acks_arm(s, true);
		return;
	}
	acks_list_add(&s->unsynced, &f->unsynced, idx);
	acks_sync_soon(s, f->want > f->durable &&
	    journal_head(s->journal, idx) >= f->want);
}

static void
acks_sync_run(void *arg)
{
	struct ack_sync *a = arg;

	/* the writes posted before this job are in the store: these heads */
	for (size_t i = 0; i < a->n; i++)
		a->head[i] = journal_head(a->s->journal, a->idx[i]);
	err_clear(&a->e);
	a->rc = journal_sync(a->s->journal, &a->e);
}

/* Puts devices back on the unsynced list (a sync failed or was not made). */
static void
acks_requeue(struct sync *s, const uint32_t *idx, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct follow *f = sync_follow(s, idx[i]);

		if (f != NULL)
			acks_list_add(&s->unsynced, &f->unsynced, idx[i]);
	}
}

static void
acks_sync_done(void *arg)
{
	struct ack_sync *a = arg;
	struct sync *s = a->s;

	s->syncing = false;
	if (a->rc < 0) {
		/* they stay unsynced: tried again after a pause */
		if (!s->sync_failing)
			log_warnx("acknowledgements: store sync failed, tried "
			    "again every %d ms: %s", SYNC_STORE_RETRY_MS,
			    a->e.msg);
		s->sync_failing = true;
		acks_requeue(s, a->idx, a->n);
	} else {
		if (s->sync_failing)
			log_info("acknowledgements: store syncs again");
		s->sync_failing = false;
		for (size_t i = 0; i < a->n; i++) {
			struct follow *f = sync_follow(s, a->idx[i]);

			if (f == NULL || a->head[i] <= f->durable)
				continue;
			f->durable = a->head[i];
			acks_list_add(&s->ack_due, &f->ack_due, a->idx[i]);
		}
	}
	free(a->idx);
	free(a->head);
	free(a);
	if (s->sync_failing)
		acks_arm_in(s, SYNC_STORE_RETRY_MS);
	else
		acks_arm(s, s->ack_due.n > 0 || s->sync_again);
	s->sync_again = false;
}

/* Hands the unsynced devices to a sync job. */
static void
acks_sync_post(struct sync *s)
{
	struct ack_sync *a;

	if (s->syncing || s->unsynced.n == 0)
		return;
	if ((a = calloc(1, sizeof(*a))) == NULL)
		return;
	a->s = s;
	a->n = s->unsynced.n;
	a->idx = s->unsynced.v;
	if ((a->head = calloc(a->n, sizeof(*a->head))) == NULL) {
		free(a);
		return;
	}
	for (size_t i = 0; i < a->n; i++) {
		struct follow *f = sync_follow(s, a->idx[i]);

		if (f != NULL)
			f->unsynced = false;
	}
	memset(&s->unsynced, 0, sizeof(s->unsynced));
	if (jobs_post(s->jobs, acks_sync_run, acks_sync_done, a) < 0) {
		acks_requeue(s, a->idx, a->n);
		free(a->idx);
		free(a->head);
		free(a);
		return;
	}
	s->syncing = true;
}

/*
 * Sends idx's ACK to its upstream: our entry, then the entries that changed
 * behind us since the last one (in as many frames as they take).
 */
static void
acks_send(struct sync *s, uint32_t idx, struct follow *f)
{
	struct wire_ack *m = s->ackbuf;
	struct holder_ack *h = s->holdbuf;
	uint64_t head = journal_head(s->journal, idx);
	size_t n, room;

	if (f->up == NULL)
		return;
	memset(m, 0, offsetof(struct wire_ack, e));
	snprintf(m->device, sizeof(m->device), "%s",
	    journal_id(s->journal, idx, &(size_t){0}));
	m->epoch = journal_epoch(s->journal, idx);
	snprintf(m->e[0].node, sizeof(m->e[0].node), "%s", s->cfg->node_id);
	m->e[0].head = head;
	m->e[0].durable = f->durable < head ? f->durable : head;
	m->e[0].at_ms = holders_now_ms();
	m->count = 1;
	do {
		room = WIRE_ACK_MAX - m->count;
		n = holders_get(s->holders, idx, h, room, &f->ack_since);
		for (size_t i = 0; i < n; i++) {
			struct wire_ack_entry *x = &m->e[m->count++];

			snprintf(x->node, sizeof(x->node), "%s", h[i].peer);
			x->head = h[i].head;
			x->durable = h[i].durable;
			x->at_ms = h[i].at_ms;
		}
		if (m->count == 0)
			break;
		buf_reset(&s->frame);
		if (wire_ack_encode(&s->frame, m) == 0) {
			s->ack_bytes += s->frame.len;
			sync_send(f->up);
		}
		m->count = 0;
	} while (n == room);
}

/*
 * The timer: a sync job for what is unsynced; ACKs for what moved, those
 * of wanted devices at once, the others every sync.evaluate_ms.
 */
static void
acks_timer(void *arg)
{
	struct sync *s = arg;
	struct idx_list due = s->ack_due;
	uint64_t now = loop_now_ms();
	bool idle = now >= s->ack_idle_ms;

	acks_sync_post(s);
	memset(&s->ack_due, 0, sizeof(s->ack_due));
	for (size_t i = 0; i < due.n; i++) {
		struct follow *f = sync_follow(s, due.v[i]);

		if (f == NULL)
			continue;
		f->ack_due = false;
		if (idle || f->want_until_ms > now)
			acks_send(s, due.v[i], f);
		else
			acks_list_add(&s->ack_due, &f->ack_due, due.v[i]);
	}
	free(due.v);
	if (idle)
		s->ack_idle_ms = now + s->cfg->evaluate_ms;
	/* a sync in flight arms the timer when it is done */
	if (s->unsynced.n > 0 && !s->syncing)
		acks_arm_in(s, s->sync_failing ? SYNC_STORE_RETRY_MS :
		    s->cfg->ack_sync_ms);
	if (s->ack_due.n > 0)
		acks_arm_in(s, s->ack_idle_ms - now);
}

int
sync_acks_open(struct sync *s, struct loop *l, struct err *e)
{
	if ((s->ackbuf = calloc(1, sizeof(*s->ackbuf))) == NULL ||
	    (s->holdbuf = calloc(WIRE_ACK_MAX, sizeof(*s->holdbuf))) == NULL)
		return err_set(e, -ENOMEM, "out of memory");
	return loop_timer_add(&s->ack_timer, l, acks_timer, s, e);
}

void
sync_acks_close(struct sync *s)
{
	loop_timer_del(s->ack_timer);
	free(s->unsynced.v);
	free(s->ack_due.v);
	free(s->wants);
	free(s->ackbuf);
	free(s->holdbuf);
}

void
sync_acks_upstream_changed(struct sync *s, uint32_t idx, struct follow *f)
{
	/* a new upstream hears about every holder behind us */
	f->ack_since = 0;
	acks_list_add(&s->ack_due, &f->ack_due, idx);
	acks_arm(s, false);
}

int
sync_on_ack(struct sync *s, struct sync_peer *sp, const uint8_t *p, size_t n)
{
	struct wire_ack *m = s->ackbuf;
	bool changed = false;
	struct follow *f;
	uint32_t idx;

	(void)sp;
	if (wire_ack_decode(p, n, m) < 0)
		return -EPROTO;
	if (journal_lookup(s->journal, m->device, strlen(m->device), &idx) < 0 ||
	    m->epoch != journal_epoch(s->journal, idx))
		return 0;	/* not ours, or another journal: nothing to do */
	for (size_t i = 0; i < m->count; i++) {
		struct holder_ack a;

		if (strcmp(m->e[i].node, s->cfg->node_id) == 0)
			continue;
		memset(&a, 0, sizeof(a));
		snprintf(a.peer, sizeof(a.peer), "%s", m->e[i].node);
		a.epoch = m->epoch;
		a.head = m->e[i].head;
		a.durable = m->e[i].durable;
		a.at_ms = m->e[i].at_ms;
		changed |= holders_ack(s->holders, idx, &a);
	}
	/* a relay owes its upstream what changed */
	if (changed && !journal_is_local(s->journal, idx) &&
	    (f = sync_follow(s, idx)) != NULL && f->up != NULL) {
		acks_list_add(&s->ack_due, &f->ack_due, idx);
		acks_arm(s, f->want_until_ms > loop_now_ms());
	}
	return 0;
}

/* Tells the peers that follow idx from us that rev is wanted durable. */
static void
acks_want_send(struct sync *s, uint32_t idx, uint64_t rev)
{
	struct wire_want m;

	memset(&m, 0, sizeof(m));
	snprintf(m.device, sizeof(m.device), "%s",
	    journal_id(s->journal, idx, &(size_t){0}));
	m.epoch = journal_epoch(s->journal, idx);
	m.rev = rev;
	buf_reset(&s->frame);
	if (wire_want_encode(&s->frame, &m) < 0)
		return;
	for (struct sync_peer *sp = s->peers; sp != NULL; sp = sp->next)
		if (sync_serve_find(sp, idx) != NULL)
			sync_send(sp);
}

/* rev of idx is wanted durable: sync as soon as we have it, pass it on. */
static void
acks_want(struct sync *s, uint32_t idx, uint64_t rev)
{
	struct follow *f = sync_follow(s, idx);

	acks_want_send(s, idx, rev);
	if (f == NULL || journal_is_local(s->journal, idx))
		return;
	f->want_until_ms = loop_now_ms() + SYNC_WANT_MS;
	if (rev <= f->want)
		return;
	f->want = rev;
	if (f->durable >= rev) {
		/* durable already: our upstream may not have heard yet */
		acks_list_add(&s->ack_due, &f->ack_due, idx);
		acks_arm(s, true);
	} else if (journal_head(s->journal, idx) >= rev) {
		acks_list_add(&s->unsynced, &f->unsynced, idx);
		acks_sync_soon(s, true);
	}
}

int
sync_on_want(struct sync *s, struct sync_peer *sp, const uint8_t *p,
    size_t n)
{
	struct wire_want m;
	uint32_t idx;

	(void)sp;
	if (wire_want_decode(p, n, &m) < 0)
		return -EPROTO;
	if (journal_lookup(s->journal, m.device, strlen(m.device), &idx) < 0 ||
	    m.epoch != journal_epoch(s->journal, idx))
		return 0;
	acks_want(s, idx, m.rev);
	return 0;
}

bool
sync_want_post(struct sync *s, uint32_t idx, uint64_t rev)
{
	bool first;

	pthread_mutex_lock(&s->want_lock);
	first = s->nwants == 0;
	if (s->nwants < SYNC_WANTS_MAX) {
		if (s->nwants == s->capwants) {
			size_t cap = s->capwants ? s->capwants * 2 : 16;
			struct want *v = realloc(s->wants, cap * sizeof(*v));

			if (v != NULL) {
				s->wants = v;
				s->capwants = cap;
			}
		}
		if (s->nwants < s->capwants) {
			s->wants[s->nwants].idx = idx;
			s->wants[s->nwants].rev = rev;
			s->nwants++;
		}
	}
	pthread_mutex_unlock(&s->want_lock);
	return first;
}

void
sync_wants_drain(struct sync *s)
{
	struct want w[64];
	size_t n;

	do {
		pthread_mutex_lock(&s->want_lock);
		n = s->nwants < 64 ? s->nwants : 64;
		memcpy(w, s->wants + s->nwants - n, n * sizeof(*w));
		s->nwants -= n;
		pthread_mutex_unlock(&s->want_lock);
		for (size_t i = 0; i < n; i++)
			acks_want(s, w[i].idx, w[i].rev);
	} while (n == 64);
}

static void
acks_save_run(void *arg)
{
	struct sync *s = arg;
	struct err e;

	if (holders_save(s->holders, &e) < 0)
		log_warnx("acknowledgements not saved: %s", e.msg);
}

static void
acks_save_done(void *arg)
{
	struct sync *s = arg;

	s->saving = false;
}

void
sync_acks_tick(struct sync *s)
{
	/* what the holders said is saved by the job thread, in order */
	if (!s->saving && holders_dirty(s->holders) &&
	    jobs_post(s->jobs, acks_save_run, acks_save_done, s) == 0)
		s->saving = true;
}
