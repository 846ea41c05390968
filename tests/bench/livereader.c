/*
 * livereader: the reader process of the latency workloads of the
 * benchmark (tests/bench/bench.py).
 *
 * Opens PATH (a live pipe, or "-" for stdin, the pipe(2) baseline), says
 * "ready" on stdout, then reads COUNT events with 128 KiB reads (what `cat`
 * asks for; --read sets another size).  Each event is a line "<seq> <CLOCK_MONOTONIC ns> x...x" of
 * exactly --len bytes with its newline, written by the bench just before
 * its write(); the latency of an event is the time its read() returned
 * minus that stamp.  Every event is checked: sequence numbers 0, 1, 2, ...
 * with no gap, duplicate or reordering, and every byte of the line.
 * A line with the time stamp 0 and the next sequence number is the end
 * marker: the reader stops there (COUNT 0: read until the end marker).
 *
 *	livereader [--len BYTES] [--read BYTES] [--timeout S] [--count]
 *	    [--linger] PATH|- COUNT
 *
 * --count: a reader as cheap as `cat`: only the last whole line of each
 * read is parsed and checked (its sequence number says none was missed
 * before it); no latencies.
 *
 * --linger: after printing the result, wait to be killed (or for the
 * --timeout) instead of exiting.  Two hundred readers that exit as soon
 * as they have the end marker take the CPUs while the others still wait
 * for their last answer, and their latencies would measure those exits.
 *
 * Prints "ok COUNT READS" (READS: the read() calls that gave data) and
 * "hist US:N US:N ..." (latencies in whole
 * microseconds below 10 ms, in 100 µs steps above, everything from 10 s
 * on in one bucket; US is a bucket's lower bound), or
 * "error ..." and exits 1.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LR_READ		(128u << 10)
/*
 * Latency buckets: whole microseconds below 10 ms, then 100 µs wide up to
 * 10 s, then one bucket for everything above.
 */
#define LR_FINE		10000u
#define LR_COARSE	100u
#define LR_TOP		10000000u
#define LR_NBUCKETS	(LR_FINE + (LR_TOP - LR_FINE) / LR_COARSE + 1)

static uint32_t
lr_bucket(uint64_t us)
{
	if (us < LR_FINE)
		return (uint32_t)us;
	if (us >= LR_TOP)
		return LR_NBUCKETS - 1;
	return LR_FINE + (uint32_t)((us - LR_FINE) / LR_COARSE);
}

/* The lower bound of bucket b, in µs. */
static uint64_t
lr_bucket_us(uint32_t b)
{
	if (b < LR_FINE)
		return b;
	return LR_FINE + (uint64_t)(b - LR_FINE) * LR_COARSE;
}

/*
 * What a line's padding must be: memcmp() against it checks a line in a
 * few cycles (a loop over the bytes took 140 ns a line, a third of a
 * reader's CPU in W7), so that parsing 10,000 events a second in each of
 * 200 readers weighs less on what the bench measures.
 */
static char lr_xs[4096];

/*
 * A decimal number without sign or spaces (strtoull() takes those too, at
 * a cost); *end is the first byte after it, p itself when there is no
 * digit.  It stops before a number would overflow.
 */
static unsigned long long
lr_number(const char *p, char **end)
{
	unsigned long long v = 0;

	while (*p >= '0' && *p <= '9' && v <= ULLONG_MAX / 10 - 1)
		v = v * 10 + (unsigned)(*p++ - '0');
	*end = (char *)p;
	return v;
}

static volatile sig_atomic_t lr_timeout;

static void
lr_alarm(int sig)
{
	(void)sig;
	lr_timeout = 1;
}

static uint64_t
lr_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int
lr_fail(unsigned long long got, const char *what)
{
	printf("error after %llu events: %s\n", got, what);
	fflush(stdout);
	return 1;
}

