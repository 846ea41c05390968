/*
 * peering: see peering.h; how the peering modules divide the work is in
 * peering_impl.h.  Here: the thread and its loop, the listener, the table
 * of entries and the bound of max_peers, the ticks, and what .status and
 * .peers show.
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

#include "jobs.h"
#include "listen.h"
#include "log.h"
#include "loop.h"
#include "peering_impl.h"

/* Publishes the table for .status and .peers. */
void
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
peering_reap(void *arg)
{
	struct peering *p = arg;

	while (p->dead != NULL) {
		struct peer *pe = p->dead;

		p->dead = pe->next;
		loop_timer_del(pe->timer);
		peer_probe_end(pe);
		free(pe);
	}
}

struct peer *
peering_find_id(struct peering *p, const char *id, const struct peer *not)
{
	for (struct peer *pe = p->peers; pe != NULL; pe = pe->next)
		if (pe != not && pe->id[0] != '\0' && strcmp(pe->id, id) == 0 &&
		    pe->state != PEER_PURGATORY)
			return pe;
	return NULL;
}

struct peer *
peering_find_addr(struct peering *p, const char *host, uint16_t port,
    const struct peer *not)
{
	for (struct peer *pe = p->peers; pe != NULL; pe = pe->next)
		if (pe != not && pe->port == port && strcmp(pe->host, host) == 0)
			return pe;
	return NULL;
}

size_t
peering_count(struct peering *p, int state)
{
	size_t n = 0;

	for (struct peer *pe = p->peers; pe != NULL; pe = pe->next)
		if (state < 0 || (int)pe->state == state)
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
 * A slot is taken by a link or by a dial under way; the latter frees it
 * within handshake_ms (a refusal, within milliseconds).
 */
enum peering_room
peering_dial_room(struct peering *p)
{
	size_t slots = (p->cfg->max_peers + 1) / 2;
	size_t active = 0, links = 0, dials = 0;

	for (struct peer *pe = p->peers; pe != NULL; pe = pe->next) {
		bool out = pe->conn != NULL && !conn_incoming(pe->conn);

		if (pe->state == PEER_ACTIVE) {
			active++;
			links += out;
		} else if (pe->state == PEER_CONNECTING) {
			dials += out;
		}
	}
	if (active >= p->cfg->max_peers || links >= slots)
		return PEERING_ROOM_NONE;
	if (links + dials >= slots)
		return PEERING_ROOM_SOON;
	return PEERING_ROOM_FREE;
}

/*
 * Whether a connection from (or to) id would exceed max_peers.  A link
 * being restored after a partition (peer->rejoin) keeps its slot until it
 * is back or given up, so that newcomers do not take it meanwhile; the
 * id of an active or rejoining entry takes its own slot, whichever end
 * dials (the introduction keeps one connection per id).
 */
bool
peering_full(struct peering *p, const char *id)
{
	size_t n = 0;

	for (struct peer *pe = p->peers; pe != NULL; pe = pe->next) {
		bool held = pe->state == PEER_ACTIVE || pe->rejoin;

		if (held && id != NULL && pe->id[0] != '\0' &&
		    strcmp(pe->id, id) == 0)
			return false;
		n += held;
	}
	return n >= p->cfg->max_peers;
}

/*
 * A wait of ms, spread over [ms/2, 3ms/2].  Entries that wait for a free
 * dial slot were mostly learnt together (one PEERS frame names several);
 * with one fixed wait they would all fire together, one would take the
 * slot and the rest wait again, so a node tried one of them per wait and
 * could reach the one with room only after minutes.  Spread, they fire
 * one by one and each finds the slot free again.  xorshift64*: no
 * secret, only no two nodes and no two entries in step.
 */
uint64_t
peering_jitter(struct peering *p, uint64_t ms)
{
	uint64_t x = p->rng;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	p->rng = x;
	x *= 0x2545f4914f6cdd1dull;
	return ms / 2 + (x >> 11) % (ms + 1);
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

static void
peering_wake(void *arg)
{
	struct peering *p = arg;
	bool open = false;

	if (!atomic_load(&p->stopping)) {
		resolve_dispatch(p->resolver);
		if (atomic_exchange(&p->committed, false))
			sync_pump(p->sync);
		if (atomic_exchange(&p->wanted, false))
			sync_wants_drain(p->sync);
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

/* Path checks of stalled connections (peer_probe_tick), every PEER_PROBE_MS. */
static void
peering_probe_tick(void *arg)
{
	struct peering *p = arg;

	if (atomic_load(&p->stopping))
		return;
	for (struct peer *pe = p->peers; pe != NULL; pe = pe->next)
		peer_probe_tick(pe, loop_now_ms());
	loop_timer_arm(p->probe_tick, PEER_PROBE_MS);
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

void
peering_want_durable(struct peering *p, uint32_t idx, uint64_t rev)
{
	if (p != NULL && sync_want_post(p->sync, idx, rev) &&
	    !atomic_exchange(&p->wanted, true))
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
    struct journal *j, struct holders *h, int listen_fd, struct err *e)
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
	p->rng = p->nonce | 1;
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
	    (rc = sync_open(&p->sync, cfg, j, h, p->loop, e)) < 0 ||
	    (rc = loop_timer_add(&p->sync_tick, p->loop, peering_sync_tick, p,
	    e)) < 0 ||
	    (rc = loop_timer_add(&p->probe_tick, p->loop, peering_probe_tick, p,
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
	loop_timer_arm(p->probe_tick, PEER_PROBE_MS);
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
		peer_probe_end(pe);
		free(pe);
	}
	sync_close(p->sync);
	if (p->loop != NULL)
		peering_reap(p);
	loop_fd_del(p->listen_h);
	loop_timer_del(p->tick);
	loop_timer_del(p->sync_tick);
	loop_timer_del(p->probe_tick);
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
