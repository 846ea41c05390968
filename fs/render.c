/*
 * render: the text of the generated files: .status (JSON), .metrics
 * (Prometheus text exposition format 0.0.4) and <device>/info (JSON).
 * Everything is computed at open from the journal's lock-free counters, so
 * rendering never blocks an appender.  Epochs are 64-bit and so printed as
 * 16 hex digits in a JSON string: a JSON number would lose precision.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fs.h"
#include "holders.h"
#include "peering.h"
#include "pipes.h"
#include "quorum.h"
#include "snapshot.h"
#include "store.h"

/* t as ISO 8601 UTC ("2026-11-27T04:05:06Z") into a JSON string. */
static int
render_time(struct buf *out, time_t t)
{
	char s[32];
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL ||
	    strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		return buf_printf(out, "null");
	return buf_printf(out, "\"%s\"", s);
}

/* "store": whether writes work (SPEC §4: a full disk, a failing disk). */
static int
render_store(struct odofs *o, struct buf *out)
{
	struct store_state ss;
	int rc = 0;

	store_state(journal_store(o->journal), &ss);
	rc |= buf_printf(out, ",\"store\":{\"state\":\"%s\",\"error\":",
	    ss.failed == 0 ? "ok" : ss.failed == -ENOSPC ? "full" : "failing");
	rc |= ss.failed ? buf_json_str(out, ss.why, strlen(ss.why)) :
	    buf_printf(out, "null");
	rc |= buf_printf(out, ",\"since\":");
	rc |= ss.failed ? render_time(out, ss.since) : buf_printf(out, "null");
	rc |= buf_printf(out, ",\"failures\":%llu,\"reopens\":%llu}",
	    (unsigned long long)ss.failures, (unsigned long long)ss.reopens);
	return rc;
}

