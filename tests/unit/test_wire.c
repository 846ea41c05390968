/*
 * test_wire: net/wire.c against SPEC §9 and the frame layout in wire.h.
 * Every message round-trips and re-encodes byte for byte; every truncation
 * of every valid frame is "need more" at the frame level and -EPROTO at the
 * payload level; oversized and empty headers, trailing bytes, bad ids, bad
 * text and bad counts are refused; the encoder honours its buffer's maximum
 * and the frame maximum.  The replication messages (CATALOGUE, SUBSCRIBE,
 * UNSUBSCRIBE, EVENTS, SNAPSHOT, REJECT) likewise, with their own limits:
 * catalogue size, revisions, line counts, snapshot chunk bounds.  Then the
 * fuzz target's check (tests/fuzz/fuzz_wire.c, linked in) runs over the
 * seed corpus in $ODOFS_SOURCE_ROOT/tests/fuzz/corpus/wire and over a few
 * thousand random and mutated inputs from a fixed seed.
 *
 * ODOFS_WRITE_CORPUS=DIR writes the valid frames used here into DIR, one
 * file each, and "stream-repl", the replication frames one after another:
 * that is how the seed corpus was made ("stream" was written by hand).
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unit.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_SAMPLES 32

/* Valid frames, collected by the round-trip tests for the later ones. */
static struct buf samples[MAX_SAMPLES];
static const char *sample_names[MAX_SAMPLES];
static size_t nsamples;

static void
keep_sample(const char *name, const struct buf *b)
{
	if (nsamples == MAX_SAMPLES)
		return;
	buf_init(&samples[nsamples], WIRE_HEADER + WIRE_FRAME_MAX);
	if (buf_append(&samples[nsamples], b->data, b->len) < 0)
		return;
	sample_names[nsamples++] = name;
}

/* Splits the single frame in b, checking it is exactly one frame. */
static int
split_one(const struct buf *b, uint8_t *type, const uint8_t **p, size_t *n)
{
	int rc = wire_frame_split((const uint8_t *)b->data, b->len, type, p, n);

	CHECK_EQ_INT(rc, b->len);
	return rc > 0 ? 0 : -1;
}

static void
reencode_same(const struct buf *a, const struct buf *b)
{
	CHECK_EQ_INT(a->len, b->len);
	CHECK(a->len == b->len && memcmp(a->data, b->data, a->len) == 0);
}

static void
test_hello(void)
{
	struct wire_hello m = { .version = WIRE_VERSION, .id = "node-a",
	    .listen = "10.0.0.2:7400", .nonce = 0x0123456789abcdefULL }, d;
	struct buf b, r;
	const uint8_t *p;
	size_t n;
	uint8_t type;

	buf_init(&b, 1 << 20);
	buf_init(&r, 1 << 20);
	CHECK_EQ_INT(wire_hello_encode(&b, &m), 0);
	if (split_one(&b, &type, &p, &n) == 0) {
		CHECK_EQ_INT(type, WIRE_HELLO);
		CHECK_EQ_INT(wire_hello_decode(p, n, &d), 0);
		CHECK_EQ_INT(d.version, WIRE_VERSION);
		CHECK(strcmp(d.id, "node-a") == 0);
		CHECK(strcmp(d.listen, "10.0.0.2:7400") == 0);
		CHECK(d.nonce == 0x0123456789abcdefULL);
		CHECK_EQ_INT(wire_hello_encode(&r, &d), 0);
		reencode_same(&b, &r);
	}
	/* the exact bytes: header, type, version, id, listen, nonce */
	{
		static const uint8_t want[] = { 0, 0, 0, 34, WIRE_HELLO,
		    0, WIRE_VERSION, 0, 6, 'n', 'o', 'd', 'e', '-', 'a',
		    0, 13, '1', '0', '.', '0', '.', '0', '.', '2', ':', '7',
		    '4', '0', '0',
		    0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef };

		CHECK_EQ_INT(b.len, sizeof(want));
		CHECK(b.len == sizeof(want) &&
		    memcmp(b.data, want, sizeof(want)) == 0);
	}
	keep_sample("hello", &b);

	/* no listen address; an IPv6 one */
	buf_reset(&b);
	m.listen[0] = '\0';
	CHECK_EQ_INT(wire_hello_encode(&b, &m), 0);
	keep_sample("hello-nolisten", &b);
	buf_reset(&b);
	snprintf(m.listen, sizeof(m.listen), "[::1]:7400");
	CHECK_EQ_INT(wire_hello_encode(&b, &m), 0);
	if (split_one(&b, &type, &p, &n) == 0) {
		CHECK_EQ_INT(wire_hello_decode(p, n, &d), 0);
		CHECK(strcmp(d.listen, "[::1]:7400") == 0);
	}
	keep_sample("hello-v6", &b);

	/* invalid messages are refused by the encoder, b untouched */
	buf_reset(&b);
	snprintf(m.listen, sizeof(m.listen), "no-port");
	CHECK_EQ_INT(wire_hello_encode(&b, &m), -EINVAL);
	CHECK_EQ_INT(b.len, 0);
	m.listen[0] = '\0';
	m.version = WIRE_VERSION + 1;
	CHECK_EQ_INT(wire_hello_encode(&b, &m), -EINVAL);
	m.version = WIRE_VERSION;
	for (size_t i = 0; i < 4; i++) {
		static const char *const bad[] = { "", ".hidden", "a b",
		    "x/y" };

		snprintf(m.id, sizeof(m.id), "%s", bad[i]);
		CHECK_EQ_INT(wire_hello_encode(&b, &m), -EINVAL);
		CHECK_EQ_INT(b.len, 0);
	}
	memset(m.id, 'a', WIRE_ID_MAX);
	m.id[WIRE_ID_MAX] = '\0';
	CHECK_EQ_INT(wire_hello_encode(&b, &m), 0);	/* 64 bytes: fine */

	/* another version: reported, not parsed */
	{
		static const uint8_t v1[] = { 0, 1, 0xff };

		CHECK_EQ_INT(wire_hello_decode(v1, sizeof(v1), &d),
		    -EPROTONOSUPPORT);
		CHECK_EQ_INT(d.version, 1);
	}
	buf_release(&b);
	buf_release(&r);
}

/* Decodes a HELLO payload made of our version, an id string and the rest. */
static int
hello_with_id(const char *id, size_t idlen)
{
	uint8_t p[256];
	struct wire_hello d;
	size_t n = 0;

	p[n++] = 0;
	p[n++] = WIRE_VERSION;
	p[n++] = (uint8_t)(idlen >> 8);
	p[n++] = (uint8_t)idlen;
	memcpy(p + n, id, idlen);
	n += idlen;
	p[n++] = 0;		/* listen "" */
	p[n++] = 0;
	memset(p + n, 7, 8);	/* nonce */
	n += 8;
	return wire_hello_decode(p, n, &d);
}

