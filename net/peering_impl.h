/*
 * peering_impl: what the peering modules share (private to net/peer.c,
 * discovery.c and peering.c; the rest of odofs sees peering.h).
 *
 *  - peering.c   the thread: its loop, the listener, the table of entries
 *                (find, count, the bound of max_peers), the ticks, what
 *                .status and .peers show;
 *  - peer.c      one entry's state machine: connecting, incoming, active
 *                (introduction, heartbeat), lifesupport (redial with
 *                backoff), purgatory; its connection's callbacks;
 *  - discovery.c where entries come from: seeds (names through the
 *                resolver threads, resolve.h), peer exchange, the peer
 *                history (written by the job thread).
 *
 * The peer table is a list of entries.  An entry is what we know of one
 * remote node: its dial address (host and port; empty for an incoming
 * connection whose HELLO gave no listen address), its id once introduced,
 * its state, and at most one connection.  One timer per entry serves the
 * deadline of its state: the HELLO deadline while connecting or incoming,
 * the heartbeat while active, the redial while on lifesupport, the expiry
 * in purgatory.  Entries are freed by a deferred task, never inside a
 * callback of their own connection or timer.
 *
 * Every change of the table republishes a copy of what .status and .peers
 * show (struct peer_view) under view_lock, so the FUSE threads never touch
 * the table itself.
 *
 * This thread never asks a resolver: addresses learnt from peers and from
 * the history must be numeric (parsed with AI_NUMERICHOST, which never
 * blocks), and seeds' names go to the resolver threads (resolve.h).  A
 * seed under its name has an entry of its own that shows "connecting"
 * ("resolving") until the answer; the answer gives each address an entry,
 * which replaces the name's (peering_resolved).
 */
#ifndef ODOFS_PEERING_IMPL_H
#define ODOFS_PEERING_IMPL_H

#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "conn.h"
#include "history.h"
#include "peering.h"
#include "resolve.h"
#include "sync.h"
#include "tls.h"
#include "wire.h"

#define PEERING_MAX_HANDSHAKES	64	/* incoming connections not yet introduced */
#define PEERING_HOST_MAX	WIRE_HOST_MAX
#define PEERING_REASON_MAX	200
#define PEERING_FRAME_BUF	(64u << 10)
#define PEERING_SELF_MAX	16	/* addresses found to be ourselves */
#define PEERING_KNOWN_MIN	64	/* entries kept: max_peers x 4, at least */
#define PEERING_RESEED_MS	60000	/* seeds' names resolved again */
#define PEER_PROBE_MS		250	/* path checks of stalled connections */
#define PEER_SLOT_SOON_MS	100	/* a dial waits for one under way */

enum peer_state {
	PEER_CONNECTING,
	PEER_INCOMING,
	PEER_ACTIVE,
	PEER_LIFESUPPORT,
	PEER_PURGATORY,
};


struct peer {
	struct peering *pr;
	char id[WIRE_ID_MAX + 1];		/* "" until introduced */
	char host[PEERING_HOST_MAX + 1];	/* dial address, "" if none */
	uint16_t port;
	char remote[CONN_ADDR_MAX];		/* address of the connection */
	enum peer_state state;
	time_t since;				/* wall clock, for display */
	unsigned attempt;			/* failed dials in a row */
	char reason[PEERING_REASON_MAX];	/* last reason */
	bool seed;
	bool resolving;				/* waits for its name's answer */
	bool hello_in;				/* their HELLO arrived */
	struct conn *conn;
	struct sync_peer *sp;			/* while active */
	struct loop_timer *timer;
	uint64_t last_rx_ms;
	uint64_t rx_bytes;		/* the connection's, at last_rx_ms */
	bool dead;				/* unlinked, free pending */
	/* a path check while the connection is stalled (peer_probe) */
	int probe_fd;				/* -1: none */
	struct loop_fd *probe;
	uint64_t probe_ms;			/* when it started */
	bool redial_now;		/* closed for a path that is back */
	bool rejoin;			/* restoring that link: slot held */
	struct peer *next;
};

struct peer_view {
	char id[WIRE_ID_MAX + 1];
	char addr[PEERING_HOST_MAX + 8];
	char remote[CONN_ADDR_MAX];
	enum peer_state state;
	time_t since;
	unsigned attempt;
	char reason[PEERING_REASON_MAX];
	bool seed, incoming;
};

struct peering {
	const struct config *cfg;
	struct journal *journal;
	char id[WIRE_ID_MAX + 1];
	uint64_t nonce;
	uint64_t rng;				/* peering_jitter's state */
	struct loop *loop;
	struct tls_ctx *tls;
	int listen_fd;
	struct loop_fd *listen_h;
	struct loop_timer *tick;		/* seeds: resolve and add */
	struct resolver *resolver;		/* seeds' names */
	struct loop_timer *sync_tick;		/* every peering.tick_ms */
	struct loop_timer *probe_tick;		/* every PEER_PROBE_MS */
	struct sync *sync;
	atomic_bool committed;			/* journal commits to push */
	atomic_bool wanted;			/* fsyncs wait: sync_wants_drain */
	struct loop_task *reap;			/* frees dead entries */
	struct peer *peers;
	struct peer *dead;			/* unlinked, to free */
	pthread_t thread;
	bool started;
	atomic_bool stopping;		/* set by peering_stop() */
	struct buf frame;			/* scratch for encoding */
	char self[PEERING_SELF_MAX][PEERING_HOST_MAX + 8]; /* "host:port" */
	size_t nself;

	pthread_mutex_t view_lock;		/* protects views, nviews */
	struct peer_view *views;
	size_t nviews;
};

extern const char *const peer_state_names[];
extern const struct conn_cb peer_conn_cb;

/* peering.c */
void peering_publish(struct peering *p);
struct peer *peering_find_id(struct peering *p, const char *id,
    const struct peer *not);
struct peer *peering_find_addr(struct peering *p, const char *host,
    uint16_t port,
    const struct peer *not);
size_t peering_count(struct peering *p, int state);
enum peering_room {
	PEERING_ROOM_FREE,	/* a dial slot is free */
	PEERING_ROOM_SOON,	/* dials under way hold the free ones */
	PEERING_ROOM_NONE,	/* links hold them all, or max_peers is reached */
};
enum peering_room peering_dial_room(struct peering *p);
bool peering_full(struct peering *p, const char *id);
uint64_t peering_jitter(struct peering *p, uint64_t ms);

/* peer.c */
void peer_set_state(struct peer *pe, enum peer_state st, const char *reason);
struct peer *peer_new(struct peering *p, const char *host, uint16_t port);
void peer_forget(struct peer *pe);
void peer_send_frame(struct peer *pe);
void peer_drop(struct peer *pe, uint16_t code, const char *reason);
void peer_lifesupport(struct peer *pe, const char *reason);
int peering_numeric(const char *host, uint16_t port, struct addrinfo **res);
void peer_dial(struct peer *pe);

void peer_probe_tick(struct peer *pe, uint64_t now);
void peer_probe_end(struct peer *pe);

/* discovery.c */
void peer_resolve(struct peer *pe);
void peer_send_peers(struct peer *to);
void peering_exchange(struct peering *p);
bool peering_split(const char *addr, char *host, size_t hsz, uint16_t *port);
void peering_history_post(struct peering *p, const struct history_entry *h);
void peer_on_peers(struct peer *pe, const uint8_t *payload, size_t len);
void peering_resolved(void *arg, const struct resolve_answer *a);
void peering_add_history(void *arg, const struct history_entry *h);
void peering_seeds(struct peering *p, bool first);
void peering_tick(void *arg);

#endif
