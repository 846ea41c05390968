/*
 * sync: see sync.h; how the replication modules divide the work is in
 * sync_impl.h.  Here: the state, peers coming and going, the tick, frames
 * to their handlers, and what .status and .metrics show.
 */
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "loop.h"

#include "sync_impl.h"

bool
sync_selected(const struct sync *s, const char *dev)
{
	for (size_t i = 0; i < s->cfg->ndevices; i++)
		if (fnmatch(s->cfg->devices[i], dev, 0) == 0)
			return true;
	return false;
}

void
sync_send(struct sync_peer *sp)
{
	int rc = conn_send(sp->conn, sp->s->frame.data, sp->s->frame.len);

	if (rc < 0 && rc != -EPIPE)
		log_warnx("peer %s: replication frame not sent: %s", sp->id,
		    strerror(-rc));
}

static void
sync_counters_publish(struct sync *s)
{
	struct peer_counters *c;
	struct conn_stats st;
	size_t n = 0, i = 0;

	for (struct sync_peer *sp = s->peers; sp != NULL; sp = sp->next)
		n++;
	if ((c = calloc(n ? n : 1, sizeof(*c))) == NULL)
		return;
	for (struct sync_peer *sp = s->peers; sp != NULL; sp = sp->next, i++) {
		snprintf(c[i].id, sizeof(c[i].id), "%s", sp->id);
		c[i].events_in = sp->events_in;
		c[i].events_out = sp->events_out;
		c[i].bytes_in = sp->bytes_in;
		c[i].bytes_out = sp->bytes_out;
		c[i].serves = sp->nserves;
		conn_stats(sp->conn, &st);
		c[i].queued = st.send_queued;
		c[i].rate = sp->rate;
		c[i].budget = sp->budget;
		c[i].wire_in = st.bytes_in;
		c[i].wire_out = st.bytes_out;
	}
	pthread_mutex_lock(&s->view_lock);
	free(s->counters);
	s->counters = c;
	s->ncounters = n;
	pthread_mutex_unlock(&s->view_lock);
}

typedef int (*sync_handler)(struct sync *s, struct sync_peer *sp,
    const uint8_t *p, size_t n);

/* Replication frames by type; a type without a handler is a bad frame. */
static const sync_handler
    sync_handlers[WIRE_REPL_LAST - WIRE_REPL_FIRST + 1] = {
	[WIRE_CATALOGUE - WIRE_REPL_FIRST] = sync_on_catalogue,
	[WIRE_SUBSCRIBE - WIRE_REPL_FIRST] = sync_on_subscribe,
	[WIRE_UNSUBSCRIBE - WIRE_REPL_FIRST] = sync_on_unsubscribe,
	[WIRE_EVENTS - WIRE_REPL_FIRST] = sync_on_events,
	[WIRE_SNAPSHOT - WIRE_REPL_FIRST] = sync_on_snapshot,
	[WIRE_REJECT - WIRE_REPL_FIRST] = sync_on_reject,
	[WIRE_ACK - WIRE_REPL_FIRST] = sync_on_ack,
	[WIRE_WANT - WIRE_REPL_FIRST] = sync_on_want,
};

int
sync_frame(struct sync *s, struct sync_peer *sp, uint8_t type,
    const uint8_t *payload, size_t len, char *why, size_t whysz)
{
	sync_handler h = type >= WIRE_REPL_FIRST && type <= WIRE_REPL_LAST ?
	    sync_handlers[type - WIRE_REPL_FIRST] : NULL;

	if (h == NULL || h(s, sp, payload, len) < 0) {
		char tmp[32];

		snprintf(why, whysz, "bad %s frame",
		    wire_type_name(type, tmp, sizeof(tmp)));
		return -EPROTO;
	}
	return 0;
}

struct sync_peer *
sync_peer_add(struct sync *s, const char *id, struct conn *c)
{
	struct sync_peer *sp = calloc(1, sizeof(*sp));

	if (sp == NULL)
		return NULL;
	sp->s = s;
	snprintf(sp->id, sizeof(sp->id), "%s", id);
	sp->conn = c;
	sp->budget = SYNC_FRAME_START;
	sp->mark_ms = sp->added_ms = loop_now_ms();
	pthread_mutex_lock(&s->cat_lock);
	sp->next = s->peers;
	s->peers = sp;
	pthread_mutex_unlock(&s->cat_lock);
	sync_catalogue_start(s, sp, true);
	sync_counters_publish(s);
	return sp;
}

