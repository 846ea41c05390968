/*
 * quorum: fsync() of a source's events with durability.replicas = K
 * (SPEC §8.10).  The request is answered 0 once K distinct peers hold
 * every event appended before it on stable storage, as their
 * acknowledgements tell (core/holders.h), or ETIMEDOUT after
 * durability.replica_timeout_ms; the local events stay either way.  A
 * waiting fsync holds no FUSE worker: the request is parked here and
 * answered by the thread that records the acknowledgement that completes
 * it (the net thread) or by this module's timer thread.
 *
 * Exactly one reply per request: a waiter is answered by whoever takes it
 * out of the list under the lock.  An interrupted fsync (a signal to the
 * process in it) is answered EINTR at once; the events stay.
 */
#ifndef ODOFS_QUORUM_H
#define ODOFS_QUORUM_H

#include <stdint.h>

#include "err.h"
#include "holders.h"

#include <fuse_lowlevel.h>

struct quorum;

/* Asks the replicas of idx to make rev durable at once (any thread). */
typedef void (*quorum_want_fn)(void *arg, uint32_t idx, uint64_t rev);

/*
 * Starts the timer thread.  self is our node id (never counted), k the
 * peers needed, timeout_ms how long an fsync waits.
 */
int quorum_open(struct quorum **out, struct holders *h, const char *self,
    unsigned k, uint32_t timeout_ms, quorum_want_fn want, void *want_arg,
    struct err *e);
/* Answers every waiter EIO (the daemon is stopping); accepts NULL. */
void quorum_close(struct quorum *q);

/* Answers req once rev of idx is durable on k peers, or on timeout. */
void quorum_wait(struct quorum *q, fuse_req_t req, uint32_t idx,
    uint64_t rev);

/* A holders_notify_fn: a durable head of idx went up. */
void quorum_acked(void *q, uint32_t idx);

/* Fsyncs answered 0, ETIMEDOUT and EINTR, and waiting now. */
struct quorum_stats {
	uint64_t met, timeouts, interrupted;
	unsigned waiting;
};
void quorum_stats(struct quorum *q, struct quorum_stats *out);

#endif
