/*
 * fs: the daemon context shared by the FUSE handlers, and the entry points
 * of the fs/ modules.  The context is made by main.c (the composition root)
 * and reached by handlers through fuse_req_userdata().
 */
#ifndef ODOFS_FS_H
#define ODOFS_FS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "buf.h"
#include "config.h"
#include "journal.h"

#define FS_ERRNO_MAX	134	/* errors counted by errno below this */

/* Counters of the FUSE layer; the journal keeps its own. */
struct fs_metrics {
	_Atomic uint64_t reads;			/* read requests answered */
	_Atomic uint64_t read_bytes;
	_Atomic uint64_t writes;		/* write requests accepted */
	_Atomic uint64_t write_bytes;
	_Atomic uint64_t errors[FS_ERRNO_MAX];	/* replies by errno */
};

struct handle;
struct pipes;
struct snapshotter;
struct peering;

struct odofs {
	struct journal *journal;
	const struct config *cfg;
	struct pipes *pipes;			/* live pipes */
	struct snapshotter *snapshots;		/* automatic snapshots, compaction */
	struct peering *peering;		/* NULL when peering is off */
	struct holders *holders;		/* replicas' acknowledgements */
	struct quorum *quorum;			/* NULL: durability.replicas 0 */
	bool events_page_cache;			/* ODOFS_EVENTS_PAGE_CACHE=1 */
	time_t started;				/* CLOCK_REALTIME seconds */
	struct fs_metrics metrics;
	pthread_mutex_t handles_lock;		/* protects handles */
	struct handle *handles;			/* every open file */
};

/* The lowlevel operations table (ops.c). */
struct fuse_lowlevel_ops;
extern const struct fuse_lowlevel_ops ops_table;

/*
 * After the FUSE loop has ended: commits the partial lines of files still
 * open (their release never came) and frees their state.
 */
void ops_release_all(struct odofs *o);

/*
 * Renderers of the generated files (render.c).  Each appends the file's
 * whole content to out; returns 0 or -E2BIG/-ENOMEM.
 */
int render_status(struct odofs *o, struct buf *out);
int render_metrics(struct odofs *o, struct buf *out);
int render_info(struct odofs *o, uint32_t dev, struct buf *out);
int render_peers(struct odofs *o, struct buf *out);

#endif