void
sync_peer_del(struct sync *s, struct sync_peer *sp)
{
	if (sp == NULL)
		return;
	pthread_mutex_lock(&s->cat_lock);
	for (struct sync_peer **pp = &s->peers; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == sp) {
			*pp = sp->next;
			break;
		}
	}
	pthread_mutex_unlock(&s->cat_lock);
	/* what we followed from it: choose again */
	for (size_t i = 0; i < s->nfollow; i++) {
		struct follow *f = &s->follow[i];

		if (f->up != sp)
			continue;
		sync_follow_drop(s, (uint32_t)i, f);
		sync_evaluate_device(s, (uint32_t)i);
	}
	while (sp->nserves > 0)
		sync_serve_drop(sp, &sp->serves[0]);
	free(sp->serves);
	sp->serves = NULL;
	cat_free(&sp->cat);
	sp->conn = NULL;
	sp->gone = true;
	if (sp->jobs == 0)
		sync_peer_free(sp);	/* else its last job's done frees it */
	sync_counters_publish(s);
}

void
sync_peer_free(struct sync_peer *sp)
{
	free(sp);
}

void
sync_tick(struct sync *s)
{
	uint64_t now = loop_now_ms(), clock = journal_clock(s->journal);

	/* what changed since each peer last heard */
	for (struct sync_peer *sp = s->peers; sp != NULL; sp = sp->next) {
		sync_link(sp, now);
		if (sp->cat_busy)
			sync_catalogue_pump(s, sp);
		else if (clock > sp->cat_clock)
			sync_catalogue_start(s, sp, false);
	}
	sync_follow_tick(s, now);
	if (now >= s->next_eval_ms || s->unsettled) {
		if (s->unsettled) {
			s->unsettled = false;
			for (size_t i = 0; i < s->seen.n; i++)
				if (journal_lookup(s->journal, s->seen.e[i].device,
				    strlen(s->seen.e[i].device), &(uint32_t){0}) < 0)
					s->unsettled = true;
		}
		sync_evaluate_all(s);
		atomic_fetch_add_explicit(&s->evaluations, 1,
		    memory_order_relaxed);
		if (!s->unsettled)
			cat_clear(&s->seen);
		if (now >= s->next_eval_ms)
			s->next_eval_ms = now + s->cfg->evaluate_ms;
	}
	sync_pump(s);
	sync_acks_tick(s);
	sync_counters_publish(s);
}

int
sync_open(struct sync **out, const struct config *cfg, struct journal *j,
    struct holders *h, struct loop *l, struct err *e)
{
	struct sync *s;
	int rc;

	*out = NULL;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return err_set(e, -ENOMEM, "out of memory");
	s->cfg = cfg;
	s->journal = j;
	s->holders = h;
	pthread_mutex_init(&s->cat_lock, NULL);
	pthread_mutex_init(&s->want_lock, NULL);
	pthread_mutex_init(&s->view_lock, NULL);
	/* whole events of any source: the largest limit a node may have */
	s->evcap = SYNC_EVENT_MAX + 1 > SYNC_BATCH ? SYNC_EVENT_MAX + 1 :
	    SYNC_BATCH;
	buf_init(&s->frame, WIRE_FRAME_MAX + WIRE_HEADER);
	if ((s->evbuf = malloc(s->evcap)) == NULL ||
	    (s->catbuf = calloc(WIRE_CAT_MAX, sizeof(*s->catbuf))) == NULL ||
	    (s->conflicts = calloc(SYNC_MAX_CONFLICTS,
	    sizeof(*s->conflicts))) == NULL) {
		sync_close(s);
		return err_set(e, -ENOMEM, "out of memory");
	}
	if ((rc = jobs_open(&s->jobs, l, e)) < 0 ||
	    (rc = sync_acks_open(s, l, e)) < 0) {
		sync_close(s);
		return rc;
	}
	*out = s;
	return 0;
}

void
sync_close(struct sync *s)
{
	if (s == NULL)
		return;
	while (s->peers != NULL)
		sync_peer_del(s, s->peers);
	jobs_close(s->jobs);	/* the writes received are made; peers freed */
	sync_acks_close(s);
	for (size_t i = 0; i < s->nfollow; i++) {
		if (s->follow[i].rx != NULL) {
			buf_release(&s->follow[i].rx->data);
			free(s->follow[i].rx);
		}
	}
	cat_free(&s->seen);
	cat_free(&s->creating);
	free(s->follow);
	free(s->evbuf);
	free(s->catbuf);
	free(s->conflicts);
	free(s->counters);
	buf_release(&s->frame);
	pthread_mutex_destroy(&s->cat_lock);
	pthread_mutex_destroy(&s->want_lock);
	pthread_mutex_destroy(&s->view_lock);
	free(s);
}