static void
test_bad_ids(void)
{
	char long_id[WIRE_ID_MAX + 1];

	CHECK_EQ_INT(hello_with_id("ok-id", 5), 0);
	CHECK_EQ_INT(hello_with_id("", 0), -EPROTO);
	CHECK_EQ_INT(hello_with_id(".dot", 4), -EPROTO);
	CHECK_EQ_INT(hello_with_id("sp ace", 6), -EPROTO);
	CHECK_EQ_INT(hello_with_id("nul\0x", 5), -EPROTO);
	CHECK_EQ_INT(hello_with_id("new\nline", 8), -EPROTO);
	CHECK_EQ_INT(hello_with_id("\xc3\xa9t\xc3\xa9", 6), -EPROTO);
	memset(long_id, 'a', sizeof(long_id));
	CHECK_EQ_INT(hello_with_id(long_id, WIRE_ID_MAX), 0);
	CHECK_EQ_INT(hello_with_id(long_id, WIRE_ID_MAX + 1), -EPROTO);
}

static void
test_ping_pong(void)
{
	static const uint64_t tokens[] = { 0, 1, 0xffffffffffffffffULL,
	    0x8000000000000001ULL };
	struct buf b, r;
	const uint8_t *p;
	size_t n;
	uint8_t type;
	uint64_t t;

	buf_init(&b, 1 << 10);
	buf_init(&r, 1 << 10);
	for (size_t i = 0; i < sizeof(tokens) / sizeof(tokens[0]); i++) {
		buf_reset(&b);
		buf_reset(&r);
		CHECK_EQ_INT(wire_ping_encode(&b, tokens[i]), 0);
		CHECK_EQ_INT(b.len, WIRE_HEADER + 1 + 8);
		if (split_one(&b, &type, &p, &n) == 0) {
			CHECK_EQ_INT(type, WIRE_PING);
			CHECK_EQ_INT(wire_ping_decode(p, n, &t), 0);
			CHECK(t == tokens[i]);
			CHECK_EQ_INT(wire_ping_encode(&r, t), 0);
			reencode_same(&b, &r);
		}
		if (i == 2)
			keep_sample("ping", &b);
		buf_reset(&b);
		buf_reset(&r);
		CHECK_EQ_INT(wire_pong_encode(&b, tokens[i]), 0);
		if (split_one(&b, &type, &p, &n) == 0) {
			CHECK_EQ_INT(type, WIRE_PONG);
			CHECK_EQ_INT(wire_pong_decode(p, n, &t), 0);
			CHECK(t == tokens[i]);
			CHECK_EQ_INT(wire_pong_encode(&r, t), 0);
			reencode_same(&b, &r);
		}
		if (i == 3)
			keep_sample("pong", &b);
	}
	buf_release(&b);
	buf_release(&r);
}

static void
test_bye(void)
{
	struct wire_bye m = { .code = WIRE_BYE_DUPLICATE,
	    .reason = "already connected to node-b" }, d;
	struct buf b, r;
	const uint8_t *p;
	size_t n;
	uint8_t type;

	buf_init(&b, 1 << 10);
	buf_init(&r, 1 << 10);
	CHECK_EQ_INT(wire_bye_encode(&b, &m), 0);
	if (split_one(&b, &type, &p, &n) == 0) {
		CHECK_EQ_INT(type, WIRE_BYE);
		CHECK_EQ_INT(wire_bye_decode(p, n, &d), 0);
		CHECK_EQ_INT(d.code, WIRE_BYE_DUPLICATE);
		CHECK(strcmp(d.reason, m.reason) == 0);
		CHECK_EQ_INT(wire_bye_encode(&r, &d), 0);
		reencode_same(&b, &r);
	}
	keep_sample("bye", &b);

	/* empty reason, UTF-8 reason, longest reason */
	buf_reset(&b);
	m.reason[0] = '\0';
	CHECK_EQ_INT(wire_bye_encode(&b, &m), 0);
	keep_sample("bye-empty", &b);
	buf_reset(&b);
	snprintf(m.reason, sizeof(m.reason), "arr\xc3\xaat");
	CHECK_EQ_INT(wire_bye_encode(&b, &m), 0);
	memset(m.reason, 'r', WIRE_REASON_MAX);
	m.reason[WIRE_REASON_MAX] = '\0';
	buf_reset(&b);
	CHECK_EQ_INT(wire_bye_encode(&b, &m), 0);
	if (split_one(&b, &type, &p, &n) == 0)
		CHECK_EQ_INT(wire_bye_decode(p, n, &d), 0);

	/* control characters are not text */
	buf_reset(&b);
	snprintf(m.reason, sizeof(m.reason), "line\nbreak");
	CHECK_EQ_INT(wire_bye_encode(&b, &m), -EINVAL);
	CHECK_EQ_INT(b.len, 0);
	{
		static const uint8_t esc[] = { 0, 1, 0, 3, 'a', 0x1b, 'b' };
		static const uint8_t del[] = { 0, 1, 0, 1, 0x7f };
		static const uint8_t nul[] = { 0, 1, 0, 2, 'a', 0 };
		/* 256 bytes of reason: one more than fits */
		uint8_t big[4 + WIRE_REASON_MAX + 1];

		CHECK_EQ_INT(wire_bye_decode(esc, sizeof(esc), &d), -EPROTO);
		CHECK_EQ_INT(wire_bye_decode(del, sizeof(del), &d), -EPROTO);
		CHECK_EQ_INT(wire_bye_decode(nul, sizeof(nul), &d), -EPROTO);
		memset(big, 'x', sizeof(big));
		big[0] = 0;
		big[1] = 1;
		big[2] = (uint8_t)((WIRE_REASON_MAX + 1) >> 8);
		big[3] = (uint8_t)(WIRE_REASON_MAX + 1);
		CHECK_EQ_INT(wire_bye_decode(big, sizeof(big), &d), -EPROTO);
		big[2] = 0;
		big[3] = (uint8_t)WIRE_REASON_MAX;
		CHECK_EQ_INT(wire_bye_decode(big, sizeof(big) - 1, &d), 0);
	}
	buf_release(&b);
	buf_release(&r);
}

