/*
 * replay: how the normal test suite runs a fuzz target without libFuzzer.
 * A unit test links the target's LLVMFuzzerTestOneInput() and calls these:
 * every file of a seed corpus, then mutations of those files from a fixed
 * seed (bytes flipped, inserted, removed; cuts; two files spliced), so a
 * regression found once by fuzzing stays caught in every build.  A target
 * reports a violation by aborting, which fails the test.
 */
#ifndef ODOFS_FUZZ_REPLAY_H
#define ODOFS_FUZZ_REPLAY_H

#include <stddef.h>
#include <stdint.h>

typedef int (*replay_fn)(const uint8_t *data, size_t size);

#define REPLAY_INPUT_MAX	(1 << 16)	/* bytes read of one corpus file */

/*
 * Runs fn over every file of $ODOFS_SOURCE_ROOT/tests/fuzz/corpus/<name>.
 * Returns the number of files, or -1 when the directory cannot be read
 * (ODOFS_SOURCE_ROOT unset included; the reason goes to stderr).
 */
int replay_corpus(const char *name, replay_fn fn);

/*
 * Runs fn over n inputs made from the corpus by random mutations, from the
 * fixed seed; returns the number run (0 when the corpus is empty).
 */
int replay_mutations(const char *name, replay_fn fn, int n, uint64_t seed);

/* A xorshift generator for tests: the next value from *state (not 0). */
uint64_t replay_rand(uint64_t *state);

/*
 * Writes data[size] as the file name in dir (the corpus writers'
 * ODOFS_WRITE_CORPUS); returns 0 or -1 (reported on stderr).
 */
int replay_write(const char *dir, const char *name, const void *data,
    size_t size);

#endif
