/*
 * buf: a growable byte buffer with a maximum, after curl's dynbuf.  Every
 * append either fits under the maximum or fails with -E2BIG and leaves the
 * buffer as it was; -ENOMEM likewise.  The contents are always
 * NUL-terminated (the NUL is not counted in len).
 */
#ifndef ODOFS_BUF_H
#define ODOFS_BUF_H

#include <stddef.h>

struct buf {
	char *data;		/* NULL until the first append */
	size_t len;
	size_t cap;
	size_t max;		/* len never exceeds it */
};

void buf_init(struct buf *b, size_t max);
/* Frees the contents; b may be reused after buf_init(). */
void buf_release(struct buf *b);
void buf_reset(struct buf *b);	/* len = 0, keeps the memory */
int buf_append(struct buf *b, const void *p, size_t n);
/* Makes room for a length of total bytes, so appends up to it cannot fail. */
int buf_ensure(struct buf *b, size_t total);
int buf_printf(struct buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Appends s as a JSON string literal, quotes included. */
int buf_json_str(struct buf *b, const char *s, size_t n);

#endif
