/*
 * peer: one entry of the peer table and its state machine (SPEC §7):
 * connecting, incoming, active (introduction checked against the
 * certificate, heartbeat), lifesupport (redial with backoff), purgatory
 * (ourselves, or a second connection to an active id); and the callbacks
 * of its connection.
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "jobs.h"
#include "listen.h"
#include "log.h"
#include "loop.h"
#include "peering_impl.h"

const char *const peer_state_names[] = {
	[PEER_CONNECTING] = "connecting",
	[PEER_INCOMING] = "incoming",
	[PEER_ACTIVE] = "active",
	[PEER_LIFESUPPORT] = "lifesupport",
	[PEER_PURGATORY] = "purgatory",
};

static void peer_timer(void *arg);
static void peer_try(struct peer *pe, bool due);
static void peer_conn_open(void *arg, struct conn *c);
static void peer_conn_frame(void *arg, struct conn *c, uint8_t type,
    const uint8_t *payload, size_t len);
static void peer_conn_close(void *arg, struct conn *c, const char *reason);
static void peer_conn_writable(void *arg, struct conn *c);

const struct conn_cb peer_conn_cb = {
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

void
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

struct peer *
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
	pe->probe_fd = -1;
	snprintf(pe->host, sizeof(pe->host), "%s", host ? host : "");
	pe->port = port;
	pe->since = time(NULL);
	pe->state = PEER_LIFESUPPORT;
	pe->next = p->peers;
	p->peers = pe;
	return pe;
}

/* Unlinks pe; it is freed after this round.  Its connection must be gone. */
void
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
	peer_probe_end(pe);
	pe->dead = true;
	pe->next = p->dead;
	p->dead = pe;
	loop_task_post(p->reap);
	peering_publish(p);
}

/* Sends one encoded frame from p->frame; a full queue drops it (logged). */
void
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
void
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
void
peer_lifesupport(struct peer *pe, const char *reason)
{
	const struct config *cfg = pe->pr->cfg;
	unsigned step;

	pe->hello_in = false;
	pe->rejoin = false;	/* a failed redial gives the slot up */
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
	pe->rejoin = false;
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
		if (st.bytes_in != pe->rx_bytes ||
		    (pe->sp != NULL && sync_peer_paused(pe->sp))) {
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
		peer_try(pe, true);
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
int
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
 * Dials pe if a dial slot is free.  due: pe's own timer brought it here
 * (not learning it, or a seed), so it has waited its turn already.
 */
static void
peer_try(struct peer *pe, bool due)
{
	struct peering *p = pe->pr;
	struct addrinfo *res = NULL;
	char why[PEERING_REASON_MAX];
	enum peering_room room;
	uint64_t wait;
	struct err e;
	int rc;

	if (atomic_load(&p->stopping) || pe->conn != NULL || pe->resolving)
		return;
	/* a link that was there a moment ago takes its old slot back */
	room = pe->rejoin ? PEERING_ROOM_FREE : peering_dial_room(p);
	if (room != PEERING_ROOM_FREE) {
		/*
		 * Known, not connected: tried again when a slot may be free,
		 * after backoff_ms[0], spread so that entries learnt together
		 * take their turns one by one.  One whose turn has come but
		 * finds the slot held by a dial under way (most dials of nodes
		 * with no room end in a refusal within milliseconds) keeps its
		 * turn and looks again shortly (while a dial that hangs holds
		 * the slot, up to handshake_ms).  However many are learnt, an
		 * entry is dialled at most once a turn.
		 */
		wait = p->cfg->backoff_ms[0];
		if (due && room == PEERING_ROOM_SOON && wait > PEER_SLOT_SOON_MS)
			wait = PEER_SLOT_SOON_MS;
		peer_set_state(pe, PEER_LIFESUPPORT, pe->reason[0] ? NULL :
		    "waiting for a free peer slot");
		loop_timer_arm(pe->timer, peering_jitter(p, wait));
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

void
peer_dial(struct peer *pe)
{
	peer_try(pe, false);
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
	if (conn_incoming(c) && peering_full(pe->pr, conn_peer_id(c))) {
		peer_refuse_full(pe);
		return;
	}
	peer_send_hello(pe);
}

static void
peer_activate(struct peer *pe)
{
	struct peering *p = pe->pr;
	struct history_entry h;

	pe->attempt = 0;
	pe->rejoin = false;
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
		/*
		 * Unless the active one is stalled or silent: the peer dials
		 * again because its end of it is dead (a partition healed).
		 */
		bool stale = conn_stalled(other->conn) || loop_now_ms() -
		    other->last_rx_ms >= 2ull * p->cfg->tick_ms;
		struct peer *loser = stale || (pe_small && !other_small) ?
		    other : pe;
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
	if (peering_full(p, pe->id)) {
		peer_refuse_full(pe);
		return;
	}
	peer_activate(pe);
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
	if (pe->redial_now) {
		/* the path is back: dial at once, no backoff */
		pe->redial_now = false;
		pe->hello_in = false;
		peer_set_state(pe, PEER_LIFESUPPORT, reason);
		loop_timer_arm(pe->timer, 0);
	} else {
		peer_lifesupport(pe, reason);
	}
	if (was_active)
		peering_exchange(p);
}

/*
 * Healing after a partition.  While a connection is cut, TCP backs off
 * retransmitting (seconds, then tens of seconds), and it would carry
 * nothing until its next try, long after the path is back.  So while
 * pe's connection is stalled (conn_stalled) a probe, a plain TCP connect
 * to its address, is made every PEER_PROBE_MS (a fresh SYN each time: a
 * probe with no answer by then is dropped); once one connects, the
 * path is back: the stalled connection is closed and pe is dialled at
 * once (the peer's side takes the new connection over its silent one).
 */
void
peer_probe_end(struct peer *pe)
{
	if (pe->probe_fd < 0)
		return;
	loop_fd_del(pe->probe);
	close(pe->probe_fd);
	pe->probe = NULL;
	pe->probe_fd = -1;
}

static void
peer_probe_ready(void *arg, uint32_t events)
{
	struct peer *pe = arg;
	int err = 0;
	socklen_t len = sizeof(err);

	(void)events;
	if (getsockopt(pe->probe_fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	peer_probe_end(pe);
	if (err != 0 || pe->state != PEER_ACTIVE || pe->conn == NULL ||
	    !conn_stalled(pe->conn))
		return;
	log_info("peer %s (%s:%u): the path is back while the connection is "
	    "stalled; connecting again", pe->id, pe->host, pe->port);
	pe->redial_now = true;
	pe->rejoin = true;
	/* nothing would get through it: no goodbye, no lingering */
	peer_unsync(pe);
	conn_abort(pe->conn, "connection stalled; connecting again");
}

void
peer_probe_tick(struct peer *pe, uint64_t now)
{
	struct peering *p = pe->pr;
	struct addrinfo *res = NULL;
	struct err e;
	int fd;

	if (pe->probe_fd >= 0 && now - pe->probe_ms < PEER_PROBE_MS)
		return;
	peer_probe_end(pe);
	if (pe->state != PEER_ACTIVE || pe->conn == NULL || pe->host[0] == '\0' ||
	    !conn_stalled(pe->conn) ||
	    peering_numeric(pe->host, pe->port, &res) != 0)
		return;
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) < 0 &&
	    errno != EINPROGRESS) {
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return;
	err_clear(&e);
	if (loop_fd_add(&pe->probe, p->loop, fd, EPOLLOUT, peer_probe_ready, pe,
	    &e) < 0) {
		close(fd);
		return;
	}
	pe->probe_fd = fd;
	pe->probe_ms = now;
}
