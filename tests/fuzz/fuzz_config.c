/*
 * fuzz_config: the libFuzzer target for core/config.c.  The input is the
 * text of a configuration file: it goes into a memfd (a file with no name
 * on disk; config_load() opens it as /proc/self/fd/N, and a temporary file
 * stands in where /proc is missing) and is loaded over the defaults.  Then:
 *
 *  - a failed load returns -EINVAL, -EFBIG or -ENOMEM with the same code in
 *    the struct err, a message of one line (no control byte) that starts
 *    with the file's path and a ':' (then a line number within the file,
 *    or a space), and leaves the struct exactly as it was;
 *  - a successful load yields every value within the bounds documented in
 *    etc/odofs.conf: numbers in range, lists within their counts and
 *    orders, strings NUL-terminated in their fields, ids and addresses
 *    valid, a known log level;
 *  - the input as a NUL-terminated string goes to config_check_addr()
 *    (0, or -EINVAL and one line) and, as bytes, to config_valid_id(),
 *    which must agree with the rule in config.h for several maxima.
 *
 * A violation aborts.  libconfig 1.5 leaks inside its lexer on some syntax
 * errors; LeakSanitizer is told so by tests/fuzz/lsan.supp (run.sh) and by
 * the same two patterns built in below (for a target run by hand, and for
 * the unit test in an ASan build), valgrind by tests/valgrind.supp.  Built by meson with -Dfuzzers=true; the
 * unit test tests/unit/test_fuzz_config.c links this file and replays the
 * seed corpus in tests/fuzz/corpus/config and mutations of it.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MS_DAY		86400000ULL
#define EVENTS_MAX	(1ULL << 62)

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FUZZ_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(FUZZ_ASAN)
const char *__lsan_default_suppressions(void);

/* As tests/fuzz/lsan.supp: the leak of libconfig 1.5's lexer, no more. */
const char *
__lsan_default_suppressions(void)
{
	return "leak:libconfig_yylex\nleak:strbuf_append\n";
}
#endif

/* The one file the target rewrites for every input (the harness's state). */
static int fuzz_fd = -1;
static char fuzz_path[256];

static void
fuzz_fail(const char *what, const char *msg)
{
	fprintf(stderr, "fuzz_config: %s%s%s\n", what, msg != NULL ? ": " : "",
	    msg != NULL ? msg : "");
	abort();
}

static void
fuzz_unlink(void)
{
	unlink(fuzz_path);
}

static void
fuzz_open(void)
{
	const char *tmp = getenv("TMPDIR");

	fuzz_fd = memfd_create("fuzz_config.conf", MFD_CLOEXEC);
	if (fuzz_fd >= 0) {
		snprintf(fuzz_path, sizeof(fuzz_path), "/proc/self/fd/%d",
		    fuzz_fd);
		if (access(fuzz_path, R_OK) == 0)
			return;
		close(fuzz_fd);
	}
	snprintf(fuzz_path, sizeof(fuzz_path), "%s/fuzz_config-XXXXXX.conf",
	    tmp != NULL ? tmp : "/tmp");
	if ((fuzz_fd = mkstemps(fuzz_path, 5)) < 0) {
		perror(fuzz_path);
		abort();
	}
	atexit(fuzz_unlink);
}

/* The rule of config.h, by another hand. */
static bool
model_valid_id(const uint8_t *s, size_t len, size_t max)
{
	static const char ok[] = "abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:@-";

	if (len == 0 || len > max || s[0] == '.')
		return false;
	for (size_t i = 0; i < len; i++)
		if (s[i] == '\0' || strchr(ok, s[i]) == NULL)
			return false;
	return true;
}

