/*
 * snapshot: the snapshot policy of SPEC §5 and compaction.
 *
 * One worker thread, off the FUSE threads, builds snapshots on the source
 * when snapshot.every_events events or snapshot.every_seconds seconds have
 * passed since the last one, by running snapshot.command with the events
 * since the previous snapshot on its stdin; and, with snapshot.compact,
 * compacts each device after each snapshot (manual ones too), keeping
 * snapshot.keep_events more.  A command that fails or runs past
 * snapshot.timeout_seconds (its process group is killed) changes nothing;
 * it is logged with its exit status and the last line of its stderr, and
 * tried again later.  Compaction held back by a reader is tried again each
 * second.
 *
 * snapshot_notify() and snapshot_installed() may be called from any thread
 * and never block.
 */
#ifndef ODOFS_SNAPSHOT_H
#define ODOFS_SNAPSHOT_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "err.h"
#include "holders.h"
#include "journal.h"

struct snapshot_opts {
	uint64_t every_events;		/* 0: never */
	uint32_t every_seconds;		/* 0: never */
	const char *command;		/* "" : no automatic snapshots */
	uint32_t timeout_seconds;
	bool compact;
	uint64_t keep_events;
	const char *tmp_dir;		/* for ODOFS_SNAPSHOT files */
	/* compaction keeps what these holders have not made durable */
	struct holders *holders;
	const char (*retain_for)[CONFIG_GLOB_MAX];
	size_t nretain_for;
	uint64_t retain_max_bytes;	/* 0: no limit */
};

struct snapshotter;

int snapshot_start(struct snapshotter **out, struct journal *j,
    const struct snapshot_opts *o, struct err *e);
/* Stops the worker (killing a running command); accepts NULL. */
void snapshot_stop(struct snapshotter *s);

/* A commit hook: device idx has head now. */
void snapshot_notify(struct snapshotter *s, uint32_t idx, uint64_t head);
/* A snapshot of idx was installed by hand: compact it if configured. */
void snapshot_installed(struct snapshotter *s, uint32_t idx);

/* What compaction keeps of a device for a holder of retain_for. */
struct snapshot_retained {
	char peer[JOURNAL_NODE_MAX + 1];
	uint64_t durable;		/* its durable head */
	uint64_t events, bytes;		/* kept for it beyond the rest */
	uint64_t since_ms;		/* its last acknowledgement */
	bool retaining;			/* compaction waits for it */
	bool dropped;			/* past retain_max_bytes: it does not */
};
/* Whether compaction of idx keeps (or dropped) events for a holder. */
bool snapshot_retained(struct snapshotter *s, uint32_t idx,
    struct snapshot_retained *out);

struct snapshot_stats {
	uint64_t runs, failures, compactions;
};
void snapshot_stats(struct snapshotter *s, struct snapshot_stats *out);

#endif
