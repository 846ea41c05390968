/*
 * log: see log.h.  The level is set once before threads start and read
 * without a lock afterwards (an int, never changed again).  Each line is
 * formatted into a bounded stack buffer and written with one write(2), so
 * lines from concurrent threads never interleave.
 *
 * The sink is always file descriptor 2.  A log file is opened onto it with
 * dup2(2), so whatever else writes to stderr (LevelDB, a sanitizer, a
 * snapshot command) lands in the same file, and reopening is one open(2),
 * dup2(2) and close(2): all async-signal-safe, so a SIGHUP handler may do
 * it, and a thread writing meanwhile reaches either the old file or the new
 * one, never neither.  The path is written once before log_file_on is set
 * (release) and only read after it is seen (acquire).  A reopen that fails
 * keeps the old file and leaves its errno for the next line to report.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define LOG_LINE_MAX	2048
#define LOG_PATH_MAX	4096
#define LOG_FILE_FLAGS	(O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY)
#define LOG_FILE_MODE	0600

static enum log_level log_threshold = LOG_LEVEL_INFO;
static char log_path[LOG_PATH_MAX];	/* written once, before log_file_on */
static atomic_bool log_file_on;		/* stderr is log_path; lines timed */
static atomic_int log_reopen_errno;	/* of the last failed reopen, or 0 */

static const char *const log_names[] = {
	[LOG_LEVEL_ERROR] = "error",
	[LOG_LEVEL_WARN] = "warn",
	[LOG_LEVEL_INFO] = "info",
	[LOG_LEVEL_DEBUG] = "debug",
};

void
log_init(enum log_level level)
{
	log_threshold = level;
}

enum log_level
log_get_level(void)
{
	return log_threshold;
}

int
log_level_parse(const char *s, enum log_level *out)
{
	for (size_t i = 0; i < sizeof(log_names) / sizeof(log_names[0]); i++) {
		if (strcmp(s, log_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

/* Opens path onto stderr; returns 0 or a negative errno.  Signal-safe. */
static int
log_open_onto_stderr(const char *path)
{
	int fd;

	if ((fd = open(path, LOG_FILE_FLAGS, LOG_FILE_MODE)) < 0)
		return -errno;
	if (fd != STDERR_FILENO) {
		if (dup2(fd, STDERR_FILENO) < 0) {
			int saved = errno;

			close(fd);
			return -saved;
		}
		close(fd);
	}
	return 0;
}

int
log_open_file(const char *path, struct err *e)
{
	size_t len = strlen(path);
	int rc;

	if (len >= sizeof(log_path))
		return err_set(e, -ENAMETOOLONG, "log file %s: path too long",
		    path);
	if ((rc = log_open_onto_stderr(path)) < 0)
		return err_set(e, rc, "log file %s: %s", path, strerror(-rc));
	memcpy(log_path, path, len + 1);
	atomic_store_explicit(&log_file_on, true, memory_order_release);
	return 0;
}

void
log_reopen(void)
{
	int saved = errno, rc;

	if (!atomic_load_explicit(&log_file_on, memory_order_acquire))
		return;
	rc = log_open_onto_stderr(log_path);
	atomic_store(&log_reopen_errno, -rc);
	errno = saved;
}

/* "2026-11-27T04:05:06.123Z ": the time of a line in the log file. */
static int
log_time(char *buf, size_t size)
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	if (gmtime_r(&ts.tv_sec, &tm) == NULL)
		return 0;
	return snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	    tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
}

static void log_emit(enum log_level, int, const char *, va_list);

static void
log_reopen_failed(int errnum, ...)
{
	va_list ap;

	va_start(ap, errnum);
	log_emit(LOG_LEVEL_WARN, errnum, "cannot reopen log file %s", ap);
	va_end(ap);
}

static void
log_emit(enum log_level level, int errnum, const char *fmt, va_list ap)
{
	char line[LOG_LINE_MAX];
	int n = 0, m, failed;

	if (level > log_threshold)
		return;
	if (atomic_load_explicit(&log_file_on, memory_order_acquire)) {
		if ((failed = atomic_exchange(&log_reopen_errno, 0)) != 0)
			log_reopen_failed(failed, log_path);
		n = log_time(line, sizeof(line));
	}
	n += snprintf(line + n, sizeof(line) - (size_t)n, "odofs[%ld]: %s: ",
	    (long)getpid(), log_names[level]);
	m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	if (m < 0)
		m = 0;
	n += m;
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	/* drop a trailing newline from foreign formats; we add our own */
	while (n > 0 && line[n - 1] == '\n')
		n--;
	if (errnum != 0)
		n += snprintf(line + n, sizeof(line) - (size_t)n - 1, ": %s",
		    strerror(errnum));
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	(void)!write(STDERR_FILENO, line, (size_t)n);
}

void
log_line(enum log_level level, const char *fmt, va_list ap)
{
	log_emit(level, 0, fmt, ap);
}

#define LOG_FN(name, level, with_errno)				\
void									\
name(const char *fmt, ...)						\
{									\
	int saved = errno;						\
	va_list ap;							\
	va_start(ap, fmt);						\
	log_emit(level, with_errno ? saved : 0, fmt, ap);		\
	va_end(ap);							\
	errno = saved;							\
}

LOG_FN(log_error, LOG_LEVEL_ERROR, 0)
LOG_FN(log_warn, LOG_LEVEL_WARN, 1)
LOG_FN(log_warnx, LOG_LEVEL_WARN, 0)
LOG_FN(log_info, LOG_LEVEL_INFO, 0)
LOG_FN(log_debug, LOG_LEVEL_DEBUG, 0)
