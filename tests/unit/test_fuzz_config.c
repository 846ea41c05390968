/*
 * test_fuzz_config: the config fuzz target's checks (tests/fuzz/
 * fuzz_config.c, linked in) without libFuzzer: over etc/odofs.conf as it is
 * now (which must load), over the seed corpus in
 * $ODOFS_SOURCE_ROOT/tests/fuzz/corpus/config, and over a few thousand
 * mutations of the corpus from a fixed seed.  The target aborts on a
 * violation, which fails the test.
 *
 * ODOFS_WRITE_CORPUS=DIR writes the seed inputs into DIR, one file each,
 * with a copy of etc/odofs.conf: that is how the seed corpus was made.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "replay.h"
#include "unit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Small files, valid and not, each reaching another path of config.c. */
static const struct {
	const char *name;
	const char *text;
	size_t len;			/* 0: strlen(text) */
} seeds[] = {
	{ "empty", "", 0 },
	{ "listen", "listen = \"127.0.0.1:7400\";\n", 0 },
	{ "peers", "peers = [ \"10.0.0.2:7400\", \"[::1]:7401\",\n"
	    "  \"journal.example.org:7400\", \"[::ffff:10.0.0.1]:1\" ];\n", 0 },
	{ "groups", "node: { id = \"node-a@site:1\"; data_dir = \"~/x\"; };\n"
	    "peering: {\n  tick_ms = 10;\n  backoff_ms = [ 1, 1, 86400000 ];\n"
	    "  exchange = false;\n  max_peers = 4096;\n};\n", 0 },
	{ "int64", "snapshot: {\n  every_events = 4611686018427387904L;\n"
	    "  keep_events = 0x10;\n  every_seconds = 31536000;\n"
	    "  compact = true;\n};\n", 0 },
	{ "limits", "log: { level = \"debug\"; };\n"
	    "limits: { max_event_bytes = 4194304; };\n"
	    "durability: { sync = true; };\n", 0 },
	{ "comments", "# hash\n// slashes\n/* a block\n over lines */\n"
	    "snapshot = { command = \"tr -d '\\\"' | sort # not a comment\"; "
	    "timeout_seconds = 1; };\n", 0 },
	{ "list-parens", "sync: { devices = ( \"a*\", \"b?\", \"[cd]\" ); "
	    "evaluate_ms = 100; stall_ms = 86400000; };\n", 0 },
	{ "unknown-key", "peering: { tick_ms = 100; nope = 1; };\n", 0 },
	{ "range-32bit", "peering: {\n  heartbeat_ms = 4294967396;\n};\n", 0 },
	{ "negative", "peering: { purgatory_ms = -1; };\n", 0 },
	{ "float", "peering: { tick_ms = 1e3; };\n", 0 },
	{ "wrong-type", "listen = 7400;\nnode = 1;\n", 0 },
	{ "group-for-value", "listen: { x = 1; };\n", 0 },
	{ "descending", "peering: { backoff_ms = [ 10, 5 ]; };\n", 0 },
	{ "mixed-array", "peering: { backoff_ms = [ 10, \"x\" ]; };\n", 0 },
	{ "bad-addr", "peers = [ \"a b:1\", \"[::1]\", \"1.2.3.04:5\" ];\n",
	    0 },
	{ "bad-level", "log: { level = \"loud\\x01\"; };\n", 0 },
	{ "bad-id", "node: { id = \".x\"; };\n", 0 },
	{ "syntax", "peering: { tick_ms = ; };\n", 0 },
	{ "syntax-string", "listen = \"abc\n\n", 0 },
	{ "syntax-group", "peering: { tick_ms = 10;\n", 0 },
	{ "include", "@include \"other.conf\"\n", 0 },
	{ "nul", "listen = \"a\0b\";\n", 16 },
	{ "duplicate", "listen = \"h:1\";\nlisten = \"h:2\";\n", 0 },
};

#define NSEEDS (sizeof(seeds) / sizeof(seeds[0]))

static size_t
seed_len(size_t i)
{
	return seeds[i].len != 0 ? seeds[i].len : strlen(seeds[i].text);
}

/* Reads $ODOFS_SOURCE_ROOT/etc/odofs.conf into a malloc'd block. */
static uint8_t *
read_example(size_t *len)
{
	const char *root = getenv("ODOFS_SOURCE_ROOT");
	char path[1024];
	uint8_t *data;
	FILE *f;

	if (root == NULL)
		return NULL;
	snprintf(path, sizeof(path), "%s/etc/odofs.conf", root);
	if ((f = fopen(path, "rb")) == NULL) {
		perror(path);
		return NULL;
	}
	data = malloc(REPLAY_INPUT_MAX);
	*len = data != NULL ? fread(data, 1, REPLAY_INPUT_MAX, f) : 0;
	fclose(f);
	return data;
}

static void
test_example(void)
{
	uint8_t *data;
	size_t len;
	char path[1024];
	struct config cfg;
	struct err e;

	if ((data = read_example(&len)) == NULL) {
		CHECK(!"etc/odofs.conf not found");
		return;
	}
	LLVMFuzzerTestOneInput(data, len);
	free(data);
	snprintf(path, sizeof(path), "%s/etc/odofs.conf",
	    getenv("ODOFS_SOURCE_ROOT"));
	config_defaults(&cfg);
	CHECK_EQ_INT(config_load(&cfg, path, &e), 0);
}

static void
test_corpus(void)
{
	for (size_t i = 0; i < NSEEDS; i++)
		LLVMFuzzerTestOneInput((const uint8_t *)seeds[i].text,
		    seed_len(i));
	CHECK(replay_corpus("config", LLVMFuzzerTestOneInput) >= (int)NSEEDS);
	CHECK_EQ_INT(replay_mutations("config", LLVMFuzzerTestOneInput, 3000,
	    0x636f6e666967ULL), 3000);
}

static void
write_corpus(const char *dir)
{
	uint8_t *data;
	size_t len;

	for (size_t i = 0; i < NSEEDS; i++)
		replay_write(dir, seeds[i].name, seeds[i].text, seed_len(i));
	if ((data = read_example(&len)) != NULL)
		replay_write(dir, "odofs.conf", data, len);
	free(data);
}

void
unit_main(void)
{
	const char *out = getenv("ODOFS_WRITE_CORPUS");

	if (out != NULL)
		write_corpus(out);
	test_example();
	test_corpus();
}
