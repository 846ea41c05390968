/*
 * fuzz_wire: the libFuzzer target for net/wire.c and net/wire_repl.c: the
 * base messages (HELLO..PEERS) and the replication ones (CATALOGUE..REJECT).
 * The input is read two ways: as a stream of frames (each complete frame
 * is decoded by its type), and as one frame whose first byte is the type
 * and the rest the payload (so the fuzzer reaches every decoder without
 * having to guess a length).
 * Whatever decodes must re-encode to exactly the same bytes; a mismatch, a
 * crash or a sanitizer report is a bug.  Decoders must also never read
 * outside the input, which ASan checks.
 *
 * Built by meson with -Dfuzzers=true (clang); tests/fuzz/run.sh SECONDS wire
 * fuzzes it with new inputs in a scratch directory, so the seed corpus
 * stays as it is.  The unit test tests/unit/test_wire.c links this file
 * too: it runs the seed corpus and a few thousand random inputs through the
 * same check.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Too big for the stack: a decoder's caller arrays, static. */
static struct wire_peer fuzz_peers[WIRE_PEERS_MAX];
static struct wire_cat_entry fuzz_cat[WIRE_CAT_MAX];
static struct wire_ack fuzz_ack;

static void
fuzz_fail(const char *what, uint8_t type, size_t len)
{
	fprintf(stderr, "fuzz_wire: %s: type %u, payload %zu bytes\n", what,
	    type, len);
	abort();
}

/* Re-encoded frame b must be header + type + the same payload. */
static void
fuzz_same(const struct buf *b, uint8_t type, const uint8_t *p, size_t n)
{
	const uint8_t *q = (const uint8_t *)b->data;
	uint32_t len;

	if (b->len != WIRE_HEADER + 1 + n)
		fuzz_fail("re-encoded length differs", type, n);
	len = (uint32_t)q[0] << 24 | (uint32_t)q[1] << 16 |
	    (uint32_t)q[2] << 8 | q[3];
	if (len != n + 1 || q[WIRE_HEADER] != type ||
	    (n > 0 && memcmp(q + WIRE_HEADER + 1, p, n) != 0))
		fuzz_fail("re-encoded bytes differ", type, n);
}

/*
 * Decodes payload p[n] as a message of type; when it decodes, re-encodes it
 * and compares.  A decoder answers 0 or -EPROTO (HELLO also
 * -EPROTONOSUPPORT; no -ENOSPC with a capacity of the type's maximum), and
 * whatever it accepts its encoder must take back.
 */
static void
fuzz_frame(uint8_t type, const uint8_t *p, size_t n)
{
	struct wire_hello hello;
	struct wire_bye bye;
	struct wire_sub sub;
	struct wire_events ev;
	struct wire_snapshot snap;
	struct wire_want want;
	struct buf b;
	uint64_t token;
	size_t count;
	uint8_t flags;
	int drc, rc = 1;

	buf_init(&b, WIRE_HEADER + WIRE_FRAME_MAX);
	switch (type) {
	case WIRE_HELLO:
		if ((drc = wire_hello_decode(p, n, &hello)) == 0)
			rc = wire_hello_encode(&b, &hello);
		if (drc == -EPROTONOSUPPORT && hello.version == WIRE_VERSION)
			fuzz_fail("version 1 reported as unsupported", type,
			    n);
		if (drc == -EPROTONOSUPPORT)
			drc = -EPROTO;
		break;
	case WIRE_PING:
		if ((drc = wire_ping_decode(p, n, &token)) == 0)
			rc = wire_ping_encode(&b, token);
		break;
	case WIRE_PONG:
		if ((drc = wire_pong_decode(p, n, &token)) == 0)
			rc = wire_pong_encode(&b, token);
		break;
	case WIRE_BYE:
		if ((drc = wire_bye_decode(p, n, &bye)) == 0)
			rc = wire_bye_encode(&b, &bye);
		break;
	case WIRE_PEERS:
		if ((drc = wire_peers_decode(p, n, fuzz_peers, WIRE_PEERS_MAX,
		    &count)) == 0)
			rc = wire_peers_encode(&b, fuzz_peers, count);
		break;
	case WIRE_CATALOGUE:
		if ((drc = wire_catalogue_decode(p, n, &flags, fuzz_cat,
		    WIRE_CAT_MAX, &count)) == 0)
			rc = wire_catalogue_encode(&b, flags, fuzz_cat, count);
		break;
	case WIRE_SUBSCRIBE:
		if ((drc = wire_subscribe_decode(p, n, &sub)) == 0)
			rc = wire_subscribe_encode(&b, &sub);
		break;
	case WIRE_UNSUBSCRIBE:
		if ((drc = wire_unsubscribe_decode(p, n, &sub)) == 0)
			rc = wire_unsubscribe_encode(&b, &sub);
		break;
	case WIRE_EVENTS:
		if ((drc = wire_events_decode(p, n, &ev)) == 0)
			rc = wire_events_encode(&b, &ev);
		break;
	case WIRE_SNAPSHOT:
		if ((drc = wire_snapshot_decode(p, n, &snap)) == 0)
			rc = wire_snapshot_encode(&b, &snap);
		break;
	case WIRE_REJECT:
		if ((drc = wire_reject_decode(p, n, &sub)) == 0)
			rc = wire_reject_encode(&b, &sub);
		break;
	case WIRE_ACK:
		if ((drc = wire_ack_decode(p, n, &fuzz_ack)) == 0)
			rc = wire_ack_encode(&b, &fuzz_ack);
		break;
	case WIRE_WANT:
		if ((drc = wire_want_decode(p, n, &want)) == 0)
			rc = wire_want_encode(&b, &want);
		break;
	default:
		drc = 0;
		break;
	}
	if (drc != 0 && drc != -EPROTO)
		fuzz_fail("decoder returned neither 0 nor -EPROTO", type, n);
	if (rc < 0)
		fuzz_fail("decoded but does not re-encode", type, n);
	if (rc == 0)
		fuzz_same(&b, type, p, n);
	buf_release(&b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *payload;
	size_t off = 0, len;
	uint8_t type;
	int rc;

	if (size == 0)
		return 0;
	/* a stream of frames */
	while ((rc = wire_frame_split(data + off, size - off, &type, &payload,
	    &len)) > 0) {
		fuzz_frame(type, payload, len);
		off += (size_t)rc;
	}
	/* one synthetic frame: type byte, then payload */
	if (size - 1 < WIRE_FRAME_MAX)
		fuzz_frame(data[0], data + 1, size - 1);
	return 0;
}
