/*
 * ldbfloor: the storage floor of the benchmark (tests/bench/bench.py).
 *
 * LevelDB alone, through odofs's own store.c and key layout (keys.h), with
 * odofs's options (8 MiB block cache, 8 MiB write buffer, sync off):
 *
 *   ingest  N events of --size bytes (the payload is stored without its
 *           newline, as odofs stores it), --batch events per write batch:
 *           one 'E' key per event plus an 'R' index key every 64
 *           revisions.  odofs commits one write() as one batch, so a
 *           64 KiB write of 100-byte lines is a batch of 655 events.
 *   scan    every event again with one iterator, each payload and its
 *           newline copied into a 128 KiB buffer (what `cat` asks for per
 *           read), as a read of `events` does.
 *
 * Payloads are "<10-digit counter> <random [A-Za-z0-9]>", which Snappy
 * cannot shrink much: the bench writes the same kind of lines to odofs.
 *
 *	ldbfloor --dir DIR [--events N] [--batch K] [--size BYTES]
 *	         [--no-scan]
 *	ldbfloor --dir DIR --sync-threads T [--events N] [--group]
 *
 * The second form is the storage floor of workload 5 (see ldb_syncer()).
 *
 * Prints two lines, "ingest events=.. bytes=.. seconds=.. mbps=.. eps=.."
 * and "scan events=.. bytes=.. seconds=.. mbps=..", with bytes counting the
 * newline of each event (the bytes of `events`).  Exits 1 on any error,
 * including a scan that does not give back exactly what was written.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "keys.h"
#include "store.h"

#define LDB_CACHE	(8u << 20)		/* as fs/main.c */
#define LDB_READ	(128u << 10)

static double
ldb_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t ldb_rng = 0x9e3779b97f4a7c15ull;

static uint64_t
ldb_next(void)
{
	ldb_rng ^= ldb_rng << 13;
	ldb_rng ^= ldb_rng >> 7;
	ldb_rng ^= ldb_rng << 17;
	return ldb_rng;
}

