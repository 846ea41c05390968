/*
 * test_config: the config module against SPEC §10.  Each test writes its
 * config text into a private temporary directory and loads it; errors must
 * be -EINVAL, one line, and name the file, the line and the key, and a
 * failed load must leave the struct as it was.  config_check() runs with
 * HOME and XDG_DATA_HOME set by the test and restored afterwards.
 * ODOFS_SOURCE_ROOT (set by meson) locates etc/odofs.conf.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "unit.h"

static char tmpdir[256];

/* Writes text to tmpdir/name; the path goes in path[size]. */
static void
write_file(const char *name, const char *text, char *path, size_t size)
{
	FILE *f;

	snprintf(path, size, "%s/%s", tmpdir, name);
	if ((f = fopen(path, "w")) == NULL) {
		perror(path);
		exit(2);
	}
	fputs(text, f);
	fclose(f);
}

static int
load_text(struct config *cfg, const char *text, struct err *e, char *path,
    size_t size)
{
	write_file("t.conf", text, path, size);
	err_clear(e);
	return config_load(cfg, path, e);
}

/* Loads text over the defaults: 0 expected, the result in *cfg. */
#define LOAD_OK(cfg, text) load_ok(__LINE__, (cfg), (text))
static void
load_ok(int at, struct config *cfg, const char *text)
{
	char path[512];
	struct err e;
	int rc;

	config_defaults(cfg);
	rc = load_text(cfg, text, &e, path, sizeof(path));
	unit_checks++;
	if (rc != 0) {
		unit_failures++;
		fprintf(stderr, "%s:%d: load failed: %d %s\n", __FILE__, at,
		    rc, e.msg);
	}
}

/*
 * Loads text over the defaults and expects -EINVAL with one line holding
 * "path:line:", key and what (what may be NULL), and cfg unchanged.
 */
#define EXPECT_ERR(text, line, key, what) \
	expect_err(__LINE__, (text), (line), (key), (what))
static void
expect_err(int at, const char *text, int line, const char *key,
    const char *what)
{
	static struct config cfg, before;
	char path[512], where[600];
	struct err e;
	bool ok;
	int rc;

	config_defaults(&cfg);
	memcpy(&before, &cfg, sizeof(cfg));
	rc = load_text(&cfg, text, &e, path, sizeof(path));
	snprintf(where, sizeof(where), "%s:%d: ", path, line);
	ok = rc == -EINVAL && e.code == -EINVAL &&
	    strncmp(e.msg, where, strlen(where)) == 0 &&
	    strstr(e.msg, key) != NULL &&
	    (what == NULL || strstr(e.msg, what) != NULL) &&
	    strchr(e.msg, '\n') == NULL &&
	    memcmp(&cfg, &before, sizeof(cfg)) == 0;
	unit_checks++;
	if (!ok) {
		unit_failures++;
		fprintf(stderr, "%s:%d: expected \"%s\" ... \"%s\" ... \"%s\","
		    " got %d: %s\n", __FILE__, at, where, key,
		    what != NULL ? what : "", rc, e.msg);
	}
}

/* Runs config_check and expects rc and a message containing what. */
#define EXPECT_CHECK(cfg, rc, what) \
	expect_check(__LINE__, (cfg), (rc), (what))
static void
expect_check(int at, struct config *cfg, int want, const char *what)
{
	struct err e;
	int rc;

	err_clear(&e);
	rc = config_check(cfg, &e);
	unit_checks++;
	if (rc != want || (what != NULL && strstr(e.msg, what) == NULL) ||
	    (rc != 0 && e.code != rc) || strchr(e.msg, '\n') != NULL) {
		unit_failures++;
		fprintf(stderr, "%s:%d: config_check: expected %d \"%s\", "
		    "got %d: %s\n", __FILE__, at, want,
		    what != NULL ? what : "", rc, e.msg);
	}
}

