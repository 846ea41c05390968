/*
 * peering: see peering.h.
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
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "conn.h"
#include "history.h"
#include "jobs.h"
#include "listen.h"
#include "log.h"
#include "loop.h"
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

enum peer_state {
	PEER_CONNECTING,
	PEER_INCOMING,
	PEER_ACTIVE,
	PEER_LIFESUPPORT,
	PEER_PURGATORY,
};

static const char *const peer_state_names[] = {
	[PEER_CONNECTING] = "connecting",
	[PEER_INCOMING] = "incoming",
	[PEER_ACTIVE] = "active",
	[PEER_LIFESUPPORT] = "lifesupport",
	[PEER_PURGATORY] = "purgatory",
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
	struct loop *loop;
	struct tls_ctx *tls;
	int listen_fd;
	struct loop_fd *listen_h;
	struct loop_timer *tick;		/* seeds: resolve and add */
	struct resolver *resolver;		/* seeds' names */
	struct loop_timer *sync_tick;		/* every peering.tick_ms */
	struct sync *sync;
	atomic_bool committed;			/* journal commits to push */
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

static void peer_dial(struct peer *pe);
static void peer_timer(void *arg);
static void peer_conn_open(void *arg, struct conn *c);
static void peer_conn_frame(void *arg, struct conn *c, uint8_t type,
    const uint8_t *payload, size_t len);
static void peer_conn_close(void *arg, struct conn *c, const char *reason);
static void peer_conn_writable(void *arg, struct conn *c);

static const struct conn_cb peer_conn_cb = {
	.on_open = peer_conn_open,
	.on_frame = peer_conn_frame,
	.on_writable = peer_conn_writable,
	.on_close = peer_conn_close,
};

/* Leaving active: replication forgets the peer before its connection. */
static void
peer_unsync(struct peer *pe)
{
	if (pe->sp != NULL) {
		sync_peer_del(pe->pr->sync, pe->sp);
		pe->sp = NULL;
	}
}

static void
peer_conn_writable(void *arg, struct conn *c)
{
	struct peer *pe = arg;

	(void)c;
	if (pe->sp != NULL)
		sync_writable(pe->pr->sync, pe->sp);
}

/* Publishes the table for .status and .peers. */
static void
peering_publish(struct peering *p)
{
	struct peer_view *v;
	size_t n = 0, i = 0;

	for (struct peer *pe = p->peers; pe != NULL; pe = pe->next)
		n++;
	if ((v = calloc(n ? n : 1, sizeof(*v))) == NULL)
		return;
	for (struct peer *pe = p->peers; pe != NULL; pe = pe->next, i++) {
		snprintf(v[i].id, sizeof(v[i].id), "%s", pe->id);
		if (pe->host[0] != '\0')
			snprintf(v[i].addr, sizeof(v[i].addr),
			    strchr(pe->host, ':') ? "[%s]:%u" : "%s:%u",
			    pe->host, pe->port);
		snprintf(v[i].remote, sizeof(v[i].remote), "%s", pe->remote);
		v[i].state = pe->state;
		v[i].since = pe->since;
		v[i].attempt = pe->attempt;
		snprintf(v[i].reason, sizeof(v[i].reason), "%s", pe->reason);
		v[i].seed = pe->seed;
		v[i].incoming = pe->conn != NULL && conn_incoming(pe->conn);
	}
	pthread_mutex_lock(&p->view_lock);
	free(p->views);
	p->views = v;
	p->nviews = n;
	pthread_mutex_unlock(&p->view_lock);
}

static void
peer_set_state(struct peer *pe, enum peer_state st, const char *reason)
{
	if (pe->state != st) {
		char where[PEERING_HOST_MAX + 16];

		if (pe->host[0] != '\0')
			snprintf(where, sizeof(where), "%s:%u", pe->host, pe->port);
		else
			snprintf(where, sizeof(where), "%s", pe->remote);
		log_info("peer %s (%s): %s -> %s%s%s", pe->id[0] ? pe->id : "?",
		    where, peer_state_names[pe->state], peer_state_names[st],
		    reason ? ": " : "", reason ? reason : "");
	}
	if (pe->state != st)
		pe->since = time(NULL);
	pe->state = st;
	if (reason != NULL)
		snprintf(pe->reason, sizeof(pe->reason), "%s", reason);
	peering_publish(pe->pr);
}

static struct peer *
peer_new(struct peering *p, const char *host, uint16_t port)
{
	struct peer *pe = calloc(1, sizeof(*pe));
	struct err e;

	if (pe == NULL)
		return NULL;
	if (loop_timer_add(&pe->timer, p->loop, peer_timer, pe, &e) < 0) {
		free(pe);
		return NULL;
	}
	pe->pr = p;
	snprintf(pe->host, sizeof(pe->host), "%s", host ? host : "");
	pe->port = port;
	pe->since = time(NULL);
	pe->state = PEER_LIFESUPPORT;
	pe->next = p->peers;
	p->peers = pe;
	return pe;
}

/* Unlinks pe; it is freed after this round.  Its connection must be gone. */
static void
peer_forget(struct peer *pe)
{
	struct peering *p = pe->pr;

	for (struct peer **pp = &p->peers; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == pe) {
			*pp = pe->next;
			break;
		}
	}
	loop_timer_cancel(pe->timer);
	pe->dead = true;
	pe->next = p->dead;
	p->dead = pe;
	loop_task_post(p->reap);
	peering_publish(p);
}

static void
peering_reap(void *arg)
{
	struct peering *p = arg;

	while (p->dead != NULL) {
		struct peer *pe = p->dead;

		p->dead = pe->next;
		loop_timer_del(pe->timer);
		free(pe);
	}
}

