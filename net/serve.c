/*
 * serve: SPEC §8.3 and §8.6.  Streams to the peers that follow us: the
 * snapshot first when a subscriber is behind our first retained event,
 * then events from the store, then live, one bulk frame at a time, sized
 * to what the link carries; devices take turns.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "loop.h"

#include "sync_impl.h"

struct serve *
sync_serve_find(struct sync_peer *sp, uint32_t idx)
{
	for (size_t i = 0; i < sp->nserves; i++)
		if (sp->serves[i].idx == idx)
			return &sp->serves[i];
	return NULL;
}

/* Ends sv's snapshot in flight, if any: another may start. */
static void
sync_serve_snap_end(struct sync_peer *sp, struct serve *sv)
{
	if (sv->snap == NULL)
		return;
	journal_snap_close(sv->snap);
	sv->snap = NULL;
	sp->snapping = false;
}

void
sync_serve_drop(struct sync_peer *sp, struct serve *sv)
{
	sync_serve_snap_end(sp, sv);
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
sync_serve_snapshot(struct sync *s, struct sync_peer *sp, struct serve *sv,
    uint8_t mode)
{
	struct err e;

	if (journal_snap_open(s->journal, sv->idx, &sv->snap, &e) < 0)
		return -ENOMEM;
	sp->snapping = true;
	sv->snap_mode = mode;
	sv->snap_at = 0;
	sv->snap_offset = 0;
	if (mode == WIRE_SNAP_RESET) {
		uint64_t rev = journal_snap_rev(sv->snap);

		sv->snap_offset = journal_rev_offset(s->journal, sv->idx, rev + 1);
		if (sv->snap_offset == UINT64_MAX ||
		    rev + 1 < journal_first(s->journal, sv->idx)) {
			sync_serve_snap_end(sp, sv);
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
		if (sp->snapping)
			return false;	/* after the snapshot in flight */
		/* behind our first retained event: the snapshot first */
		if (sync_serve_snapshot(s, sp, sv, WIRE_SNAP_RESET) < 0) {
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
				sync_serve_snap_end(sp, sv);
				/* the subscriber asks again */
				sync_reject(s, sp, dev, sv->sub, "snapshot "
				    "could not be read");
				sv->waiting = true;
				sv->next = UINT64_MAX;
				return true;
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
			sync_serve_snap_end(sp, sv);
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
		if (!sp->snapping && in.snapshot_rev > sv->snap_sent &&
		    in.snapshot_rev < sv->next &&
		    sync_serve_snapshot(s, sp, sv, WIRE_SNAP_INSTALL) == 0)
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

		if (conn_send_space(sp->conn) == 0)
			return;		/* closing: nothing more goes out */
		if (conn_send_queued(sp->conn) > 0) {
			sp->limited = true;
			conn_want_writable(sp->conn, 0);
			return;
		}
		/*
		 * Devices take turns, a frame each, a snapshot's chunks too;
		 * one snapshot at a time per peer (sp->snapping), so that a
		 * subscriber assembles one, not one per device it catches up.
		 */
		if (sp->rr >= sp->nserves)
			sp->rr = 0;
		sv = &sp->serves[sp->rr++];
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

int
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
		sync_serve_snap_end(sp, sv);
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
	/*
	 * A subscriber holds the device: known as a holder from now on, with
	 * what it applied, so compaction for snapshot.retain_for keeps what
	 * it has not acknowledged durable even before its first ACK.
	 */
	{
		struct holder_ack a;

		memset(&a, 0, sizeof(a));
		snprintf(a.peer, sizeof(a.peer), "%s", sp->id);
		a.epoch = m.epoch;
		a.head = m.from - 1;
		holders_ack(s->holders, idx, &a);
	}
	{
		/* what snapshot it has: its catalogue says */
		const struct wire_cat_entry *ce = cat_find(&sp->cat, m.device);

		sv->snap_sent = ce != NULL && ce->epoch == m.epoch ? ce->snapshot : 0;
	}
	sync_serve_pump(s, sp);
	return 0;
}

int
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

/*
 * Measures sp's link once a tick.  While the pump waited for the link,
 * what went into the socket is what the link carried (the socket holds
 * little: CONN_UNSENT_MAX), and a bulk frame is sized to SYNC_FRAME_MS of
 * it, so a 10 KB/s link carries a frame in a fraction of a second and a
 * fast one carries SYNC_BATCH.  Bytes of a bulk frame still being received
 * count as progress of what we follow from sp.
 */
void
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
