/*
 * Unit tests for core/journal: create, append, read by offset and by
 * revision, restart, and the errors of the append path.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "holders.h"
#include "journal.h"
#include "keys.h"
#include "store.h"
#include "unit.h"

/* journal_read() at a fixed offset. */
static ssize_t
jread(struct journal *j, uint32_t idx, uint64_t off, char *buf, size_t size,
    struct err *e)
{
	return journal_read(j, idx, &off, buf, size, e);
}

static struct journal *
open_journal(const char *dir, const char *node)
{
	struct journal_opts o = {
		.data_dir = dir, .node_id = node, .sync = false,
		.max_event_bytes = 1000, .cache_bytes = 1 << 20,
	};
	struct journal *j = NULL;
	struct err e;

	if (journal_open(&j, &o, &e) < 0) {
		fprintf(stderr, "journal_open: %s\n", e.msg);
		exit(2);
	}
	return j;
}

/* The expected events file of events "ev-<i>" for i in [from, to]. */
static size_t
expected(char *out, size_t size, int from, int to)
{
	size_t n = 0;

	for (int i = from; i <= to; i++)
		n += (size_t)snprintf(out + n, size - n, "ev-%d\n", i);
	return n;
}

static void
test_create(struct journal *j)
{
	struct journal_info in;
	uint32_t idx, again;
	struct err e;

	CHECK_EQ_INT(journal_create(j, "sensor-1", 8, &idx, &e), 0);
	CHECK_EQ_INT(journal_count(j), 1);
	CHECK_EQ_INT(journal_create(j, "sensor-1", 8, &again, &e), -EEXIST);
	CHECK_EQ_INT(journal_create(j, ".hidden", 7, &again, &e), -EINVAL);
	CHECK_EQ_INT(journal_create(j, "a/b", 3, &again, &e), -EINVAL);
	CHECK_EQ_INT(journal_create(j, "", 0, &again, &e), -EINVAL);
	CHECK_EQ_INT(journal_lookup(j, "sensor-1", 8, &again), 0);
	CHECK_EQ_INT(again, idx);
	CHECK_EQ_INT(journal_lookup(j, "sensor-2", 8, &again), -ENOENT);
	journal_info(j, idx, &in);
	CHECK(strcmp(in.id, "sensor-1") == 0);
	CHECK(strcmp(in.source, "node-a") == 0);
	CHECK(in.local);
	CHECK_EQ_INT(in.first, 1);
	CHECK_EQ_INT(in.head, 0);
	CHECK_EQ_INT(in.end_offset, 0);
	CHECK(in.epoch != 0);
}

static void
test_append_and_read(struct journal *j, uint32_t idx, int n)
{
	static char want[1 << 20], got[1 << 20];
	struct journal_info in;
	size_t wlen, skip;
	uint64_t rev;
	struct err e;
	ssize_t r;

	/* n events in batches of 7 lines */
	for (int i = 1; i <= n; i += 7) {
		char lines[256];
		int to = i + 6 > n ? n : i + 6;
		size_t len = expected(lines, sizeof(lines), i, to);

		CHECK_EQ_INT(journal_append_lines(j, idx, lines, len, &e),
		    to - i + 1);
	}
	wlen = expected(want, sizeof(want), 1, n);
	journal_info(j, idx, &in);
	CHECK_EQ_INT(in.head, n);
	CHECK_EQ_INT(in.end_offset, wlen);

	/* by offset: whole, in odd chunks, from inside an event */
	r = jread(j, idx, 0, got, sizeof(got), &e);
	CHECK_EQ_INT(r, wlen);
	CHECK(memcmp(got, want, wlen) == 0);
	for (size_t off = 0; off < wlen; off += 13) {
		r = jread(j, idx, off, got, 13, &e);
		CHECK_EQ_INT(r, off + 13 <= wlen ? 13 : wlen - off);
		CHECK(r > 0 && memcmp(got, want + off, (size_t)r) == 0);
	}
	CHECK_EQ_INT(jread(j, idx, wlen, got, 10, &e), 0);
	CHECK_EQ_INT(jread(j, idx, wlen + 100, got, 10, &e), 0);

	/* by revision: every revision, including across index strides */
	for (int from = 1; from <= n; from += (from < 200 ? 1 : 97)) {
		char exp[64];
		size_t elen = expected(exp, sizeof(exp), from, from);

		rev = (uint64_t)from;
		skip = 0;
		r = journal_read_from(j, idx, &rev, &skip, false, got,
		    elen, &e);
		CHECK_EQ_INT(r, elen);
		CHECK(memcmp(got, exp, elen) == 0);
		CHECK_EQ_INT(rev, from + 1);
		CHECK_EQ_INT(skip, 0);
	}
	rev = 1;
	skip = 0;
	r = journal_read_from(j, idx, &rev, &skip, false, got, sizeof(got), &e);
	CHECK_EQ_INT(r, wlen);
	CHECK(memcmp(got, want, wlen) == 0);
	CHECK_EQ_INT(rev, n + 1);
	CHECK_EQ_INT(journal_read_from(j, idx, &rev, &skip, false, got,
	    sizeof(got), &e), 0);
	rev = 0;
	CHECK_EQ_INT(journal_read_from(j, idx, &rev, &skip, false, got,
	    sizeof(got), &e), -ERANGE);
}