static void
test_defaults(void)
{
	struct config c;

	memset(&c, 0xa5, sizeof(c));
	config_defaults(&c);
	CHECK(strcmp(c.node_id, "") == 0);
	CHECK(strcmp(c.data_dir, "") == 0);
	CHECK(strcmp(c.listen, "") == 0);
	CHECK_EQ_INT(c.npeers, 0);
	CHECK(strcmp(c.tls_cert, "") == 0);
	CHECK(strcmp(c.tls_key, "") == 0);
	CHECK(strcmp(c.tls_ca, "") == 0);
	CHECK_EQ_INT(c.tick_ms, 1000);
	CHECK_EQ_INT(c.heartbeat_ms, 30000);
	CHECK_EQ_INT(c.handshake_ms, 10000);
	CHECK_EQ_INT(c.nbackoff, 6);
	CHECK_EQ_INT(c.backoff_ms[0], 5000);
	CHECK_EQ_INT(c.backoff_ms[1], 10000);
	CHECK_EQ_INT(c.backoff_ms[2], 30000);
	CHECK_EQ_INT(c.backoff_ms[3], 60000);
	CHECK_EQ_INT(c.backoff_ms[4], 600000);
	CHECK_EQ_INT(c.backoff_ms[5], 3600000);
	CHECK_EQ_INT(c.purgatory_ms, 600000);
	CHECK(c.exchange == true);
	CHECK_EQ_INT(c.max_peers, 256);
	CHECK_EQ_INT(c.evaluate_ms, 10000);
	CHECK_EQ_INT(c.stall_ms, 30000);
	CHECK_EQ_INT(c.ndevices, 1);
	CHECK(strcmp(c.devices[0], "*") == 0);
	CHECK_EQ_INT(c.snapshot_every_events, 0);
	CHECK_EQ_INT(c.snapshot_every_seconds, 0);
	CHECK(strcmp(c.snapshot_command, "") == 0);
	CHECK_EQ_INT(c.snapshot_timeout_seconds, 60);
	CHECK(c.snapshot_compact == false);
	CHECK_EQ_INT(c.snapshot_keep_events, 0);
	CHECK_EQ_INT(c.max_event_bytes, 1048576);
	CHECK(c.sync == false);
	CHECK_EQ_INT(c.log_level, LOG_LEVEL_INFO);
	CHECK(!config_peering_enabled(&c));
}

/* etc/odofs.conf sets every key to its default, over any earlier values. */
static void
test_example(void)
{
	static struct config c, d;
	const char *root = getenv("ODOFS_SOURCE_ROOT");
	char path[4096];
	struct err e;
	int rc;

	snprintf(path, sizeof(path), "%s/etc/odofs.conf",
	    root != NULL ? root : "..");
	config_defaults(&d);
	config_defaults(&c);
	snprintf(c.listen, sizeof(c.listen), "a:1");
	c.npeers = 2;
	snprintf(c.peers[0], sizeof(c.peers[0]), "b:2");
	snprintf(c.peers[1], sizeof(c.peers[1]), "c:3");
	snprintf(c.tls_cert, sizeof(c.tls_cert), "cert");
	snprintf(c.tls_key, sizeof(c.tls_key), "key");
	snprintf(c.tls_ca, sizeof(c.tls_ca), "ca");
	c.tick_ms = c.heartbeat_ms = c.handshake_ms = 7;
	c.nbackoff = 1;
	c.backoff_ms[0] = 7;
	c.purgatory_ms = c.max_peers = c.evaluate_ms = c.stall_ms = 7;
	c.exchange = false;
	c.ndevices = 2;
	snprintf(c.devices[0], sizeof(c.devices[0]), "long-pattern-*");
	snprintf(c.devices[1], sizeof(c.devices[1]), "x");
	c.snapshot_every_events = c.snapshot_every_seconds = 7;
	snprintf(c.snapshot_command, sizeof(c.snapshot_command), "cat");
	c.snapshot_timeout_seconds = c.max_event_bytes = 7;
	c.snapshot_keep_events = 7;
	c.snapshot_compact = c.sync = true;
	c.log_level = LOG_LEVEL_DEBUG;

	err_clear(&e);
	rc = config_load(&c, path, &e);
	CHECK_EQ_INT(rc, 0);
	if (rc != 0)
		fprintf(stderr, "%s\n", e.msg);
	CHECK_EQ_INT(c.tick_ms, 1000);
	CHECK_EQ_INT(c.nbackoff, 6);
	CHECK_EQ_INT(c.backoff_ms[5], 3600000);
	CHECK_EQ_INT(c.ndevices, 1);
	CHECK(strcmp(c.devices[0], "*") == 0);
	CHECK_EQ_INT(c.npeers, 0);
	CHECK_EQ_INT(c.log_level, LOG_LEVEL_INFO);
	CHECK(memcmp(&c, &d, sizeof(c)) == 0);
}

