/*
 * lines: see lines.h.  One pass with memchr over the write.
 */
#include <errno.h>
#include <string.h>

#include "lines.h"

int
lines_plan(size_t pending, const char *data, size_t size, size_t max,
    struct lines_plan *out)
{
	const char *p = data, *end = data + size, *nl;
	size_t len = pending;	/* bytes of the event being scanned */

	out->bad = LINES_OK;
	out->first_len = 0;
	out->whole = 0;
	out->events = 0;
	out->tail = 0;
	while (p < end && (nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		len += (size_t)(nl - p);
		if (len > max) {
			out->bad = out->events == 0 && pending > 0 ?
			    LINES_BAD_FIRST : LINES_BAD_LINE;
			out->first_len = (size_t)(nl - data);
			return -EFBIG;
		}
		if (out->events == 0)
			out->first_len = (size_t)(nl - data);
		out->events++;
		len = 0;
		p = nl + 1;
	}
	out->whole = (size_t)(p - data);
	out->tail = (size_t)(end - p);
	if (len + out->tail > max) {
		out->bad = LINES_BAD_TAIL;
		return -EFBIG;
	}
	return 0;
}

unsigned long long
lines_hash(const char *p, size_t n)
{
	unsigned long long h = 14695981039346656037ull;

	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)p[i];
		h *= 1099511628211ull;
	}
	return h;
}