static void
test_partial_lines(struct journal *j, uint32_t idx)
{
	char got[64];
	uint64_t rev = 3;
	size_t skip = 0;
	struct err e;
	ssize_t r;

	/* "ev-3\n" handed out 2 bytes at a time, then tagged */
	r = journal_read_from(j, idx, &rev, &skip, false, got, 2, &e);
	CHECK_EQ_INT(r, 2);
	CHECK(memcmp(got, "ev", 2) == 0);
	CHECK_EQ_INT(rev, 3);
	CHECK_EQ_INT(skip, 2);
	r = journal_read_from(j, idx, &rev, &skip, false, got, 2, &e);
	CHECK(r == 2 && memcmp(got, "-3", 2) == 0);
	r = journal_read_from(j, idx, &rev, &skip, false, got, 2, &e);
	CHECK(r == 2 && memcmp(got, "\ne", 2) == 0);
	CHECK_EQ_INT(rev, 4);
	CHECK_EQ_INT(skip, 1);
	rev = 2;
	skip = 0;
	r = journal_read_from(j, idx, &rev, &skip, true, got, sizeof(got), &e);
	CHECK(r > 0);
	CHECK(strncmp(got, "sensor-1\t2\tev-2\nsensor-1\t3\tev-3\n", 32) == 0);
}

static void
test_txn_errors(struct journal *j, uint32_t idx)
{
	static char big[1001];
	struct journal_txn *t;
	struct journal_info before, after;
	struct err e;

	journal_info(j, idx, &before);
	memset(big, 'x', sizeof(big));
	CHECK_EQ_INT(journal_txn_begin(j, idx, &t, &e), 0);
	CHECK_EQ_INT(journal_txn_add(t, big, 1001, &e), -EFBIG);
	CHECK_EQ_INT(journal_txn_add(t, "a\nb", 3, &e), -EINVAL);
	CHECK_EQ_INT(journal_txn_add(t, big, 1000, &e), 0);
	journal_txn_abort(t);
	journal_info(j, idx, &after);
	CHECK_EQ_INT(after.head, before.head);
	CHECK_EQ_INT(after.end_offset, before.end_offset);
	CHECK_EQ_INT(journal_append_lines(j, idx, "no newline", 10, &e),
	    -EINVAL);
	CHECK_EQ_INT(journal_sync(j, &e), 0);
}

static int notified;
static uint64_t notified_head;

static void
on_commit(void *arg, uint32_t idx, uint64_t head)
{
	(void)arg;
	(void)idx;
	notified++;
	notified_head = head;
}

