/*
 * replay: see replay.h.  Each input is handed to the target in a heap
 * block of exactly its size, so that a read past its end is caught by
 * valgrind or ASan as it would be under libFuzzer.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "replay.h"

#define REPLAY_FILES_MAX	512

struct replay_file {
	uint8_t *data;
	size_t len;
};

static int
replay_dir(const char *name, char *dir, size_t size)
{
	const char *root = getenv("ODOFS_SOURCE_ROOT");

	if (root == NULL) {
		fprintf(stderr, "replay: ODOFS_SOURCE_ROOT not set\n");
		return -1;
	}
	snprintf(dir, size, "%s/tests/fuzz/corpus/%s", root, name);
	return 0;
}

/* Runs fn over a copy of data[n] in a block of exactly n bytes. */
static void
replay_one(replay_fn fn, const uint8_t *data, size_t n)
{
	uint8_t *copy = malloc(n > 0 ? n : 1);

	if (copy == NULL) {
		perror("replay");
		abort();
	}
	if (n > 0)
		memcpy(copy, data, n);
	fn(copy, n);
	free(copy);
}

static int
replay_compare(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reads the corpus, sorted by name; returns the count or -1. */
static int
replay_load(const char *name, struct replay_file *files)
{
	char dir[1024], path[1400];
	char *names[REPLAY_FILES_MAX];
	struct dirent *de;
	DIR *dp;
	int count = 0, loaded = 0;

	if (replay_dir(name, dir, sizeof(dir)) < 0)
		return -1;
	if ((dp = opendir(dir)) == NULL) {
		perror(dir);
		return -1;
	}
	while ((de = readdir(dp)) != NULL && count < REPLAY_FILES_MAX) {
		if (de->d_name[0] == '.')
			continue;
		if ((names[count] = strdup(de->d_name)) == NULL)
			break;
		count++;
	}
	closedir(dp);
	qsort(names, (size_t)count, sizeof(names[0]), replay_compare);
	for (int i = 0; i < count; i++) {
		FILE *f;

		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		free(names[i]);
		if ((f = fopen(path, "rb")) == NULL) {
			perror(path);
			continue;
		}
		files[loaded].data = malloc(REPLAY_INPUT_MAX);
		if (files[loaded].data != NULL) {
			files[loaded].len = fread(files[loaded].data, 1,
			    REPLAY_INPUT_MAX, f);
			loaded++;
		}
		fclose(f);
	}
	return loaded;
}

static void
replay_free(struct replay_file *files, int n)
{
	for (int i = 0; i < n; i++)
		free(files[i].data);
}

int
replay_corpus(const char *name, replay_fn fn)
{
	static struct replay_file files[REPLAY_FILES_MAX];
	int n = replay_load(name, files);

	for (int i = 0; i < n; i++)
		replay_one(fn, files[i].data, files[i].len);
	replay_free(files, n);
	return n;
}

uint64_t
replay_rand(uint64_t *state)
{
	uint64_t x = *state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *state = x;
}

/* Bytes that matter to some target: separators, quotes, digits, ends. */
static const uint8_t replay_magic[] = { '\n', '\n', '"', ';', '=', ':', '{',
    '}', '[', ']', '(', ')', ',', '0', '9', '-', 'L', 'x', '#', '/', '*',
    '@', '\\', ' ', 0x00, 0x7f, 0xff, 0x80, 0x10, 0x13 };

int
replay_mutations(const char *name, replay_fn fn, int n, uint64_t seed)
{
	static struct replay_file files[REPLAY_FILES_MAX];
	static uint8_t buf[2 * REPLAY_INPUT_MAX];
	uint64_t s = seed != 0 ? seed : 0x9e3779b97f4a7c15ULL;
	int nfiles = replay_load(name, files), run = 0;

	for (int i = 0; i < n && nfiles > 0; i++) {
		const struct replay_file *f = &files[replay_rand(&s) %
		    (uint64_t)nfiles];
		size_t len = f->len, k;
		int edits = 1 + (int)(replay_rand(&s) % 4);

		memcpy(buf, f->data, len);
		while (edits-- > 0) {
			k = len > 0 ? replay_rand(&s) % len : 0;
			switch (replay_rand(&s) % 6) {
			case 0:		/* flip a bit */
				if (len > 0)
					buf[k] ^= (uint8_t)(1u <<
					    (replay_rand(&s) % 8));
				break;
			case 1:		/* a byte that matters */
				if (len > 0)
					buf[k] = replay_magic[replay_rand(&s) %
					    sizeof(replay_magic)];
				break;
			case 2:		/* insert one */
				if (len < REPLAY_INPUT_MAX) {
					memmove(buf + k + 1, buf + k, len - k);
					buf[k] = replay_magic[replay_rand(&s) %
					    sizeof(replay_magic)];
					len++;
				}
				break;
			case 3:		/* remove one */
				if (len > 0) {
					memmove(buf + k, buf + k + 1,
					    len - k - 1);
					len--;
				}
				break;
			case 4:		/* cut short */
				len = k;
				break;
			default: {	/* splice in the end of another file */
				const struct replay_file *g =
				    &files[replay_rand(&s) % (uint64_t)nfiles];
				size_t from = g->len > 0 ?
				    replay_rand(&s) % g->len : 0;
				size_t m = g->len - from;

				if (k + m > REPLAY_INPUT_MAX)
					m = REPLAY_INPUT_MAX - k;
				memcpy(buf + k, g->data + from, m);
				len = k + m;
				break;
			}
			}
		}
		replay_one(fn, buf, len);
		run++;
	}
	replay_free(files, nfiles);
	return run;
}

int
replay_write(const char *dir, const char *name, const void *data,
    size_t size)
{
	char path[1024];
	FILE *f;
	int rc = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((f = fopen(path, "wb")) == NULL) {
		perror(path);
		return -1;
	}
	if (fwrite(data, 1, size, f) != size)
		rc = -1;
	if (fclose(f) != 0)
		rc = -1;
	if (rc < 0)
		perror(path);
	return rc;
}
