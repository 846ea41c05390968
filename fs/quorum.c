/*
 * quorum: see quorum.h.
 *
 * Waiters are a list in deadline order (every fsync waits the same time,
 * so appending keeps it sorted).  An acknowledgement of device idx walks
 * the list for idx's waiters and answers those it completes; the timer
 * thread sleeps until the first deadline and answers what is due.  The
 * list is bounded by the requests the kernel has outstanding.
 *
 * A signal to the process in fsync() makes the kernel send an interrupt,
 * and for a fatal one (SIGKILL, or SIGINT without a handler) it then waits
 * uninterruptibly until the request is answered (FUSE-NOTES §3): the
 * interrupt callback answers EINTR at once.  A waiter enters the list only
 * after its callback is registered (until then it is "parking", on a list
 * of its own, and an interrupt that comes meanwhile is only noted), so
 * that nobody can answer a request whose registration is still under way.
 * Whoever takes a waiter out of the list under the lock answers it;
 * before replying, fuse_req_interrupt_func(req, NULL, NULL) waits out a
 * callback already running on it (libfuse runs callbacks under req's own
 * lock).  The callback's data is the quorum, never a waiter, which may be
 * freed meanwhile.  Lock order: req's lock (libfuse), then q->lock; no
 * libfuse call is made holding q->lock.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "quorum.h"

struct waiter {
	fuse_req_t req;
	uint32_t idx;
	uint64_t rev;
	struct timespec deadline;	/* CLOCK_MONOTONIC */
	bool intr;			/* interrupted while parking */
	struct waiter *next;
};

struct quorum {
	struct holders *holders;
	char self[JOURNAL_NODE_MAX + 1];
	unsigned k;
	uint32_t timeout_ms;
	quorum_want_fn want;
	void *want_arg;
	pthread_t thread;
	bool started;
	pthread_mutex_t lock;		/* protects what follows */
	pthread_cond_t cv;		/* a first waiter, or closing */
	struct waiter *head, *tail;
	struct waiter *parking;		/* callbacks being registered */
	unsigned waiting;
	bool closing;
	uint64_t met, timeouts, interrupted;
};

static bool
quorum_due(const struct timespec *now, const struct timespec *t)
{
	return now->tv_sec > t->tv_sec ||
	    (now->tv_sec == t->tv_sec && now->tv_nsec >= t->tv_nsec);
}

/* Unlinks w (prev before it, or NULL).  Under lock. */
static void
quorum_unlink(struct quorum *q, struct waiter *prev, struct waiter *w)
{
	if (prev == NULL)
		q->head = w->next;
	else
		prev->next = w->next;
	if (q->tail == w)
		q->tail = prev;
	q->waiting--;
}

/* Answers a waiter taken out of the lists, with no lock held. */
static void
quorum_answer(struct waiter *w, int err)
{
	/* waits out an interrupt callback running on it, and clears it */
	fuse_req_interrupt_func(w->req, NULL, NULL);
	fuse_reply_err(w->req, err);
	free(w);
}

/* The parking list's link to req's waiter, or NULL.  Under lock. */
static struct waiter **
quorum_parked(struct quorum *q, fuse_req_t req)
{
	for (struct waiter **lp = &q->parking; *lp != NULL; lp = &(*lp)->next)
		if ((*lp)->req == req)
			return lp;
	return NULL;
}

/*
 * The interrupt callback: libfuse runs it under req's lock, from the
 * thread that read FUSE_INTERRUPT (holding a reference on req), or inside
 * fuse_req_interrupt_func() when the interrupt came first.
 */
static void
quorum_interrupt(fuse_req_t req, void *arg)
{
	struct quorum *q = arg;
	struct waiter *w, *prev = NULL, **lp;

	pthread_mutex_lock(&q->lock);
	for (w = q->head; w != NULL && w->req != req; w = w->next)
		prev = w;
	if (w != NULL) {
		quorum_unlink(q, prev, w);
		q->interrupted++;
	} else if ((lp = quorum_parked(q, req)) != NULL) {
		(*lp)->intr = true;	/* still parking: quorum_wait() answers it */
	}
	pthread_mutex_unlock(&q->lock);
	/* the callback may reply: libfuse holds a reference on req */
	if (w != NULL) {
		fuse_reply_err(req, EINTR);
		free(w);
	}
}