/* The firehose: commits of several devices in order, read in small pieces. */
static void
test_firehose(struct journal *j)
{
	struct journal_fh_cursor c, late;
	uint32_t a, b;
	char buf[4096], piece[7];
	size_t len = 0;
	struct err e;
	ssize_t n;

	CHECK_EQ_INT(journal_create(j, "fh-a", 4, &a, &e), 0);
	CHECK_EQ_INT(journal_create(j, "fh-b", 4, &b, &e), 0);
	CHECK_EQ_INT(journal_append_lines(j, a, "before\n", 7, &e), 1);
	journal_firehose_open(j, &c);
	CHECK(!journal_firehose_ready(j, &c));
	CHECK_EQ_INT(journal_firehose_read(j, &c, buf, sizeof(buf), &e), 0);
	CHECK_EQ_INT(journal_append_lines(j, a, "a1\na2\n", 6, &e), 2);
	CHECK_EQ_INT(journal_append_lines(j, b, "b1\n", 3, &e), 1);
	CHECK_EQ_INT(journal_append_lines(j, a, "a3\n", 3, &e), 1);
	CHECK_EQ_INT(notified_head, 4);
	CHECK(journal_firehose_ready(j, &c));
	/* 7 bytes at a time: lines are cut and resumed exactly */
	while ((n = journal_firehose_read(j, &c, piece, sizeof(piece), &e)) > 0) {
		memcpy(buf + len, piece, (size_t)n);
		len += (size_t)n;
	}
	CHECK_EQ_INT(n, 0);
	buf[len] = '\0';
	CHECK(strcmp(buf, "fh-a\t2\ta1\nfh-a\t3\ta2\nfh-b\t1\tb1\n"
	    "fh-a\t4\ta3\n") == 0);
	/* a second reader starts at the next commit */
	journal_firehose_open(j, &late);
	CHECK_EQ_INT(journal_append_lines(j, b, "b2\n", 3, &e), 1);
	n = journal_firehose_read(j, &late, buf, sizeof(buf), &e);
	CHECK(n == 10 && memcmp(buf, "fh-b\t2\tb2\n", 10) == 0);
	n = journal_firehose_read(j, &c, buf, sizeof(buf), &e);
	CHECK(n == 10 && memcmp(buf, "fh-b\t2\tb2\n", 10) == 0);
	/* pruning below the slowest reader keeps what it still needs */
	CHECK_EQ_INT(journal_append_lines(j, b, "b3\n", 3, &e), 1);
	journal_firehose_prune(j, c.seq);
	n = journal_firehose_read(j, &c, buf, sizeof(buf), &e);
	CHECK(n == 10 && memcmp(buf, "fh-b\t3\tb3\n", 10) == 0);
	journal_firehose_close(j);
	journal_firehose_close(j);
	journal_firehose_prune(j, UINT64_MAX);
}

/* Snapshots, compaction, pins, and what a restart keeps of them. */
/*
 * Reads never return a revision twice or out of order: with the key of
 * revision 50 gone from the store under a running journal, a read by
 * offset or by revision stops before it and the next read fails with EIO.
 */
static void
test_reads_check(const char *dir)
{
	struct journal *j = open_journal(dir, "node-a");
	unsigned char k[KEYS_EVENT_LEN];
	struct store_batch *b;
	char buf[4096], want[4096];
	uint64_t rev, off50 = 0;
	size_t skip = 0, n = 0;
	uint32_t idx;
	struct err e;
	ssize_t r;

	CHECK_EQ_INT(journal_create(j, "gap", 3, &idx, &e), 0);
	for (int i = 1; i <= 100; i++) {
		char line[32];
		int len = snprintf(line, sizeof(line), "ev-%d\n", i);

		if (i == 50)
			off50 = n;
		n += (size_t)len;
		CHECK_EQ_INT(journal_append_lines(j, idx, line, (size_t)len, &e),
		    1);
	}
	expected(want, sizeof(want), 1, 49);
	b = store_batch_new();
	keys_event(k, 0, off50, 50);
	/* the device's store number is not public: find it by the key */
	for (uint32_t devno = 0; devno < 4; devno++) {
		keys_event(k, devno, off50, 50);
		store_batch_delete(b, k, sizeof(k));
	}
	CHECK_EQ_INT(store_write(journal_store(j), b, false, &e), 0);
	store_batch_free(b);

	r = jread(j, idx, 0, buf, sizeof(buf), &e);
	CHECK_EQ_INT(r, (ssize_t)off50);
	CHECK(r > 0 && memcmp(buf, want, (size_t)r) == 0);
	CHECK_EQ_INT(jread(j, idx, off50, buf, sizeof(buf), &e), -EIO);
	rev = 1;
	r = journal_read_from(j, idx, &rev, &skip, false, buf, sizeof(buf), &e);
	CHECK_EQ_INT(r, (ssize_t)off50);
	CHECK_EQ_INT(rev, 50);
	r = journal_read_from(j, idx, &rev, &skip, false, buf, sizeof(buf), &e);
	CHECK_EQ_INT(r, -EIO);
	journal_close(j);
}

