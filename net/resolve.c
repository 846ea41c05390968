/*
 * resolve: see resolve.h.
 *
 * One struct, shared by its owner and the workers and counted: the owner
 * holds a reference until resolve_close(), each worker one until it exits,
 * and the last to let go frees it (curl's threaded resolver does the same
 * with its shared data and "done" flag, so that a lookup that outlives its
 * owner cleans up after itself).  Everything in it but the owner's
 * callback is under its lock.
 *
 * A request is in one of three lists: queued (waiting for a worker),
 * running (a worker is inside its lookup, holding it without the lock)
 * and answered (for resolve_dispatch()).  Asking about a name that is in
 * any of them is -EALREADY, so a name is never resolved twice at once.
 * resolve_close() frees the queued and answered requests, unlinks the
 * running ones and marks the resolver closed: a worker that comes back
 * from its lookup to a closed resolver frees its request, and nothing
 * else.  loop_wake() is only called under the lock and before the close,
 * which is what lets the owner close the loop right after.
 *
 * Workers are made one at a time, when a request is queued and no idle
 * worker is left to take it, up to RESOLVE_THREADS; they wait for work
 * until the close, with every signal blocked (signals are the main
 * thread's business).  At the close the idle ones are joined (they exit
 * at once) and the ones inside a lookup detached.
 */
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include "resolve.h"

struct resolve_req {
	TAILQ_ENTRY(resolve_req) link;
	struct resolve_answer answer;
	char name[RESOLVE_NAME_MAX + 1];
};

TAILQ_HEAD(resolve_list, resolve_req);

struct resolve_worker {
	struct resolver *r;
	pthread_t thread;
	bool alive;			/* started, and neither joined nor
					   abandoned */
	bool busy;			/* inside a lookup */
};

struct resolver {
	/* the owner's, used in the loop's thread only */
	resolve_fn fn;
	void *arg;

	pthread_mutex_t lock;
	pthread_cond_t work;		/* something queued, or the close */
	struct loop *loop;		/* woken until the close */
	resolve_lookup_fn lookup;
	unsigned refs;			/* the owner until the close; workers */
	bool closed;
	struct resolve_list queued, running, answered;
	size_t nqueued;
	size_t nreqs;			/* in all three lists */
	unsigned nidle;			/* workers waiting for work */
	struct resolve_worker workers[RESOLVE_THREADS];
};

static int
resolve_getaddrinfo(const char *name, const struct addrinfo *hints,
    struct addrinfo **res)
{
	return getaddrinfo(name, NULL, hints, res);
}

int
resolve_open(struct resolver **out, struct loop *l, resolve_fn fn,
    void *arg, struct err *e)
{
	struct resolver *r;

	*out = NULL;
	if ((r = calloc(1, sizeof(*r))) == NULL)
		return err_set(e, -ENOMEM, "resolver: out of memory");
	r->fn = fn;
	r->arg = arg;
	r->loop = l;
	r->lookup = resolve_getaddrinfo;
	r->refs = 1;
	TAILQ_INIT(&r->queued);
	TAILQ_INIT(&r->running);
	TAILQ_INIT(&r->answered);
	for (size_t i = 0; i < RESOLVE_THREADS; i++)
		r->workers[i].r = r;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->work, NULL);
	*out = r;
	return 0;
}

void
resolve_set_lookup(struct resolver *r, resolve_lookup_fn fn)
{
	pthread_mutex_lock(&r->lock);
	r->lookup = fn != NULL ? fn : resolve_getaddrinfo;
	pthread_mutex_unlock(&r->lock);
}

static void
resolve_free(struct resolver *r)
{
	pthread_cond_destroy(&r->work);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

/* Drops one reference; the caller holds the lock, which this releases. */
static void
resolve_unref_unlock(struct resolver *r)
{
	bool last = --r->refs == 0;

	pthread_mutex_unlock(&r->lock);
	if (last)
		resolve_free(r);
}

/* The lookup itself, without the lock: fills q->answer. */
static void
resolve_lookup(resolve_lookup_fn lookup, struct resolve_req *q)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC,
	    .ai_socktype = SOCK_STREAM };
	struct resolve_answer *a = &q->answer;
	struct addrinfo *res = NULL;
	char num[NI_MAXHOST];

	a->naddrs = 0;
	if ((a->status = lookup(q->name, &hints, &res)) != 0)
		return;
	for (struct addrinfo *ai = res; ai != NULL &&
	    a->naddrs < RESOLVE_MAX_ADDRS; ai = ai->ai_next) {
		bool seen = false;

		if (getnameinfo(ai->ai_addr, ai->ai_addrlen, num, sizeof(num),
		    NULL, 0, NI_NUMERICHOST) != 0 ||
		    strlen(num) >= RESOLVE_ADDR_MAX)
			continue;
		for (size_t i = 0; i < a->naddrs && !seen; i++)
			seen = strcmp(a->addrs[i], num) == 0;
		if (!seen)
			memcpy(a->addrs[a->naddrs++], num, strlen(num) + 1);
	}
	freeaddrinfo(res);
	if (a->naddrs == 0)
		a->status = EAI_NONAME;
}

