/*
 * err: an error code with the human message, filled where the decision is
 * made.  Functions return 0 or a negative errno and, on failure, describe the
 * problem in the caller's struct err:
 *
 *	return err_set(e, -EIO, "leveldb write %s: %s", dev, msg);
 *
 * The message is lower case, names the problem first, then its context.
 */
#ifndef ODOFS_ERR_H
#define ODOFS_ERR_H

#define ERR_MSG_MAX 512

struct err {
	int code;			/* negative errno, 0 when clear */
	char msg[ERR_MSG_MAX];		/* NUL-terminated, possibly truncated */
};

/* Sets e (which may be NULL) and returns code. */
int err_set(struct err *e, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Clears e (which may be NULL). */
void err_clear(struct err *e);

#endif
