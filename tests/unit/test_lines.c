/*
 * test_lines: fs/lines.c, how a write() becomes events.  A few plans by
 * hand (events, the first event completing pending bytes, each kind of
 * line over the limit, a line exactly at it), then the fuzz target's checks
 * (tests/fuzz/fuzz_lines.c, linked in) over the seed corpus in
 * $ODOFS_SOURCE_ROOT/tests/fuzz/corpus/lines, over mutations of it and over
 * random writes from a fixed seed.
 *
 * ODOFS_WRITE_CORPUS=DIR writes the seed inputs into DIR, one file each:
 * that is how the seed corpus was made.  An input is u16 max, u16 pending,
 * u8 split, then the write (see fuzz_lines.c).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lines.h"
#include "replay.h"
#include "unit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
plan(size_t pending, const char *s, size_t max, struct lines_plan *p)
{
	return lines_plan(pending, s, strlen(s), max, p);
}

static void
test_plans(void)
{
	struct lines_plan p;

	/* two events and a tail */
	CHECK_EQ_INT(plan(0, "a\nbb\nc", 10, &p), 0);
	CHECK_EQ_INT(p.bad, LINES_OK);
	CHECK_EQ_INT(p.events, 2);
	CHECK_EQ_INT(p.first_len, 1);
	CHECK_EQ_INT(p.whole, 5);
	CHECK_EQ_INT(p.tail, 1);

	/* pending bytes completed by the first line, up to max exactly */
	CHECK_EQ_INT(plan(3, "ab\nabcde\n", 5, &p), 0);
	CHECK_EQ_INT(p.events, 2);
	CHECK_EQ_INT(p.first_len, 2);
	CHECK_EQ_INT(p.whole, 9);
	CHECK_EQ_INT(p.tail, 0);

	/* ... and one byte over: the first line, a line, the tail */
	CHECK_EQ_INT(plan(3, "abc\n", 5, &p), -EFBIG);
	CHECK_EQ_INT(p.bad, LINES_BAD_FIRST);
	CHECK_EQ_INT(p.first_len, 3);
	CHECK_EQ_INT(plan(0, "abcdef\n", 5, &p), -EFBIG);
	CHECK_EQ_INT(p.bad, LINES_BAD_LINE);
	CHECK_EQ_INT(plan(3, "a\nabcdef\n", 5, &p), -EFBIG);
	CHECK_EQ_INT(p.bad, LINES_BAD_LINE);
	CHECK_EQ_INT(p.events, 1);
	CHECK_EQ_INT(p.first_len, 8);	/* the '\n' of the bad line */
	CHECK_EQ_INT(plan(0, "a\nabcdef", 5, &p), -EFBIG);
	CHECK_EQ_INT(p.bad, LINES_BAD_TAIL);
	CHECK_EQ_INT(p.events, 1);
	CHECK_EQ_INT(p.whole + p.tail, 8);
	CHECK_EQ_INT(plan(5, "x", 5, &p), -EFBIG);
	CHECK_EQ_INT(p.bad, LINES_BAD_TAIL);
	CHECK_EQ_INT(p.events, 0);
	CHECK_EQ_INT(plan(4, "x", 5, &p), 0);
	CHECK_EQ_INT(p.tail, 1);

	/* empty lines, an empty write */
	CHECK_EQ_INT(plan(0, "\n\n\n", 0, &p), 0);
	CHECK_EQ_INT(p.events, 3);
	CHECK_EQ_INT(p.first_len, 0);
	CHECK_EQ_INT(plan(2, "", 5, &p), 0);
	CHECK_EQ_INT(p.events + p.whole + p.tail, 0);

	/* the hash: of the bytes only */
	{
		char a[] = "line\n", b[] = "xline\n";

		CHECK(lines_hash(a, 5) == lines_hash(b + 1, 5));
		CHECK(lines_hash(a, 5) != lines_hash(a, 4));
		CHECK(lines_hash("", 0) == lines_hash(b, 0));
	}
}