static void
test_peers(void)
{
	static struct wire_peer in[WIRE_PEERS_MAX + 1], out[WIRE_PEERS_MAX];
	struct buf b, r;
	const uint8_t *p;
	size_t n, count;
	uint8_t type;

	buf_init(&b, 1 << 20);
	buf_init(&r, 1 << 20);
	snprintf(in[0].id, sizeof(in[0].id), "node-b");
	snprintf(in[0].host, sizeof(in[0].host), "10.1.2.3");
	in[0].port = 7400;
	snprintf(in[1].id, sizeof(in[1].id), "node-c@site:1");
	snprintf(in[1].host, sizeof(in[1].host), "journal.example.org");
	in[1].port = 1;
	snprintf(in[2].id, sizeof(in[2].id), "node-d");
	snprintf(in[2].host, sizeof(in[2].host), "2001:db8::7");
	in[2].port = 65535;
	CHECK_EQ_INT(wire_peers_encode(&b, in, 3), 0);
	if (split_one(&b, &type, &p, &n) == 0) {
		CHECK_EQ_INT(type, WIRE_PEERS);
		CHECK_EQ_INT(wire_peers_decode(p, n, out, 3, &count), 0);
		CHECK_EQ_INT(count, 3);
		for (size_t i = 0; i < 3; i++) {
			CHECK(strcmp(out[i].id, in[i].id) == 0);
			CHECK(strcmp(out[i].host, in[i].host) == 0);
			CHECK_EQ_INT(out[i].port, in[i].port);
		}
		CHECK_EQ_INT(wire_peers_encode(&r, out, count), 0);
		reencode_same(&b, &r);
		/* a capacity below the count */
		CHECK_EQ_INT(wire_peers_decode(p, n, out, 2, &count), -ENOSPC);
		CHECK_EQ_INT(count, 0);
	}
	keep_sample("peers", &b);

	/* none */
	buf_reset(&b);
	CHECK_EQ_INT(wire_peers_encode(&b, in, 0), 0);
	if (split_one(&b, &type, &p, &n) == 0) {
		CHECK_EQ_INT(wire_peers_decode(p, n, out, 0, &count), 0);
		CHECK_EQ_INT(count, 0);
	}
	keep_sample("peers-none", &b);

	/* the most: 1024 fit, 1025 do not */
	for (size_t i = 0; i <= WIRE_PEERS_MAX; i++) {
		snprintf(in[i].id, sizeof(in[i].id), "n%zu", i);
		snprintf(in[i].host, sizeof(in[i].host), "10.0.%zu.%zu",
		    i / 256, i % 256);
		in[i].port = (uint16_t)(1000 + i);
	}
	buf_reset(&b);
	CHECK_EQ_INT(wire_peers_encode(&b, in, WIRE_PEERS_MAX), 0);
	if (split_one(&b, &type, &p, &n) == 0) {
		CHECK_EQ_INT(wire_peers_decode(p, n, out, WIRE_PEERS_MAX,
		    &count), 0);
		CHECK_EQ_INT(count, WIRE_PEERS_MAX);
		CHECK(strcmp(out[1023].host, "10.0.3.255") == 0);
	}
	buf_reset(&b);
	CHECK_EQ_INT(wire_peers_encode(&b, in, WIRE_PEERS_MAX + 1), -EINVAL);
	CHECK_EQ_INT(b.len, 0);
	{
		static const uint8_t over[] = { 0x04, 0x01 };	/* 1025 */

		CHECK_EQ_INT(wire_peers_decode(over, sizeof(over), out,
		    WIRE_PEERS_MAX, &count), -EPROTO);
	}

	/* bad entries: port 0, bad host, bad id */
	in[0].port = 0;
	CHECK_EQ_INT(wire_peers_encode(&b, in, 1), -EINVAL);
	in[0].port = 7400;
	snprintf(in[0].host, sizeof(in[0].host), "bad host");
	CHECK_EQ_INT(wire_peers_encode(&b, in, 1), -EINVAL);
	snprintf(in[0].host, sizeof(in[0].host), "[::1]");
	CHECK_EQ_INT(wire_peers_encode(&b, in, 1), -EINVAL);
	snprintf(in[0].host, sizeof(in[0].host), "h");
	snprintf(in[0].id, sizeof(in[0].id), ".x");
	CHECK_EQ_INT(wire_peers_encode(&b, in, 1), -EINVAL);
	CHECK_EQ_INT(b.len, 0);
	{
		/* count 1: id "a", host "h", port 0 */
		static const uint8_t port0[] = { 0, 1, 0, 1, 'a', 0, 1, 'h',
		    0, 0 };
		static const uint8_t host_sp[] = { 0, 1, 0, 1, 'a', 0, 2, 'h',
		    ' ', 0, 1 };

		CHECK_EQ_INT(wire_peers_decode(port0, sizeof(port0), out,
		    WIRE_PEERS_MAX, &count), -EPROTO);
		CHECK_EQ_INT(wire_peers_decode(host_sp, sizeof(host_sp), out,
		    WIRE_PEERS_MAX, &count), -EPROTO);
	}
	buf_release(&b);
	buf_release(&r);
}

/*
 * Replication messages (types 16..21).
 */

/* Decodes b's one frame with dec, re-encodes with enc, and compares. */
#define ROUND_TRIP(b, want_type, m, dec, enc) do {			\
	const uint8_t *p_;						\
	size_t n_;							\
	uint8_t t_;							\
	struct buf r_;							\
									\
	buf_init(&r_, 1 << 20);						\
	if (split_one((b), &t_, &p_, &n_) == 0) {			\
		CHECK_EQ_INT(t_, (want_type));				\
		CHECK_EQ_INT(dec(p_, n_, (m)), 0);			\
		CHECK_EQ_INT(enc(&r_, (m)), 0);				\
		reencode_same((b), &r_);				\
	}								\
	buf_release(&r_);						\
} while (0)

static void
cat_entry(struct wire_cat_entry *e, const char *dev, const char *src,
    uint64_t first, uint64_t head, uint64_t snap, uint8_t role,
    const char *up, uint8_t hops)
{
	memset(e, 0, sizeof(*e));
	e->hops = hops;
	snprintf(e->device, sizeof(e->device), "%s", dev);
	snprintf(e->source, sizeof(e->source), "%s", src);
	snprintf(e->upstream, sizeof(e->upstream), "%s", up);
	e->epoch = 0x1122334455667788ULL;
	e->created_ns = 1700000000123456789ULL;
	e->first = first;
	e->head = head;
	e->snapshot = snap;
	e->role = role;
}