/* Fills p (len bytes, no newline) with event i's payload. */
static void
ldb_payload(char *p, size_t len, uint64_t i)
{
	static const char al[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
	char head[16];
	size_t k = 0;

	snprintf(head, sizeof(head), "%010llu ",
	    (unsigned long long)(i % 10000000000ull));
	for (; k < len && head[k] != '\0'; k++)
		p[k] = head[k];
	while (k < len) {
		uint64_t r = ldb_next();

		for (int b = 0; b < 10 && k < len; b++, r >>= 6)
			p[k++] = al[(r & 63) % 62];
	}
}

/*
 * --sync-threads T: T threads each append --events N events one batch at a
 * time, each followed by a sync, as T writers with fdatasync() after every
 * event do through odofs (workload 5).  The sync is store_sync() (an empty
 * synchronous write, what odofs's fsync does) or, with --group, a group
 * commit in front of it: a sync that starts while another runs waits for
 * the next one, which covers it, so one store_sync() serves every writer
 * waiting.
 */
struct ldb_sync {
	struct store *s;
	uint32_t devno;
	uint64_t n;
	bool group;
};

static pthread_mutex_t gc_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gc_cond = PTHREAD_COND_INITIALIZER;
static uint64_t gc_ticket, gc_done;
static bool gc_running;
static _Atomic uint64_t ldb_syncs;

static int
ldb_group_sync(struct store *s, struct err *e)
{
	uint64_t mine;
	int rc = 0;

	pthread_mutex_lock(&gc_lock);
	mine = ++gc_ticket;
	while (gc_done < mine) {
		if (!gc_running) {
			uint64_t upto = gc_ticket;

			gc_running = true;
			pthread_mutex_unlock(&gc_lock);
			rc = store_sync(s, e);
			ldb_syncs++;
			pthread_mutex_lock(&gc_lock);
			gc_running = false;
			if (rc == 0)
				gc_done = upto;
			pthread_cond_broadcast(&gc_cond);
			if (rc < 0)
				break;
		} else {
			pthread_cond_wait(&gc_cond, &gc_lock);
		}
	}
	pthread_mutex_unlock(&gc_lock);
	return rc;
}

static int
ldb_plain_sync(struct store *s, struct err *e)
{
	ldb_syncs++;
	return store_sync(s, e);
}

static void *
ldb_syncer(void *arg)
{
	struct ldb_sync *a = arg;
	struct store_batch *b = store_batch_new();
	unsigned char k[KEYS_EVENT_LEN];
	char payload[99];
	struct err e;

	for (uint64_t i = 0; i < a->n; i++) {
		ldb_payload(payload, sizeof(payload), i);
		store_batch_clear(b);
		keys_event(k, a->devno, i * 100, i + 1);
		store_batch_put(b, k, sizeof(k), payload, sizeof(payload));
		if (store_write(a->s, b, false, &e) < 0 ||
		    (a->group ? ldb_group_sync(a->s, &e) :
		    ldb_plain_sync(a->s, &e)) < 0) {
			fprintf(stderr, "ldbfloor: %s\n", e.msg);
			exit(1);
		}
	}
	store_batch_free(b);
	return NULL;
}

static int
ldb_sync_run(struct store *s, unsigned threads, uint64_t n, bool group)
{
	pthread_t t[64];
	struct ldb_sync a[64];
	double t0, t1;

	t0 = ldb_now();
	for (unsigned i = 0; i < threads; i++) {
		a[i] = (struct ldb_sync){ s, i + 1, n, group };
		if (pthread_create(&t[i], NULL, ldb_syncer, &a[i]) != 0)
			return 1;
	}
	for (unsigned i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	t1 = ldb_now();
	printf("sync threads=%u events=%llu seconds=%.6f eps=%.0f syncs=%llu "
	    "group=%d\n", threads, (unsigned long long)(n * threads), t1 - t0,
	    (double)(n * threads) / (t1 - t0), (unsigned long long)ldb_syncs,
	    group);
	store_close(s);
	return 0;
}

static void
ldb_usage(void)
{
	fprintf(stderr, "usage: ldbfloor --dir DIR [--events N] [--batch K] "
	    "[--size BYTES] [--no-scan]\n"
	    "       ldbfloor --dir DIR --sync-threads T [--events N] "
	    "[--group]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	const char *dir = NULL;
	uint64_t n = 1000000, batch = 655, size = 100;
	bool scan = true, group = false;
	unsigned sync_threads = 0;
	struct store *s;
	struct store_batch *b;
	struct store_iter *it;
	struct err e;
	unsigned char k[KEYS_EVENT_LEN], rk[KEYS_REV_LEN], rv[8];
	char *payload, *out;
	uint64_t off = 0, got = 0, bytes = 0, bad = 0;
	double t0, t1;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
			dir = argv[++i];
		else if (strcmp(argv[i], "--events") == 0 && i + 1 < argc)
			n = strtoull(argv[++i], NULL, 0);
		else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc)
			batch = strtoull(argv[++i], NULL, 0);
		else if (strcmp(argv[i], "--size") == 0 && i + 1 < argc)
			size = strtoull(argv[++i], NULL, 0);
		else if (strcmp(argv[i], "--no-scan") == 0)
			scan = false;
		else if (strcmp(argv[i], "--sync-threads") == 0 && i + 1 < argc)
			sync_threads = (unsigned)strtoul(argv[++i], NULL, 0);
		else if (strcmp(argv[i], "--group") == 0)
			group = true;
		else
			ldb_usage();
	}
	if (dir == NULL || batch == 0 || size < 12 || size > (1u << 20) ||
	    sync_threads > 64)
		ldb_usage();
	err_clear(&e);
	if (store_open(&s, dir, LDB_CACHE, &e) < 0) {
		fprintf(stderr, "ldbfloor: %s\n", e.msg);
		return 1;
	}
	if (sync_threads > 0)
		return ldb_sync_run(s, sync_threads, n, group);
	if ((b = store_batch_new()) == NULL ||
	    (payload = malloc(size)) == NULL ||
	    (out = malloc(LDB_READ)) == NULL) {
		fprintf(stderr, "ldbfloor: out of memory\n");
		return 1;
	}

	t0 = ldb_now();
	for (uint64_t i = 0; i < n; ) {
		store_batch_clear(b);
		for (uint64_t j = 0; j < batch && i < n; j++, i++) {
			uint64_t rev = i + 1;

			ldb_payload(payload, size - 1, i);
			keys_event(k, 0, off, rev);
			store_batch_put(b, k, sizeof(k), payload, size - 1);
			if (keys_rev_indexed(rev)) {
				keys_rev(rk, 0, rev);
				keys_put_u64(rv, off);
				store_batch_put(b, rk, sizeof(rk), rv, sizeof(rv));
			}
			off += size;
		}
		if (store_write(s, b, false, &e) < 0) {
			fprintf(stderr, "ldbfloor: %s\n", e.msg);
			return 1;
		}
	}
	t1 = ldb_now();
	printf("ingest events=%llu bytes=%llu seconds=%.6f mbps=%.2f eps=%.0f\n",
	    (unsigned long long)n, (unsigned long long)off, t1 - t0,
	    (double)off / 1e6 / (t1 - t0), (double)n / (t1 - t0));
	fflush(stdout);

	if (scan) {
		size_t used = 0;
		uint64_t evoff, rev;

		t0 = ldb_now();
		it = store_iter_new(s, true);
		keys_event(k, 0, 0, 0);
		for (store_iter_seek(it, k, sizeof(k)); store_iter_valid(it);
		    store_iter_next(it)) {
			size_t klen, vlen;
			const void *key = store_iter_key(it, &klen);
			const void *val;

			if (!keys_event_parse(key, klen, 0, &evoff, &rev))
				break;
			val = store_iter_value(it, &vlen);
			if (used + vlen + 1 > LDB_READ) {
				/* a reader of out: the copies are not dead */
				if (out[used - 1] != '\n')
					bad++;
				bytes += used;
				used = 0;
			}
			memcpy(out + used, val, vlen);
			out[used + vlen] = '\n';
			used += vlen + 1;
			got++;
		}
		bytes += used;
		if (store_iter_status(it, &e) < 0) {
			fprintf(stderr, "ldbfloor: scan: %s\n", e.msg);
			return 1;
		}
		store_iter_free(it);
		t1 = ldb_now();
		if (got != n || bytes != off || bad != 0) {
			fprintf(stderr, "ldbfloor: scan gave %llu events, %llu "
			    "bytes; wrote %llu, %llu\n", (unsigned long long)got,
			    (unsigned long long)bytes, (unsigned long long)n,
			    (unsigned long long)off);
			return 1;
		}
		printf("scan events=%llu bytes=%llu seconds=%.6f mbps=%.2f\n",
		    (unsigned long long)got, (unsigned long long)bytes, t1 - t0,
		    (double)bytes / 1e6 / (t1 - t0));
	}
	store_batch_free(b);
	free(payload);
	free(out);
	store_close(s);
	return 0;
}
