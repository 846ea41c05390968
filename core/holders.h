/*
 * holders: who holds each device, as its acknowledgements tell (SPEC
 * §8.10).  Each replica tells its upstream, per device, the head it has
 * applied and the head it holds on stable storage ("durable"); a relay
 * passes on what its own followers told it, so the source learns about
 * every holder, however many hops away.  This table keeps, per device and
 * holder, the highest heads heard of and the holder's time of its latest
 * acknowledgement; it answers the quorum of an fsync (how many holders
 * have a revision on disk), what compaction must keep for the peers of
 * snapshot.retain_for, and what info, .status and .metrics show.
 *
 * Entries survive restarts: they are saved in the store ('H' keys, see
 * keys.h) by holders_save(), so a source that restarts still keeps what
 * an archive that is away has not acknowledged.  Heads only go up; an
 * entry of another epoch than the device's is ignored.  At most
 * HOLDERS_MAX holders a device (the oldest acknowledgement goes first):
 * memory grows with devices and peers only.
 *
 * Thread-safe: one mutex, held for table work only (never across the
 * store or the notify call).
 */
#ifndef ODOFS_HOLDERS_H
#define ODOFS_HOLDERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "err.h"
#include "journal.h"

#define HOLDERS_MAX	1024		/* holders of one device */

struct holders;

struct holder_ack {
	char peer[JOURNAL_NODE_MAX + 1];
	uint64_t epoch;
	uint64_t head;			/* applied */
	uint64_t durable;		/* on stable storage, <= head */
	uint64_t at_ms;			/* the holder's clock (CLOCK_REALTIME) */
};

/* The clock of acknowledgements: CLOCK_REALTIME, ms since 1970. */
uint64_t holders_now_ms(void);

/* Called (no lock held) when an acknowledgement raised a durable head. */
typedef void (*holders_notify_fn)(void *arg, uint32_t idx);

/* Loads the saved entries of j's store.  0 and *out, or -errno with e. */
int holders_open(struct holders **out, struct journal *j, struct err *e);
/* Saves what changed (as holders_save) and frees.  Accepts NULL. */
void holders_close(struct holders *h);

/*
 * --repair of the holder records of j's store (no holders open on it).  A
 * damaged record whose key still names a device here and a holder is
 * written again with nothing acknowledged (the device's epoch, heads 0):
 * a compaction held for that holder (snapshot.retain_for) then keeps
 * everything until it acknowledges again, so nothing it has not got is
 * compacted away.  Any other damaged record is deleted.  report() is told
 * of each: the device and holder (dev NULL when the key cannot be read;
 * klen is its length) and whether it was kept.  Returns how many records
 * were repaired, or -errno with e.
 */
typedef void (*holders_repair_fn)(void *arg, const char *dev, size_t devlen,
    const char *node, size_t nodelen, size_t klen, bool kept);
int holders_repair(struct journal *j, holders_repair_fn report, void *arg,
    struct err *e);

/* Set before threads use h. */
void holders_set_notify(struct holders *h, holders_notify_fn fn, void *arg);

/*
 * Records an acknowledgement of device idx by a->peer (heads only go up;
 * another epoch than the device's is ignored).  Returns true when it
 * changed the entry.
 */
bool holders_ack(struct holders *h, uint32_t idx, const struct holder_ack *a);

/*
 * Copies idx's entries (at most max) to out; returns how many there are.
 * With since, only those changed after the change number *since, oldest
 * change first; returns how many were copied, and *since becomes the
 * change number of the last one copied (a relay sends on what changed
 * since its last acknowledgement, max at a time).
 */
size_t holders_get(struct holders *h, uint32_t idx, struct holder_ack *out,
    size_t max, uint64_t *since);

/* How many holders of idx (other than self) have rev on stable storage. */
unsigned holders_durable_count(struct holders *h, uint32_t idx, uint64_t rev,
    const char *self);

/*
 * The lowest durable head among idx's holders whose id matches one of the
 * n glob patterns, with that holder's entry in *who; UINT64_MAX when none
 * matches.
 */
uint64_t holders_retain(struct holders *h, uint32_t idx,
    const char (*globs)[CONFIG_GLOB_MAX], size_t n, struct holder_ack *who);

/* Whether entries changed since the last save. */
bool holders_dirty(struct holders *h);
/* Writes the changed entries to the store in one batch.  0 or -errno. */
int holders_save(struct holders *h, struct err *e);

#endif