static void
test_catalogue(void)
{
	static struct wire_cat_entry in[WIRE_CAT_MAX + 1], out[WIRE_CAT_MAX];
	struct buf b, r;
	const uint8_t *p;
	size_t n, count;
	uint8_t type, flags;

	buf_init(&b, 1 << 20);
	buf_init(&r, 1 << 20);
	cat_entry(&in[0], "sensors", "node-a", 1, 120, 100,
	    WIRE_ROLE_SOURCE, "", 0);
	cat_entry(&in[1], "audit.log", "node-b", 51, 50, 50,
	    WIRE_ROLE_REPLICA, "node-c@site:1", 2);	/* compacted: empty */
	cat_entry(&in[2], "fresh", "node-a", 1, 0, 0, WIRE_ROLE_SOURCE, "", 0);
	cat_entry(&in[3], "orphan", "node-d", 1, 9, 0, WIRE_ROLE_REPLICA, "",
	    WIRE_HOPS_NONE);
	CHECK_EQ_INT(wire_catalogue_encode(&b, WIRE_CAT_FULL, in, 4), 0);
	if (split_one(&b, &type, &p, &n) == 0) {
		CHECK_EQ_INT(type, WIRE_CATALOGUE);
		CHECK_EQ_INT(wire_catalogue_decode(p, n, &flags, out,
		    WIRE_CAT_MAX, &count), 0);
		CHECK_EQ_INT(flags, WIRE_CAT_FULL);
		CHECK_EQ_INT(count, 4);
		for (size_t i = 0; i < 4 && count == 4; i++) {
			CHECK(strcmp(out[i].device, in[i].device) == 0);
			CHECK(strcmp(out[i].source, in[i].source) == 0);
			CHECK(strcmp(out[i].upstream, in[i].upstream) == 0);
			CHECK(out[i].epoch == in[i].epoch);
			CHECK(out[i].created_ns == in[i].created_ns);
			CHECK(out[i].first == in[i].first);
			CHECK(out[i].head == in[i].head);
			CHECK(out[i].snapshot == in[i].snapshot);
			CHECK_EQ_INT(out[i].role, in[i].role);
			CHECK_EQ_INT(out[i].hops, in[i].hops);
		}
		CHECK_EQ_INT(wire_catalogue_encode(&r, flags, out, count), 0);
		reencode_same(&b, &r);
		CHECK_EQ_INT(wire_catalogue_decode(p, n, &flags, out, 2,
		    &count), -ENOSPC);
		CHECK_EQ_INT(count, 0);
	}
	keep_sample("catalogue", &b);
	buf_reset(&b);
	CHECK_EQ_INT(wire_catalogue_encode(&b, 0, in + 1, 1), 0);
	keep_sample("catalogue-delta", &b);
	buf_reset(&b);
	CHECK_EQ_INT(wire_catalogue_encode(&b, WIRE_CAT_FULL, in, 0), 0);
	keep_sample("catalogue-empty", &b);

	/* the most: 512 fit, 513 do not */
	for (size_t i = 0; i <= WIRE_CAT_MAX; i++) {
		char dev[32];

		snprintf(dev, sizeof(dev), "dev-%zu", i);
		cat_entry(&in[i], dev, "node-a", 1, i, 0, WIRE_ROLE_SOURCE,
		    "", 0);
	}
	buf_reset(&b);
	CHECK_EQ_INT(wire_catalogue_encode(&b, 0, in, WIRE_CAT_MAX), 0);
	if (split_one(&b, &type, &p, &n) == 0) {
		CHECK_EQ_INT(wire_catalogue_decode(p, n, &flags, out,
		    WIRE_CAT_MAX, &count), 0);
		CHECK_EQ_INT(count, WIRE_CAT_MAX);
	}
	buf_reset(&b);
	CHECK_EQ_INT(wire_catalogue_encode(&b, 0, in, WIRE_CAT_MAX + 1),
	    -EINVAL);
	CHECK_EQ_INT(b.len, 0);

	/* what a decoder would refuse, the encoder refuses */
	CHECK_EQ_INT(wire_catalogue_encode(&b, 0x02, in, 1), -EINVAL);
	cat_entry(&in[0], "d", "n", 0, 5, 0, WIRE_ROLE_SOURCE, "", 0);
	CHECK_EQ_INT(wire_catalogue_encode(&b, 0, in, 1), -EINVAL);
	cat_entry(&in[0], "d", "n", 7, 5, 0, WIRE_ROLE_SOURCE, "", 0);
	CHECK_EQ_INT(wire_catalogue_encode(&b, 0, in, 1), -EINVAL);
	cat_entry(&in[0], "d", "n", 1, 5, 6, WIRE_ROLE_SOURCE, "", 0);
	CHECK_EQ_INT(wire_catalogue_encode(&b, 0, in, 1), -EINVAL);
	cat_entry(&in[0], "d", "n", 1, UINT64_MAX, 0, WIRE_ROLE_SOURCE, "", 0);
	CHECK_EQ_INT(wire_catalogue_encode(&b, 0, in, 1), -EINVAL);
	cat_entry(&in[0], "d", "n", 1, 5, 0, 2, "", 0);
	CHECK_EQ_INT(wire_catalogue_encode(&b, 0, in, 1), -EINVAL);
	cat_entry(&in[0], "a/b", "n", 1, 5, 0, WIRE_ROLE_SOURCE, "", 0);
	CHECK_EQ_INT(wire_catalogue_encode(&b, 0, in, 1), -EINVAL);
	cat_entry(&in[0], "d", "", 1, 5, 0, WIRE_ROLE_SOURCE, "", 0);
	CHECK_EQ_INT(wire_catalogue_encode(&b, 0, in, 1), -EINVAL);
	cat_entry(&in[0], "d", "n", 1, 5, 0, WIRE_ROLE_SOURCE, ".up", 0);
	CHECK_EQ_INT(wire_catalogue_encode(&b, 0, in, 1), -EINVAL);
	/* the source is 0 hops from itself, a replica more, or none */
	cat_entry(&in[0], "d", "n", 1, 5, 0, WIRE_ROLE_SOURCE, "", 1);
	CHECK_EQ_INT(wire_catalogue_encode(&b, 0, in, 1), -EINVAL);
	cat_entry(&in[0], "d", "n", 1, 5, 0, WIRE_ROLE_REPLICA, "up", 0);
	CHECK_EQ_INT(wire_catalogue_encode(&b, 0, in, 1), -EINVAL);
	cat_entry(&in[0], "d", "n", 1, 5, 0, WIRE_ROLE_REPLICA, "", 3);
	CHECK_EQ_INT(wire_catalogue_encode(&b, 0, in, 1), -EINVAL);
	CHECK_EQ_INT(b.len, 0);
	{
		/* flags 2; count 513 */
		static const uint8_t badflags[] = { 2, 0, 0 };
		static const uint8_t over[] = { 0, 0x02, 0x01 };

		CHECK_EQ_INT(wire_catalogue_decode(badflags, sizeof(badflags),
		    &flags, out, WIRE_CAT_MAX, &count), -EPROTO);
		CHECK_EQ_INT(wire_catalogue_decode(over, sizeof(over), &flags,
		    out, WIRE_CAT_MAX, &count), -EPROTO);
	}
	buf_release(&b);
	buf_release(&r);
}

