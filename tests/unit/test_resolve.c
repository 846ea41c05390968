/*
 * test_resolve: net/resolve, with its loop run inline (WAIT_FOR turns it
 * until a condition holds or a deadline passes).  Names that reach a real
 * resolver are only "127.0.0.1" and "localhost" (/etc/hosts): nothing is
 * sent anywhere.  Slow and stuck lookups are a gated lookup function
 * (resolve_set_lookup) that waits until the test opens the gate.
 *
 * Covered: answers come through resolve_dispatch(), never from inside
 * resolve_start(); a name asked twice is -EALREADY until its answer is
 * dispatched, then may be asked again; empty and over-long names; a
 * failed lookup; RESOLVE_MAX_PENDING names out, the next -EAGAIN, and at
 * most RESOLVE_THREADS lookups at once; resolve_close() with lookups
 * stuck and requests queued returns at once, no answer is delivered
 * after it, its loop can be closed, and the abandoned workers clean up
 * and exit when their lookups return (the sanitizer and valgrind runs
 * check the memory).
 */
#include <dirent.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loop.h"
#include "resolve.h"
#include "unit.h"

#define WAIT_MS		10000

static struct loop *L;

#define WAIT_FOR(cond, ms) do {						\
	uint64_t deadline_ = loop_now_ms() + (ms);			\
	while (!(cond) && loop_now_ms() < deadline_)			\
		loop_run_once(L, 10, NULL);				\
	CHECK(cond);							\
} while (0)

/* Answers received, by the callback. */
struct seen {
	int n;
	char name[RESOLVE_MAX_PENDING + 8][RESOLVE_NAME_MAX + 1];
	int status[RESOLVE_MAX_PENDING + 8];
	bool has_loopback[RESOLVE_MAX_PENDING + 8];
	bool in_start;			/* set around resolve_start() */
	bool from_start;		/* an answer came from inside it */
};

static void
on_answer(void *arg, const struct resolve_answer *a)
{
	struct seen *s = arg;
	int i = s->n;

	if (s->in_start)
		s->from_start = true;
	if (i >= RESOLVE_MAX_PENDING + 8)
		return;
	snprintf(s->name[i], sizeof(s->name[i]), "%s", a->name);
	s->status[i] = a->status;
	for (size_t k = 0; k < a->naddrs; k++)
		if (strcmp(a->addrs[k], "127.0.0.1") == 0)
			s->has_loopback[i] = true;
	s->n++;
}

static void
wake(void *arg)
{
	resolve_dispatch(arg);
}

static int
start(struct resolver *r, struct seen *s, const char *name)
{
	int rc;

	s->in_start = true;
	rc = resolve_start(r, name);
	s->in_start = false;
	return rc;
}

static int
find(const struct seen *s, const char *name)
{
	for (int i = 0; i < s->n; i++)
		if (strcmp(s->name[i], name) == 0)
			return i;
	return -1;
}

/* The gate: lookups wait in it until it opens. */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool open;
	int inside;		/* lookups waiting in it now */
	int entered, returned;
} gate = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false,
    0, 0, 0 };

static int
gated_lookup(const char *name, const struct addrinfo *hints,
    struct addrinfo **res)
{
	int rc;

	pthread_mutex_lock(&gate.lock);
	gate.entered++;
	gate.inside++;
	while (!gate.open)
		pthread_cond_wait(&gate.cond, &gate.lock);
	gate.inside--;
	pthread_mutex_unlock(&gate.lock);
	if (strncmp(name, "fail", 4) == 0)
		rc = EAI_NONAME;
	else
		rc = getaddrinfo("127.0.0.1", NULL, hints, res);
	pthread_mutex_lock(&gate.lock);
	gate.returned++;
	pthread_cond_broadcast(&gate.cond);
	pthread_mutex_unlock(&gate.lock);
	return rc;
}

static int
gate_get(const int *field)
{
	int v;

	pthread_mutex_lock(&gate.lock);
	v = *field;
	pthread_mutex_unlock(&gate.lock);
	return v;
}

static void
gate_set(bool open)
{
	pthread_mutex_lock(&gate.lock);
	gate.open = open;
	pthread_cond_broadcast(&gate.cond);
	pthread_mutex_unlock(&gate.lock);
}