static void
test_snapshots(const char *dir)
{
	struct journal *j = open_journal(dir, "node-s");
	struct journal_snap *sn;
	struct journal_pin *pin;
	struct journal_info in;
	static char big[200000];
	char buf[300000];
	uint32_t idx;
	uint64_t off, rev;
	size_t skip;
	struct err e;

	CHECK_EQ_INT(journal_create(j, "snap", 4, &idx, &e), 0);
	for (int i = 1; i <= 300; i += 3) {
		char l[64];
		size_t n = expected(l, sizeof(l), i, i + 2);

		CHECK_EQ_INT(journal_append_lines(j, idx, l, n, &e), 3);
	}
	/* a snapshot over several chunks; an open view keeps its version */
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)('a' + i % 26);
	CHECK_EQ_INT(journal_snapshot_install(j, idx, 301, "x", 1, &e), -EINVAL);
	CHECK_EQ_INT(journal_snapshot_install(j, idx, 100, big, sizeof(big), &e),
	    0);
	CHECK_EQ_INT(journal_snap_open(j, idx, &sn, &e), 0);
	CHECK_EQ_INT(journal_snapshot_install(j, idx, 150, "small\n", 6, &e), 0);
	CHECK_EQ_INT(journal_snapshot_install(j, idx, 120, "older", 5, &e),
	    -EINVAL);
	CHECK_EQ_INT(journal_snap_rev(sn), 100);
	CHECK_EQ_INT(journal_snap_len(sn), sizeof(big));
	CHECK_EQ_INT(journal_snap_read(sn, 0, buf, sizeof(buf), &e), sizeof(big));
	CHECK(memcmp(buf, big, sizeof(big)) == 0);
	CHECK_EQ_INT(journal_snap_read(sn, 70000, buf, 10, &e), 10);
	CHECK(memcmp(buf, big + 70000, 10) == 0);
	journal_snap_close(sn);
	CHECK_EQ_INT(journal_snap_open(j, idx, &sn, &e), 0);
	CHECK_EQ_INT(journal_snap_rev(sn), 150);
	CHECK_EQ_INT(journal_snap_read(sn, 0, buf, sizeof(buf), &e), 6);
	journal_snap_close(sn);

	/* compaction stops at a pin, then at the snapshot */
	pin = journal_pin_new(j, idx);
	journal_info(j, idx, &in);
	off = in.end_offset / 3;	/* somewhere inside event ~100 */
	journal_pin_offset(pin, off);
	CHECK(journal_compact(j, idx, 1000, &e) > 1);
	journal_info(j, idx, &in);
	CHECK(in.first_offset <= off);
	CHECK(in.first < 150);
	journal_pin_offset(pin, in.end_offset);
	journal_pin_rev(pin, 140);
	CHECK_EQ_INT(journal_compact(j, idx, 1000, &e), 140);
	journal_pin_free(j, pin);
	CHECK_EQ_INT(journal_compact(j, idx, 1000, &e), 151);
	journal_info(j, idx, &in);
	CHECK_EQ_INT(in.first, 151);
	CHECK_EQ_INT(in.head, 300);
	/* offsets kept; a read below the first event starts at it */
	{
		char exp[4096];
		size_t elen = expected(exp, sizeof(exp), 151, 300);
		uint64_t at = 0;

		CHECK_EQ_INT(in.end_offset - in.first_offset, elen);
		CHECK_EQ_INT(journal_read(j, idx, &at, buf, sizeof(buf), &e),
		    elen);
		CHECK_EQ_INT(at, in.first_offset);
		CHECK(memcmp(buf, exp, elen) == 0);
	}
	rev = 150;
	skip = 0;
	CHECK_EQ_INT(journal_read_from(j, idx, &rev, &skip, false, buf, 100,
	    &e), -ERANGE);
	rev = 151;
	CHECK(journal_read_from(j, idx, &rev, &skip, false, buf, 100, &e) > 0);
	journal_close(j);

	/* a restart keeps first, offsets and the snapshot */
	j = open_journal(dir, "node-s");
	CHECK_EQ_INT(journal_lookup(j, "snap", 4, &idx), 0);
	{
		struct journal_info again;

		journal_info(j, idx, &again);
		CHECK_EQ_INT(again.first, 151);
		CHECK_EQ_INT(again.first_offset, in.first_offset);
		CHECK_EQ_INT(again.end_offset, in.end_offset);
		CHECK_EQ_INT(again.head, 300);
		CHECK_EQ_INT(again.snapshot_rev, 150);
		CHECK_EQ_INT(again.snapshot_len, 6);
	}
	/* compacting everything still keeps the end */
	CHECK_EQ_INT(journal_snapshot_install(j, idx, 300, "all", 3, &e), 0);
	CHECK_EQ_INT(journal_compact(j, idx, 301, &e), 301);
	journal_close(j);
	j = open_journal(dir, "node-s");
	CHECK_EQ_INT(journal_lookup(j, "snap", 4, &idx), 0);
	journal_info(j, idx, &in);
	CHECK_EQ_INT(in.first, 301);
	CHECK_EQ_INT(in.head, 300);
	CHECK_EQ_INT(in.first_offset, in.end_offset);
	CHECK_EQ_INT(journal_append_lines(j, idx, "ev-301\n", 7, &e), 1);
	journal_info(j, idx, &in);
	CHECK_EQ_INT(in.head, 301);
	journal_close(j);
}