static void
test_subscriptions(void)
{
	struct wire_sub m = { .device = "sensors", .epoch = 42, .from = 1001,
	    .sub = 7 }, d;
	struct buf b;

	buf_init(&b, 1 << 16);
	CHECK_EQ_INT(wire_subscribe_encode(&b, &m), 0);
	ROUND_TRIP(&b, WIRE_SUBSCRIBE, &d, wire_subscribe_decode,
	    wire_subscribe_encode);
	CHECK(strcmp(d.device, "sensors") == 0);
	CHECK(d.epoch == 42 && d.from == 1001 && d.sub == 7);
	keep_sample("subscribe", &b);

	buf_reset(&b);
	CHECK_EQ_INT(wire_unsubscribe_encode(&b, &m), 0);
	CHECK_EQ_INT(b.len, WIRE_HEADER + 1 + 2 + 7 + 4);	/* no epoch, from */
	ROUND_TRIP(&b, WIRE_UNSUBSCRIBE, &d, wire_unsubscribe_decode,
	    wire_unsubscribe_encode);
	CHECK(d.sub == 7 && d.epoch == 0 && d.from == 0);
	keep_sample("unsubscribe", &b);

	buf_reset(&b);
	snprintf(m.reason, sizeof(m.reason), "epoch 41 is gone: resubscribe");
	CHECK_EQ_INT(wire_reject_encode(&b, &m), 0);
	ROUND_TRIP(&b, WIRE_REJECT, &d, wire_reject_decode,
	    wire_reject_encode);
	CHECK(strcmp(d.reason, m.reason) == 0);
	keep_sample("reject", &b);
	buf_reset(&b);
	m.reason[0] = '\0';
	CHECK_EQ_INT(wire_reject_encode(&b, &m), 0);
	keep_sample("reject-empty", &b);

	/* refused: from 0, a bad device, a reason that is not text */
	buf_reset(&b);
	m.from = 0;
	CHECK_EQ_INT(wire_subscribe_encode(&b, &m), -EINVAL);
	CHECK_EQ_INT(wire_unsubscribe_encode(&b, &m), 0);	/* unused */
	buf_reset(&b);
	m.from = 1;
	snprintf(m.device, sizeof(m.device), ".hidden");
	CHECK_EQ_INT(wire_subscribe_encode(&b, &m), -EINVAL);
	memset(m.device, 'd', WIRE_DEVICE_MAX);
	m.device[WIRE_DEVICE_MAX] = '\0';
	CHECK_EQ_INT(wire_subscribe_encode(&b, &m), 0);		/* 128: fine */
	buf_reset(&b);
	snprintf(m.device, sizeof(m.device), "d");
	snprintf(m.reason, sizeof(m.reason), "tab\there");
	CHECK_EQ_INT(wire_reject_encode(&b, &m), -EINVAL);
	CHECK_EQ_INT(b.len, 0);
	{
		/* device "d", epoch 0, from 0, sub 1 */
		static const uint8_t from0[] = { 0, 1, 'd', 0, 0, 0, 0, 0, 0,
		    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 };
		/* a device of 129 bytes */
		uint8_t big[2 + WIRE_DEVICE_MAX + 1 + 4];

		CHECK_EQ_INT(wire_subscribe_decode(from0, sizeof(from0), &d),
		    -EPROTO);
		memset(big, 'd', sizeof(big));
		big[0] = 0;
		big[1] = WIRE_DEVICE_MAX + 1;
		CHECK_EQ_INT(wire_unsubscribe_decode(big, sizeof(big), &d),
		    -EPROTO);
		big[1] = WIRE_DEVICE_MAX;
		CHECK_EQ_INT(wire_unsubscribe_decode(big, sizeof(big) - 1, &d),
		    0);
	}
	buf_release(&b);
}

static void
test_events(void)
{
	static const char lines[] = "{\"t\":1}\n\nthird line\n";
	struct wire_events m = { .device = "sensors", .sub = 3, .first = 118,
	    .count = 3, .head = 500, .lines = (const uint8_t *)lines,
	    .len = sizeof(lines) - 1 }, d;
	struct buf b;

	buf_init(&b, 1 << 16);
	CHECK_EQ_INT(wire_events_encode(&b, &m), 0);
	ROUND_TRIP(&b, WIRE_EVENTS, &d, wire_events_decode,
	    wire_events_encode);
	CHECK(d.first == 118 && d.count == 3 && d.sub == 3 && d.head == 500);
	CHECK(d.len == m.len && d.lines != NULL &&
	    memcmp(d.lines, lines, d.len) == 0);
	keep_sample("events", &b);
	buf_reset(&b);
	m.lines = (const uint8_t *)"\n";
	m.len = 1;
	m.count = 1;
	m.first = 1;
	m.head = 1;
	CHECK_EQ_INT(wire_events_encode(&b, &m), 0);
	keep_sample("events-one", &b);

	/* the sender's head is at least the last event sent */
	buf_reset(&b);
	m.first = 7;
	m.head = 6;
	CHECK_EQ_INT(wire_events_encode(&b, &m), -EINVAL);
	m.first = 1;
	m.head = 1;

	/* count must match the lines, which end in '\n'; first >= 1 */
	buf_reset(&b);
	m.count = 2;
	CHECK_EQ_INT(wire_events_encode(&b, &m), -EINVAL);
	m.count = 1;
	m.lines = (const uint8_t *)"no newline";
	m.len = 10;
	CHECK_EQ_INT(wire_events_encode(&b, &m), -EINVAL);
	m.lines = (const uint8_t *)"a\nb";
	m.len = 3;
	CHECK_EQ_INT(wire_events_encode(&b, &m), -EINVAL);
	m.lines = (const uint8_t *)"a\n";
	m.len = 2;
	m.first = 0;
	CHECK_EQ_INT(wire_events_encode(&b, &m), -EINVAL);
	m.first = 1;
	m.count = 0;
	m.len = 0;
	CHECK_EQ_INT(wire_events_encode(&b, &m), -EINVAL);
	CHECK_EQ_INT(b.len, 0);
	{
		/* device "d", sub 0, first 2^64-1, count 2, head 2^64-1,
		   "a\nb\n" */
		static const uint8_t wrap[] = { 0, 1, 'd', 0, 0, 0, 0,
		    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		    0, 0, 0, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		    0, 0, 0, 4, 'a', '\n', 'b', '\n' };
		/* a length past the frame */
		static const uint8_t longlen[] = { 0, 1, 'd', 0, 0, 0, 0,
		    0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1,
		    0xff, 0xff, 0xff, 0xff, '\n' };
		/* a head below the events it carries */
		static const uint8_t behind[] = { 0, 1, 'd', 0, 0, 0, 0,
		    0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 4,
		    0, 0, 0, 2, 'a', '\n' };

		CHECK_EQ_INT(wire_events_decode(wrap, sizeof(wrap), &d),
		    -EPROTO);
		CHECK_EQ_INT(wire_events_decode(longlen, sizeof(longlen), &d),
		    -EPROTO);
		CHECK_EQ_INT(wire_events_decode(behind, sizeof(behind), &d),
		    -EPROTO);
	}
	buf_release(&b);
}