static struct peer *
peering_find_id(struct peering *p, const char *id, const struct peer *not)
{
	for (struct peer *pe = p->peers; pe != NULL; pe = pe->next)
		if (pe != not && pe->id[0] != '\0' && strcmp(pe->id, id) == 0 &&
		    pe->state != PEER_PURGATORY)
			return pe;
	return NULL;
}

static struct peer *
peering_find_addr(struct peering *p, const char *host, uint16_t port,
    const struct peer *not)
{
	for (struct peer *pe = p->peers; pe != NULL; pe = pe->next)
		if (pe != not && pe->port == port && strcmp(pe->host, host) == 0)
			return pe;
	return NULL;
}

static size_t
peering_count(struct peering *p, int state)
{
	size_t n = 0;

	for (struct peer *pe = p->peers; pe != NULL; pe = pe->next)
		if (state < 0 || (int)pe->state == state)
			n++;
	return n;
}

/* Connections we dialled that are active or under way. */
static size_t
peering_count_out(struct peering *p)
{
	size_t n = 0;

	for (struct peer *pe = p->peers; pe != NULL; pe = pe->next)
		if (pe->conn != NULL && !conn_incoming(pe->conn) &&
		    (pe->state == PEER_CONNECTING || pe->state == PEER_ACTIVE))
			n++;
	return n;
}

/* Entries with a connection (any state). */
static size_t
peering_count_conns(struct peering *p)
{
	size_t n = 0;

	for (struct peer *pe = p->peers; pe != NULL; pe = pe->next)
		n += pe->conn != NULL;
	return n;
}

/*
 * SPEC §7: max_peers bounds the active connections.  We dial at most half
 * of them (rounded up), so that every node keeps room for newcomers and a
 * fleet forms one overlay instead of full cliques; the rest are accepted.
 */
static bool
peering_may_dial(struct peering *p)
{
	return peering_count(p, PEER_ACTIVE) < p->cfg->max_peers &&
	    peering_count_out(p) < (p->cfg->max_peers + 1) / 2;
}

static bool
peering_full(struct peering *p)
{
	return peering_count(p, PEER_ACTIVE) >= p->cfg->max_peers;
}

/* Sends one encoded frame from p->frame; a full queue drops it (logged). */
static void
peer_send_frame(struct peer *pe)
{
	struct peering *p = pe->pr;
	int rc;

	if (pe->conn == NULL)
		return;
	rc = conn_send(pe->conn, p->frame.data, p->frame.len);
	if (rc < 0 && rc != -EPIPE)
		log_warnx("peer %s: frame not sent: %s", pe->id, strerror(-rc));
}

static void
peer_send_bye(struct peer *pe, uint16_t code, const char *reason)
{
	struct wire_bye m = { .code = code };

	snprintf(m.reason, sizeof(m.reason), "%s", reason);
	buf_reset(&pe->pr->frame);
	if (wire_bye_encode(&pe->pr->frame, &m) == 0)
		peer_send_frame(pe);
}

/* Closes pe's connection with a reason; on_close follows. */
static void
peer_drop(struct peer *pe, uint16_t code, const char *reason)
{
	peer_unsync(pe);
	if (pe->conn == NULL)
		return;
	if (code == WIRE_BYE_PROTOCOL || code == WIRE_BYE_IDENTITY ||
	    code == WIRE_BYE_VERSION)
		log_warnx("peer %s (%s): disconnected: %s",
		    pe->id[0] ? pe->id : "not introduced",
		    pe->remote[0] ? pe->remote : pe->host, reason);
	peer_send_bye(pe, code, reason);
	conn_close(pe->conn, reason);
}

/* Lifesupport: schedule the next redial, or forget a non-seed. */
static void
peer_lifesupport(struct peer *pe, const char *reason)
{
	const struct config *cfg = pe->pr->cfg;
	unsigned step;

	pe->hello_in = false;
	if (pe->host[0] == '\0') {
		/* nothing to dial: an incoming peer that gave no address */
		peer_set_state(pe, PEER_LIFESUPPORT, reason);
		peer_forget(pe);
		return;
	}
	if (pe->attempt >= cfg->nbackoff && !pe->seed) {
		log_info("peer %s (%s:%u) forgotten after %u attempts",
		    pe->id[0] ? pe->id : "?", pe->host, pe->port, pe->attempt);
		peer_set_state(pe, PEER_LIFESUPPORT, reason);
		peer_forget(pe);
		return;
	}
	step = pe->attempt < cfg->nbackoff ? pe->attempt : cfg->nbackoff - 1;
	pe->attempt++;
	peer_set_state(pe, PEER_LIFESUPPORT, reason);
	loop_timer_arm(pe->timer, cfg->backoff_ms[step]);
}

static void
peer_purgatory(struct peer *pe, uint16_t code, const char *reason)
{
	peer_set_state(pe, PEER_PURGATORY, reason);
	peer_drop(pe, code, reason);
	loop_timer_arm(pe->timer, pe->pr->cfg->purgatory_ms);
}

/* The one timer of an entry: what it means depends on the state. */
static void
peer_timer(void *arg)
{
	struct peer *pe = arg;
	const struct config *cfg = pe->pr->cfg;
	uint64_t now = loop_now_ms(), quiet;
	char why[96];

	switch (pe->state) {
	case PEER_CONNECTING:
	case PEER_INCOMING:
		peer_drop(pe, WIRE_BYE_PROTOCOL, "no introduction in time");
		break;
	case PEER_ACTIVE: {
		struct conn_stats st;

		/* bytes, not whole frames: a slow link's big frame is life */
		conn_stats(pe->conn, &st);
		if (st.bytes_in != pe->rx_bytes) {
			pe->rx_bytes = st.bytes_in;
			pe->last_rx_ms = now;
		}
		quiet = now - pe->last_rx_ms;
		if (quiet >= 3ull * cfg->heartbeat_ms) {
			snprintf(why, sizeof(why), "silent for %llu ms",
			    (unsigned long long)quiet);
			peer_drop(pe, WIRE_BYE_ERROR, why);
			break;
		}
		if (quiet >= cfg->heartbeat_ms) {
			buf_reset(&pe->pr->frame);
			if (wire_ping_encode(&pe->pr->frame, now) == 0)
				peer_send_frame(pe);
		}
		loop_timer_arm(pe->timer, cfg->heartbeat_ms);
		break;
	}
	case PEER_LIFESUPPORT:
		peer_dial(pe);
		break;
	case PEER_PURGATORY:
		/*
		 * Deleted, not redialled: a duplicate's address and seed flag
		 * went to the connection that was kept, and our own addresses
		 * are remembered so that no seed dials them again.
		 */
		if (pe->conn == NULL) {
			peer_forget(pe);
		} else {
			loop_timer_arm(pe->timer, 100);	/* closing still */
		}
		break;
	}
}