/* Threads of this process (the entries of /proc/self/task). */
static int
threads(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *de;
	int n = 0;

	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

static struct resolver *
open_resolver(struct loop *l, struct seen *s)
{
	struct resolver *r;
	struct err e;

	if (resolve_open(&r, l, on_answer, s, &e) < 0) {
		fprintf(stderr, "resolve_open: %s\n", e.msg);
		exit(2);
	}
	loop_on_wake(l, wake, r);
	return r;
}

static void
test_real_names(void)
{
	static struct seen s;
	struct resolver *r = open_resolver(L, &s);
	char longname[RESOLVE_NAME_MAX + 2];
	int i;

	CHECK_EQ_INT(start(r, &s, "127.0.0.1"), 0);
	CHECK_EQ_INT(start(r, &s, "127.0.0.1"), -EALREADY);
	CHECK_EQ_INT(start(r, &s, "localhost"), 0);
	CHECK_EQ_INT(start(r, &s, ""), -EINVAL);
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	CHECK_EQ_INT(start(r, &s, longname), -ENAMETOOLONG);
	CHECK_EQ_INT(resolve_pending(r), 2);
	WAIT_FOR(s.n == 2, WAIT_MS);
	CHECK(!s.from_start);
	CHECK_EQ_INT(resolve_pending(r), 0);
	for (int k = 0; k < 2; k++) {
		i = find(&s, k == 0 ? "127.0.0.1" : "localhost");
		CHECK(i >= 0);
		if (i >= 0) {
			CHECK_EQ_INT(s.status[i], 0);
			CHECK(s.has_loopback[i]);
		}
	}
	/* answered: the same name may be asked again */
	CHECK_EQ_INT(start(r, &s, "127.0.0.1"), 0);
	WAIT_FOR(s.n == 3, WAIT_MS);
	resolve_close(r);
	loop_on_wake(L, NULL, NULL);
}

static void
test_bounds(void)
{
	static struct seen s;
	struct resolver *r = open_resolver(L, &s);
	char name[32];
	int ok = 0, i;

	resolve_set_lookup(r, gated_lookup);
	gate_set(false);
	for (int k = 0; k < RESOLVE_MAX_PENDING; k++) {
		snprintf(name, sizeof(name), "%s%d.test", k == 0 ? "fail" :
		    "name", k);
		ok += start(r, &s, name) == 0;
	}
	CHECK_EQ_INT(ok, RESOLVE_MAX_PENDING);
	CHECK_EQ_INT(start(r, &s, "one-too-many.test"), -EAGAIN);
	CHECK_EQ_INT(start(r, &s, "name5.test"), -EALREADY);
	/* every worker is inside a lookup, and no more than that */
	WAIT_FOR(gate_get(&gate.inside) == RESOLVE_THREADS, WAIT_MS);
	for (int k = 0; k < 20; k++)
		loop_run_once(L, 5, NULL);
	CHECK_EQ_INT(gate_get(&gate.inside), RESOLVE_THREADS);
	CHECK_EQ_INT(s.n, 0);
	gate_set(true);
	WAIT_FOR(s.n == RESOLVE_MAX_PENDING, WAIT_MS);
	CHECK(!s.from_start);
	CHECK_EQ_INT(resolve_pending(r), 0);
	i = find(&s, "fail0.test");
	CHECK(i >= 0);
	if (i >= 0)
		CHECK_EQ_INT(s.status[i], EAI_NONAME);
	i = find(&s, "name7.test");
	CHECK(i >= 0);
	if (i >= 0) {
		CHECK_EQ_INT(s.status[i], 0);
		CHECK(s.has_loopback[i]);
	}
	/* room again */
	CHECK_EQ_INT(start(r, &s, "one-too-many.test"), 0);
	WAIT_FOR(s.n == RESOLVE_MAX_PENDING + 1, WAIT_MS);
	resolve_close(r);
	loop_on_wake(L, NULL, NULL);
}

static void
test_close_abandons(void)
{
	static struct seen s;
	struct loop *l2;
	struct resolver *r;
	struct err e;
	char name[32];
	int entered, returned;
	uint64_t t;

	if (loop_open(&l2, &e) < 0) {
		fprintf(stderr, "loop_open: %s\n", e.msg);
		exit(2);
	}
	r = open_resolver(l2, &s);
	resolve_set_lookup(r, gated_lookup);
	gate_set(false);
	entered = gate_get(&gate.entered);
	returned = gate_get(&gate.returned);
	/* RESOLVE_THREADS stuck in lookups, two more queued behind them */
	for (int k = 0; k < RESOLVE_THREADS + 2; k++) {
		snprintf(name, sizeof(name), "stuck%d.test", k);
		CHECK_EQ_INT(resolve_start(r, name), 0);
	}
	t = loop_now_ms();
	while (gate_get(&gate.entered) < entered + RESOLVE_THREADS &&
	    loop_now_ms() < t + WAIT_MS)
		loop_run_once(l2, 10, NULL);
	CHECK_EQ_INT(gate_get(&gate.entered), entered + RESOLVE_THREADS);
	t = loop_now_ms();
	resolve_close(r);
	CHECK(loop_now_ms() - t < 1000);
	/* nobody may wake this loop any more */
	loop_on_wake(l2, NULL, NULL);
	loop_close(l2);
	gate_set(true);
	/* the abandoned lookups return and their workers clean up */
	pthread_mutex_lock(&gate.lock);
	while (gate.returned < returned + RESOLVE_THREADS)
		pthread_cond_wait(&gate.cond, &gate.lock);
	pthread_mutex_unlock(&gate.lock);
	CHECK_EQ_INT(gate_get(&gate.entered), entered + RESOLVE_THREADS);
	/* and exit: this thread is the only one left */
	t = loop_now_ms();
	while (threads() > 1 && loop_now_ms() < t + WAIT_MS)
		sched_yield();
	CHECK_EQ_INT(threads(), 1);
	CHECK_EQ_INT(s.n, 0);
}

void
unit_main(void)
{
	struct err e;

	if (loop_open(&L, &e) < 0) {
		fprintf(stderr, "loop_open: %s\n", e.msg);
		exit(2);
	}
	test_real_names();
	test_bounds();
	test_close_abandons();
	loop_close(L);
}