static void
test_snapshot(void)
{
	static const char data[] = "state: 41 sensors\n";
	struct wire_snapshot m = { .device = "sensors", .sub = 9,
	    .mode = WIRE_SNAP_RESET, .rev = 300, .offset = 1992,
	    .total = 100, .at = 10, .data = (const uint8_t *)data,
	    .len = sizeof(data) - 1 }, d;
	struct buf b;

	buf_init(&b, 1 << 16);
	CHECK_EQ_INT(wire_snapshot_encode(&b, &m), 0);
	ROUND_TRIP(&b, WIRE_SNAPSHOT, &d, wire_snapshot_decode,
	    wire_snapshot_encode);
	CHECK(d.rev == 300 && d.offset == 1992 && d.total == 100 &&
	    d.at == 10 && d.mode == WIRE_SNAP_RESET);
	CHECK(d.len == m.len && memcmp(d.data, data, d.len) == 0);
	keep_sample("snapshot", &b);
	/* an empty snapshot; an install, the last chunk exactly */
	buf_reset(&b);
	m.total = m.at = m.len = 0;
	CHECK_EQ_INT(wire_snapshot_encode(&b, &m), 0);
	keep_sample("snapshot-empty", &b);
	buf_reset(&b);
	m.mode = WIRE_SNAP_INSTALL;
	m.total = 20;
	m.at = 2;
	m.len = 18;
	CHECK_EQ_INT(wire_snapshot_encode(&b, &m), 0);
	keep_sample("snapshot-install", &b);

	/* refused: a chunk past the total, an unknown mode */
	buf_reset(&b);
	m.len = 19;
	CHECK_EQ_INT(wire_snapshot_encode(&b, &m), -EINVAL);
	m.len = 1;
	m.at = 21;
	CHECK_EQ_INT(wire_snapshot_encode(&b, &m), -EINVAL);
	m.at = 0;
	m.mode = 2;
	CHECK_EQ_INT(wire_snapshot_encode(&b, &m), -EINVAL);
	CHECK_EQ_INT(b.len, 0);
	{
		/* at = total = 2^64-1, len 1: at + len would wrap */
		static const uint8_t wrap[] = { 0, 1, 'd', 0, 0, 0, 0, 0,
		    0, 0, 0, 0, 0, 0, 0, 0,	/* rev */
		    0, 0, 0, 0, 0, 0, 0, 0,	/* offset */
		    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		    0, 0, 0, 1, 'x' };

		CHECK_EQ_INT(wire_snapshot_decode(wrap, sizeof(wrap), &d),
		    -EPROTO);
	}
	buf_release(&b);
}

/* Decodes payload p[n] as a message of type; returns the decoder's rc. */
static int
decode_as(uint8_t type, const uint8_t *p, size_t n)
{
	static struct wire_peer peers[WIRE_PEERS_MAX];
	static struct wire_cat_entry cat[WIRE_CAT_MAX];
	static struct wire_ack ack;
	struct wire_want want;
	struct wire_hello h;
	struct wire_bye y;
	struct wire_sub sub;
	struct wire_events ev;
	struct wire_snapshot snap;
	uint64_t t;
	size_t count;
	uint8_t flags;

	switch (type) {
	case WIRE_HELLO:
		return wire_hello_decode(p, n, &h);
	case WIRE_PING:
		return wire_ping_decode(p, n, &t);
	case WIRE_PONG:
		return wire_pong_decode(p, n, &t);
	case WIRE_BYE:
		return wire_bye_decode(p, n, &y);
	case WIRE_PEERS:
		return wire_peers_decode(p, n, peers, WIRE_PEERS_MAX, &count);
	case WIRE_CATALOGUE:
		return wire_catalogue_decode(p, n, &flags, cat, WIRE_CAT_MAX,
		    &count);
	case WIRE_SUBSCRIBE:
		return wire_subscribe_decode(p, n, &sub);
	case WIRE_UNSUBSCRIBE:
		return wire_unsubscribe_decode(p, n, &sub);
	case WIRE_EVENTS:
		return wire_events_decode(p, n, &ev);
	case WIRE_SNAPSHOT:
		return wire_snapshot_decode(p, n, &snap);
	case WIRE_REJECT:
		return wire_reject_decode(p, n, &sub);
	case WIRE_ACK:
		return wire_ack_decode(p, n, &ack);
	case WIRE_WANT:
		return wire_want_decode(p, n, &want);
	default:
		return -ENOTSUP;
	}
}

static void
test_acks(void)
{
	static struct wire_ack m, d;
	struct wire_want w, wd;
	struct buf b;

	buf_init(&b, 1 << 20);
	memset(&m, 0, sizeof(m));
	snprintf(m.device, sizeof(m.device), "sensor-1");
	m.epoch = 0x0102030405060708ULL;
	m.count = 2;
	snprintf(m.e[0].node, sizeof(m.e[0].node), "b");
	m.e[0].head = 1200;
	m.e[0].durable = 1198;
	m.e[0].at_ms = 1795000000123ULL;
	snprintf(m.e[1].node, sizeof(m.e[1].node), "c.relay-2");
	m.e[1].head = m.e[1].durable = 7;
	CHECK_EQ_INT(wire_ack_encode(&b, &m), 0);
	CHECK_EQ_INT(b.len, WIRE_HEADER + 1 + 2 + 8 + 8 + 2 +
	    (2 + 1 + 24) + (2 + 9 + 24));
	ROUND_TRIP(&b, WIRE_ACK, &d, wire_ack_decode, wire_ack_encode);
	CHECK(d.count == 2 && d.e[0].head == 1200 && d.e[0].durable == 1198 &&
	    d.e[0].at_ms == 1795000000123ULL && strcmp(d.e[1].node,
	    "c.relay-2") == 0 && d.epoch == m.epoch);
	keep_sample("ack", &b);

	/* refused: none, too many, durable above head, a bad node id */
	buf_reset(&b);
	m.count = 0;
	CHECK_EQ_INT(wire_ack_encode(&b, &m), -EINVAL);
	m.count = WIRE_ACK_MAX + 1;
	CHECK_EQ_INT(wire_ack_encode(&b, &m), -EINVAL);
	m.count = 1;
	m.e[0].durable = 1201;
	CHECK_EQ_INT(wire_ack_encode(&b, &m), -EINVAL);
	m.e[0].durable = 1;
	snprintf(m.e[0].node, sizeof(m.e[0].node), ".x");
	CHECK_EQ_INT(wire_ack_encode(&b, &m), -EINVAL);
	CHECK_EQ_INT(b.len, 0);
	snprintf(m.e[0].node, sizeof(m.e[0].node), "b");
	m.count = WIRE_ACK_MAX;
	for (size_t i = 0; i < WIRE_ACK_MAX; i++) {
		snprintf(m.e[i].node, sizeof(m.e[i].node), "node-%zu", i);
		m.e[i].head = i + 1;
		m.e[i].durable = i;
	}
	CHECK_EQ_INT(wire_ack_encode(&b, &m), 0);
	ROUND_TRIP(&b, WIRE_ACK, &d, wire_ack_decode, wire_ack_encode);
	CHECK(d.count == WIRE_ACK_MAX && d.e[255].head == 256);
	/* a decoded durable above head is refused */
	{
		const uint8_t *p;
		size_t n;
		uint8_t t;

		buf_reset(&b);
		m.count = 1;
		m.e[0].head = 5;
		m.e[0].durable = 5;
		CHECK_EQ_INT(wire_ack_encode(&b, &m), 0);
		CHECK_EQ_INT(split_one(&b, &t, &p, &n), 0);
		((uint8_t *)b.data)[b.len - 16 - 1] = 4;	/* head 5 -> 4 */
		CHECK_EQ_INT(wire_ack_decode(p, n, &d), -EPROTO);
		CHECK_EQ_INT(d.count, 0);
	}

	buf_reset(&b);
	memset(&w, 0, sizeof(w));
	snprintf(w.device, sizeof(w.device), "sensor-1");
	w.epoch = 9;
	w.rev = 51;
	CHECK_EQ_INT(wire_want_encode(&b, &w), 0);
	ROUND_TRIP(&b, WIRE_WANT, &wd, wire_want_decode, wire_want_encode);
	CHECK(wd.rev == 51 && wd.epoch == 9);
	keep_sample("want", &b);
	buf_reset(&b);
	w.rev = 0;
	CHECK_EQ_INT(wire_want_encode(&b, &w), -EINVAL);
	buf_release(&b);
}