/*
 * A numeric address and port: 0 and *res (free with freeaddrinfo), or an
 * EAI_* code (EAI_NONAME for a name).  Never asks a resolver.
 */
static int
peering_numeric(const char *host, uint16_t port, struct addrinfo **res)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC,
	    .ai_socktype = SOCK_STREAM,
	    .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV };
	char ps[8];

	snprintf(ps, sizeof(ps), "%u", port);
	return getaddrinfo(host, ps, &hints, res);
}

/*
 * A seed's entry under its name: the resolver threads look the name up
 * and the entry waits, connecting, for the answer (peering_resolved),
 * without a timer: the answer, however late, moves it on.
 */
static void
peer_resolve(struct peer *pe)
{
	char why[PEERING_REASON_MAX];
	int rc;

	rc = resolve_start(pe->pr->resolver, pe->host);
	if (rc < 0 && rc != -EALREADY) {
		snprintf(why, sizeof(why), "resolve %.120s: %s", pe->host,
		    rc == -EAGAIN ? "too many names being resolved" :
		    strerror(-rc));
		peer_lifesupport(pe, why);
		return;
	}
	loop_timer_cancel(pe->timer);
	pe->resolving = true;
	pe->hello_in = false;
	pe->remote[0] = '\0';
	peer_set_state(pe, PEER_CONNECTING, "resolving");
}

static void
peer_dial(struct peer *pe)
{
	struct peering *p = pe->pr;
	struct addrinfo *res = NULL;
	char why[PEERING_REASON_MAX];
	struct err e;
	int rc;

	if (atomic_load(&p->stopping) || pe->conn != NULL || pe->resolving)
		return;
	if (!peering_may_dial(p)) {
		/* known, not connected: tried again when a slot may be free */
		peer_set_state(pe, PEER_LIFESUPPORT, pe->reason[0] ? NULL :
		    "waiting for a free peer slot");
		loop_timer_arm(pe->timer, p->cfg->backoff_ms[0]);
		return;
	}
	/*
	 * Seeds are names an administrator gave, and go to the resolver
	 * threads; anything learnt from peers must be a numeric address, so
	 * that no peer can make us ask a resolver at all.
	 */
	rc = peering_numeric(pe->host, pe->port, &res);
	if (rc == EAI_NONAME && pe->seed) {
		peer_resolve(pe);
		return;
	}
	if (rc != 0) {
		snprintf(why, sizeof(why), "resolve %.120s: %.60s", pe->host,
		    gai_strerror(rc));
		peer_lifesupport(pe, why);
		return;
	}
	err_clear(&e);
	rc = conn_connect(&pe->conn, p->loop, p->tls, res->ai_addr,
	    res->ai_addrlen, p->cfg->handshake_ms, &peer_conn_cb, pe, &e);
	freeaddrinfo(res);
	if (rc < 0) {
		pe->conn = NULL;
		peer_lifesupport(pe, e.msg);
		return;
	}
	pe->hello_in = false;
	pe->remote[0] = '\0';
	peer_set_state(pe, PEER_CONNECTING, NULL);
	/* TLS and the introduction, both, within handshake_ms */
	loop_timer_arm(pe->timer, p->cfg->handshake_ms);
}

static void
peer_send_hello(struct peer *pe)
{
	struct peering *p = pe->pr;
	struct wire_hello m = { .version = WIRE_VERSION, .nonce = p->nonce };

	snprintf(m.id, sizeof(m.id), "%s", p->id);
	snprintf(m.listen, sizeof(m.listen), "%s", p->cfg->listen);
	buf_reset(&p->frame);
	if (wire_hello_encode(&p->frame, &m) == 0)
		peer_send_frame(pe);
}

static void peer_send_peers(struct peer *to);

/*
 * At max_peers: a goodbye that names our active peers (a PEERS frame just
 * before it) for the newcomer to try instead.
 */
static void
peer_refuse_full(struct peer *pe)
{
	char why[64];

	snprintf(why, sizeof(why), "at max_peers (%u); try its peers",
	    (unsigned)pe->pr->cfg->max_peers);
	peer_send_peers(pe);
	peer_drop(pe, WIRE_BYE_FULL, why);
}

static void
peer_conn_open(void *arg, struct conn *c)
{
	struct peer *pe = arg;

	snprintf(pe->remote, sizeof(pe->remote), "%s", conn_peer_addr(c));
	if (conn_incoming(c) && peering_full(pe->pr)) {
		peer_refuse_full(pe);
		return;
	}
	peer_send_hello(pe);
}

