/*
 * log: the daemon's one log sink, in the shape of OpenSMTPD's log.c.
 *
 * Messages are lower case: the problem first, then the context.  log_warn
 * appends ": strerror(errno)"; log_warnx does not.  Lines go to stderr as
 * "odofs[pid]: level: message".  Once log_open_file() has made stderr a
 * log file (the background daemon), each line starts with its ISO 8601 UTC
 * time: "2026-11-27T04:05:06.123Z odofs[pid]: level: message".
 * Thread-safe: each line is one write(2).
 */
#ifndef ODOFS_LOG_H
#define ODOFS_LOG_H

#include <stdarg.h>

#include "err.h"

enum log_level {
	LOG_LEVEL_ERROR = 0,
	LOG_LEVEL_WARN,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
};

/* Sets the threshold; messages above it are dropped.  Call before threads. */
void log_init(enum log_level level);
enum log_level log_get_level(void);

/*
 * Opens path (append, created 0600) onto stderr, so that it receives the log
 * and whatever else writes to stderr, and times every line from then on.
 * Returns 0, or a negative errno with e set (stderr is then unchanged).
 * Call once, from one thread; other threads may be logging meanwhile.
 */
int log_open_file(const char *path, struct err *e);

/*
 * Opens the log file's path again onto stderr (after logrotate has renamed
 * it); does nothing when there is no log file.  On failure the old file is
 * kept and the next line logged says why.  Async-signal-safe: made for a
 * SIGHUP handler.
 */
void log_reopen(void);

/* Parses "error", "warn", "info", "debug"; returns 0 or -EINVAL. */
int log_level_parse(const char *s, enum log_level *out);

void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The sink for foreign loggers (libfuse): level and a preformatted line. */
void log_line(enum log_level level, const char *fmt, va_list ap);

#endif
