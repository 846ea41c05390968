/*
 * resolve: names to addresses off the net thread, in the shape of curl's
 * threaded resolver (lib/asyn-thread.c).  The net thread asks about a name
 * with resolve_start(), which never blocks; a worker thread runs
 * getaddrinfo() and queues the answer, then calls loop_wake(); the loop's
 * wake callback calls resolve_dispatch(), which hands every queued answer
 * to the answer callback in the net thread.  resolve_start() never calls
 * the callback itself.
 *
 * Bounded: at most RESOLVE_THREADS workers, made when first needed; at
 * most RESOLVE_MAX_PENDING names asked about at once (queued, being
 * resolved, or answered and not yet dispatched), each name at most once;
 * an answer keeps at most RESOLVE_MAX_ADDRS addresses.
 *
 * A worker stuck in a resolver that never answers does not hold up
 * resolve_close(): such a worker is detached and abandoned, and when its
 * lookup returns it frees its own request and, being the last user, the
 * resolver's shared state.  After resolve_close() returns no callback runs
 * and no worker calls loop_wake(), so the loop may be closed next.
 *
 * Threads: every function from the loop's thread (or before the loop
 * runs); the workers only touch state shared under the resolver's lock.
 */
#ifndef ODOFS_RESOLVE_H
#define ODOFS_RESOLVE_H

#include <netdb.h>
#include <stddef.h>

#include "err.h"
#include "loop.h"

#define RESOLVE_THREADS		4	/* workers at most */
#define RESOLVE_MAX_PENDING	64	/* names asked about at once */
#define RESOLVE_MAX_ADDRS	16	/* addresses kept per answer */
#define RESOLVE_NAME_MAX	255	/* bytes of a name */
#define RESOLVE_ADDR_MAX	64	/* a numeric address (IPv6 with a
					   %scope too), NUL included */

struct resolver;

struct resolve_answer {
	const char *name;		/* as asked */
	int status;			/* 0, or an EAI_* code (gai_strerror) */
	size_t naddrs;			/* 0 unless status is 0 */
	/* numeric (getnameinfo NI_NUMERICHOST), each once, in the order
	 * getaddrinfo gave them */
	char addrs[RESOLVE_MAX_ADDRS][RESOLVE_ADDR_MAX];
};

/* Called in the loop's thread; a is valid during the call only. */
typedef void (*resolve_fn)(void *arg, const struct resolve_answer *a);

/*
 * The lookup a worker runs: getaddrinfo() by default.  Returns what
 * getaddrinfo() returns, and *res is freed with freeaddrinfo().  Called
 * in worker threads.
 */
typedef int (*resolve_lookup_fn)(const char *name,
    const struct addrinfo *hints, struct addrinfo **res);

/*
 * Returns 0 and *out (free with resolve_close()), or -ENOMEM with e.
 * Answers are delivered to fn(arg, answer) by resolve_dispatch(); workers
 * wake loop l.  No thread starts until the first resolve_start().
 */
int resolve_open(struct resolver **out, struct loop *l, resolve_fn fn,
    void *arg, struct err *e);

/*
 * For tests: replaces getaddrinfo() with fn (NULL restores it).  Call
 * before the first resolve_start().
 */
void resolve_set_lookup(struct resolver *r, resolve_lookup_fn fn);

/*
 * Asks about name (any address family, for TCP).  Returns 0 when asked:
 * exactly one answer follows, through resolve_dispatch(), unless the
 * resolver is closed first.  -EALREADY: the name is being asked about
 * already, and that answer follows.  -EAGAIN: RESOLVE_MAX_PENDING names
 * are out, or no worker could be started; ask again later.  -EINVAL for
 * an empty name, -ENAMETOOLONG over RESOLVE_NAME_MAX bytes, -ENOMEM.
 */
int resolve_start(struct resolver *r, const char *name);

/* Names asked about and not yet dispatched. */
size_t resolve_pending(struct resolver *r);

/*
 * Calls the answer callback for every answer queued so far, in the order
 * they came; the callback may call resolve_start().  Cheap when there is
 * none: call it from the loop's wake callback.
 */
void resolve_dispatch(struct resolver *r);

/*
 * Drops every request and answer not yet dispatched, stops the idle
 * workers (joining them) and abandons those still inside a lookup.  Never
 * waits for a lookup.  Accepts NULL.
 */
void resolve_close(struct resolver *r);

#endif