/* PEERS: the active peers we can give an address for, but pe itself. */
static void
peer_send_peers(struct peer *to)
{
	struct peering *p = to->pr;
	struct wire_peer *list;
	size_t n = 0;

	if (!p->cfg->exchange || to->conn == NULL)
		return;
	if ((list = calloc(WIRE_PEERS_MAX, sizeof(*list))) == NULL)
		return;
	for (struct peer *pe = p->peers; pe != NULL && n < WIRE_PEERS_MAX;
	    pe = pe->next) {
		if (pe == to || pe->state != PEER_ACTIVE || pe->host[0] == '\0' ||
		    !wire_peer_addr_ok(pe->host, pe->port))
			continue;
		snprintf(list[n].id, sizeof(list[n].id), "%s", pe->id);
		snprintf(list[n].host, sizeof(list[n].host), "%s", pe->host);
		list[n].port = pe->port;
		n++;
	}
	buf_reset(&p->frame);
	if (wire_peers_encode(&p->frame, list, n) == 0)
		peer_send_frame(to);
	free(list);
}

/* Tells every active peer who is active now. */
static void
peering_exchange(struct peering *p)
{
	for (struct peer *pe = p->peers; pe != NULL; pe = pe->next)
		if (pe->state == PEER_ACTIVE)
			peer_send_peers(pe);
}

/* Takes a "HOST:PORT" listen address apart; false if it is not one. */
static bool
peering_split(const char *addr, char *host, size_t hsz, uint16_t *port)
{
	char ps[16];
	long v;
	char *end;

	if (listen_split(addr, host, hsz, ps, sizeof(ps)) < 0)
		return false;
	v = strtol(ps, &end, 10);
	if (*end != '\0' || v < 1 || v > 65535)
		return false;
	*port = (uint16_t)v;
	return true;
}

/*
 * Peer history is a store write: the job thread of replication makes it
 * (sync_jobs), so activating a peer never waits on the disk.
 */
struct history_job {
	struct journal *journal;
	struct history_entry h;
	int rc;
	struct err e;
};

static void
peering_history_run(void *arg)
{
	struct history_job *hj = arg;

	err_clear(&hj->e);
	hj->rc = history_save(hj->journal, &hj->h, &hj->e);
}

static void
peering_history_done(void *arg)
{
	struct history_job *hj = arg;

	if (hj->rc < 0)
		log_warnx("peer history not saved: %s: %s", hj->h.id,
		    hj->e.msg);
	free(hj);
}

static void
peering_history_post(struct peering *p, const struct history_entry *h)
{
	struct history_job *hj = calloc(1, sizeof(*hj));

	if (hj != NULL) {
		hj->journal = p->journal;
		hj->h = *h;
	}
	if (hj == NULL || jobs_post(sync_jobs(p->sync), peering_history_run,
	    peering_history_done, hj) < 0) {
		free(hj);
		log_warnx("peer history not saved: %s: out of memory", h->id);
	}
}

static void
peer_activate(struct peer *pe)
{
	struct peering *p = pe->pr;
	struct history_entry h;

	pe->attempt = 0;
	pe->last_rx_ms = loop_now_ms();
	peer_set_state(pe, PEER_ACTIVE, "introduced");
	loop_timer_arm(pe->timer, p->cfg->heartbeat_ms);
	if (pe->host[0] != '\0') {
		memset(&h, 0, sizeof(h));
		snprintf(h.id, sizeof(h.id), "%s", pe->id);
		snprintf(h.host, sizeof(h.host), "%s", pe->host);
		h.port = pe->port;
		h.last_active = (uint64_t)time(NULL);
		peering_history_post(p, &h);
	}
	peering_exchange(p);
	if ((pe->sp = sync_peer_add(p->sync, pe->id, pe->conn)) == NULL)
		peer_drop(pe, WIRE_BYE_ERROR, "out of memory");
}

/*
 * Their HELLO: check it against the certificate, then find out whether it
 * is ourselves, a duplicate, or a peer we knew under another entry.
 */
static void
peer_on_hello(struct peer *pe, const uint8_t *payload, size_t len)
{
	struct peering *p = pe->pr;
	struct wire_hello m;
	struct peer *other;
	char why[PEERING_REASON_MAX], host[PEERING_HOST_MAX + 1];
	uint16_t port = 0;
	int rc;

	if (pe->hello_in) {
		peer_drop(pe, WIRE_BYE_PROTOCOL, "second introduction");
		return;
	}
	rc = wire_hello_decode(payload, len, &m);
	if (rc == -EPROTONOSUPPORT) {
		snprintf(why, sizeof(why), "protocol version %u not supported",
		    m.version);
		peer_drop(pe, WIRE_BYE_VERSION, why);
		return;
	}
	if (rc < 0) {
		peer_drop(pe, WIRE_BYE_PROTOCOL, "bad introduction");
		return;
	}
	if (strcmp(m.id, conn_peer_id(pe->conn)) != 0) {
		snprintf(why, sizeof(why), "introduced as %s, certificate says %s",
		    m.id, conn_peer_id(pe->conn));
		peer_drop(pe, WIRE_BYE_IDENTITY, why);
		return;
	}
	pe->hello_in = true;
	if (strcmp(m.id, p->id) == 0) {
		snprintf(pe->id, sizeof(pe->id), "%s", m.id);
		if (conn_incoming(pe->conn)) {
			/* the dialling side shows it; this side just hangs up */
			peer_drop(pe, WIRE_BYE_SELF, "connection to ourselves");
			return;
		}
		if (p->nself < PEERING_SELF_MAX && pe->host[0] != '\0')
			snprintf(p->self[p->nself++], sizeof(p->self[0]),
			    "%s:%u", pe->host, pe->port);
		peer_purgatory(pe, WIRE_BYE_SELF, "connection to ourselves");
		return;
	}
	snprintf(pe->id, sizeof(pe->id), "%s", m.id);
	if (m.listen[0] != '\0' && peering_split(m.listen, host, sizeof(host),
	    &port) && conn_incoming(pe->conn) && pe->host[0] == '\0') {
		/* a wildcard listen address: the address it came from */
		if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0) {
			char ps[16];

			if (listen_split(conn_peer_addr(pe->conn), host,
			    sizeof(host), ps, sizeof(ps)) < 0)
				host[0] = '\0';
		}
		if (host[0] != '\0') {
			snprintf(pe->host, sizeof(pe->host), "%s", host);
			pe->port = port;
		}
	}
	/* an entry already active for this id: keep one connection */
	other = peering_find_id(p, m.id, pe);
	if (other != NULL && other->state == PEER_ACTIVE && other->conn != NULL) {
		/*
		 * Keep the connection dialled by the smaller id; both ends
		 * see the same two connections, so they keep the same one.
		 * Otherwise (both dialled the same way) keep the older.
		 */
		const char *small = strcmp(p->id, m.id) < 0 ? p->id : m.id;
		bool pe_small = strcmp(conn_incoming(pe->conn) ? m.id : p->id,
		    small) == 0;
		bool other_small = strcmp(conn_incoming(other->conn) ? m.id :
		    p->id, small) == 0;
		struct peer *loser = pe_small && !other_small ? other : pe;
		struct peer *winner = loser == pe ? other : pe;

		snprintf(why, sizeof(why), "duplicate connection to active id %s",
		    m.id);
		if (winner->host[0] == '\0' && loser->host[0] != '\0') {
			snprintf(winner->host, sizeof(winner->host), "%s",
			    loser->host);
			winner->port = loser->port;
		}
		winner->seed |= loser->seed;
		peer_purgatory(loser, WIRE_BYE_DUPLICATE, why);
		if (winner == pe)
			peer_activate(pe);
		return;
	}
	/* a known but idle entry (history, seed, exchange): merge into pe */
	for (int pass = 0; pass < 2; pass++) {
		other = pass == 0 ? peering_find_id(p, m.id, pe) :
		    (pe->host[0] ? peering_find_addr(p, pe->host, pe->port, pe) :
		    NULL);
		if (other == NULL || other->conn != NULL)
			continue;
		pe->seed |= other->seed;
		if (pe->host[0] == '\0' && other->host[0] != '\0') {
			snprintf(pe->host, sizeof(pe->host), "%s", other->host);
			pe->port = other->port;
		}
		peer_forget(other);
	}
	if (peering_full(p)) {
		peer_refuse_full(pe);
		return;
	}
	peer_activate(pe);
}

