/*
 * fuzz_lines: the libFuzzer target for fs/lines.c, the plan of how one
 * write() to `events` becomes events.  The input is
 *
 *	u16 max		big-endian: the longest event, bytes
 *	u16 pending	big-endian: bytes of an unfinished line already held
 *	u8  split	where to cut the write in two, as a share of 255
 *	    data	the rest: the bytes of the write
 *
 * (16-bit values, so pending + size cannot wrap a size_t: the daemon's
 * pending bytes are bounded by max_event_bytes).  lines_plan() must agree
 * field by field with a byte-at-a-time model of the rules in lines.h, and:
 *
 *  - on success, whole + tail == size, every event (the first with the
 *    pending bytes) is at most max bytes, the tail (with the pending bytes
 *    when no event ends) is at most max, data[first_len] and
 *    data[whole - 1] are the first and the last '\n', the tail holds none;
 *  - on -EFBIG, bad names a line that really is over max: for
 *    LINES_BAD_FIRST and LINES_BAD_LINE data[first_len] is the '\n' ending
 *    it; for LINES_BAD_TAIL whole + tail == size still;
 *  - cutting the write in two changes nothing: the first half's plan, then
 *    the second's over what the first left pending, succeed exactly when
 *    the whole does, with the same events and the same tail;
 *  - lines_hash() depends on the bytes only, not on where they are, and
 *    steps from one length to the next as FNV-1a does.
 *
 * A violation aborts.  Built by meson with -Dfuzzers=true; the unit test
 * tests/unit/test_lines.c links this file and replays the seed corpus
 * (tests/fuzz/corpus/lines) and random inputs through the same checks.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lines.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_LINES_HEADER	5

static void
fuzz_fail(const char *what, size_t pending, size_t size, size_t max)
{
	fprintf(stderr, "fuzz_lines: %s: pending %zu, write %zu bytes, "
	    "max %zu\n", what, pending, size, max);
	abort();
}

/* The rules of lines.h, one byte at a time. */
static int
model_plan(size_t pending, const char *d, size_t size, size_t max,
    struct lines_plan *out)
{
	size_t len = pending, start = 0;

	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < size; i++) {
		if (d[i] != '\n') {
			len++;
			continue;
		}
		if (len > max) {
			out->bad = out->events == 0 && pending > 0 ?
			    LINES_BAD_FIRST : LINES_BAD_LINE;
			out->first_len = i;
			return -EFBIG;
		}
		if (out->events == 0)
			out->first_len = i;
		out->events++;
		len = 0;
		start = i + 1;
	}
	out->whole = start;
	out->tail = size - start;
	if (len > max) {
		out->bad = LINES_BAD_TAIL;
		return -EFBIG;
	}
	return 0;
}

#define FNV_PRIME	1099511628211ull

