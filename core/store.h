/*
 * store: the LevelDB wrapper.  Nothing outside store.c sees a leveldb_*
 * type.  Batches are written atomically; a write that returns has reached
 * the operating system (it survives the daemon being killed), and a write
 * with sync, or store_sync(), has reached stable storage.
 *
 * Thread-safety: a store may be used from any thread.  A batch or an
 * iterator belongs to one thread at a time.
 */
#ifndef ODOFS_STORE_H
#define ODOFS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "err.h"

struct store;
struct store_batch;
struct store_iter;

/*
 * Opens the store in dir (made if missing).  The store is created only
 * where there is none (no LevelDB file: a missing or empty dir); one that
 * is there but does not open whole is refused: -EUCLEAN (damaged, e names
 * the problem and odofs --repair), -EBUSY (another process holds it: e
 * names its pid), -EIO.  LevelDB's paranoid checks are on: a damaged log
 * or table fails the open instead of losing records silently.
 */
int store_open(struct store **out, const char *dir, size_t cache_bytes,
    struct err *e);
/*
 * LevelDB's repair of the store in dir (not open anywhere): salvages every
 * record it can read into new tables.  Blocks for as long as that takes.
 */
int store_repair(const char *dir, struct err *e);
/*
 * A damaged store that LevelDB refuses, opened for a look without touching
 * it: a scratch dir in dir (its path into scratch) gets links to the
 * tables (never rewritten) and copies of the logs and manifest, and is
 * opened with LevelDB skipping what it cannot read.  Close with
 * store_close_scratch(), which deletes the scratch dir.
 */
int store_open_scratch(struct store **out, const char *dir, char *scratch,
    size_t len, struct err *e);
void store_close_scratch(struct store *s, const char *scratch);

/*
 * The store's health (SPEC §4): after a write fails (a full disk: -ENOSPC,
 * a quota: -EDQUOT, else -EIO), every write fails at once with that code
 * until a recovery thread has reopened the database, which it tries with
 * backoff once the file system has room; reads go on meanwhile.
 */
#define STORE_WHY_MAX	256
struct store_state {
	int failed;			/* 0: writes work */
	char why[STORE_WHY_MAX];	/* LevelDB's message */
	time_t since;			/* of the last failure */
	uint64_t failures, reopens;	/* since open */
};
void store_state(struct store *s, struct store_state *out);
void store_close(struct store *s);

/*
 * Reads the value of key into val (capacity cap) and its length into *len.
 * Returns 0, -ENOENT when absent, -EOVERFLOW when the value is larger than
 * cap (*len is then the needed size), -EIO on a storage error.
 */
int store_get(struct store *s, const void *key, size_t klen, void *val,
    size_t cap, size_t *len, struct err *e);

/* A batch of puts and deletes. store_batch_new() returns NULL on ENOMEM. */
struct store_batch *store_batch_new(void);
void store_batch_free(struct store_batch *b);
void store_batch_put(struct store_batch *b, const void *k, size_t klen,
    const void *v, size_t vlen);
void store_batch_delete(struct store_batch *b, const void *k, size_t klen);
void store_batch_clear(struct store_batch *b);

/* Applies b atomically; with sync, waits for stable storage. */
int store_write(struct store *s, struct store_batch *b, bool sync,
    struct err *e);

/* Makes every write so far durable on stable storage. */
int store_sync(struct store *s, struct err *e);

/* Writes with sync (store_sync() included) that succeeded, for metrics. */
uint64_t store_syncs(struct store *s);

/* Compacts the key range [start, limit) (NULL means unbounded). */
void store_compact(struct store *s, const void *start, size_t slen,
    const void *limit, size_t llen);

/*
 * Iterators see a consistent view of the store as of their creation.
 * store_iter_key/value return pointers valid until the next move or free.
 */
struct store_iter *store_iter_new(struct store *s, bool fill_cache);
/* it may be held long (a snapshot being served): a reopen waits for it. */
void store_iter_hold_long(struct store_iter *it);
void store_iter_free(struct store_iter *it);
void store_iter_seek(struct store_iter *it, const void *k, size_t klen);
void store_iter_seek_last(struct store_iter *it);
bool store_iter_valid(const struct store_iter *it);
void store_iter_next(struct store_iter *it);
void store_iter_prev(struct store_iter *it);
const void *store_iter_key(const struct store_iter *it, size_t *len);
const void *store_iter_value(const struct store_iter *it, size_t *len);
/* 0, or -EIO with e set if the iterator met a storage error. */
int store_iter_status(const struct store_iter *it, struct err *e);

#endif