static void
peer_on_peers(struct peer *pe, const uint8_t *payload, size_t len)
{
	struct peering *p = pe->pr;
	struct wire_peer *list;
	size_t n;

	if ((list = calloc(WIRE_PEERS_MAX, sizeof(*list))) == NULL)
		return;
	if (wire_peers_decode(payload, len, list, WIRE_PEERS_MAX, &n) < 0) {
		free(list);
		peer_drop(pe, WIRE_BYE_PROTOCOL, "bad peers frame");
		return;
	}
	for (size_t i = 0; p->cfg->exchange && i < n; i++) {
		struct peer *np;

		if (strcmp(list[i].id, p->id) == 0 ||
		    peering_find_id(p, list[i].id, NULL) != NULL ||
		    peering_find_addr(p, list[i].host, list[i].port, NULL) != NULL)
			continue;
		/* known, and dialled while a slot is free (peer_dial) */
		if (peering_count(p, -1) >= p->cfg->max_peers * 4 &&
		    peering_count(p, -1) >= PEERING_KNOWN_MIN)
			break;
		if ((np = peer_new(p, list[i].host, list[i].port)) == NULL)
			break;
		log_info("peer %s (%s:%u) learnt from %s", list[i].id,
		    list[i].host, list[i].port,
		    pe->id[0] ? pe->id : conn_peer_id(pe->conn));
		peer_dial(np);
	}
	free(list);
}

static void
peer_conn_frame(void *arg, struct conn *c, uint8_t type,
    const uint8_t *payload, size_t len)
{
	struct peer *pe = arg;
	struct wire_bye bye;
	uint64_t token;
	char tmp[32], why[PEERING_REASON_MAX];

	pe->last_rx_ms = loop_now_ms();
	if (type == WIRE_BYE) {
		if (wire_bye_decode(payload, len, &bye) == 0)
			snprintf(why, sizeof(why), "peer said bye: %.150s",
			    bye.reason[0] ? bye.reason : "no reason");
		else
			snprintf(why, sizeof(why), "peer said bye");
		snprintf(pe->reason, sizeof(pe->reason), "%s", why);
		conn_close(pe->conn, why);
		return;
	}
	if (!pe->hello_in) {
		if (type == WIRE_HELLO)
			peer_on_hello(pe, payload, len);
		else if (type == WIRE_PEERS && !conn_incoming(c))
			peer_on_peers(pe, payload, len);	/* then BYE full */
		else {
			snprintf(why, sizeof(why), "%s before introduction",
			    wire_type_name(type, tmp, sizeof(tmp)));
			peer_drop(pe, WIRE_BYE_PROTOCOL, why);
		}
		return;
	}
	if (pe->state != PEER_ACTIVE)
		return;		/* closing: purgatory or duplicate */
	switch (type) {
	case WIRE_PING:
		if (wire_ping_decode(payload, len, &token) < 0)
			break;
		buf_reset(&pe->pr->frame);
		if (wire_pong_encode(&pe->pr->frame, token) == 0)
			peer_send_frame(pe);
		return;
	case WIRE_PONG:
		if (wire_pong_decode(payload, len, &token) < 0)
			break;
		return;
	case WIRE_PEERS:
		peer_on_peers(pe, payload, len);
		return;
	default:
		if (type >= WIRE_REPL_FIRST && type <= WIRE_REPL_LAST &&
		    pe->sp != NULL) {
			if (sync_frame(pe->pr->sync, pe->sp, type, payload, len,
			    why, sizeof(why)) < 0)
				peer_drop(pe, WIRE_BYE_PROTOCOL, why);
			return;
		}
		snprintf(why, sizeof(why), "unexpected %s frame",
		    wire_type_name(type, tmp, sizeof(tmp)));
		peer_drop(pe, WIRE_BYE_PROTOCOL, why);
		return;
	}
	snprintf(why, sizeof(why), "bad %s frame",
	    wire_type_name(type, tmp, sizeof(tmp)));
	peer_drop(pe, WIRE_BYE_PROTOCOL, why);
}