static void
test_truncations(void)
{
	for (size_t s = 0; s < nsamples; s++) {
		const uint8_t *f = (const uint8_t *)samples[s].data;
		size_t len = samples[s].len, flen, n;
		const uint8_t *p;
		uint8_t type;

		/* frame level: every prefix needs more */
		for (size_t k = 0; k < len; k++) {
			int rc = wire_frame_peek(f, k, &flen);

			if (rc != 0) {
				fprintf(stderr, "%s: prefix %zu: %d\n",
				    sample_names[s], k, rc);
				CHECK_EQ_INT(rc, 0);
			}
			CHECK_EQ_INT(flen, k < WIRE_HEADER ? 0 : len);
		}
		CHECK_EQ_INT(wire_frame_peek(f, len, &flen), len);
		if (wire_frame_split(f, len, &type, &p, &n) <= 0)
			continue;
		CHECK_EQ_INT(decode_as(type, p, n), 0);
		/* payload level: every shorter payload is refused */
		for (size_t k = 0; k < n; k++) {
			int rc = decode_as(type, p, k);

			if (rc != -EPROTO) {
				fprintf(stderr, "%s: payload cut at %zu: %d\n",
				    sample_names[s], k, rc);
				CHECK_EQ_INT(rc, -EPROTO);
			}
		}
		/* trailing bytes are refused */
		{
			uint8_t *longer = malloc(n + 1);

			if (n > 0)
				memcpy(longer, p, n);
			longer[n] = 0;
			CHECK_EQ_INT(decode_as(type, longer, n + 1), -EPROTO);
			free(longer);
		}
	}
}

static void
test_headers(void)
{
	static const uint8_t huge[] = { 0xff, 0xff, 0xff, 0xff, 1 };
	static const uint8_t over[] = { 0x00, 0x80, 0x00, 0x01, 1 };
	static const uint8_t max[] = { 0x00, 0x80, 0x00, 0x00, 1 };
	static const uint8_t zero[] = { 0, 0, 0, 0, 1, 2, 3 };
	static const uint8_t one[] = { 0, 0, 0, 1, 42 };
	const uint8_t *p;
	size_t flen, n;
	uint8_t type;

	CHECK_EQ_INT(wire_frame_peek(huge, sizeof(huge), &flen), -EMSGSIZE);
	CHECK(flen == 0xffffffffULL + WIRE_HEADER);
	CHECK_EQ_INT(wire_frame_peek(huge, 4, &flen), -EMSGSIZE);
	CHECK_EQ_INT(wire_frame_peek(over, sizeof(over), &flen), -EMSGSIZE);
	CHECK_EQ_INT(wire_frame_peek(max, sizeof(max), &flen), 0);
	CHECK_EQ_INT(flen, WIRE_FRAME_MAX + WIRE_HEADER);
	CHECK_EQ_INT(wire_frame_peek(zero, sizeof(zero), &flen), -EPROTO);
	CHECK_EQ_INT(wire_frame_split(huge, sizeof(huge), &type, &p, &n),
	    -EMSGSIZE);
	CHECK_EQ_INT(wire_frame_split(one, sizeof(one), &type, &p, &n), 5);
	CHECK_EQ_INT(type, 42);
	CHECK_EQ_INT(n, 0);
	/* a frame followed by the start of the next: only the first */
	{
		static const uint8_t two[] = { 0, 0, 0, 1, 7, 0, 0 };

		CHECK_EQ_INT(wire_frame_peek(two, sizeof(two), &flen), 5);
	}
}

static void
test_encoder_bounds(void)
{
	struct wire_enc w;
	struct buf b;
	size_t flen;
	char *big;
	uint8_t *frame;

	/* the buffer's maximum: -E2BIG, and b as it was */
	buf_init(&b, 16);
	CHECK_EQ_INT(wire_ping_encode(&b, 1), 0);	/* 13 bytes */
	CHECK_EQ_INT(wire_ping_encode(&b, 2), -E2BIG);
	CHECK_EQ_INT(b.len, 13);
	buf_release(&b);

	/* strings longer than a u16 */
	big = malloc(WIRE_STR_MAX + 2);
	memset(big, 'x', WIRE_STR_MAX + 1);
	buf_init(&b, 1 << 20);
	wire_enc_begin(&w, &b, 40);
	CHECK_EQ_INT(wire_put_str(&w, big, WIRE_STR_MAX + 1), -EINVAL);
	CHECK_EQ_INT(wire_put_u8(&w, 1), -EINVAL);	/* sticky */
	CHECK_EQ_INT(wire_enc_end(&w), -EINVAL);
	CHECK_EQ_INT(b.len, 0);
	wire_enc_begin(&w, &b, 40);
	CHECK_EQ_INT(wire_put_str(&w, big, WIRE_STR_MAX), 0);
	CHECK_EQ_INT(wire_enc_end(&w), 0);
	CHECK_EQ_INT(b.len, WIRE_HEADER + 1 + 2 + WIRE_STR_MAX);
	free(big);
	buf_release(&b);

	/* the frame maximum: exactly WIRE_FRAME_MAX fits, one more does not */
	frame = calloc(1, WIRE_FRAME_MAX);
	buf_init(&b, 2 * WIRE_FRAME_MAX);
	wire_enc_begin(&w, &b, 41);
	CHECK_EQ_INT(wire_put_bytes(&w, frame, WIRE_FRAME_MAX - 1), 0);
	CHECK_EQ_INT(wire_enc_end(&w), 0);
	CHECK_EQ_INT(wire_frame_peek((const uint8_t *)b.data, b.len, &flen),
	    (int)(WIRE_HEADER + WIRE_FRAME_MAX));
	buf_release(&b);
	buf_init(&b, 2 * WIRE_FRAME_MAX);
	wire_enc_begin(&w, &b, 41);
	CHECK_EQ_INT(wire_put_bytes(&w, frame, WIRE_FRAME_MAX), -EMSGSIZE);
	CHECK_EQ_INT(b.len, WIRE_HEADER + 1);	/* refused before copying */
	CHECK_EQ_INT(wire_enc_end(&w), -EMSGSIZE);
	CHECK_EQ_INT(b.len, 0);
	buf_release(&b);
	free(frame);
}