/* ms since 1970 as ISO 8601 UTC with milliseconds, in a JSON string. */
static int
render_time_ms(struct buf *out, uint64_t ms)
{
	time_t t = (time_t)(ms / 1000);
	char s[32];
	struct tm tm;

	if (ms == 0 || gmtime_r(&t, &tm) == NULL ||
	    strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
		return buf_printf(out, "null");
	return buf_printf(out, "\"%s.%03uZ\"", s, (unsigned)(ms % 1000));
}

/*
 * One holder of a device (SPEC §8.10): its heads, the events it lacks
 * (lag: applied, durable_lag: on disk) and, while it lacks any, the
 * seconds since its last acknowledgement.
 */
static int
render_holder(struct buf *out, const struct holder_ack *a, uint64_t head,
    uint64_t now_ms)
{
	uint64_t lag = head > a->head ? head - a->head : 0;
	int rc = 0;

	rc |= buf_printf(out, "{\"peer\":");
	rc |= buf_json_str(out, a->peer, strlen(a->peer));
	rc |= buf_printf(out, ",\"head\":%llu,\"durable\":%llu,\"lag\":%llu,"
	    "\"durable_lag\":%llu,\"lag_seconds\":%.3f,\"at\":",
	    (unsigned long long)a->head, (unsigned long long)a->durable,
	    (unsigned long long)lag, (unsigned long long)(head > a->durable ?
	    head - a->durable : 0), lag > 0 && now_ms > a->at_ms ?
	    (now_ms - a->at_ms) / 1e3 : 0.0);
	rc |= render_time_ms(out, a->at_ms);
	rc |= buf_printf(out, "}");
	return rc;
}

/*
 * "replicas": every holder of dev heard of, as a JSON array, at most cap
 * of them; a holds cap entries (the caller's, reused over devices).
 */
static int
render_replicas(struct odofs *o, uint32_t dev, uint64_t head,
    struct holder_ack *a, size_t cap, struct buf *out)
{
	size_t n = holders_get(o->holders, dev, a, cap, NULL);
	uint64_t now = holders_now_ms();
	int rc = buf_printf(out, "[");

	for (size_t i = 0; i < n && i < cap; i++) {
		rc |= i ? buf_printf(out, ",") : 0;
		rc |= render_holder(out, &a[i], head, now);
	}
	return rc | buf_printf(out, "]");
}

/* "retained": what compaction keeps for a holder of retain_for, or null. */
static int
render_retained(struct odofs *o, uint32_t dev, struct buf *out)
{
	struct snapshot_retained k;
	int rc = 0;

	if (o->snapshots == NULL || !snapshot_retained(o->snapshots, dev, &k))
		return buf_printf(out, "null");
	rc |= buf_printf(out, "{\"peer\":");
	rc |= buf_json_str(out, k.peer, strlen(k.peer));
	rc |= buf_printf(out, ",\"durable\":%llu,\"events\":%llu,"
	    "\"bytes\":%llu,\"dropped\":%s,\"since\":",
	    (unsigned long long)k.durable, (unsigned long long)k.events,
	    (unsigned long long)k.bytes, k.dropped ? "true" : "false");
	rc |= render_time_ms(out, k.since_ms);
	return rc | buf_printf(out, "}");
}

static const char *const render_errno_names[FS_ERRNO_MAX] = {
	[EPERM] = "EPERM", [ENOENT] = "ENOENT", [EIO] = "EIO",
	[EBADF] = "EBADF", [EAGAIN] = "EAGAIN", [ENOMEM] = "ENOMEM",
	[EACCES] = "EACCES", [EEXIST] = "EEXIST", [ENOTDIR] = "ENOTDIR",
	[EISDIR] = "EISDIR", [EINVAL] = "EINVAL", [EFBIG] = "EFBIG",
	[ENOSPC] = "ENOSPC", [EROFS] = "EROFS", [ERANGE] = "ERANGE",
	[ENAMETOOLONG] = "ENAMETOOLONG", [ENOSYS] = "ENOSYS",
	[ENOTEMPTY] = "ENOTEMPTY", [EINTR] = "EINTR", [ENODATA] = "ENODATA",
	[EOPNOTSUPP] = "EOPNOTSUPP", [E2BIG] = "E2BIG", [EXDEV] = "EXDEV",
};

/*
 * .status's "replicas" (each device's holders), "retained" (what
 * compaction keeps for one) and "fsync" (quorum fsyncs) members.
 */
static int
render_status_acks(struct odofs *o, struct buf *out)
{
	uint32_t n = journal_count(o->journal);
	struct holder_ack *a = malloc(HOLDERS_MAX * sizeof(*a));
	struct snapshot_retained k;
	struct quorum_stats qs;
	bool first = true;
	int rc = 0;

	if (a == NULL)
		return -ENOMEM;
	rc |= buf_printf(out, ",\"replicas\":[");
	for (uint32_t i = 0; i < n; i++) {
		const char *id = journal_id(o->journal, i, &(size_t){0});

		if (holders_get(o->holders, i, a, 0, NULL) == 0)
			continue;
		rc |= buf_printf(out, "%s{\"device\":", first ? "" : ",");
		rc |= buf_json_str(out, id, strlen(id));
		rc |= buf_printf(out, ",\"holders\":");
		rc |= render_replicas(o, i, journal_head(o->journal, i), a,
		    HOLDERS_MAX, out);
		rc |= buf_printf(out, "}");
		first = false;
	}
	rc |= buf_printf(out, "],\"retained\":[");
	first = true;
	for (uint32_t i = 0; o->snapshots != NULL && i < n; i++) {
		const char *id = journal_id(o->journal, i, &(size_t){0});

		if (!snapshot_retained(o->snapshots, i, &k))
			continue;
		rc |= buf_printf(out, "%s{\"device\":", first ? "" : ",");
		rc |= buf_json_str(out, id, strlen(id));
		rc |= buf_printf(out, ",\"for\":");
		rc |= render_retained(o, i, out);
		rc |= buf_printf(out, "}");
		first = false;
	}
	memset(&qs, 0, sizeof(qs));
	if (o->quorum != NULL)
		quorum_stats(o->quorum, &qs);
	rc |= buf_printf(out, "],\"fsync\":{\"replicas\":%u,\"waiting\":%u,"
	    "\"met\":%llu,\"timeouts\":%llu,\"interrupted\":%llu}",
	    (unsigned)o->cfg->replicas,
	    qs.waiting, (unsigned long long)qs.met,
	    (unsigned long long)qs.timeouts,
	    (unsigned long long)qs.interrupted);
	free(a);
	return rc;
}

enum render_lag { LAG_APPLIED, LAG_DURABLE, LAG_SECONDS };

/* One sample a holder of every device: lag in events, or in seconds. */
static int
render_lag_family(struct odofs *o, struct holder_ack *a, enum render_lag what,
    struct buf *out)
{
	uint32_t n = journal_count(o->journal);
	uint64_t now = holders_now_ms();
	int rc = 0;

	for (uint32_t i = 0; i < n; i++) {
		const char *id = journal_id(o->journal, i, &(size_t){0});
		uint64_t head = journal_head(o->journal, i);
		size_t k = holders_get(o->holders, i, a, HOLDERS_MAX, NULL);

		for (size_t j = 0; j < k && j < HOLDERS_MAX; j++) {
			uint64_t have = what == LAG_DURABLE ? a[j].durable :
			    a[j].head;

			if (what == LAG_SECONDS)
				rc |= buf_printf(out, "odofs_replica_lag_seconds"
				    "{device=\"%s\",peer=\"%s\"} %.3f\n", id,
				    a[j].peer, head > have && now > a[j].at_ms ?
				    (now - a[j].at_ms) / 1e3 : 0.0);
			else
				rc |= buf_printf(out, "odofs_replica_lag_events"
				    "{device=\"%s\",peer=\"%s\",of=\"%s\"} %llu\n",
				    id, a[j].peer, what == LAG_DURABLE ?
				    "durable" : "applied", (unsigned long long)
				    (head > have ? head - have : 0));
		}
	}
	return rc;
}

/* The same in Prometheus lines. */
static int
render_metrics_acks(struct odofs *o, struct buf *out)
{
	struct holder_ack *a = malloc(HOLDERS_MAX * sizeof(*a));
	struct quorum_stats qs;
	int rc = 0;

	if (a == NULL)
		return -ENOMEM;
	rc |= buf_printf(out,
	    "# HELP odofs_replica_lag_events Events of a device a holder has "
	    "not applied (applied) or not on stable storage (durable), as its "
	    "acknowledgements tell.\n"
	    "# TYPE odofs_replica_lag_events gauge\n");
	rc |= render_lag_family(o, a, LAG_APPLIED, out);
	rc |= render_lag_family(o, a, LAG_DURABLE, out);
	rc |= buf_printf(out,
	    "# HELP odofs_replica_lag_seconds Seconds since the last "
	    "acknowledgement of a holder that lacks events (0 when it has "
	    "them all).\n"
	    "# TYPE odofs_replica_lag_seconds gauge\n");
	rc |= render_lag_family(o, a, LAG_SECONDS, out);
	memset(&qs, 0, sizeof(qs));
	if (o->quorum != NULL)
		quorum_stats(o->quorum, &qs);
	rc |= buf_printf(out,
	    "# HELP odofs_fsync_quorum_total fsync() calls that waited for "
	    "durability.replicas peers, by outcome.\n"
	    "# TYPE odofs_fsync_quorum_total counter\n"
	    "odofs_fsync_quorum_total{result=\"met\"} %llu\n"
	    "odofs_fsync_quorum_total{result=\"timeout\"} %llu\n"
	    "odofs_fsync_quorum_total{result=\"interrupted\"} %llu\n"
	    "# HELP odofs_fsync_quorum_waiting fsync() calls waiting now.\n"
	    "# TYPE odofs_fsync_quorum_waiting gauge\n"
	    "odofs_fsync_quorum_waiting %u\n", (unsigned long long)qs.met,
	    (unsigned long long)qs.timeouts,
	    (unsigned long long)qs.interrupted, qs.waiting);
	free(a);
	return rc;
}

int
render_status(struct odofs *o, struct buf *out)
{
	struct journal_stats st;
	int rc = 0;

	journal_stats(o->journal, &st);
	rc |= buf_printf(out, "{\"node\":");
	rc |= buf_json_str(out, o->cfg->node_id, strlen(o->cfg->node_id));
	rc |= buf_printf(out, ",\"version\":\"%s\",\"started\":%lld,"
	    "\"devices\":%llu,\"events\":%llu,\"data_dir\":", ODOFS_VERSION,
	    (long long)o->started, (unsigned long long)st.devices,
	    (unsigned long long)st.events);
	rc |= buf_json_str(out, o->cfg->data_dir, strlen(o->cfg->data_dir));
	rc |= render_store(o, out);
	rc |= render_status_acks(o, out);
	rc |= buf_printf(out, ",\"listen\":");
	rc |= buf_json_str(out, o->cfg->listen, strlen(o->cfg->listen));
	rc |= buf_printf(out, ",\"peers\":");
	rc |= o->peering ? peering_render_json(o->peering, out) :
	    buf_printf(out, "[]");
	if (o->peering != NULL) {
		rc |= buf_append(out, ",", 1);
		rc |= peering_render_sync(o->peering, out);
		rc |= buf_printf(out, "}\n");
	} else {
		rc |= buf_printf(out, ",\"conflicts\":[],\"subscriptions\":[]}\n");
	}
	return rc ? -E2BIG : 0;
}

int
render_metrics(struct odofs *o, struct buf *out)
{
	struct fs_metrics *m = &o->metrics;
	struct journal_stats st;
	int rc = 0;

	journal_stats(o->journal, &st);
	rc |= buf_printf(out,
	    "# HELP odofs_devices Devices known to this node.\n"
	    "# TYPE odofs_devices gauge\n"
	    "odofs_devices %llu\n"
	    "# HELP odofs_events Events retained, over every device.\n"
	    "# TYPE odofs_events gauge\n"
	    "odofs_events %llu\n"
	    "# HELP odofs_events_appended_total Events appended on this node.\n"
	    "# TYPE odofs_events_appended_total counter\n"
	    "odofs_events_appended_total %llu\n"
	    "# HELP odofs_bytes_appended_total Bytes appended on this node, "
	    "newlines included.\n"
	    "# TYPE odofs_bytes_appended_total counter\n"
	    "odofs_bytes_appended_total %llu\n"
	    "# HELP odofs_commits_total Store batches written by appends.\n"
	    "# TYPE odofs_commits_total counter\n"
	    "odofs_commits_total %llu\n"
	    "# HELP odofs_store_syncs_total Store writes made durable on "
	    "stable storage (durability.sync, fsync).\n"
	    "# TYPE odofs_store_syncs_total counter\n"
	    "odofs_store_syncs_total %llu\n"
	    "# HELP odofs_reads_total Read requests answered.\n"
	    "# TYPE odofs_reads_total counter\n"
	    "odofs_reads_total %llu\n"
	    "# HELP odofs_read_bytes_total Bytes returned by reads.\n"
	    "# TYPE odofs_read_bytes_total counter\n"
	    "odofs_read_bytes_total %llu\n"
	    "# HELP odofs_writes_total Write requests accepted.\n"
	    "# TYPE odofs_writes_total counter\n"
	    "odofs_writes_total %llu\n",
	    (unsigned long long)st.devices, (unsigned long long)st.events,
	    (unsigned long long)st.events_appended,
	    (unsigned long long)st.bytes_appended,
	    (unsigned long long)st.commits,
	    (unsigned long long)st.syncs,
	    (unsigned long long)atomic_load(&m->reads),
	    (unsigned long long)atomic_load(&m->read_bytes),
	    (unsigned long long)atomic_load(&m->writes));
	{
		struct store_state ss;

		store_state(journal_store(o->journal), &ss);
		rc |= buf_printf(out,
		    "# HELP odofs_store_writable Whether the store takes writes "
		    "(0 after a failed write, until it is reopened).\n"
		    "# TYPE odofs_store_writable gauge\n"
		    "odofs_store_writable %d\n"
		    "# HELP odofs_store_failures_total Writes that failed the "
		    "store (full or failing disk).\n"
		    "# TYPE odofs_store_failures_total counter\n"
		    "odofs_store_failures_total %llu\n"
		    "# HELP odofs_store_reopens_total Times the store was "
		    "reopened after a failure.\n"
		    "# TYPE odofs_store_reopens_total counter\n"
		    "odofs_store_reopens_total %llu\n", ss.failed == 0,
		    (unsigned long long)ss.failures,
		    (unsigned long long)ss.reopens);
	}
	if (o->pipes != NULL) {
		struct pipes_stats ps;

		pipes_stats(o->pipes, &ps);
		rc |= buf_printf(out,
		    "# HELP odofs_live_pipes Live pipes open (live, from/, .live).\n"
		    "# TYPE odofs_live_pipes gauge\n"
		    "odofs_live_pipes %llu\n"
		    "# HELP odofs_live_parked_reads Reads waiting for events.\n"
		    "# TYPE odofs_live_parked_reads gauge\n"
		    "odofs_live_parked_reads %llu\n"
		    "# HELP odofs_live_deliveries_total Waiting reads answered "
		    "with events.\n"
		    "# TYPE odofs_live_deliveries_total counter\n"
		    "odofs_live_deliveries_total %llu\n"
		    "# HELP odofs_live_readers_behind Live pipes with events "
		    "their reader has not read yet.\n"
		    "# TYPE odofs_live_readers_behind gauge\n"
		    "odofs_live_readers_behind %llu\n"
		    "# HELP odofs_live_wakeups_total Times the live delivery "
		    "thread woke to look for reads to answer.\n"
		    "# TYPE odofs_live_wakeups_total counter\n"
		    "odofs_live_wakeups_total %llu\n"
		    "# HELP odofs_live_slow_rounds_total Delivery rounds that "
		    "stopped pacing themselves on readers slow to read again.\n"
		    "# TYPE odofs_live_slow_rounds_total counter\n"
		    "odofs_live_slow_rounds_total %llu\n"
		    "# HELP odofs_live_pipes_examined_total Live pipes the "
		    "delivery rounds looked at.\n"
		    "# TYPE odofs_live_pipes_examined_total counter\n"
		    "odofs_live_pipes_examined_total %llu\n",
		    (unsigned long long)ps.open, (unsigned long long)ps.parked,
		    (unsigned long long)ps.delivered,
		    (unsigned long long)ps.behind,
		    (unsigned long long)ps.wakeups,
		    (unsigned long long)ps.slow_rounds,
		    (unsigned long long)ps.examined);
	}
	if (o->peering != NULL)
		rc |= peering_render_metrics(o->peering, out);
	rc |= render_metrics_acks(o, out);
	rc |= buf_printf(out, "# HELP odofs_errors_total Requests answered "
	    "with an error, by errno.\n"
	    "# TYPE odofs_errors_total counter\n");
	for (int i = 1; i < FS_ERRNO_MAX; i++) {
		uint64_t n = atomic_load(&m->errors[i]);

		if (n == 0)
			continue;
		if (render_errno_names[i] != NULL)
			rc |= buf_printf(out, "odofs_errors_total{errno=\"%s\"} "
			    "%llu\n", render_errno_names[i],
			    (unsigned long long)n);
		else
			rc |= buf_printf(out, "odofs_errors_total{errno=\"%d\"} "
			    "%llu\n", i, (unsigned long long)n);
	}
	return rc ? -E2BIG : 0;
}

int
render_info(struct odofs *o, uint32_t dev, struct buf *out)
{
	struct holder_ack *a = NULL;
	size_t n;
	struct journal_info in;
	struct journal_repl r;
	int rc = 0;

	journal_info(o->journal, dev, &in);
	rc |= buf_printf(out, "{\"device\":");
	rc |= buf_json_str(out, in.id, strlen(in.id));
	rc |= buf_printf(out, ",\"epoch\":\"%016llx\",\"source\":",
	    (unsigned long long)in.epoch);
	rc |= buf_json_str(out, in.source, strlen(in.source));
	journal_repl_get(o->journal, dev, &r);
	rc |= buf_printf(out, ",\"subscribed_to\":");
	rc |= r.upstream[0] ? buf_json_str(out, r.upstream, strlen(r.upstream)) :
	    buf_printf(out, "null");
	rc |= r.hops == JOURNAL_HOPS_NONE ? buf_printf(out, ",\"hops\":null") :
	    buf_printf(out, ",\"hops\":%u", (unsigned)r.hops);
	rc |= buf_printf(out, ",\"lag\":%llu,\"last_progress\":",
	    (unsigned long long)(r.upstream_head > in.head ?
	    r.upstream_head - in.head : 0));
	rc |= r.progress_ns ? buf_printf(out, "%.3f", r.progress_ns / 1e9) :
	    buf_printf(out, "null");
	rc |= buf_printf(out, ",\"held\":%s", in.held ? "true" : "false");
	/* a string: above 2^53, a JSON number loses digits (jq, JavaScript) */
	rc |= buf_printf(out, ",\"created\":");
	rc |= render_time(out, (time_t)(in.created_ns / 1000000000ull));
	rc |= buf_printf(out, ",\"local\":%s,\"created_ns\":\"%llu\","
	    "\"first\":%llu,\"head\":%llu,\"first_offset\":%llu,"
	    "\"end_offset\":%llu,\"bytes\":%llu,\"snapshot\":%llu",
	    in.local ? "true" : "false", (unsigned long long)in.created_ns,
	    (unsigned long long)in.first, (unsigned long long)in.head,
	    (unsigned long long)in.first_offset,
	    (unsigned long long)in.end_offset,
	    (unsigned long long)(in.end_offset - in.first_offset),
	    (unsigned long long)in.snapshot_rev);
	/*
	 * The holders, and what compaction keeps for one (SPEC §8.10).  A
	 * buffer for as many as there are now: every stat of info renders
	 * it, and most devices have a few holders or none.
	 */
	n = holders_get(o->holders, dev, NULL, 0, NULL);
	if (n > 0 && (a = malloc(n * sizeof(*a))) == NULL)
		return -ENOMEM;
	rc |= buf_printf(out, ",\"replicas\":");
	rc |= render_replicas(o, dev, in.head, a, n, out);
	rc |= buf_printf(out, ",\"retained\":");
	rc |= render_retained(o, dev, out);
	rc |= buf_printf(out, "}\n");
	free(a);
	return rc ? -E2BIG : 0;
}

int
render_peers(struct odofs *o, struct buf *out)
{
	if (o->peering == NULL)
		return buf_printf(out, "peering is off: no listen address and "
		    "no peers configured\n") ? -E2BIG : 0;
	return peering_render_table(o->peering, out);
}
