/*
 * lines: how a write() to `events` becomes events.  Pure, so it can be
 * fuzzed.  A write is data appended to what the open file holds of an
 * unfinished line (pending bytes); every '\n' ends an event.  lines_plan()
 * checks the whole write before anything is stored: an event over max bytes
 * anywhere in it fails the write with -EFBIG.
 */
#ifndef ODOFS_LINES_H
#define ODOFS_LINES_H

#include <stddef.h>

enum lines_bad {
	LINES_OK = 0,
	LINES_BAD_FIRST,	/* the first line, which began before data */
	LINES_BAD_LINE,		/* a line wholly inside data */
	LINES_BAD_TAIL,		/* the unfinished line at the end */
};

struct lines_plan {
	enum lines_bad bad;	/* which line is over the limit */
	size_t first_len;	/* bytes of data completing the first event */
	size_t whole;		/* bytes of data up to and with the last '\n' */
	size_t events;		/* complete events the write makes */
	size_t tail;		/* bytes after the last '\n', left pending */
};

/*
 * Plans a write of data[0..size) after pending bytes.  Returns 0, or
 * -EFBIG when an event (pending bytes included) or the new pending tail
 * would exceed max bytes; out->bad then says which line.
 */
int lines_plan(size_t pending, const char *data, size_t size, size_t max,
    struct lines_plan *out);

/*
 * FNV-1a over p[0..n): fs/ops.c knows a refused write sent again by it.
 */
unsigned long long lines_hash(const char *p, size_t n);

#endif