static void
test_override(void)
{
	static struct config c;
	char path[512];
	struct err e;

	LOAD_OK(&c,
	    "# comment\n"
	    "node: { id = \"node-a\"; data_dir = \"/var/lib/odofs/a\"; };\n"
	    "listen = \"[::1]:7400\";\n"
	    "peers = ( \"10.0.0.2:7400\", \"journal.example.org:7401\" );\n"
	    "tls: { cert = \"/c.pem\"; key = \"/k.pem\"; ca = \"/ca.pem\"; };\n"
	    "peering: { tick_ms = 10; heartbeat_ms = 86400000;\n"
	    "  backoff_ms = [ 1, 1, 2 ]; exchange = false; };\n"
	    "sync: { devices = [ \"sensor-*\", \"gw-?\" ]; };\n"
	    "snapshot: { command = \"jq -s last\"; compact = true;\n"
	    "  every_events = 1000; keep_events = 10; };\n"
	    "durability: { sync = true; };\n"
	    "log: { level = \"debug\"; };\n");
	CHECK(strcmp(c.node_id, "node-a") == 0);
	CHECK(strcmp(c.data_dir, "/var/lib/odofs/a") == 0);
	CHECK(strcmp(c.listen, "[::1]:7400") == 0);
	CHECK_EQ_INT(c.npeers, 2);
	CHECK(strcmp(c.peers[1], "journal.example.org:7401") == 0);
	CHECK(strcmp(c.tls_ca, "/ca.pem") == 0);
	CHECK_EQ_INT(c.tick_ms, 10);
	CHECK_EQ_INT(c.heartbeat_ms, 86400000);
	CHECK_EQ_INT(c.nbackoff, 3);
	CHECK_EQ_INT(c.backoff_ms[2], 2);
	CHECK_EQ_INT(c.backoff_ms[3], 0);
	CHECK(c.exchange == false);
	CHECK_EQ_INT(c.ndevices, 2);
	CHECK(strcmp(c.devices[1], "gw-?") == 0);
	CHECK(strcmp(c.snapshot_command, "jq -s last") == 0);
	CHECK(c.snapshot_compact == true);
	CHECK_EQ_INT(c.snapshot_every_events, 1000);
	CHECK_EQ_INT(c.snapshot_keep_events, 10);
	CHECK(c.sync == true);
	CHECK_EQ_INT(c.log_level, LOG_LEVEL_DEBUG);
	CHECK_EQ_INT(c.handshake_ms, 10000);	/* untouched: default */
	CHECK(config_peering_enabled(&c));

	/* a file sets only what it names, over what is there */
	config_defaults(&c);
	c.tick_ms = 777;
	snprintf(c.node_id, sizeof(c.node_id), "from-cli");
	CHECK_EQ_INT(load_text(&c, "peering: { heartbeat_ms = 5000; };\n"
	    "log: { };\n", &e, path, sizeof(path)), 0);
	CHECK_EQ_INT(c.tick_ms, 777);
	CHECK_EQ_INT(c.heartbeat_ms, 5000);
	CHECK(strcmp(c.node_id, "from-cli") == 0);

	/* an empty file changes nothing */
	CHECK_EQ_INT(load_text(&c, "", &e, path, sizeof(path)), 0);
	CHECK_EQ_INT(c.tick_ms, 777);

	/* an empty device list is allowed: replicate nothing */
	LOAD_OK(&c, "sync: { devices = [ ]; };\n");
	CHECK_EQ_INT(c.ndevices, 0);
}

