/*
 * sync_impl: what the replication modules share (private to net/sync*.c,
 * catalogue.c, upstream.c, serve.c; the rest of odofs sees sync.h).
 *
 *  - sync.c       the state, peers coming and going, the tick, frames to
 *                 their handlers (a table by type), what .status and
 *                 .metrics show;
 *  - catalogue.c  catalogues: the hash of a peer's entries, what we send
 *                 (whole, then quiet deltas), what we receive, devices new
 *                 to us and conflicts;
 *  - upstream.c   following: choosing the upstream of each device we
 *                 replicate, subscribing, stalls, and writing what
 *                 arrives (through the job thread, jobs.h);
 *  - serve.c      serving the peers that follow us: snapshot, catch-up,
 *                 live, one frame at a time sized to the link;
 *  - acks.c       acknowledgements both ways: a replica's grouped syncs
 *                 and ACKs to its upstream, an upstream's holders table
 *                 (core's holders.h), WANTs passed downstream.
 *
 * State, all owned by the net thread:
 *  - per active peer (struct sync_peer): its catalogue (a hash from device
 *    id to the last entry it sent), the streams we serve it (one per device
 *    it subscribed to: a cursor over our store, and a snapshot in flight),
 *    the journal clocks up to which it has our catalogue, its link's
 *    measure, and counters;
 *  - per device of ours (struct follow, indexed like the journal): whom we
 *    follow it from, the subscription number, when it last progressed, a
 *    peer to avoid after a stall or a refusal, and a snapshot being
 *    received.
 * Memory grows with devices and peers only: a stream is a cursor, events
 * are read from the store into one reused buffer, one bulk frame at a time
 * is queued to a peer, and what a peer sends waits to be written up to
 * SYNC_APPLY_MAX (then it is not read from).
 *
 * The catalogues are also read by FUSE threads (sync_known), so they are
 * changed under cat_lock; the conflicts and the per-peer counters shown in
 * .status and .metrics are published under view_lock.
 */
#ifndef ODOFS_SYNC_IMPL_H
#define ODOFS_SYNC_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "buf.h"
#include "holders.h"
#include "jobs.h"
#include "journal.h"
#include "sync.h"
#include "wire.h"

#define SYNC_BATCH		(1u << 20)	/* bytes of events per frame, most */
#define SYNC_FRAME_MIN		(4u << 10)	/* ... and least, a slow link's */
#define SYNC_FRAME_MS		250		/* a frame's time on the link */
#define SYNC_FRAME_START	(16u << 10)	/* before the link is measured */
#define SYNC_AVOID_MS		60000		/* how long a refusal is avoided */
#define SYNC_STORE_RETRY_MS	2000		/* our store failed a write */
#define SYNC_MAX_CONFLICTS	256
#define SYNC_SETTLE_MS		1000		/* a new id waits for every epoch */
#define SYNC_EVENT_MAX		JOURNAL_EVENT_MAX
#define SYNC_RESERVE		(1u << 20)	/* send queue kept for control */
#define SYNC_CAT_PEER_MAX	JOURNAL_MAX_DEVICES /* entries from one peer */
#define SYNC_SANE		(1ull << 62)	/* revisions, offsets below it */
#define SYNC_HOPS_MAX		32		/* a longer chain: no path */
#define SYNC_APPLY_MAX		(8u << 20)	/* received, not yet written, a peer */
#define SYNC_APPLY_ALL		(32u << 20)	/* ... all peers, gone ones too */
#define SYNC_WANTS_MAX		4096		/* fsyncs waiting, not yet sent */
#define SYNC_WANT_MS		5000		/* ACKs at once after a WANT */

/* Device indexes, each at most once (a flag per device says so). */
struct idx_list {
	uint32_t *v;
	size_t n, cap;
};

