/*
 * peering: the net thread (SPEC §7).  It owns the event loop, the TLS
 * context, the listening socket and every peer connection, and runs the
 * peer state machine:
 *
 *	connecting   an outgoing attempt (TCP, TLS, then HELLO both ways)
 *	incoming     an accepted connection, before its HELLO
 *	active       introduced; pinged when idle for heartbeat_ms, moved to
 *	             lifesupport when silent for three intervals
 *	lifesupport  failed or silent; redialled after peering.backoff_ms[n],
 *	             forgotten after the last step unless it is a seed
 *	purgatory    a connection to ourselves, or a second connection to an
 *	             id already active; closed with the reason, the entry
 *	             deleted after peering.purgatory_ms
 *
 * Of two connections between the same pair, the one dialled by the smaller
 * id is kept, so both ends choose the same one.  Discovery: the seeds
 * (every address a name resolves to, names being looked up by resolver
 * threads, resolve.h, so DNS delays neither the mount nor this thread),
 * peer exchange (PEERS frames listing the active peers' listen
 * addresses), and the peer history kept in the store (core/history.h)
 * and redialled at start.
 *
 * Threads: peering_open/start/stop/close from the composition root;
 * peering_render_* from any thread (they read a copy of the peer table
 * published under a mutex at each change).
 */
#ifndef ODOFS_PEERING_H
#define ODOFS_PEERING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "config.h"
#include "err.h"
#include "holders.h"
#include "journal.h"

struct peering;

/*
 * Loads the TLS identity (checking that the certificate's CN is the node
 * id) and prepares the loop; listen_fd (or -1) is the bound listening
 * socket, taken over.  Fails before anything runs, with e one line.
 */
int peering_open(struct peering **out, const struct config *cfg,
    struct journal *j, struct holders *h, int listen_fd, struct err *e);
/* Starts the net thread: seeds, history, listening. */
int peering_start(struct peering *p, struct err *e);
/*
 * Says BYE to every peer, closes the connections (each flushed for at
 * most CONN_LINGER_MS), and joins the thread.  Accepts NULL.
 */
void peering_stop(struct peering *p);
void peering_close(struct peering *p);

/*
 * A journal_notify_fn (any thread): something was committed, so the net
 * thread pushes it to subscribed peers.  p may be NULL.
 */
void peering_notify(void *p, uint32_t idx, uint64_t head);
/*
 * A source's fsync waits for revision rev of idx on stable storage at its
 * replicas: they are told to sync at once (SPEC §8.10).  Any thread; p may
 * be NULL.
 */
void peering_want_durable(struct peering *p, uint32_t idx, uint64_t rev);
/* Whether a connected peer's catalogue has device id.  Any thread. */
bool peering_known(struct peering *p, const char *id, size_t len);
/* The "conflicts" and "subscriptions" members of .status. */
int peering_render_sync(struct peering *p, struct buf *out);
/* Replication metrics, Prometheus lines. */
int peering_render_metrics(struct peering *p, struct buf *out);

/* The "peers" array of .status, as JSON. */
int peering_render_json(struct peering *p, struct buf *out);
/* .peers: a header and one line per peer. */
int peering_render_table(struct peering *p, struct buf *out);

#endif