static void
test_int64(void)
{
	static struct config c;

	LOAD_OK(&c, "limits: { max_event_bytes = 1048576L; };\n"
	    "snapshot: { every_events = 4611686018427387904L;\n"
	    "  keep_events = 0x10L; every_seconds = 3600L; };\n"
	    "peering: { backoff_ms = [ 1000L, 2000L ]; };\n");
	CHECK_EQ_INT(c.max_event_bytes, 1048576);
	CHECK(c.snapshot_every_events == 4611686018427387904ULL);
	CHECK_EQ_INT(c.snapshot_keep_events, 16);
	CHECK_EQ_INT(c.snapshot_every_seconds, 3600);
	CHECK_EQ_INT(c.nbackoff, 2);
	CHECK_EQ_INT(c.backoff_ms[1], 2000);

	/* libconfig 1.5 would truncate these to 32 bits; they must not be */
	LOAD_OK(&c, "snapshot: { every_events = 5000000000; "
	    "keep_events = 0x100000000; };\n");
	CHECK(c.snapshot_every_events == 5000000000ULL);
	CHECK(c.snapshot_keep_events == 0x100000000ULL);
	EXPECT_ERR("peering: {\n heartbeat_ms = 4294967396;\n};\n", 2,
	    "peering.heartbeat_ms", "must be between 100 and 86400000");
	EXPECT_ERR("limits: { max_event_bytes = 0xFFFFFFFF; };\n", 1,
	    "limits.max_event_bytes", "must be between");
	EXPECT_ERR("snapshot: { keep_events = 99999999999999999999; };\n", 1,
	    "snapshot.keep_events", "must be between");
	EXPECT_ERR("peering: { tick_ms = -4294966296; };\n", 1,
	    "peering.tick_ms", "must be between");
	EXPECT_ERR("peering: { backoff_ms = [ 1000, 4294967396 ]; };\n", 1,
	    "peering.backoff_ms", "must be between");
	EXPECT_ERR("snapshot: { keep_events = 0xFFFFFFFFFFFFFFFFFF; };\n", 1,
	    "snapshot.keep_events", "must be between");
	/* an array may mix both forms */
	LOAD_OK(&c, "peering: { backoff_ms = [ 1000L, 2000, 0x1000 ]; };\n");
	CHECK_EQ_INT(c.nbackoff, 3);
	CHECK_EQ_INT(c.backoff_ms[2], 4096);
	/* numbers in strings and comments are left alone */
	LOAD_OK(&c, "# 5000000000\n/* 5000000000 */ // 5000000000\n"
	    "snapshot: { command = \"head -c 5000000000 \\\" 1\"; };\n");
	CHECK(strcmp(c.snapshot_command, "head -c 5000000000 \" 1") == 0);
}