struct want {
	uint32_t idx;
	uint64_t rev;
};

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
	bool snapping;			/* a serve of it sends a snapshot */
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
	uint64_t behind_ms;		/* since a holder is ahead; 0: none */
	uint8_t hops;			/* ours, while up != NULL */
	char avoid[WIRE_ID_MAX + 1];	/* a peer that stalled or refused */
	uint64_t avoid_until_ms;
	struct snap_rx *rx;
	/* acknowledgements (acks.c) */
	uint64_t durable;		/* our head on stable storage */
	uint64_t want;			/* wanted durable by a source's fsync */
	uint64_t want_until_ms;		/* ... ACKs go at once till then */
	uint64_t ack_since;		/* holders' changes the upstream has */
	bool unsynced;			/* in sync.unsynced */
	bool ack_due;			/* in sync.ack_due */
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
	size_t applying;		/* bytes posted to it, every peer */
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
	/* acknowledgements (acks.c) */
	struct holders *holders;
	struct loop_timer *ack_timer;
	uint64_t ack_timer_at;		/* when it fires, while armed */
	uint64_t ack_idle_ms;		/* the next flush of every ACK due */
	struct idx_list unsynced;	/* applied, not yet synced */
	struct idx_list ack_due;	/* heads moved: acknowledge upstream */
	bool syncing;			/* a sync job is posted */
	bool sync_again;		/* ... and another is wanted at once */
	bool sync_failing;		/* the last sync failed: retry slowly */
	bool saving;			/* a holders save job is posted */
	struct wire_ack *ackbuf;	/* reused, encoding and decoding */
	struct holder_ack *holdbuf;	/* WIRE_ACK_MAX, reused */
	_Atomic uint64_t ack_bytes;	/* ACK frames sent, bytes */
	pthread_mutex_t want_lock;	/* protects wants (any thread posts) */
	struct want *wants;
	size_t nwants, capwants;
	struct cat seen;		/* new ids: created_ns is when first seen */
	struct cat creating;		/* replicas the job thread is making */
	unsigned ncreating;
	bool unsettled;			/* some new id waits in seen */

	pthread_mutex_t view_lock;	/* protects what follows */
	struct conflict *conflicts;
	size_t nconflicts;
	struct peer_counters *counters;
	size_t ncounters;
};

/* sync.c */
bool sync_selected(const struct sync *s, const char *dev);
void sync_send(struct sync_peer *sp);
void sync_peer_free(struct sync_peer *sp);

/* catalogue.c */
struct wire_cat_entry *cat_find(const struct cat *c, const char *dev);
void cat_clear(struct cat *c);
void cat_free(struct cat *c);
void sync_catalogue_pump(struct sync *s, struct sync_peer *sp);
void sync_catalogue_start(struct sync *s, struct sync_peer *sp, bool full);
void sync_consider(struct sync *s, struct sync_peer *sp,
    const struct wire_cat_entry *e);
int sync_on_catalogue(struct sync *s, struct sync_peer *sp, const uint8_t *p,
    size_t n);

/* upstream.c */
struct follow *sync_follow(struct sync *s, uint32_t idx);
void sync_unsubscribe(struct sync *s, uint32_t idx, struct follow *f);
void sync_follow_drop(struct sync *s, uint32_t idx, struct follow *f);
bool sync_same(struct sync *s, uint32_t idx, const struct wire_cat_entry *e);
void sync_evaluate_device(struct sync *s, uint32_t idx);
void sync_evaluate_all(struct sync *s);
int sync_on_events(struct sync *s, struct sync_peer *sp, const uint8_t *p,
    size_t n);
int sync_on_snapshot(struct sync *s, struct sync_peer *sp, const uint8_t *p,
    size_t n);
int sync_on_reject(struct sync *s, struct sync_peer *sp, const uint8_t *p,
    size_t n);
void sync_follow_tick(struct sync *s, uint64_t now);

/* serve.c */
struct serve *sync_serve_find(struct sync_peer *sp, uint32_t idx);
void sync_serve_drop(struct sync_peer *sp, struct serve *sv);
void sync_pump(struct sync *s);
int sync_on_subscribe(struct sync *s, struct sync_peer *sp, const uint8_t *p,
    size_t n);
int sync_on_unsubscribe(struct sync *s, struct sync_peer *sp, const uint8_t *p,
    size_t n);
void sync_link(struct sync_peer *sp, uint64_t now);

/* acks.c */
int sync_acks_open(struct sync *s, struct loop *l, struct err *e);
void sync_acks_close(struct sync *s);
/* The job thread wrote to idx (events, a snapshot): sync, then ACK. */
void sync_acks_applied(struct sync *s, uint32_t idx, struct follow *f);
/* f follows a new upstream: it hears about every holder behind us. */
void sync_acks_upstream_changed(struct sync *s, uint32_t idx,
    struct follow *f);
/* Every tick: save what the holders said. */
void sync_acks_tick(struct sync *s);
int sync_on_ack(struct sync *s, struct sync_peer *sp, const uint8_t *p,
    size_t n);
int sync_on_want(struct sync *s, struct sync_peer *sp, const uint8_t *p,
    size_t n);

#endif