/* Seed inputs: name, max, pending, split (of 255), the write. */
static const struct {
	const char *name;
	uint16_t max, pending;
	uint8_t split;
	const char *data;
	size_t len;			/* 0: strlen(data) */
} seeds[] = {
	{ "simple", 16, 0, 128, "one\ntwo\nthree", 0 },
	{ "pending-first", 8, 5, 100, "abc\ndef\n", 0 },
	{ "bad-first", 8, 6, 200, "abc\nx\n", 0 },
	{ "bad-line", 4, 0, 60, "ok\ntoolong\nx", 0 },
	{ "bad-tail", 4, 0, 30, "a\nbcdefgh", 0 },
	{ "bad-tail-pending", 10, 8, 0, "abc", 0 },
	{ "empty-lines", 0, 0, 128, "\n\n\n", 0 },
	{ "no-newline", 100, 50, 255, "just some bytes", 0 },
	{ "json", 1024, 0, 77, "{\"a\":1}\n{\"b\":[1,2]}\n{\"c\":", 0 },
	{ "binary", 32, 0, 90, "\0\x01\xff\n\r\x7f\0\n\x80\x80", 10 },
	{ "crlf", 8, 0, 128, "a\r\nb\r\n\r\n", 0 },
	{ "max-exact", 5, 2, 128, "abc\nabcde\nabcde", 0 },
	{ "max-large", 65535, 65535, 255, "\n", 0 },
	{ "max-zero-pending", 0, 1, 0, "\n", 0 },
	{ "empty", 1, 0, 0, "", 0 },
};

#define NSEEDS (sizeof(seeds) / sizeof(seeds[0]))

/* seeds[i] as an input of the fuzz target, in in[]; returns its length. */
static size_t
seed_input(size_t i, uint8_t *in, size_t size)
{
	size_t n = seeds[i].len != 0 ? seeds[i].len : strlen(seeds[i].data);

	if (5 + n > size)
		return 0;
	in[0] = (uint8_t)(seeds[i].max >> 8);
	in[1] = (uint8_t)seeds[i].max;
	in[2] = (uint8_t)(seeds[i].pending >> 8);
	in[3] = (uint8_t)seeds[i].pending;
	in[4] = seeds[i].split;
	memcpy(in + 5, seeds[i].data, n);
	return 5 + n;
}

static void
test_corpus(void)
{
	uint8_t in[256];
	size_t n;

	for (size_t i = 0; i < NSEEDS; i++)
		if ((n = seed_input(i, in, sizeof(in))) > 0)
			LLVMFuzzerTestOneInput(in, n);
	CHECK(replay_corpus("lines", LLVMFuzzerTestOneInput) >= (int)NSEEDS);
	CHECK_EQ_INT(replay_mutations("lines", LLVMFuzzerTestOneInput, 3000,
	    0x6c696e6573ULL), 3000);
}

/* Random writes: mostly short lines around a small max, some noise. */
static void
test_random(void)
{
	static uint8_t in[5 + 4096];
	uint64_t s = 0x243f6a8885a308d3ULL;
	int runs = 0;

	for (int i = 0; i < 3000; i++) {
		size_t n = 5 + replay_rand(&s) % (sizeof(in) - 5);
		uint64_t r = replay_rand(&s);
		unsigned max = i % 2 ? (unsigned)(r % 64) :
		    (unsigned)(r % 65536);
		unsigned pending = (unsigned)((r >> 16) % (2 * max + 2));

		if (pending > 65535)
			pending = 65535;
		in[0] = (uint8_t)(max >> 8);
		in[1] = (uint8_t)max;
		in[2] = (uint8_t)(pending >> 8);
		in[3] = (uint8_t)pending;
		in[4] = (uint8_t)(r >> 40);
		for (size_t k = 5; k < n; k++) {
			uint64_t b = replay_rand(&s);

			/* a '\n' about every max/2 bytes */
			in[k] = b % (max / 2 + 2) == 0 ? '\n' :
			    (uint8_t)(b >> 8);
		}
		LLVMFuzzerTestOneInput(in, n);
		runs++;
	}
	CHECK_EQ_INT(runs, 3000);
}

static void
write_corpus(const char *dir)
{
	uint8_t in[256];
	size_t n;

	for (size_t i = 0; i < NSEEDS; i++)
		if ((n = seed_input(i, in, sizeof(in))) > 0)
			replay_write(dir, seeds[i].name, in, n);
}

void
unit_main(void)
{
	const char *out = getenv("ODOFS_WRITE_CORPUS");

	test_plans();
	if (out != NULL)
		write_corpus(out);
	test_corpus();
	test_random();
}
