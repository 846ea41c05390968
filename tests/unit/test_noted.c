/*
 * test_noted: fs/noted.c, what a live delivery round looks at.  Each device
 * comes once a take however often it is noted; a take leaves the set
 * empty, and what is noted after it goes to the next; the firehose and
 * "everything" are kept apart; device indexes far apart and thousands of
 * devices grow the set as they come; a thread noting while another takes
 * loses nothing and doubles nothing.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "noted.h"
#include "unit.h"

static int
has(const struct noted_set *ns, uint32_t idx)
{
	int n = 0;

	for (size_t i = 0; i < ns->n; i++)
		n += ns->dev[i] == idx;
	return n;
}

static void
test_once_a_take(void)
{
	struct noted t;
	struct noted_set ns;

	noted_init(&t);
	noted_take(&t, &ns);
	CHECK_EQ_INT(ns.n, 0);
	CHECK(!ns.firehose && !ns.all);

	for (int i = 0; i < 5; i++) {
		noted_device(&t, 7);
		noted_device(&t, 3);
	}
	noted_device(&t, 100000);	/* far beyond the first ones */
	noted_take(&t, &ns);
	CHECK_EQ_INT(ns.n, 3);
	CHECK_EQ_INT(has(&ns, 7), 1);
	CHECK_EQ_INT(has(&ns, 3), 1);
	CHECK_EQ_INT(has(&ns, 100000), 1);
	CHECK(!ns.firehose && !ns.all);

	/* the taken set stays readable while the next one fills */
	noted_device(&t, 7);
	noted_firehose(&t);
	CHECK_EQ_INT(has(&ns, 3), 1);
	noted_take(&t, &ns);
	CHECK_EQ_INT(ns.n, 1);
	CHECK_EQ_INT(has(&ns, 7), 1);
	CHECK(ns.firehose && !ns.all);

	noted_take(&t, &ns);
	CHECK_EQ_INT(ns.n, 0);
	CHECK(!ns.firehose && !ns.all);

	/* everything: no list, and the next take is back to devices */
	noted_device(&t, 1);
	noted_everything(&t);
	noted_device(&t, 2);
	noted_take(&t, &ns);
	CHECK(ns.all);
	CHECK_EQ_INT(ns.n, 0);
	noted_device(&t, 2);
	noted_take(&t, &ns);
	CHECK(!ns.all);
	CHECK_EQ_INT(ns.n, 1);
	CHECK_EQ_INT(has(&ns, 2), 1);
	noted_fini(&t);
}

static void
test_many_devices(void)
{
	struct noted t;
	struct noted_set ns;
	size_t sum = 0;

	noted_init(&t);
	for (int round = 0; round < 3; round++)
		for (uint32_t i = 0; i < 20000; i++)
			noted_device(&t, (i * 7919u) % 20000);
	noted_take(&t, &ns);
	CHECK_EQ_INT(ns.n, 20000);
	for (size_t i = 0; i < ns.n; i++)
		sum += ns.dev[i];
	CHECK(sum == (size_t)20000 * 19999 / 2);
	noted_fini(&t);
}

#define RACE_DEVICES	64
#define RACE_NOTES	200000

struct race {
	struct noted *t;
	atomic_int done;
};

static void *
race_noter(void *arg)
{
	struct race *r = arg;

	for (int i = 0; i < RACE_NOTES; i++)
		noted_device(r->t, (uint32_t)(i % RACE_DEVICES));
	atomic_store(&r->done, 1);
	return NULL;
}

/*
 * One thread notes while another takes, as committers and the delivery
 * thread do: no take holds a device twice, and every device noted is in
 * some take, the last one (after the noter stopped) included.
 */
static void
test_noting_while_taking(void)
{
	struct noted t;
	struct noted_set ns;
	struct race r = { .t = &t };
	int seen[RACE_DEVICES] = { 0 };
	size_t dup = 0;
	pthread_t th;
	int last = 0;

	noted_init(&t);
	CHECK_EQ_INT(pthread_create(&th, NULL, race_noter, &r), 0);
	while (!last) {
		int twice[RACE_DEVICES] = { 0 };

		last = atomic_load(&r.done);	/* then one more take */
		noted_take(&t, &ns);
		for (size_t i = 0; i < ns.n; i++) {
			dup += twice[ns.dev[i]]++ > 0;
			seen[ns.dev[i]]++;
		}
	}
	pthread_join(th, NULL);
	CHECK(dup == 0);
	for (int d = 0; d < RACE_DEVICES; d++)
		CHECK(seen[d] > 0);
	noted_take(&t, &ns);
	CHECK_EQ_INT(ns.n, 0);
	noted_fini(&t);
}

void
unit_main(void)
{
	test_once_a_take();
	test_many_devices();
	test_noting_while_taking();
}