static void *
quorum_timer(void *arg)
{
	struct quorum *q = arg;

	pthread_mutex_lock(&q->lock);
	while (!q->closing) {
		struct timespec now;

		if (q->head == NULL) {
			pthread_cond_wait(&q->cv, &q->lock);
			continue;
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (!quorum_due(&now, &q->head->deadline)) {
			pthread_cond_timedwait(&q->cv, &q->lock,
			    &q->head->deadline);
			continue;
		}
		while (q->head != NULL && quorum_due(&now, &q->head->deadline)) {
			struct waiter *w = q->head;

			quorum_unlink(q, NULL, w);
			q->timeouts++;
			pthread_mutex_unlock(&q->lock);
			log_warnx("fsync: revision %llu of a device not on %u "
			    "peers after %u ms: ETIMEDOUT (the events stay and "
			    "are delivered later)", (unsigned long long)w->rev,
			    q->k, q->timeout_ms);
			quorum_answer(w, ETIMEDOUT);
			pthread_mutex_lock(&q->lock);
		}
	}
	pthread_mutex_unlock(&q->lock);
	return NULL;
}

int
quorum_open(struct quorum **out, struct holders *h, const char *self,
    unsigned k, uint32_t timeout_ms, quorum_want_fn want, void *want_arg,
    struct err *e)
{
	struct quorum *q;
	pthread_condattr_t ca;
	int rc;

	*out = NULL;
	if ((q = calloc(1, sizeof(*q))) == NULL)
		return err_set(e, -ENOMEM, "out of memory");
	q->holders = h;
	snprintf(q->self, sizeof(q->self), "%s", self);
	q->k = k;
	q->timeout_ms = timeout_ms;
	q->want = want;
	q->want_arg = want_arg;
	pthread_mutex_init(&q->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&q->cv, &ca);
	pthread_condattr_destroy(&ca);
	if ((rc = pthread_create(&q->thread, NULL, quorum_timer, q)) != 0) {
		quorum_close(q);
		return err_set(e, -rc, "quorum thread: %s", strerror(rc));
	}
	q->started = true;
	*out = q;
	return 0;
}

void
quorum_close(struct quorum *q)
{
	struct waiter *w;

	if (q == NULL)
		return;
	pthread_mutex_lock(&q->lock);
	q->closing = true;
	pthread_cond_broadcast(&q->cv);
	pthread_mutex_unlock(&q->lock);
	if (q->started)
		pthread_join(q->thread, NULL);
	while ((w = q->head) != NULL) {
		quorum_unlink(q, NULL, w);
		quorum_answer(w, EIO);
	}
	pthread_cond_destroy(&q->cv);
	pthread_mutex_destroy(&q->lock);
	free(q);
}

void
quorum_wait(struct quorum *q, fuse_req_t req, uint32_t idx, uint64_t rev)
{
	struct waiter *w, **lp;

	if (holders_durable_count(q->holders, idx, rev, q->self) >= q->k) {
		pthread_mutex_lock(&q->lock);
		q->met++;
		pthread_mutex_unlock(&q->lock);
		fuse_reply_err(req, 0);
		return;
	}
	if ((w = calloc(1, sizeof(*w))) == NULL) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	w->req = req;
	w->idx = idx;
	w->rev = rev;
	pthread_mutex_lock(&q->lock);
	w->next = q->parking;
	q->parking = w;
	pthread_mutex_unlock(&q->lock);
	/* may run quorum_interrupt() right here, if the signal came already */
	fuse_req_interrupt_func(req, quorum_interrupt, q);
	pthread_mutex_lock(&q->lock);
	lp = quorum_parked(q, req);	/* only we take it off: it is there */
	*lp = w->next;
	if (w->intr) {
		q->interrupted++;
		pthread_mutex_unlock(&q->lock);
		quorum_answer(w, EINTR);
		return;
	}
	w->next = NULL;
	clock_gettime(CLOCK_MONOTONIC, &w->deadline);
	w->deadline.tv_sec += q->timeout_ms / 1000;
	w->deadline.tv_nsec += (long)(q->timeout_ms % 1000) * 1000000L;
	if (w->deadline.tv_nsec >= 1000000000L) {
		w->deadline.tv_sec++;
		w->deadline.tv_nsec -= 1000000000L;
	}
	if (q->tail == NULL)
		q->head = w;
	else
		q->tail->next = w;
	q->tail = w;
	if (q->waiting++ == 0)
		pthread_cond_signal(&q->cv);
	pthread_mutex_unlock(&q->lock);
	if (q->want != NULL)
		q->want(q->want_arg, idx, rev);
	/* an acknowledgement may have come between the count and the list */
	quorum_acked(q, idx);
}

void
quorum_acked(void *arg, uint32_t idx)
{
	struct quorum *q = arg;
	struct waiter *done = NULL, *prev = NULL, *w, *next;

	pthread_mutex_lock(&q->lock);
	for (w = q->head; w != NULL; w = next) {
		next = w->next;
		if (w->idx == idx && holders_durable_count(q->holders, idx,
		    w->rev, q->self) >= q->k) {
			quorum_unlink(q, prev, w);
			w->next = done;
			done = w;
			q->met++;
		} else {
			prev = w;
		}
	}
	pthread_mutex_unlock(&q->lock);
	for (w = done; w != NULL; w = next) {
		next = w->next;
		quorum_answer(w, 0);
	}
}

void
quorum_stats(struct quorum *q, struct quorum_stats *out)
{
	pthread_mutex_lock(&q->lock);
	out->met = q->met;
	out->timeouts = q->timeouts;
	out->interrupted = q->interrupted;
	out->waiting = q->waiting;
	pthread_mutex_unlock(&q->lock);
}
