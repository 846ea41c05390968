/*
 * sync: journal synchronisation over the peer connections (SPEC §8).
 *
 * It runs in the net thread, called by peering.c: a peer that becomes
 * active is added (and receives our whole catalogue), its replication
 * frames are handed here, and it is removed when its connection ends.
 *
 *  - Catalogues: every device with epoch, source, first, head, snapshot,
 *    our role, upstream and hops to the source; whole on activation, then
 *    what changed (appends only now and then, never to a peer that follows
 *    the device from us: its stream carries our head).
 *  - Following: for each device this node does not source and that
 *    sync.devices selects, one upstream: loop-free, closest to the source,
 *    and kept while it makes progress (SPEC §8.2); subscribed from our
 *    head + 1; what arrives is written by a job thread (jobs.h), only
 *    revision head + 1.
 *  - Serving: a snapshot first when the subscriber is behind our first
 *    retained event, then events from the store, then live, one frame at a
 *    time sized to the link: nothing is buffered per subscriber beyond it.
 *  - Conflicts (§8.9): an id with another epoch, or another source, is
 *    never merged; it is logged and shown, and a node new to the id follows
 *    the oldest creation time, then the smaller source id.
 *
 * The modules behind this header, and what they share: sync_impl.h.
 *
 * Threads: everything in the net thread, except sync_known(),
 * sync_render_json() and sync_render_metrics(), which any thread may call.
 */
#ifndef ODOFS_SYNC_H
#define ODOFS_SYNC_H

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "config.h"
#include "conn.h"
#include "err.h"
#include "holders.h"
#include "journal.h"
#include "jobs.h"
#include "loop.h"

struct sync;
struct sync_peer;

/*
 * Opens the replication state of the net thread that runs l; its writes to
 * the store go to a job thread of its own (jobs.h).
 */
int sync_open(struct sync **out, const struct config *cfg, struct journal *j,
    struct holders *h, struct loop *l, struct err *e);
void sync_close(struct sync *s);

/*
 * Whether sync stopped reading sp's connection until its writes drain: it
 * is not silent then, we are not listening.
 */
bool sync_peer_paused(const struct sync_peer *sp);

/* The job thread (jobs.h), for the net thread's other store writes. */
struct jobs *sync_jobs(struct sync *s);

/* A peer became active on c; sends it our catalogue. */
struct sync_peer *sync_peer_add(struct sync *s, const char *id,
    struct conn *c);
/* The peer's connection is ending: forget its catalogue and streams. */
void sync_peer_del(struct sync *s, struct sync_peer *sp);
/*
 * A replication frame (types 16..63) from an active peer.  Returns 0, or
 * -EPROTO with why set (the caller closes the connection).
 */
int sync_frame(struct sync *s, struct sync_peer *sp, uint8_t type,
    const uint8_t *payload, size_t len, char *why, size_t whysz);
/* The peer's send queue drained: stream more. */
void sync_writable(struct sync *s, struct sync_peer *sp);
/* Something was committed: push to subscribers. */
void sync_pump(struct sync *s);
/* Every peering tick: catalogue updates, evaluation, stalls. */
void sync_tick(struct sync *s);

/*
 * A source's fsync waits for revision rev of idx to be durable on its
 * replicas: the peers that follow idx are told (WANT).  Any thread; returns
 * true when the caller must wake the net thread (the first since the last
 * sync_wants_drain()), which then calls sync_wants_drain().  Beyond
 * SYNC_WANTS_MAX waiting, the replicas' own cadence serves.
 */
bool sync_want_post(struct sync *s, uint32_t idx, uint64_t rev);
void sync_wants_drain(struct sync *s);

/* Whether any peer is subscribed here (so commits are worth a wake-up). */
bool sync_streaming(struct sync *s);
/* Whether a connected peer's catalogue has device id (mkdir's EEXIST). */
bool sync_known(struct sync *s, const char *id, size_t len);
/* "conflicts" and "subscriptions" members of .status, as JSON. */
int sync_render_json(struct sync *s, struct buf *out);
/* Prometheus lines: per-peer and per-device replication. */
int sync_render_metrics(struct sync *s, struct buf *out);

#endif