int
sync_render_json(struct sync *s, struct buf *out)
{
	uint32_t n = journal_count(s->journal);
	int rc = buf_printf(out, "\"conflicts\":[");

	pthread_mutex_lock(&s->view_lock);
	for (size_t i = 0; i < s->nconflicts && rc == 0; i++) {
		const struct conflict *c = &s->conflicts[i];

		rc |= buf_printf(out, "%s{\"device\":", i ? "," : "");
		rc |= buf_json_str(out, c->device, strlen(c->device));
		rc |= buf_printf(out, ",\"ours\":{\"epoch\":\"%016llx\",\"source\":",
		    (unsigned long long)c->ours_epoch);
		rc |= buf_json_str(out, c->ours_source, strlen(c->ours_source));
		rc |= buf_printf(out, "},\"peer\":");
		rc |= buf_json_str(out, c->peer, strlen(c->peer));
		rc |= buf_printf(out, ",\"theirs\":{\"epoch\":\"%016llx\","
		    "\"source\":", (unsigned long long)c->theirs_epoch);
		rc |= buf_json_str(out, c->theirs_source,
		    strlen(c->theirs_source));
		rc |= buf_printf(out, "},\"since\":%lld}", (long long)c->since);
	}
	pthread_mutex_unlock(&s->view_lock);
	rc |= buf_printf(out, "],\"subscriptions\":[");
	for (uint32_t i = 0, k = 0; i < n && rc == 0; i++) {
		struct journal_repl r;
		uint64_t head;
		size_t len;
		const char *id;

		if (journal_is_local(s->journal, i))
			continue;
		journal_repl_get(s->journal, i, &r);
		head = journal_head(s->journal, i);
		id = journal_id(s->journal, i, &len);
		rc |= buf_printf(out, "%s{\"device\":", k++ ? "," : "");
		rc |= buf_json_str(out, id, len);
		rc |= buf_printf(out, ",\"upstream\":");
		rc |= r.upstream[0] ? buf_json_str(out, r.upstream,
		    strlen(r.upstream)) : buf_printf(out, "null");
		rc |= buf_printf(out, ",\"head\":%llu,\"lag\":%llu,"
		    "\"last_progress\":%.3f}", (unsigned long long)head,
		    (unsigned long long)(r.upstream_head > head ?
		    r.upstream_head - head : 0), r.progress_ns / 1e9);
	}
	/* SPEC §8.9: ours once, lost with a data dir, now held as replicas */
	rc |= buf_printf(out, "],\"sourced_here_not_held\":[");
	for (uint32_t i = 0, k = 0; i < n && rc == 0; i++) {
		size_t len;
		const char *id;

		if (journal_is_local(s->journal, i) || strcmp(journal_source(
		    s->journal, i), s->cfg->node_id) != 0)
			continue;
		id = journal_id(s->journal, i, &len);
		rc |= k++ ? buf_append(out, ",", 1) : 0;
		rc |= buf_json_str(out, id, len);
	}
	rc |= buf_append(out, "]", 1);
	return rc ? -E2BIG : 0;
}