static void
test_errors(void)
{
	char longstr[5000 + 64];
	char text[6000];

	EXPECT_ERR("log: { level = \"info\";\n};\nlisten = ;\n", 3,
	    "syntax error", NULL);
	EXPECT_ERR("listen = \"a:1\";\nlisten = \"b:1\";\n", 2,
	    "syntax error", NULL);
	EXPECT_ERR("\n@include \"other.conf\"\n", 2, "syntax error",
	    "@include");
	EXPECT_ERR("bogus = 1;\n", 1, "bogus: ", "unknown key");
	EXPECT_ERR("tls:\n{\n\tfoo = \"x\";\n};\n", 3, "tls.foo: ",
	    "unknown key");
	EXPECT_ERR("\nextra: { a = 1; };\n", 2, "extra: ", "unknown key");
	EXPECT_ERR("node: { id = \"a\"; sub: { x = 1; }; };\n", 1,
	    "node.sub: ", "unknown key");
	EXPECT_ERR("tls = 5;\n", 1, "tls: ", "expected a group");
	EXPECT_ERR("log = ( );\n", 1, "log: ", "expected a group");
	EXPECT_ERR("listen: { };\n", 1, "listen: ", "not a group");
	EXPECT_ERR("peering: {\n\ttick_ms = \"1000\";\n};\n", 2,
	    "peering.tick_ms: ", "wrong type: expected an integer");
	EXPECT_ERR("limits: { max_event_bytes = 1.5; };\n", 1,
	    "limits.max_event_bytes: ", "wrong type: expected an integer");
	EXPECT_ERR("limits: { max_event_bytes = 1e6; };\n", 1,
	    "limits.max_event_bytes: ", "wrong type: expected an integer");
	EXPECT_ERR("peering: { max_peers = true; };\n", 1,
	    "peering.max_peers: ", "wrong type: expected an integer");
	EXPECT_ERR("peering: { exchange = 1; };\n", 1, "peering.exchange: ",
	    "wrong type");
	EXPECT_ERR("durability: { sync = \"yes\"; };\n", 1,
	    "durability.sync: ", "wrong type");
	EXPECT_ERR("listen = 7400;\n", 1, "listen: ",
	    "wrong type: expected a string");
	EXPECT_ERR("peering: { tick_ms = 9; };\n", 1, "peering.tick_ms: ",
	    "must be between 10 and 60000");
	EXPECT_ERR("peering: { tick_ms = 60001; };\n", 1, "peering.tick_ms: ",
	    "must be between 10 and 60000");
	EXPECT_ERR("snapshot: { every_events = -1; };\n", 1,
	    "snapshot.every_events: ", "must be between");
	EXPECT_ERR("snapshot: { keep_events = 4611686018427387905L; };\n", 1,
	    "snapshot.keep_events: ", "must be between");
	EXPECT_ERR("snapshot: { timeout_seconds = 0; };\n", 1,
	    "snapshot.timeout_seconds: ", "must be between 1 and 86400");
	EXPECT_ERR("limits: { max_event_bytes = 4194305; };\n", 1,
	    "limits.max_event_bytes: ", "must be between 1 and 4194304");

	memset(longstr, 'a', 4096);
	longstr[4096] = '\0';
	snprintf(text, sizeof(text), "tls: {\n cert = \"/%s\"; };\n", longstr);
	EXPECT_ERR(text, 2, "tls.cert: ", "too long");
	memset(longstr, 'a', 65);
	longstr[65] = '\0';
	snprintf(text, sizeof(text), "node: { id = \"%s\"; };\n", longstr);
	EXPECT_ERR(text, 1, "node.id: ", "too long");
	EXPECT_ERR("node: { id = \"bad id\"; };\n", 1, "node.id: ",
	    "invalid id 'bad id'");
	EXPECT_ERR("node: { id = \".hidden\"; };\n", 1, "node.id: ",
	    "invalid id");
	EXPECT_ERR("node: { id = \"line\\nbreak\"; };\n", 1, "node.id: ",
	    "invalid id 'line?break'");

	EXPECT_ERR("log: { level = \"loud\"; };\n", 1, "log.level: ",
	    "unknown level 'loud'");
	EXPECT_ERR("log: { level = 3; };\n", 1, "log.level: ", "wrong type");

	EXPECT_ERR("listen = \"localhost\";\n", 1, "listen: ",
	    "invalid address 'localhost'");
	EXPECT_ERR("listen = \"localhost:0\";\n", 1, "listen: ", "port");
	EXPECT_ERR("peers = [ \"a:1\",\n  \"b:65536\" ];\n", 2, "peers: ",
	    "invalid address 'b:65536'");
	EXPECT_ERR("peers = [ \"a:1\", \"\" ];\n", 1, "peers: ",
	    "empty address");
	EXPECT_ERR("peers = \"a:1\";\n", 1, "peers: ",
	    "expected a list of strings");
	EXPECT_ERR("peers = ( \"a:1\",\n 5 );\n", 2, "peers: ",
	    "expected a string");
	EXPECT_ERR("sync: { devices = [ \"\" ]; };\n", 1, "sync.devices: ",
	    "empty pattern");

	EXPECT_ERR("peering: {\n backoff_ms = [ ];\n};\n", 2,
	    "peering.backoff_ms: ", "must have 1 to 16 entries");
	EXPECT_ERR("peering: {\n backoff_ms = [ 5000,\n   1000 ];\n};\n", 3,
	    "peering.backoff_ms: ", "entry 2: 1000 is less than");
	EXPECT_ERR("peering: { backoff_ms = [ 0, 1000 ]; };\n", 1,
	    "peering.backoff_ms: ", "entry 1: must be between 1");
	EXPECT_ERR("peering: { backoff_ms = [ 1.0 ]; };\n", 1,
	    "peering.backoff_ms: ", "expected an integer");
	EXPECT_ERR("peering: { backoff_ms = 5000; };\n", 1,
	    "peering.backoff_ms: ", "expected an array of integers");
	EXPECT_ERR("peering: { backoff_ms = [ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,"
	    " 11, 12, 13, 14, 15, 16, 17 ]; };\n", 1, "peering.backoff_ms: ",
	    "must have 1 to 16 entries, not 17");
}