static void
peer_conn_close(void *arg, struct conn *c, const char *reason)
{
	struct peer *pe = arg;
	struct peering *p = pe->pr;
	bool was_active = pe->state == PEER_ACTIVE;

	(void)c;
	peer_unsync(pe);
	pe->conn = NULL;
	if (was_active)
		log_info("peer %s (%s): connection closed: %s",
		    pe->id[0] ? pe->id : "?", pe->remote[0] ? pe->remote :
		    pe->host, reason);
	else if (pe->state == PEER_CONNECTING || pe->state == PEER_INCOMING)
		log_warnx("peer connection refused: %s %s (%s): %s",
		    pe->state == PEER_INCOMING ? "from" : "to",
		    pe->remote[0] ? pe->remote : pe->host,
		    pe->id[0] ? pe->id : "not introduced", reason);
	if (atomic_load(&p->stopping)) {
		bool open = false;

		if (pe->state != PEER_PURGATORY)
			peer_set_state(pe, PEER_LIFESUPPORT, reason);
		for (struct peer *q = p->peers; q != NULL; q = q->next)
			open |= q->conn != NULL;
		if (!open)
			loop_stop(p->loop);
		return;
	}
	if (pe->state == PEER_PURGATORY) {
		peering_publish(p);
		return;		/* its timer deletes it */
	}
	if (pe->state == PEER_INCOMING && pe->host[0] == '\0') {
		/* never introduced, nothing to dial */
		snprintf(pe->reason, sizeof(pe->reason), "%s", reason);
		peer_forget(pe);
		if (was_active)
			peering_exchange(p);
		return;
	}
	peer_lifesupport(pe, reason);
	if (was_active)
		peering_exchange(p);
}

static void
peering_accept(void *arg, uint32_t events)
{
	struct peering *p = arg;

	(void)events;
	for (;;) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		struct peer *pe;
		struct err e;
		int fd = accept4(p->listen_fd, (struct sockaddr *)&ss, &sl,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR)
				log_warn("accept");
			return;
		}
		if (atomic_load(&p->stopping) ||
		    peering_count(p, PEER_INCOMING) >= PEERING_MAX_HANDSHAKES ||
		    peering_count_conns(p) >= p->cfg->max_peers +
		    PEERING_MAX_HANDSHAKES) {
			log_warnx("incoming connection refused: too many peers "
			    "or handshakes");
			close(fd);
			continue;
		}
		if ((pe = peer_new(p, NULL, 0)) == NULL) {
			close(fd);
			continue;
		}
		err_clear(&e);
		if (conn_accept(&pe->conn, p->loop, p->tls, fd,
		    p->cfg->handshake_ms, &peer_conn_cb, pe, &e) < 0) {
			pe->conn = NULL;
			log_warnx("incoming connection: %s", e.msg);
			peer_forget(pe);
			continue;
		}
		snprintf(pe->remote, sizeof(pe->remote), "%s",
		    conn_peer_addr(pe->conn));
		pe->state = PEER_INCOMING;
		peering_publish(p);
		loop_timer_arm(pe->timer, p->cfg->handshake_ms);
	}
}

static bool
peering_is_self(const struct peering *p, const char *host, uint16_t port)
{
	char a[PEERING_HOST_MAX + 8];

	snprintf(a, sizeof(a), "%.*s:%u", PEERING_HOST_MAX, host, port);
	for (size_t i = 0; i < p->nself; i++)
		if (strcmp(p->self[i], a) == 0)
			return true;
	return false;
}

/* One numeric address of a seed (name: the name it came from, or NULL). */
static void
peering_add_seed_addr(struct peering *p, const char *num, uint16_t port,
    const char *name)
{
	struct peer *pe;

	if (peering_is_self(p, num, port))
		return;
	if ((pe = peering_find_addr(p, num, port, NULL)) != NULL) {
		pe->seed = true;
		return;
	}
	if ((pe = peer_new(p, num, port)) == NULL)
		return;
	pe->seed = true;
	if (name != NULL)
		log_info("peer ? (%s:%u) from seed %s", num, port, name);
	peer_dial(pe);
}

/*
 * Seeds: every address a seed's name resolves to gets an entry, when the
 * resolver threads answer (peering_resolved); a numeric seed gets one at
 * once.  At the start (first) a name gets an entry of its own, which
 * waits connecting for the answer, and on lifesupport, retried with
 * backoff, while the name does not resolve.  Later the names are only
 * asked about again: the answer adds any new address.
 */
static void
peering_add_seed(struct peering *p, const char *addr, bool first)
{
	char host[PEERING_HOST_MAX + 1], num[PEERING_HOST_MAX + 1];
	struct addrinfo *res = NULL;
	uint16_t port;
	struct peer *pe;
	int rc;

	if (!peering_split(addr, host, sizeof(host), &port))
		return;
	if (peering_numeric(host, port, &res) == 0) {
		if (getnameinfo(res->ai_addr, res->ai_addrlen, num, sizeof(num),
		    NULL, 0, NI_NUMERICHOST) == 0)
			peering_add_seed_addr(p, num, port, NULL);
		freeaddrinfo(res);
		return;
	}
	if (first) {
		if (peering_find_addr(p, host, port, NULL) == NULL &&
		    (pe = peer_new(p, host, port)) != NULL) {
			pe->seed = true;
			peer_dial(pe);
		}
		return;
	}
	rc = resolve_start(p->resolver, host);
	if (rc < 0 && rc != -EALREADY)
		log_debug("seed %s not resolved again: %s", host,
		    rc == -EAGAIN ? "too many names being resolved" :
		    strerror(-rc));
}