int
sync_render_metrics(struct sync *s, struct buf *out)
{
	uint32_t n = journal_count(s->journal);
	int rc = buf_printf(out,
	    "# HELP odofs_ack_bytes_sent_total Bytes of acknowledgement "
	    "frames sent upstream (SPEC 8.10).\n"
	    "# TYPE odofs_ack_bytes_sent_total counter\n"
	    "odofs_ack_bytes_sent_total %llu\n",
	    (unsigned long long)atomic_load(&s->ack_bytes));

	rc |= buf_printf(out,
	    "# HELP odofs_peer_events_in_total Events applied from a peer.\n"
	    "# TYPE odofs_peer_events_in_total counter\n"
	    "# HELP odofs_peer_events_out_total Events sent to a peer.\n"
	    "# TYPE odofs_peer_events_out_total counter\n"
	    "# HELP odofs_peer_bytes_in_total Event bytes applied from a peer.\n"
	    "# TYPE odofs_peer_bytes_in_total counter\n"
	    "# HELP odofs_peer_bytes_out_total Event bytes sent to a peer.\n"
	    "# TYPE odofs_peer_bytes_out_total counter\n"
	    "# HELP odofs_peer_streams Devices a peer is subscribed to here.\n"
	    "# TYPE odofs_peer_streams gauge\n"
	    "# HELP odofs_peer_send_queued_bytes Bytes waiting to be sent to "
	    "a peer.\n"
	    "# TYPE odofs_peer_send_queued_bytes gauge\n"
	    "# HELP odofs_peer_link_bytes_per_second What the link to a peer "
	    "carried while bulk data waited for it (0: not measured yet).\n"
	    "# TYPE odofs_peer_link_bytes_per_second gauge\n"
	    "# HELP odofs_peer_frame_bytes Bytes of a bulk frame to a peer "
	    "(sized to the link).\n"
	    "# TYPE odofs_peer_frame_bytes gauge\n"
	    "# HELP odofs_peer_wire_bytes_in_total Bytes of every frame "
	    "received from a peer on its current connection (TLS payload).\n"
	    "# TYPE odofs_peer_wire_bytes_in_total counter\n"
	    "# HELP odofs_peer_wire_bytes_out_total Bytes of every frame sent "
	    "to a peer on its current connection.\n"
	    "# TYPE odofs_peer_wire_bytes_out_total counter\n"
	    "# HELP odofs_events_applied_total Events applied from upstreams.\n"
	    "# TYPE odofs_events_applied_total counter\n"
	    "odofs_events_applied_total %llu\n"
	    "# HELP odofs_event_frames_discarded_total Event frames of no "
	    "current subscription (old or not from the upstream).\n"
	    "# TYPE odofs_event_frames_discarded_total counter\n"
	    "odofs_event_frames_discarded_total %llu\n"
	    "# HELP odofs_catalogue_entries_received_total Catalogue entries "
	    "received from peers.\n"
	    "# TYPE odofs_catalogue_entries_received_total counter\n"
	    "odofs_catalogue_entries_received_total %llu\n"
	    "# HELP odofs_subscriptions_total Subscriptions started (the first "
	    "of each device and every switch of upstream).\n"
	    "# TYPE odofs_subscriptions_total counter\n"
	    "odofs_subscriptions_total %llu\n"
	    "# HELP odofs_upstream_evaluations_total Passes that chose the "
	    "upstream of every device again.\n"
	    "# TYPE odofs_upstream_evaluations_total counter\n"
	    "odofs_upstream_evaluations_total %llu\n",
	    (unsigned long long)atomic_load(&s->applied),
	    (unsigned long long)atomic_load(&s->discarded),
	    (unsigned long long)atomic_load(&s->cat_in),
	    (unsigned long long)atomic_load(&s->subscribed),
	    (unsigned long long)atomic_load(&s->evaluations));

	pthread_mutex_lock(&s->view_lock);
	for (size_t i = 0; i < s->ncounters && rc == 0; i++) {
		const struct peer_counters *c = &s->counters[i];

		rc |= buf_printf(out,
		    "odofs_peer_events_in_total{peer=\"%s\"} %llu\n"
		    "odofs_peer_events_out_total{peer=\"%s\"} %llu\n"
		    "odofs_peer_bytes_in_total{peer=\"%s\"} %llu\n"
		    "odofs_peer_bytes_out_total{peer=\"%s\"} %llu\n"
		    "odofs_peer_streams{peer=\"%s\"} %zu\n"
		    "odofs_peer_send_queued_bytes{peer=\"%s\"} %zu\n"
		    "odofs_peer_link_bytes_per_second{peer=\"%s\"} %llu\n"
		    "odofs_peer_frame_bytes{peer=\"%s\"} %zu\n"
		    "odofs_peer_wire_bytes_in_total{peer=\"%s\"} %llu\n"
		    "odofs_peer_wire_bytes_out_total{peer=\"%s\"} %llu\n",
		    c->id, (unsigned long long)c->events_in,
		    c->id, (unsigned long long)c->events_out,
		    c->id, (unsigned long long)c->bytes_in,
		    c->id, (unsigned long long)c->bytes_out, c->id, c->serves,
		    c->id, c->queued, c->id, (unsigned long long)c->rate,
		    c->id, c->budget, c->id, (unsigned long long)c->wire_in,
		    c->id, (unsigned long long)c->wire_out);
	}
	pthread_mutex_unlock(&s->view_lock);
	rc |= buf_printf(out,
	    "# HELP odofs_device_lag Revisions the upstream is ahead of us.\n"
	    "# TYPE odofs_device_lag gauge\n"
	    "# HELP odofs_device_head Last revision held.\n"
	    "# TYPE odofs_device_head gauge\n");
	for (uint32_t i = 0; i < n && rc == 0; i++) {
		struct journal_repl r;
		uint64_t head = journal_head(s->journal, i);
		size_t len;
		const char *id = journal_id(s->journal, i, &len);

		journal_repl_get(s->journal, i, &r);
		rc |= buf_printf(out, "odofs_device_head{device=\"%s\"} %llu\n",
		    id, (unsigned long long)head);
		if (!journal_is_local(s->journal, i))
			rc |= buf_printf(out,
			    "odofs_device_lag{device=\"%s\"} %llu\n", id,
			    (unsigned long long)(r.upstream_head > head ?
			    r.upstream_head - head : 0));
	}
	return rc ? -E2BIG : 0;
}

bool
sync_streaming(struct sync *s)
{
	return atomic_load(&s->streams) > 0;
}

struct jobs *
sync_jobs(struct sync *s)
{
	return s->jobs;
}

bool
sync_peer_paused(const struct sync_peer *sp)
{
	return sp->paused;
}