static void
test_decoder_primitives(void)
{
	static const uint8_t p[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 };
	struct wire_dec d;
	const uint8_t *q;
	size_t n;
	uint64_t v64;
	uint32_t v32;
	uint16_t v16;
	uint8_t v8;
	char s[4];

	wire_dec_init(&d, p, sizeof(p));
	CHECK_EQ_INT(wire_get_u8(&d, &v8), 0);
	CHECK_EQ_INT(v8, 1);
	CHECK_EQ_INT(wire_get_u16(&d, &v16), 0);
	CHECK_EQ_INT(v16, 0x0203);
	CHECK_EQ_INT(wire_get_u32(&d, &v32), 0);
	CHECK(v32 == 0x04050607);
	CHECK_EQ_INT(wire_get_u64(&d, &v64), -EPROTO);	/* 4 left */
	CHECK(v64 == 0);
	CHECK_EQ_INT(wire_get_u8(&d, &v8), -EPROTO);	/* sticky */
	CHECK_EQ_INT(wire_dec_end(&d), -EPROTO);

	wire_dec_init(&d, p, 3);
	CHECK_EQ_INT(wire_get_bytes(&d, 3, &q), 0);
	CHECK(q == p);
	CHECK_EQ_INT(wire_dec_end(&d), 0);

	/* a string that does not fit the destination */
	{
		static const uint8_t str[] = { 0, 4, 'a', 'b', 'c', 'd' };

		wire_dec_init(&d, str, sizeof(str));
		CHECK_EQ_INT(wire_get_str(&d, s, sizeof(s)), -EPROTO);
		CHECK(s[0] == '\0');
		wire_dec_init(&d, str, sizeof(str) - 1);	/* short */
		CHECK_EQ_INT(wire_get_strref(&d, &q, &n), -EPROTO);
	}
}

/*
 * Random inputs through the fuzz target's check: pure noise, noise behind
 * a valid header, and valid frames with bytes flipped.
 */
static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t
next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static const uint8_t known_types[] = { WIRE_HELLO, WIRE_PING, WIRE_PONG,
    WIRE_BYE, WIRE_PEERS, WIRE_CATALOGUE, WIRE_SUBSCRIBE, WIRE_UNSUBSCRIBE,
    WIRE_EVENTS, WIRE_SNAPSHOT, WIRE_REJECT };

static void
test_random(void)
{
	uint8_t in[2048];
	int iterations = 0;

	for (int i = 0; i < 3000; i++) {
		size_t n = next_rand() % sizeof(in);

		for (size_t k = 0; k < n; k++)
			in[k] = (uint8_t)next_rand();
		if (i % 3 == 1 && n > 5) {
			/* a plausible header and a known type */
			in[0] = 0;
			in[1] = 0;
			in[2] = (uint8_t)((n - 4) >> 8);
			in[3] = (uint8_t)(n - 4);
			in[4] = known_types[next_rand() %
			    sizeof(known_types)];
		}
		LLVMFuzzerTestOneInput(in, n);
		iterations++;
	}
	for (size_t s = 0; s < nsamples; s++) {
		size_t len = samples[s].len;

		if (len > sizeof(in))
			continue;
		for (int i = 0; i < 300; i++) {
			memcpy(in, samples[s].data, len);
			for (int f = 0; f < 1 + i % 4; f++)
				in[WIRE_HEADER + next_rand() %
				    (len - WIRE_HEADER)] ^=
				    (uint8_t)(1u << (next_rand() % 8));
			LLVMFuzzerTestOneInput(in, len);
			iterations++;
		}
	}
	CHECK(iterations > 3000);
}

static void
test_corpus(void)
{
	const char *root = getenv("ODOFS_SOURCE_ROOT");
	char dir[512], path[1024];
	static uint8_t data[1 << 16];
	struct dirent *de;
	DIR *dp;
	int files = 0;

	if (root == NULL) {
		fprintf(stderr, "ODOFS_SOURCE_ROOT not set: corpus skipped\n");
		return;
	}
	snprintf(dir, sizeof(dir), "%s/tests/fuzz/corpus/wire", root);
	if ((dp = opendir(dir)) == NULL) {
		perror(dir);
		CHECK(dp != NULL);
		return;
	}
	while ((de = readdir(dp)) != NULL) {
		FILE *f;
		size_t n;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if ((f = fopen(path, "rb")) == NULL)
			continue;
		n = fread(data, 1, sizeof(data), f);
		fclose(f);
		LLVMFuzzerTestOneInput(data, n);
		files++;
	}
	closedir(dp);
	CHECK(files >= 20);
}

static void
write_corpus(const char *dir)
{
	char path[1024];
	FILE *f;

	for (size_t s = 0; s < nsamples; s++) {
		snprintf(path, sizeof(path), "%s/%s", dir, sample_names[s]);
		if ((f = fopen(path, "wb")) == NULL) {
			perror(path);
			continue;
		}
		fwrite(samples[s].data, 1, samples[s].len, f);
		fclose(f);
	}
	/* one stream of a replication session's frames */
	snprintf(path, sizeof(path), "%s/stream-repl", dir);
	if ((f = fopen(path, "wb")) == NULL) {
		perror(path);
		return;
	}
	for (size_t s = 0; s < nsamples; s++)
		if (samples[s].len > WIRE_HEADER &&
		    (uint8_t)samples[s].data[WIRE_HEADER] >= WIRE_REPL_FIRST &&
		    strchr(sample_names[s], '-') == NULL)
			fwrite(samples[s].data, 1, samples[s].len, f);
	fclose(f);
}

void
unit_main(void)
{
	const char *out = getenv("ODOFS_WRITE_CORPUS");

	test_hello();
	test_bad_ids();
	test_ping_pong();
	test_bye();
	test_peers();
	test_catalogue();
	test_subscriptions();
	test_events();
	test_snapshot();
	test_acks();
	test_truncations();
	test_headers();
	test_encoder_bounds();
	test_decoder_primitives();
	test_random();
	test_corpus();
	if (out != NULL)
		write_corpus(out);
	for (size_t s = 0; s < nsamples; s++)
		buf_release(&samples[s]);
}