/*
 * The resolver's answer about a name, for every seed that uses it: on
 * success each address gets an entry, and the entries under the name
 * are forgotten (the addresses replace them); on failure the entries that
 * waited for it go to lifesupport, and a seed's name without an entry
 * of its own gets one there, retried with backoff.
 */
static void
peering_resolved(void *arg, const struct resolve_answer *a)
{
	struct peering *p = arg;
	char host[PEERING_HOST_MAX + 1], why[PEERING_REASON_MAX];
	struct peer *pe, *next;
	uint16_t port;

	if (atomic_load(&p->stopping))
		return;
	snprintf(why, sizeof(why), "resolve %.120s: %.60s", a->name,
	    a->status != 0 ? gai_strerror(a->status) : "no address");
	for (size_t i = 0; i < p->cfg->npeers; i++) {
		if (!peering_split(p->cfg->peers[i], host, sizeof(host), &port) ||
		    strcmp(host, a->name) != 0)
			continue;
		if (a->status == 0) {
			for (size_t k = 0; k < a->naddrs; k++)
				peering_add_seed_addr(p, a->addrs[k], port,
				    a->name);
		} else if (peering_find_addr(p, host, port, NULL) == NULL &&
		    (pe = peer_new(p, host, port)) != NULL) {
			pe->seed = true;
			peer_lifesupport(pe, why);
		}
	}
	for (pe = p->peers; pe != NULL; pe = next) {
		next = pe->next;	/* entries made here go first: not seen */
		if (!pe->seed || pe->conn != NULL ||
		    strcmp(pe->host, a->name) != 0)
			continue;
		if (a->status == 0) {
			for (size_t k = 0; k < a->naddrs; k++)
				peering_add_seed_addr(p, a->addrs[k], pe->port,
				    a->name);
			peer_forget(pe);
		} else if (pe->resolving) {
			pe->resolving = false;
			peer_lifesupport(pe, why);
		}
	}
}

static void
peering_add_history(void *arg, const struct history_entry *h)
{
	struct peering *p = arg;
	struct peer *pe;

	if (strcmp(h->id, p->id) == 0 ||
	    peering_find_addr(p, h->host, h->port, NULL) != NULL ||
	    peering_find_id(p, h->id, NULL) != NULL)
		return;
	if ((pe = peer_new(p, h->host, h->port)) == NULL)
		return;
	snprintf(pe->id, sizeof(pe->id), "%s", h->id);
	log_info("peer %s (%s:%u) from history", h->id, h->host, h->port);
	peer_dial(pe);
}

static void
peering_seeds(struct peering *p, bool first)
{
	for (size_t i = 0; i < p->cfg->npeers; i++)
		peering_add_seed(p, p->cfg->peers[i], first);
}

/* Asks about the seeds' names now and then: names may gain addresses. */
static void
peering_tick(void *arg)
{
	struct peering *p = arg;

	if (atomic_load(&p->stopping))
		return;
	peering_seeds(p, false);
	loop_timer_arm(p->tick, PEERING_RESEED_MS);
}

static void
peering_wake(void *arg)
{
	struct peering *p = arg;
	bool open = false;

	if (!atomic_load(&p->stopping)) {
		resolve_dispatch(p->resolver);
		if (atomic_exchange(&p->committed, false))
			sync_pump(p->sync);
		return;
	}
	for (struct peer *pe = p->peers; pe != NULL; pe = pe->next) {
		loop_timer_cancel(pe->timer);
		if (pe->conn != NULL) {
			peer_drop(pe, WIRE_BYE_SHUTDOWN, "shutting down");
			open = true;
		}
	}
	if (!open)
		loop_stop(p->loop);
}

static void
peering_sync_tick(void *arg)
{
	struct peering *p = arg;

	if (atomic_load(&p->stopping))
		return;
	sync_tick(p->sync);
	loop_timer_arm(p->sync_tick, p->cfg->tick_ms);
}

void
peering_notify(void *arg, uint32_t idx, uint64_t head)
{
	struct peering *p = arg;

	(void)idx;
	(void)head;
	if (p != NULL && sync_streaming(p->sync) &&
	    !atomic_exchange(&p->committed, true))
		loop_wake(p->loop);
}

bool
peering_known(struct peering *p, const char *id, size_t len)
{
	return p != NULL && sync_known(p->sync, id, len);
}

int
peering_render_sync(struct peering *p, struct buf *out)
{
	return sync_render_json(p->sync, out);
}

int
peering_render_metrics(struct peering *p, struct buf *out)
{
	return sync_render_metrics(p->sync, out);
}

static void *
peering_main(void *arg)
{
	struct peering *p = arg;
	struct err e;

	err_clear(&e);
	if (loop_run(p->loop, &e) < 0)
		log_warnx("net loop stopped: %s", e.msg);
	return NULL;
}

int
peering_open(struct peering **out, const struct config *cfg,
    struct journal *j, int listen_fd, struct err *e)
{
	struct peering *p;
	char cn[CONFIG_ID_MAX + 1];
	int rc;