static int holders_notified;

static void
on_durable(void *arg, uint32_t idx)
{
	(void)arg;
	(void)idx;
	holders_notified++;
}

static struct holder_ack
ack(const char *peer, uint64_t epoch, uint64_t head, uint64_t durable,
    uint64_t at)
{
	struct holder_ack a;

	memset(&a, 0, sizeof(a));
	snprintf(a.peer, sizeof(a.peer), "%s", peer);
	a.epoch = epoch;
	a.head = head;
	a.durable = durable;
	a.at_ms = at;
	return a;
}

/* core/holders: merging, counting, retention, paging, persistence. */
static void
test_holders(const char *dir)
{
	static const char globs[2][CONFIG_GLOB_MAX] = { "arch*", "z" };
	struct journal *j = open_journal(dir, "node-a");
	struct holder_ack a, got[8];
	struct holders *h;
	uint64_t ep, since = 0;
	uint32_t idx;
	struct err e;

	CHECK_EQ_INT(journal_create(j, "dev", 3, &idx, &e), 0);
	ep = journal_epoch(j, idx);
	CHECK_EQ_INT(holders_open(&h, j, &e), 0);
	holders_set_notify(h, on_durable, NULL);
	CHECK_EQ_INT(holders_get(h, idx, got, 8, NULL), 0);
	a = ack("b", ep, 10, 8, 1000);
	CHECK(holders_ack(h, idx, &a));
	CHECK_EQ_INT(holders_notified, 1);
	/* heads never go back; the same again changes nothing */
	a = ack("b", ep, 9, 7, 900);
	CHECK(!holders_ack(h, idx, &a));
	a = ack("b", ep, 10, 8, 1000);
	CHECK(!holders_ack(h, idx, &a));
	/* another epoch is another journal: ignored */
	a = ack("c", ep + 1, 50, 50, 2000);
	CHECK(!holders_ack(h, idx, &a));
	a = ack("archive-1", ep, 20, 5, 3000);
	CHECK(holders_ack(h, idx, &a));
	a = ack("node-a", ep, 30, 30, 3000);	/* ourselves: never counted */
	CHECK(holders_ack(h, idx, &a));
	CHECK_EQ_INT(holders_get(h, idx, got, 8, NULL), 3);
	CHECK_EQ_INT(holders_durable_count(h, idx, 8, "node-a"), 1);
	CHECK_EQ_INT(holders_durable_count(h, idx, 5, "node-a"), 2);
	CHECK_EQ_INT(holders_durable_count(h, idx, 9, "node-a"), 0);
	CHECK_EQ_INT(holders_retain(h, idx, globs, 2, &a), 5);
	CHECK(strcmp(a.peer, "archive-1") == 0 && a.at_ms == 3000);
	CHECK(holders_retain(h, idx, globs, 1, NULL) == 5);
	CHECK(holders_retain(h, idx, globs + 1, 1, NULL) == UINT64_MAX);
	/* pages, oldest change first, then only what changed since */
	CHECK_EQ_INT(holders_get(h, idx, got, 2, &since), 2);
	CHECK(strcmp(got[0].peer, "b") == 0 &&
	    strcmp(got[1].peer, "archive-1") == 0);
	CHECK_EQ_INT(holders_get(h, idx, got, 2, &since), 1);
	CHECK(strcmp(got[0].peer, "node-a") == 0);
	CHECK_EQ_INT(holders_get(h, idx, got, 2, &since), 0);
	a = ack("b", ep, 12, 12, 4000);
	CHECK(holders_ack(h, idx, &a));
	CHECK_EQ_INT(holders_get(h, idx, got, 8, &since), 1);
	CHECK(got[0].head == 12 && got[0].durable == 12);
	/* saved, and back after a restart */
	CHECK(holders_dirty(h));
	CHECK_EQ_INT(holders_save(h, &e), 0);
	CHECK(!holders_dirty(h));
	holders_close(h);
	journal_close(j);
	j = open_journal(dir, "node-a");
	CHECK_EQ_INT(journal_lookup(j, "dev", 3, &idx), 0);
	CHECK_EQ_INT(holders_open(&h, j, &e), 0);
	CHECK_EQ_INT(holders_get(h, idx, got, 8, NULL), 3);
	CHECK_EQ_INT(holders_retain(h, idx, globs, 2, NULL), 5);
	CHECK_EQ_INT(holders_durable_count(h, idx, 12, "node-a"), 1);
	CHECK(!holders_dirty(h));
	holders_close(h);
	journal_close(j);
}