static void
test_unreadable(void)
{
	static struct config c, before;
	char path[512];
	struct err e;
	int rc;

	config_defaults(&c);
	memcpy(&before, &c, sizeof(c));
	snprintf(path, sizeof(path), "%s/missing.conf", tmpdir);
	rc = config_load(&c, path, &e);
	CHECK_EQ_INT(rc, -ENOENT);
	CHECK(strstr(e.msg, path) != NULL);
	CHECK(strstr(e.msg, "cannot read: No such file or directory") != NULL);
	rc = config_load(&c, tmpdir, &e);
	CHECK_EQ_INT(rc, -EISDIR);
	CHECK(strstr(e.msg, "cannot read") != NULL);
	if (geteuid() != 0) {
		write_file("secret.conf", "listen = \"a:1\";\n", path,
		    sizeof(path));
		chmod(path, 0);
		rc = config_load(&c, path, &e);
		CHECK_EQ_INT(rc, -EACCES);
		CHECK(strstr(e.msg, path) != NULL);
	}
	CHECK(memcmp(&c, &before, sizeof(c)) == 0);
}

static void
test_valid_id(void)
{
	char s[200];

	memset(s, 'a', sizeof(s));
	CHECK(config_valid_id(s, 128, 128));
	CHECK(!config_valid_id(s, 129, 128));
	CHECK(config_valid_id(s, 64, CONFIG_ID_MAX));
	CHECK(!config_valid_id(s, 65, CONFIG_ID_MAX));
	CHECK(config_valid_id("a", 1, 128));
	CHECK(!config_valid_id("", 0, 128));
	CHECK(!config_valid_id(".a", 2, 128));
	CHECK(!config_valid_id(".", 1, 128));
	CHECK(config_valid_id("a.", 2, 128));
	CHECK(config_valid_id("Az09._:@-", 9, 128));
	CHECK(config_valid_id("-a", 2, 128));
	CHECK(!config_valid_id("a b", 3, 128));
	CHECK(!config_valid_id("a/b", 3, 128));
	CHECK(!config_valid_id("a\0b", 3, 128));
	CHECK(!config_valid_id("a\nb", 3, 128));
	CHECK(!config_valid_id("\xc3\xa9", 2, 128));
	CHECK(config_valid_id("ab/", 2, 128));	/* only len bytes count */
}

static void
test_addr(void)
{
	static const char *const good[] = {
		"localhost:1", "10.0.0.2:7400", "journal.example.org:7400",
		"journal.example.org.:65535", "[::1]:7400", "[::]:1",
		"[fe80::1:2]:80", "[1:2:3:4:5:6:7:8]:9", "[::ffff:1.2.3.4]:9",
		"[1::]:9", "0.0.0.0:7400", "a_b-c:07400", "123.example:1",
	};
	static const char *const bad[] = {
		"", "localhost", ":7400", "host:", "host:0", "host:65536",
		"host:7400x", "host: 1", "host:+1", "host:-1", "::1:7400",
		"[::1]7400", "[::1:7400", "[]:1", "[1:2:3:4:5:6:7:8:9]:1",
		"[1::2::3]:1", "[:1]:1", "[1:]:1", "[12345::]:1", "[g::]:1",
		"10.0.0.256:1", "1.2.3:1", "01.2.3.4:1", "1.2.3.4.5:1",
		"-host:1", "host-:1", "a..b:1", ".a:1", "ho st:1", "h/st:1",
		"host:99999999999999999999",
	};
	struct err e;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		int rc = config_check_addr(good[i], &e);

		CHECK_EQ_INT(rc, 0);
		if (rc != 0)
			fprintf(stderr, "  %s: %s\n", good[i], e.msg);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = config_check_addr(bad[i], &e);

		CHECK_EQ_INT(rc, -EINVAL);
		if (rc != -EINVAL)
			fprintf(stderr, "  accepted: '%s'\n", bad[i]);
	}
}

