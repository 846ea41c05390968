/*
 * discovery: where peer entries come from (SPEC §7): the seeds (names go
 * to the resolver threads, every address a name resolves to gets an
 * entry, names are resolved again every PEERING_RESEED_MS), peer exchange
 * (PEERS frames: our active peers' addresses, and what others send), and
 * the peer history (every peer that became active is saved by the job
 * thread and dialled again after a restart).
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "jobs.h"
#include "listen.h"
#include "log.h"
#include "loop.h"
#include "peering_impl.h"

/*
 * A seed's entry under its name: the resolver threads look the name up
 * and the entry waits, connecting, for the answer (peering_resolved),
 * without a timer: the answer, however late, moves it on.
 */
void
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

/* PEERS: the active peers we can give an address for, but pe itself. */
void
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
void
peering_exchange(struct peering *p)
{
	for (struct peer *pe = p->peers; pe != NULL; pe = pe->next)
		if (pe->state == PEER_ACTIVE)
			peer_send_peers(pe);
}

/* Takes a "HOST:PORT" listen address apart; false if it is not one. */
bool
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

void
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

void
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
void
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

void
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

void
peering_seeds(struct peering *p, bool first)
{
	for (size_t i = 0; i < p->cfg->npeers; i++)
		peering_add_seed(p, p->cfg->peers[i], first);
}

/* Asks about the seeds' names now and then: names may gain addresses. */
void
peering_tick(void *arg)
{
	struct peering *p = arg;

	if (atomic_load(&p->stopping))
		return;
	peering_seeds(p, false);
	loop_timer_arm(p->tick, PEERING_RESEED_MS);
}