/* The plan against the invariants of the header comment. */
static void
check_plan(int rc, const struct lines_plan *pl, size_t pending, const char *d,
    size_t size, size_t max)
{
	const char *nl;

	if (rc != 0 && rc != -EFBIG)
		fuzz_fail("neither 0 nor -EFBIG", pending, size, max);
	if ((rc == 0) != (pl->bad == LINES_OK))
		fuzz_fail("bad does not match the result", pending, size, max);
	if (rc == 0 || pl->bad == LINES_BAD_TAIL) {
		if (pl->whole + pl->tail != size || pl->whole > size)
			fuzz_fail("whole + tail != size", pending, size, max);
		if (pl->tail > 0 && memchr(d + pl->whole, '\n', pl->tail))
			fuzz_fail("a '\\n' in the tail", pending, size, max);
		if ((pl->events == 0) != (pl->whole == 0))
			fuzz_fail("events without whole bytes", pending, size,
			    max);
		if (pl->whole > 0 && d[pl->whole - 1] != '\n')
			fuzz_fail("whole does not end at a '\\n'", pending,
			    size, max);
	}
	if (pl->events > 0 || pl->bad == LINES_BAD_FIRST ||
	    pl->bad == LINES_BAD_LINE) {
		if (pl->first_len >= size || d[pl->first_len] != '\n')
			fuzz_fail("first_len is not at a '\\n'", pending, size,
			    max);
	}
	if (rc == 0) {
		size_t events = 0, len = pending;

		if (pl->events > 0 && ((nl = memchr(d, '\n', size)) == NULL ||
		    (size_t)(nl - d) != pl->first_len))
			fuzz_fail("first_len is not the first '\\n'", pending,
			    size, max);
		for (size_t i = 0; i < size; i++) {
			if (d[i] != '\n') {
				len++;
				continue;
			}
			if (len > max)
				fuzz_fail("accepted an event over max", pending,
				    size, max);
			events++;
			len = 0;
		}
		if (events != pl->events)
			fuzz_fail("events miscounted", pending, size, max);
		if ((pl->events > 0 ? pl->tail : pending + pl->tail) > max)
			fuzz_fail("accepted a tail over max", pending, size,
			    max);
		return;
	}
	/* -EFBIG: the line named really is over max */
	switch (pl->bad) {
	case LINES_BAD_FIRST:
		if (pending == 0 || pl->events != 0 ||
		    memchr(d, '\n', pl->first_len) != NULL ||
		    pending + pl->first_len <= max)
			fuzz_fail("bad first line is not", pending, size, max);
		break;
	case LINES_BAD_LINE: {
		size_t start = 0;

		for (size_t i = pl->first_len; i > 0; i--)
			if (d[i - 1] == '\n') {
				start = i;
				break;
			}
		if ((start == 0 && pending > 0) ||
		    pl->first_len - start <= max)
			fuzz_fail("bad line is not", pending, size, max);
		break;
	}
	case LINES_BAD_TAIL:
		if ((pl->events > 0 ? pl->tail : pending + pl->tail) <= max)
			fuzz_fail("bad tail is not", pending, size, max);
		break;
	default:
		fuzz_fail("unknown bad", pending, size, max);
	}
}

/* Plans of the two halves, d[0..cut) then d[cut..size), against the whole. */
static void
check_split(int rc, const struct lines_plan *pl, size_t pending,
    const char *d, size_t size, size_t max, size_t cut)
{
	struct lines_plan a, b;
	size_t left;
	int rca, rcb = -EFBIG;

	rca = lines_plan(pending, d, cut, max, &a);
	if (rca == 0) {
		left = a.events > 0 ? a.tail : pending + a.tail;
		rcb = lines_plan(left, d + cut, size - cut, max, &b);
	}
	if ((rc == 0) != (rca == 0 && rcb == 0))
		fuzz_fail("a write cut in two is planned otherwise", pending,
		    size, max);
	if (rc == 0 && (a.events + b.events != pl->events ||
	    b.tail + (b.events > 0 ? 0 : a.tail) != pl->tail))
		fuzz_fail("a write cut in two makes other events", pending,
		    size, max);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct lines_plan pl, want;
	const char *d = (const char *)data + FUZZ_LINES_HEADER;
	size_t max, pending, n, cut;
	char *copy;
	int rc, wrc;

	if (size < FUZZ_LINES_HEADER)
		return 0;
	max = (size_t)data[0] << 8 | data[1];
	pending = (size_t)data[2] << 8 | data[3];
	n = size - FUZZ_LINES_HEADER;
	cut = n * data[4] / 255;

	memset(&pl, 0xa5, sizeof(pl));	/* every field must be set */
	rc = lines_plan(pending, d, n, max, &pl);
	wrc = model_plan(pending, d, n, max, &want);
	if (rc != wrc || pl.bad != want.bad || pl.first_len != want.first_len ||
	    pl.whole != want.whole || pl.events != want.events ||
	    pl.tail != want.tail)
		fuzz_fail("plan differs from the model", pending, n, max);
	check_plan(rc, &pl, pending, d, n, max);
	check_split(rc, &pl, pending, d, n, max, cut);

	/*
	 * The hash: of the bytes, not of where they are, and FNV-1a's step
	 * from one length to the next (the offset basis is lines.c's own).
	 */
	if ((copy = malloc(n + 1)) == NULL)
		return 0;
	if (n > 0)
		memcpy(copy, d, n);
	if (lines_hash(copy, n) != lines_hash(d, n) ||
	    lines_hash(copy, 0) != lines_hash(d + cut, 0) ||
	    (cut < n && lines_hash(d, cut + 1) != ((lines_hash(copy, cut) ^
	    (unsigned char)d[cut]) * FNV_PRIME)))
		fuzz_fail("lines_hash is not FNV-1a of the bytes", pending, n,
		    max);
	free(copy);
	return 0;
}