struct env_save {
	char *home, *xdg;
};

static char *
dup_env(const char *name)
{
	const char *v = getenv(name);

	return v != NULL ? strdup(v) : NULL;
}

static void
restore_env(const char *name, char *v)
{
	if (v != NULL)
		setenv(name, v, 1);
	else
		unsetenv(name);
	free(v);
}

static void
test_check(void)
{
	static struct config c;
	char cert[512], key[512], ca[512], cwd[4096], want[4096 + 64];
	char host[256], *dot;
	struct env_save save = { dup_env("HOME"), dup_env("XDG_DATA_HOME") };

	setenv("HOME", "/home/u", 1);
	unsetenv("XDG_DATA_HOME");

	/* standalone: explicit id and data dir */
	config_defaults(&c);
	snprintf(c.node_id, sizeof(c.node_id), "node-a");
	snprintf(c.data_dir, sizeof(c.data_dir), "/srv/a");
	EXPECT_CHECK(&c, 0, NULL);
	CHECK(strcmp(c.data_dir, "/srv/a") == 0);

	/* data dir: "~/" and relative paths become absolute */
	snprintf(c.data_dir, sizeof(c.data_dir), "~/j");
	EXPECT_CHECK(&c, 0, NULL);
	CHECK(strcmp(c.data_dir, "/home/u/j") == 0);
	snprintf(c.data_dir, sizeof(c.data_dir), "rel/j");
	EXPECT_CHECK(&c, 0, NULL);
	CHECK(getcwd(cwd, sizeof(cwd)) != NULL);
	snprintf(want, sizeof(want), "%s/rel/j", cwd);
	CHECK(strcmp(c.data_dir, want) == 0);

	/* data dir: defaults from XDG_DATA_HOME, then HOME */
	c.data_dir[0] = '\0';
	setenv("XDG_DATA_HOME", "/x/data", 1);
	EXPECT_CHECK(&c, 0, NULL);
	CHECK(strcmp(c.data_dir, "/x/data/odofs/node-a") == 0);
	c.data_dir[0] = '\0';
	setenv("XDG_DATA_HOME", "relative", 1);
	EXPECT_CHECK(&c, 0, NULL);
	CHECK(strcmp(c.data_dir, "/home/u/.local/share/odofs/node-a") == 0);
	c.data_dir[0] = '\0';
	unsetenv("XDG_DATA_HOME");
	EXPECT_CHECK(&c, 0, NULL);
	CHECK(strcmp(c.data_dir, "/home/u/.local/share/odofs/node-a") == 0);
	c.data_dir[0] = '\0';
	unsetenv("HOME");
	EXPECT_CHECK(&c, -EINVAL, "node.data_dir: ");
	snprintf(c.data_dir, sizeof(c.data_dir), "~/j");
	EXPECT_CHECK(&c, -EINVAL, "node.data_dir: cannot expand '~'");
	setenv("HOME", "/home/u", 1);

	/* node id from the host name, up to its first '.' */
	config_defaults(&c);
	CHECK(gethostname(host, sizeof(host)) == 0);
	host[sizeof(host) - 1] = '\0';
	if ((dot = strchr(host, '.')) != NULL)
		*dot = '\0';
	if (config_valid_id(host, strlen(host), CONFIG_ID_MAX)) {
		EXPECT_CHECK(&c, 0, NULL);
		CHECK(strcmp(c.node_id, host) == 0);
		snprintf(want, sizeof(want), "/home/u/.local/share/odofs/%s",
		    host);
		CHECK(strcmp(c.data_dir, want) == 0);
	} else
		EXPECT_CHECK(&c, -EINVAL, "is not a valid id; set node.id");

	/* values the command line may have written */
	config_defaults(&c);
	snprintf(c.node_id, sizeof(c.node_id), ".bad");
	EXPECT_CHECK(&c, -EINVAL, "node.id: invalid id '.bad': 1 to 64 bytes "
	    "of [A-Za-z0-9._:@-], not starting with '.'");
	config_defaults(&c);
	snprintf(c.node_id, sizeof(c.node_id), "n");
	snprintf(c.listen, sizeof(c.listen), "nohost");
	EXPECT_CHECK(&c, -EINVAL, "listen: invalid address 'nohost'");
	config_defaults(&c);
	snprintf(c.node_id, sizeof(c.node_id), "n");
	c.npeers = 1;
	snprintf(c.peers[0], sizeof(c.peers[0]), "p:0");
	EXPECT_CHECK(&c, -EINVAL, "peers: invalid address 'p:0'");
	config_defaults(&c);
	snprintf(c.node_id, sizeof(c.node_id), "n");
	c.nbackoff = 0;
	EXPECT_CHECK(&c, -EINVAL, "peering.backoff_ms: must have 1 to 16");
	config_defaults(&c);
	snprintf(c.node_id, sizeof(c.node_id), "n");
	c.backoff_ms[3] = 1;
	EXPECT_CHECK(&c, -EINVAL, "peering.backoff_ms: entry 4");
	config_defaults(&c);
	snprintf(c.node_id, sizeof(c.node_id), "n");
	c.tick_ms = 0;
	EXPECT_CHECK(&c, -EINVAL, "peering.tick_ms: must be between");

	/* peering needs tls, complete and readable */
	config_defaults(&c);
	snprintf(c.node_id, sizeof(c.node_id), "n");
	snprintf(c.listen, sizeof(c.listen), "127.0.0.1:7400");
	CHECK(config_peering_enabled(&c));
	EXPECT_CHECK(&c, -EINVAL,
	    "tls.cert: required when listen or peers is set");
	write_file("cert.pem", "cert\n", cert, sizeof(cert));
	write_file("key.pem", "key\n", key, sizeof(key));
	write_file("ca.pem", "ca\n", ca, sizeof(ca));
	snprintf(c.tls_cert, sizeof(c.tls_cert), "%s", cert);
	EXPECT_CHECK(&c, -EINVAL, "tls.key: required");
	snprintf(c.tls_key, sizeof(c.tls_key), "%s", key);
	snprintf(c.tls_ca, sizeof(c.tls_ca), "%s/nope.pem", tmpdir);
	snprintf(want, sizeof(want), "tls.ca: cannot read %s/nope.pem: "
	    "No such file or directory", tmpdir);
	EXPECT_CHECK(&c, -ENOENT, want);
	snprintf(c.tls_ca, sizeof(c.tls_ca), "%s", tmpdir);
	EXPECT_CHECK(&c, -EISDIR, "tls.ca: cannot read");
	if (geteuid() != 0) {
		snprintf(c.tls_ca, sizeof(c.tls_ca), "%s", ca);
		chmod(key, 0);
		EXPECT_CHECK(&c, -EACCES, "tls.key: cannot read");
		chmod(key, 0600);
	}
	snprintf(c.tls_ca, sizeof(c.tls_ca), "%s", ca);
	EXPECT_CHECK(&c, 0, NULL);

	/* peers alone enable peering too; "~/" in tls paths uses HOME */
	config_defaults(&c);
	snprintf(c.node_id, sizeof(c.node_id), "n");
	c.npeers = 1;
	snprintf(c.peers[0], sizeof(c.peers[0]), "[::1]:7400");
	setenv("HOME", tmpdir, 1);
	snprintf(c.tls_cert, sizeof(c.tls_cert), "~/cert.pem");
	snprintf(c.tls_key, sizeof(c.tls_key), "~/key.pem");
	snprintf(c.tls_ca, sizeof(c.tls_ca), "~/ca.pem");
	EXPECT_CHECK(&c, 0, NULL);
	CHECK(strcmp(c.tls_cert, cert) == 0);
	CHECK(strcmp(c.tls_ca, ca) == 0);

	restore_env("HOME", save.home);
	restore_env("XDG_DATA_HOME", save.xdg);
}

void
unit_main(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "%s", unit_tmpdir());
	test_defaults();
	test_example();
	test_override();
	test_int64();
	test_errors();
	test_unreadable();
	test_valid_id();
	test_addr();
	test_check();
	unit_rmtree(tmpdir);
}