static void *
resolve_worker_main(void *arg)
{
	struct resolve_worker *w = arg;
	struct resolver *r = w->r;
	struct resolve_req *q;
	resolve_lookup_fn lookup;

	pthread_mutex_lock(&r->lock);
	for (;;) {
		while (!r->closed && TAILQ_EMPTY(&r->queued)) {
			r->nidle++;
			pthread_cond_wait(&r->work, &r->lock);
			r->nidle--;
		}
		if (r->closed)
			break;
		q = TAILQ_FIRST(&r->queued);
		TAILQ_REMOVE(&r->queued, q, link);
		r->nqueued--;
		TAILQ_INSERT_TAIL(&r->running, q, link);
		w->busy = true;
		lookup = r->lookup;
		pthread_mutex_unlock(&r->lock);

		resolve_lookup(lookup, q);

		pthread_mutex_lock(&r->lock);
		w->busy = false;
		if (r->closed) {
			/* the close unlinked it and left it to us */
			free(q);
			break;
		}
		TAILQ_REMOVE(&r->running, q, link);
		TAILQ_INSERT_TAIL(&r->answered, q, link);
		loop_wake(r->loop);
	}
	resolve_unref_unlock(r);
	return NULL;
}

/* A worker for what is queued, if none is idle; under the lock. */
static int
resolve_spawn(struct resolver *r)
{
	struct resolve_worker *w = NULL;
	sigset_t all, old;
	int rc;

	if (r->nidle >= r->nqueued)
		return 0;
	for (size_t i = 0; i < RESOLVE_THREADS && w == NULL; i++)
		if (!r->workers[i].alive)
			w = &r->workers[i];
	if (w == NULL)
		return 0;	/* all busy: it waits its turn */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&w->thread, NULL, resolve_worker_main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0)
		return -rc;
	w->alive = true;
	w->busy = false;
	r->refs++;
	return 0;
}

static bool
resolve_listed(const struct resolve_list *list, const char *name)
{
	const struct resolve_req *q;

	TAILQ_FOREACH(q, list, link)
		if (strcmp(q->name, name) == 0)
			return true;
	return false;
}

static unsigned
resolve_alive(const struct resolver *r)
{
	unsigned n = 0;

	for (size_t i = 0; i < RESOLVE_THREADS; i++)
		n += r->workers[i].alive;
	return n;
}

int
resolve_start(struct resolver *r, const char *name)
{
	size_t len = strlen(name);
	struct resolve_req *q;
	int rc = 0;

	if (len == 0)
		return -EINVAL;
	if (len > RESOLVE_NAME_MAX)
		return -ENAMETOOLONG;
	pthread_mutex_lock(&r->lock);
	if (resolve_listed(&r->queued, name) ||
	    resolve_listed(&r->running, name) ||
	    resolve_listed(&r->answered, name)) {
		rc = -EALREADY;
		goto out;
	}
	if (r->nreqs >= RESOLVE_MAX_PENDING) {
		rc = -EAGAIN;
		goto out;
	}
	if ((q = calloc(1, sizeof(*q))) == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	memcpy(q->name, name, len + 1);
	TAILQ_INSERT_TAIL(&r->queued, q, link);
	r->nqueued++;
	r->nreqs++;
	if (resolve_spawn(r) < 0 && resolve_alive(r) == 0) {
		/* nobody would ever take it */
		TAILQ_REMOVE(&r->queued, q, link);
		r->nqueued--;
		r->nreqs--;
		free(q);
		rc = -EAGAIN;
		goto out;
	}
	pthread_cond_signal(&r->work);
out:
	pthread_mutex_unlock(&r->lock);
	return rc;
}

size_t
resolve_pending(struct resolver *r)
{
	size_t n;

	pthread_mutex_lock(&r->lock);
	n = r->nreqs;
	pthread_mutex_unlock(&r->lock);
	return n;
}

void
resolve_dispatch(struct resolver *r)
{
	struct resolve_list ready = TAILQ_HEAD_INITIALIZER(ready);
	struct resolve_req *q;

	pthread_mutex_lock(&r->lock);
	while ((q = TAILQ_FIRST(&r->answered)) != NULL) {
		TAILQ_REMOVE(&r->answered, q, link);
		TAILQ_INSERT_TAIL(&ready, q, link);
		r->nreqs--;
	}
	pthread_mutex_unlock(&r->lock);
	while ((q = TAILQ_FIRST(&ready)) != NULL) {
		TAILQ_REMOVE(&ready, q, link);
		q->answer.name = q->name;
		r->fn(r->arg, &q->answer);
		free(q);
	}
}

void
resolve_close(struct resolver *r)
{
	pthread_t join[RESOLVE_THREADS];
	struct resolve_req *q;
	size_t njoin = 0;

	if (r == NULL)
		return;
	pthread_mutex_lock(&r->lock);
	r->closed = true;
	r->loop = NULL;
	while ((q = TAILQ_FIRST(&r->queued)) != NULL) {
		TAILQ_REMOVE(&r->queued, q, link);
		free(q);
	}
	while ((q = TAILQ_FIRST(&r->answered)) != NULL) {
		TAILQ_REMOVE(&r->answered, q, link);
		free(q);
	}
	/* each running request is its worker's to free */
	while ((q = TAILQ_FIRST(&r->running)) != NULL)
		TAILQ_REMOVE(&r->running, q, link);
	r->nqueued = r->nreqs = 0;
	for (size_t i = 0; i < RESOLVE_THREADS; i++) {
		struct resolve_worker *w = &r->workers[i];

		if (!w->alive)
			continue;
		w->alive = false;
		if (w->busy)
			pthread_detach(w->thread);	/* abandoned */
		else
			join[njoin++] = w->thread;
	}
	pthread_cond_broadcast(&r->work);
	pthread_mutex_unlock(&r->lock);
	/* idle workers see the close as soon as they get the lock */
	for (size_t i = 0; i < njoin; i++)
		pthread_join(join[i], NULL);
	pthread_mutex_lock(&r->lock);
	resolve_unref_unlock(r);
}