int
main(int argc, char **argv)
{
	static char buf[LR_READ + 4096];
	uint32_t *hist;
	const char *path = NULL;
	unsigned long long count = 0, got = 0, reads = 0;
	size_t len = 100, have = 0, rsize = LR_READ;
	unsigned timeout = 0;
	bool count_only = false, linger = false;
	struct sigaction sa;
	int fd, nargs = 0;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--len") == 0 && i + 1 < argc)
			len = strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--read") == 0 && i + 1 < argc)
			rsize = strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc)
			timeout = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--count") == 0)
			count_only = true;
		else if (strcmp(argv[i], "--linger") == 0)
			linger = true;
		else if (nargs == 0 && (nargs = 1))
			path = argv[i];
		else if (nargs == 1 && (nargs = 2))
			count = strtoull(argv[i], NULL, 10);
		else
			nargs = 3;
	}
	if (nargs != 2 || len < 24 || len > 4096 || rsize < len ||
	    rsize > LR_READ) {
		fprintf(stderr, "usage: livereader [--len BYTES] [--read BYTES] "
		    "[--timeout S] [--count] [--linger] PATH|- COUNT\n");
		return 2;
	}
	memset(lr_xs, 'x', sizeof(lr_xs));
	if ((hist = calloc(LR_NBUCKETS, sizeof(*hist))) == NULL)
		return lr_fail(0, "out of memory");
	if (strcmp(path, "-") == 0)
		fd = 0;
	else if ((fd = open(path, O_RDONLY)) < 0)
		return lr_fail(0, strerror(errno));
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = lr_alarm;	/* no SA_RESTART: read() gives EINTR */
	sigaction(SIGALRM, &sa, NULL);
	if (timeout > 0)
		alarm(timeout);
	printf("ready\n");
	fflush(stdout);

	while (count == 0 || got < count) {
		ssize_t n = read(fd, buf + have, rsize);
		uint64_t now = lr_now_ns();
		size_t start = 0;

		if (n < 0 && errno == EINTR && lr_timeout)
			return lr_fail(got, "timed out");
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return lr_fail(got, strerror(errno));
		if (n == 0)
			return lr_fail(got, "end of file");
		have += (size_t)n;
		reads++;
		if (count_only && have >= len) {
			size_t k = have / len;
			char *l = buf + (k - 1) * len, *end;
			unsigned long long seq, ts;

			if (l[len - 1] != '\n')
				return lr_fail(got, "a line of the wrong length");
			seq = lr_number(l, &end);
			ts = *end == ' ' ? lr_number(end + 1, &end) : 1;
			if (seq != got + k - 1)
				return lr_fail(got, "events missing or repeated");
			if (ts == 0) {
				if (have > k * len)
					return lr_fail(got, "events after the end");
				got += k - 1;
				goto done;
			}
			got += k;
			start = k * len;
		}
		while (!count_only && have - start >= len) {
			char *l = buf + start, *end;
			unsigned long long seq, ts;
			uint64_t us;

			if (l[len - 1] != '\n')
				return lr_fail(got, "a line of the wrong length");
			seq = lr_number(l, &end);
			if (end == l || *end != ' ')
				return lr_fail(got, "a bad sequence number");
			if (seq != got) {
				char msg[96];

				snprintf(msg, sizeof(msg), "event %llu where %llu "
				    "was due", seq, got);
				return lr_fail(got, msg);
			}
			ts = lr_number(end + 1, &end);
			if (*end != ' ')
				return lr_fail(got, "a bad time stamp");
			end++;
			if (memcmp(end, lr_xs, (size_t)(l + len - 1 - end)) != 0)
				return lr_fail(got, "a corrupt payload");
			if (ts == 0) {
				if (have - start > len)
					return lr_fail(got, "events after the end");
				goto done;
			}
			us = now > ts ? (now - ts) / 1000 : 0;
			hist[lr_bucket(us)]++;
			got++;
			start += len;
		}
		memmove(buf, buf + start, have - start);
		have -= start;
		if (count > 0 && got >= count && have > 0)
			return lr_fail(got, "more than was written");
	}
done:
	printf("ok %llu %llu\nhist", got, reads);
	for (uint32_t i = 0; i < LR_NBUCKETS; i++)
		if (hist[i] != 0)
			printf(" %llu:%u", (unsigned long long)lr_bucket_us(i),
			    hist[i]);
	printf("\n");
	fflush(stdout);
	free(hist);
	while (linger && !lr_timeout)
		pause();
	return 0;
}