void
unit_main(void)
{
	char dir[512];
	struct journal_info in1, in2;
	struct journal *j;
	uint32_t idx, idx2;
	struct err e;
	char got[64];
	int n = 1000;

	snprintf(dir, sizeof(dir), "%s", unit_tmpdir());
	j = open_journal(dir, "node-a");
	journal_set_notify(j, on_commit, NULL);
	test_create(j);
	CHECK_EQ_INT(journal_lookup(j, "sensor-1", 8, &idx), 0);
	test_append_and_read(j, idx, n);
	test_partial_lines(j, idx);
	test_txn_errors(j, idx);
	CHECK(notified > 0);
	CHECK_EQ_INT(journal_create(j, "sensor-2", 8, &idx2, &e), 0);
	CHECK_EQ_INT(journal_append_lines(j, idx2, "other\n", 6, &e), 1);
	journal_info(j, idx, &in1);
	test_firehose(j);
	journal_close(j);

	/* restart: devices, epochs, heads and offsets come back */
	j = open_journal(dir, "node-a");
	CHECK_EQ_INT(journal_count(j), 4);
	{
		/* a firehose reader after restart starts after the old log */
		struct journal_fh_cursor c;
		uint32_t fa;
		char buf[64];

		journal_firehose_open(j, &c);
		CHECK_EQ_INT(journal_lookup(j, "fh-a", 4, &fa), 0);
		CHECK_EQ_INT(journal_append_lines(j, fa, "new\n", 4, &e), 1);
		CHECK_EQ_INT(journal_firehose_read(j, &c, buf, sizeof(buf), &e),
		    11);
		CHECK(memcmp(buf, "fh-a\t5\tnew\n", 11) == 0);
		journal_firehose_close(j);
	}
	CHECK_EQ_INT(journal_lookup(j, "sensor-1", 8, &idx), 0);
	journal_info(j, idx, &in2);
	CHECK_EQ_INT(in2.head, in1.head);
	CHECK_EQ_INT(in2.end_offset, in1.end_offset);
	CHECK(in2.epoch == in1.epoch);
	CHECK(in2.local);
	CHECK_EQ_INT(journal_append_lines(j, idx, "after\n", 6, &e), 1);
	journal_info(j, idx, &in2);
	CHECK_EQ_INT(in2.head, n + 1);
	CHECK_EQ_INT(jread(j, idx, in1.end_offset, got, sizeof(got),
	    &e), 6);
	CHECK(memcmp(got, "after\n", 6) == 0);
	CHECK_EQ_INT(journal_lookup(j, "sensor-2", 8, &idx2), 0);
	CHECK_EQ_INT(jread(j, idx2, 0, got, sizeof(got), &e), 6);
	CHECK(memcmp(got, "other\n", 6) == 0);
	journal_close(j);

	/* another node id: the devices are replicas, appends refused */
	j = open_journal(dir, "node-b");
	CHECK_EQ_INT(journal_lookup(j, "sensor-1", 8, &idx), 0);
	CHECK(!journal_is_local(j, idx));
	CHECK_EQ_INT(journal_append_lines(j, idx, "x\n", 2, &e), -EROFS);
	journal_close(j);

	/* a second open of the same directory is refused while one is open */
	j = open_journal(dir, "node-a");
	{
		struct journal_opts o = { .data_dir = dir, .node_id = "node-a",
		    .max_event_bytes = 1000, .cache_bytes = 1 << 20 };
		struct journal *j2 = NULL;

		CHECK_EQ_INT(journal_open(&j2, &o, &e), -EBUSY);
		CHECK(j2 == NULL);
	}
	journal_close(j);
	unit_rmtree(dir);

	snprintf(dir, sizeof(dir), "%s", unit_tmpdir());
	test_snapshots(dir);
	unit_rmtree(dir);

	snprintf(dir, sizeof(dir), "%s", unit_tmpdir());
	test_reads_check(dir);
	unit_rmtree(dir);

	snprintf(dir, sizeof(dir), "%s", unit_tmpdir());
	test_holders(dir);
	unit_rmtree(dir);
}