/* One line: no control byte at all. */
static bool
one_line(const char *msg)
{
	for (const char *p = msg; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

/* A string field of size bytes holds a NUL. */
static void
check_str(const char *s, size_t size, const char *key)
{
	if (memchr(s, '\0', size) == NULL)
		fuzz_fail("string not terminated in its field", key);
}

static void
check_range(unsigned long long v, unsigned long long lo,
    unsigned long long hi, const char *key)
{
	if (v < lo || v > hi)
		fuzz_fail("loaded a value out of range", key);
}

static void
check_addr_ok(const char *addr, const char *key)
{
	struct err e;

	if (config_check_addr(addr, &e) != 0)
		fuzz_fail("loaded an invalid address", key);
}

/* A successful load: every value within the bounds of etc/odofs.conf. */
static void
check_loaded(const struct config *c)
{
	check_str(c->node_id, sizeof(c->node_id), "node.id");
	if (c->node_id[0] != '\0' && !model_valid_id((const uint8_t *)c->node_id,
	    strlen(c->node_id), CONFIG_ID_MAX))
		fuzz_fail("loaded an invalid id", c->node_id);
	check_str(c->data_dir, sizeof(c->data_dir), "node.data_dir");
	check_str(c->listen, sizeof(c->listen), "listen");
	if (c->listen[0] != '\0')
		check_addr_ok(c->listen, "listen");
	check_range(c->npeers, 0, CONFIG_MAX_PEERS, "peers");
	for (size_t i = 0; i < c->npeers; i++) {
		check_str(c->peers[i], sizeof(c->peers[i]), "peers");
		check_addr_ok(c->peers[i], "peers");
	}
	check_str(c->tls_cert, sizeof(c->tls_cert), "tls.cert");
	check_str(c->tls_key, sizeof(c->tls_key), "tls.key");
	check_str(c->tls_ca, sizeof(c->tls_ca), "tls.ca");
	check_range(c->tick_ms, 10, 60000, "peering.tick_ms");
	check_range(c->heartbeat_ms, 100, MS_DAY, "peering.heartbeat_ms");
	check_range(c->handshake_ms, 100, 600000, "peering.handshake_ms");
	check_range(c->nbackoff, 1, CONFIG_MAX_BACKOFF, "peering.backoff_ms");
	for (size_t i = 0; i < c->nbackoff; i++) {
		check_range(c->backoff_ms[i], 1, MS_DAY, "peering.backoff_ms");
		if (i > 0 && c->backoff_ms[i] < c->backoff_ms[i - 1])
			fuzz_fail("loaded a backoff not ascending", NULL);
	}
	check_range(c->purgatory_ms, 0, MS_DAY, "peering.purgatory_ms");
	check_range(c->max_peers, 1, 4096, "peering.max_peers");
	check_range(c->evaluate_ms, 100, MS_DAY, "sync.evaluate_ms");
	check_range(c->stall_ms, 100, MS_DAY, "sync.stall_ms");
	check_range(c->ndevices, 0, CONFIG_MAX_GLOBS, "sync.devices");
	for (size_t i = 0; i < c->ndevices; i++) {
		check_str(c->devices[i], sizeof(c->devices[i]), "sync.devices");
		if (c->devices[i][0] == '\0')
			fuzz_fail("loaded an empty pattern", "sync.devices");
	}
	check_range(c->snapshot_every_events, 0, EVENTS_MAX,
	    "snapshot.every_events");
	check_range(c->snapshot_every_seconds, 0, 31536000,
	    "snapshot.every_seconds");
	check_str(c->snapshot_command, sizeof(c->snapshot_command),
	    "snapshot.command");
	check_range(c->snapshot_timeout_seconds, 1, 86400,
	    "snapshot.timeout_seconds");
	check_range(c->snapshot_keep_events, 0, EVENTS_MAX,
	    "snapshot.keep_events");
	check_range(c->max_event_bytes, 1, 4194304, "limits.max_event_bytes");
	check_range((unsigned long long)c->log_level, LOG_LEVEL_ERROR,
	    LOG_LEVEL_DEBUG, "log.level");
}

/* A failed load: the code, one line naming the file and a line in it. */
static void
check_failed(int rc, const struct err *e, const uint8_t *data, size_t size)
{
	size_t plen = strlen(fuzz_path), lines = 1;
	const char *p;
	char *end;
	unsigned long line;

	if (rc != -EINVAL && rc != -EFBIG && rc != -ENOMEM)
		fuzz_fail("load failed with an unexpected code", e->msg);
	if (e->code != rc)
		fuzz_fail("err code differs from the return", e->msg);
	if (memchr(e->msg, '\0', sizeof(e->msg)) == NULL || e->msg[0] == '\0')
		fuzz_fail("no message", NULL);
	if (!one_line(e->msg))
		fuzz_fail("message is not one line", e->msg);
	if (strncmp(e->msg, fuzz_path, plen) != 0 || e->msg[plen] != ':')
		fuzz_fail("message does not start with the file", e->msg);
	p = e->msg + plen + 1;
	if (*p == ' ')
		return;
	for (size_t i = 0; i < size; i++)
		lines += data[i] == '\n';
	line = strtoul(p, &end, 10);
	if (end == p || *end != ':' || line < 1 || line > lines)
		fuzz_fail("message names no line of the file", e->msg);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct config cfg, before;
	struct err e;
	char *str;
	int rc;

	if (fuzz_fd < 0)
		fuzz_open();
	if (ftruncate(fuzz_fd, 0) != 0 ||
	    (size > 0 && pwrite(fuzz_fd, data, size, 0) != (ssize_t)size)) {
		perror(fuzz_path);
		abort();
	}

	config_defaults(&cfg);
	memcpy(&before, &cfg, sizeof(cfg));
	err_clear(&e);
	rc = config_load(&cfg, fuzz_path, &e);
	if (rc == 0)
		check_loaded(&cfg);
	else {
		check_failed(rc, &e, data, size);
		if (memcmp(&cfg, &before, sizeof(cfg)) != 0)
			fuzz_fail("a failed load changed the config", e.msg);
	}

	/* the input as an address, and as an id */
	if ((str = malloc(size + 1)) == NULL)
		return 0;
	if (size > 0)
		memcpy(str, data, size);
	str[size] = '\0';
	err_clear(&e);
	rc = config_check_addr(str, &e);
	if (rc != 0 && (rc != -EINVAL || e.code != rc || !one_line(e.msg)))
		fuzz_fail("config_check_addr: not -EINVAL and one line", e.msg);
	if (rc == 0 && (strlen(str) >= CONFIG_ADDR_MAX ||
	    strchr(str, ':') == NULL))
		fuzz_fail("config_check_addr accepted a bad address", NULL);
	free(str);
	for (size_t max = 0; max <= 256; max += 64)
		if (config_valid_id((const char *)data, size, max) !=
		    model_valid_id(data, size, max))
			fuzz_fail("config_valid_id disagrees with its rule",
			    NULL);
	if (config_valid_id((const char *)data, size, size) !=
	    model_valid_id(data, size, size))
		fuzz_fail("config_valid_id disagrees with its rule", NULL);
	return 0;
}