	*out = NULL;
	if ((p = calloc(1, sizeof(*p))) == NULL) {
		if (listen_fd >= 0)
			close(listen_fd);
		return err_set(e, -ENOMEM, "out of memory");
	}
	p->cfg = cfg;
	p->journal = j;
	p->listen_fd = listen_fd;
	snprintf(p->id, sizeof(p->id), "%s", cfg->node_id);
	pthread_mutex_init(&p->view_lock, NULL);
	buf_init(&p->frame, PEERING_FRAME_BUF);
	if (getrandom(&p->nonce, sizeof(p->nonce), 0) != sizeof(p->nonce))
		p->nonce = (uint64_t)time(NULL) ^ (uint64_t)getpid();
	if ((rc = tls_ctx_open(&p->tls, cfg->tls_cert, cfg->tls_key,
	    cfg->tls_ca, e)) < 0)
		goto fail;
	if ((rc = tls_ctx_own_id(p->tls, cn, sizeof(cn), e)) < 0)
		goto fail;
	if (strcmp(cn, p->id) != 0) {
		rc = err_set(e, -EINVAL, "node id %s does not match the CN %s "
		    "of tls.cert %s", p->id, cn, cfg->tls_cert);
		goto fail;
	}
	if ((rc = tls_ctx_check(p->tls, e)) < 0)
		goto fail;
	if ((rc = loop_open(&p->loop, e)) < 0 ||
	    (rc = sync_open(&p->sync, cfg, j, p->loop, e)) < 0 ||
	    (rc = loop_timer_add(&p->sync_tick, p->loop, peering_sync_tick, p,
	    e)) < 0 ||
	    (rc = loop_timer_add(&p->tick, p->loop, peering_tick, p, e)) < 0 ||
	    (rc = loop_task_add(&p->reap, p->loop, peering_reap, p, e)) < 0 ||
	    (rc = resolve_open(&p->resolver, p->loop, peering_resolved, p,
	    e)) < 0)
		goto fail;
	loop_on_wake(p->loop, peering_wake, p);
	if (listen_fd >= 0 && (rc = loop_fd_add(&p->listen_h, p->loop,
	    listen_fd, EPOLLIN, peering_accept, p, e)) < 0)
		goto fail;
	*out = p;
	return 0;
fail:
	peering_close(p);
	return rc;
}

int
peering_start(struct peering *p, struct err *e)
{
	int rc;

	/* names go to the resolver threads: nothing here waits for one */
	peering_seeds(p, true);
	loop_timer_arm(p->tick, PEERING_RESEED_MS);
	loop_timer_arm(p->sync_tick, p->cfg->tick_ms);
	if (history_load(p->journal, peering_add_history, p, e) < 0)
		log_warnx("peer history not loaded: %s", e->msg);
	if ((rc = pthread_create(&p->thread, NULL, peering_main, p)) != 0)
		return err_set(e, -rc, "net thread: %s", strerror(rc));
	p->started = true;
	return 0;
}

void
peering_stop(struct peering *p)
{
	if (p == NULL || !p->started)
		return;
	atomic_store(&p->stopping, true);
	loop_wake(p->loop);
	pthread_join(p->thread, NULL);
	p->started = false;
}

void
peering_close(struct peering *p)
{
	if (p == NULL)
		return;
	peering_stop(p);
	/* no answer is dispatched any more; lookups under way are abandoned */
	resolve_close(p->resolver);
	while (p->peers != NULL) {
		struct peer *pe = p->peers;

		p->peers = pe->next;
		if (pe->sp != NULL)
			sync_peer_del(p->sync, pe->sp);
		loop_timer_del(pe->timer);
		free(pe);
	}
	sync_close(p->sync);
	if (p->loop != NULL)
		peering_reap(p);
	loop_fd_del(p->listen_h);
	loop_timer_del(p->tick);
	loop_timer_del(p->sync_tick);
	loop_task_del(p->reap);
	loop_close(p->loop);
	if (p->listen_fd >= 0)
		close(p->listen_fd);
	tls_ctx_close(p->tls);
	buf_release(&p->frame);
	free(p->views);
	pthread_mutex_destroy(&p->view_lock);
	free(p);
}

int
peering_render_json(struct peering *p, struct buf *out)
{
	int rc = buf_append(out, "[", 1);

	pthread_mutex_lock(&p->view_lock);
	for (size_t i = 0; i < p->nviews && rc == 0; i++) {
		const struct peer_view *v = &p->views[i];

		rc |= buf_printf(out, "%s{\"id\":", i ? "," : "");
		rc |= v->id[0] ? buf_json_str(out, v->id, strlen(v->id)) :
		    buf_printf(out, "null");
		rc |= buf_printf(out, ",\"address\":");
		rc |= buf_json_str(out, v->addr, strlen(v->addr));
		rc |= buf_printf(out, ",\"remote\":");
		rc |= buf_json_str(out, v->remote, strlen(v->remote));
		rc |= buf_printf(out, ",\"state\":\"%s\",\"since\":%lld,"
		    "\"attempt\":%u,\"seed\":%s,\"direction\":\"%s\","
		    "\"reason\":", peer_state_names[v->state],
		    (long long)v->since, v->attempt, v->seed ? "true" : "false",
		    v->incoming ? "in" : "out");
		rc |= buf_json_str(out, v->reason, strlen(v->reason));
		rc |= buf_append(out, "}", 1);
	}
	pthread_mutex_unlock(&p->view_lock);
	rc |= buf_append(out, "]", 1);
	return rc ? -E2BIG : 0;
}

int
peering_render_table(struct peering *p, struct buf *out)
{
	int rc = buf_printf(out, "%-20s %-24s %-12s %-20s %7s  %s\n", "ID",
	    "ADDRESS", "STATE", "SINCE", "ATTEMPT", "REASON");

	pthread_mutex_lock(&p->view_lock);
	for (size_t i = 0; i < p->nviews && rc == 0; i++) {
		const struct peer_view *v = &p->views[i];
		char since[32];
		struct tm tm;

		gmtime_r(&v->since, &tm);
		strftime(since, sizeof(since), "%Y-%m-%dT%H:%M:%SZ", &tm);
		rc |= buf_printf(out, "%-20s %-24s %-12s %-20s %7u  %s\n",
		    v->id[0] ? v->id : "-", v->addr[0] ? v->addr :
		    (v->remote[0] ? v->remote : "-"), peer_state_names[v->state],
		    since, v->attempt, v->reason[0] ? v->reason : "-");
	}
	pthread_mutex_unlock(&p->view_lock);
	return rc ? -E2BIG : 0;
}
