/*
 * loop: see loop.h.  One epoll instance; each registered descriptor has a
 * small handle whose address is the epoll data, so an event always finds
 * its callback, and a handle removed in the middle of a round is only
 * marked dead (its pending events are skipped) and freed when the round
 * ends.  The eventfd is registered with a NULL handle.
 *
 * Timers live in a binary min-heap ordered by (deadline, arming sequence);
 * each timer knows its slot, so cancelling is O(log n).  The heap's array
 * is grown when a timer is created, never when one is armed, which is why
 * arming cannot fail.  A timer remembers the round it was armed in and does
 * not fire in that round.
 *
 * Deferred tasks form a FIFO list; at the end of a round the list is taken
 * whole and run, and posts made meanwhile wait for the next round.  A task
 * may delete itself or another task while the list runs (the running list
 * is searched and unlinked).
 *
 * loop_wake() and loop_stop() set an atomic flag and write the eventfd;
 * nothing else is shared between threads.
 */
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "loop.h"

#define LOOP_EVENTS	64		/* per epoll_wait */
#define LOOP_NO_SLOT	SIZE_MAX

struct loop_fd {
	struct loop *l;
	int fd;
	uint32_t events;
	loop_fd_fn fn;
	void *arg;
	bool dead;
	struct loop_fd *next_dead;
};

struct loop_timer {
	struct loop *l;
	loop_timer_fn fn;
	void *arg;
	uint64_t deadline;	/* loop_now_ms() at which it is due */
	uint64_t seq;		/* arming order, for ties */
	uint64_t round;		/* the round it was armed in */
	size_t slot;		/* index in l->heap, or LOOP_NO_SLOT */
};

struct loop_task {
	struct loop *l;
	loop_task_fn fn;
	void *arg;
	struct loop_task *next;
	bool posted;
	bool oneshot;		/* loop_defer(): freed when run */
};

struct loop {
	int epfd;
	int evfd;
	atomic_bool stop;	/* set by loop_stop() */
	atomic_bool woken;	/* set by loop_wake() */
	loop_wake_fn wake_fn;
	void *wake_arg;

	uint64_t round;		/* rounds started */
	uint64_t seq;		/* timers armed */
	struct loop_timer **heap;
	size_t nheap;		/* armed timers */
	size_t ntimers;		/* existing timers; heap capacity >= this */
	size_t capheap;

	struct loop_task *head, *tail;	/* posted */
	struct loop_task *running;	/* being run this round */

	struct loop_fd *dead;		/* removed, to free at round end */
};

uint64_t
loop_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int
loop_open(struct loop **out, struct err *e)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	struct loop *l;
	int saved;

	*out = NULL;
	if ((l = calloc(1, sizeof(*l))) == NULL)
		return err_set(e, -ENOMEM, "event loop: out of memory");
	l->evfd = -1;
	atomic_init(&l->stop, false);
	atomic_init(&l->woken, false);
	if ((l->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
	    (l->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0 ||
	    epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->evfd, &ev) < 0) {
		saved = errno;
		if (l->evfd >= 0)
			close(l->evfd);
		if (l->epfd >= 0)
			close(l->epfd);
		free(l);
		return err_set(e, -saved, "event loop: %s", strerror(saved));
	}
	*out = l;
	return 0;
}

static void
loop_free_dead(struct loop *l)
{
	struct loop_fd *h;

	while ((h = l->dead) != NULL) {
		l->dead = h->next_dead;
		free(h);
	}
}

static void
loop_run_tasks(struct loop *l)
{
	struct loop_task *t;
	loop_task_fn fn;
	void *arg;

	l->running = l->head;
	l->head = l->tail = NULL;
	while ((t = l->running) != NULL) {
		l->running = t->next;
		t->next = NULL;
		t->posted = false;
		fn = t->fn;
		arg = t->arg;
		if (t->oneshot)
			free(t);
		fn(arg);
	}
}

void
loop_close(struct loop *l)
{
	if (l == NULL)
		return;
	/* let ended connections finish; a task may post another */
	for (int i = 0; i < 100 && l->head != NULL; i++)
		loop_run_tasks(l);
	loop_free_dead(l);
	if (l->ntimers != 0 || l->head != NULL)
		log_warnx("event loop closed with %zu timers and tasks left",
		    l->ntimers);
	free(l->heap);
	close(l->evfd);
	close(l->epfd);
	free(l);
}

static void
loop_kick(struct loop *l)
{
	uint64_t one = 1;

	/* EAGAIN means the counter is already non-zero: awake anyway */
	(void)!write(l->evfd, &one, sizeof(one));
}

void
loop_stop(struct loop *l)
{
	atomic_store(&l->stop, true);
	loop_kick(l);
}

void
loop_wake(struct loop *l)
{
	atomic_store(&l->woken, true);
	loop_kick(l);
}

void
loop_on_wake(struct loop *l, loop_wake_fn fn, void *arg)
{
	l->wake_fn = fn;
	l->wake_arg = arg;
}

/*
 * Descriptors.
 */

int
loop_fd_add(struct loop_fd **out, struct loop *l, int fd, uint32_t events,
    loop_fd_fn fn, void *arg, struct err *e)
{
	struct epoll_event ev = { .events = events };
	struct loop_fd *h;
	int saved;

	*out = NULL;
	if ((h = calloc(1, sizeof(*h))) == NULL)
		return err_set(e, -ENOMEM, "event loop: out of memory");
	h->l = l;
	h->fd = fd;
	h->events = events;
	h->fn = fn;
	h->arg = arg;
	ev.data.ptr = h;
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		saved = errno;
		free(h);
		return err_set(e, -saved, "event loop: add fd %d: %s", fd,
		    strerror(saved));
	}
	*out = h;
	return 0;
}

int
loop_fd_mod(struct loop_fd *h, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = h };

	if (h->dead)
		return -EBADF;
	if (events == h->events)
		return 0;
	if (epoll_ctl(h->l->epfd, EPOLL_CTL_MOD, h->fd, &ev) < 0)
		return -errno;
	h->events = events;
	return 0;
}

uint32_t
loop_fd_events(const struct loop_fd *h)
{
	return h->events;
}

void
loop_fd_del(struct loop_fd *h)
{
	if (h == NULL || h->dead)
		return;
	/* fails with EBADF if the fd was closed first: it is gone anyway */
	epoll_ctl(h->l->epfd, EPOLL_CTL_DEL, h->fd, NULL);
	h->dead = true;
	h->next_dead = h->l->dead;
	h->l->dead = h;
}

/*
 * Timers.
 */

static bool
loop_timer_before(const struct loop_timer *a, const struct loop_timer *b)
{
	return a->deadline < b->deadline ||
	    (a->deadline == b->deadline && a->seq < b->seq);
}

static void
loop_heap_set(struct loop *l, size_t i, struct loop_timer *t)
{
	l->heap[i] = t;
	t->slot = i;
}

static void
loop_heap_up(struct loop *l, size_t i)
{
	struct loop_timer *t = l->heap[i];

	while (i > 0) {
		size_t parent = (i - 1) / 2;

		if (!loop_timer_before(t, l->heap[parent]))
			break;
		loop_heap_set(l, i, l->heap[parent]);
		i = parent;
	}
	loop_heap_set(l, i, t);
}

static void
loop_heap_down(struct loop *l, size_t i)
{
	struct loop_timer *t = l->heap[i];

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= l->nheap)
			break;
		if (c + 1 < l->nheap &&
		    loop_timer_before(l->heap[c + 1], l->heap[c]))
			c++;
		if (!loop_timer_before(l->heap[c], t))
			break;
		loop_heap_set(l, i, l->heap[c]);
		i = c;
	}
	loop_heap_set(l, i, t);
}

int
loop_timer_add(struct loop_timer **out, struct loop *l, loop_timer_fn fn,
    void *arg, struct err *e)
{
	struct loop_timer *t, **heap;
	size_t cap;

	*out = NULL;
	if (l->ntimers == l->capheap) {
		cap = l->capheap ? l->capheap * 2 : 16;
		if ((heap = realloc(l->heap, cap * sizeof(*heap))) == NULL)
			return err_set(e, -ENOMEM, "event loop: out of memory");
		l->heap = heap;
		l->capheap = cap;
	}
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return err_set(e, -ENOMEM, "event loop: out of memory");
	t->l = l;
	t->fn = fn;
	t->arg = arg;
	t->slot = LOOP_NO_SLOT;
	l->ntimers++;
	*out = t;
	return 0;
}

void
loop_timer_cancel(struct loop_timer *t)
{
	struct loop *l = t->l;
	size_t i = t->slot;
	struct loop_timer *last;

	if (i == LOOP_NO_SLOT)
		return;
	t->slot = LOOP_NO_SLOT;
	last = l->heap[--l->nheap];
	if (i == l->nheap)
		return;
	loop_heap_set(l, i, last);
	if (i > 0 && loop_timer_before(last, l->heap[(i - 1) / 2]))
		loop_heap_up(l, i);
	else
		loop_heap_down(l, i);
}

void
loop_timer_arm(struct loop_timer *t, uint64_t delay_ms)
{
	struct loop *l = t->l;

	loop_timer_cancel(t);
	t->deadline = loop_now_ms() + delay_ms;
	t->seq = l->seq++;
	t->round = l->round;
	l->heap[l->nheap++] = t;
	loop_heap_up(l, l->nheap - 1);
}

bool
loop_timer_armed(const struct loop_timer *t)
{
	return t->slot != LOOP_NO_SLOT;
}

void
loop_timer_del(struct loop_timer *t)
{
	if (t == NULL)
		return;
	loop_timer_cancel(t);
	t->l->ntimers--;
	free(t);
}

static void
loop_fire_timers(struct loop *l)
{
	uint64_t now = loop_now_ms();
	struct loop_timer *t;

	/*
	 * Timers armed in this round sort after every due timer armed
	 * earlier (their deadline is at least now, their sequence later),
	 * so stopping at the first of them skips none that may fire.
	 */
	while (l->nheap > 0) {
		t = l->heap[0];
		if (t->deadline > now || t->round == l->round)
			break;
		loop_timer_cancel(t);
		t->fn(t->arg);	/* may re-arm or delete t */
	}
}

/*
 * Tasks.
 */

int
loop_task_add(struct loop_task **out, struct loop *l, loop_task_fn fn,
    void *arg, struct err *e)
{
	struct loop_task *t;

	*out = NULL;
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return err_set(e, -ENOMEM, "event loop: out of memory");
	t->l = l;
	t->fn = fn;
	t->arg = arg;
	*out = t;
	return 0;
}

void
loop_task_post(struct loop_task *t)
{
	struct loop *l = t->l;

	if (t->posted)
		return;
	t->posted = true;
	t->next = NULL;
	if (l->tail != NULL)
		l->tail->next = t;
	else
		l->head = t;
	l->tail = t;
}

/* Unlinks t from the list at *head (tail may be NULL); true if found. */
static bool
loop_task_unlink(struct loop_task **head, struct loop_task **tail,
    struct loop_task *t)
{
	struct loop_task *prev = NULL;

	for (struct loop_task **p = head; *p != NULL; p = &(*p)->next) {
		if (*p == t) {
			*p = t->next;
			if (tail != NULL && *tail == t)
				*tail = prev;
			return true;
		}
		prev = *p;
	}
	return false;
}

void
loop_task_del(struct loop_task *t)
{
	struct loop *l;

	if (t == NULL)
		return;
	l = t->l;
	if (t->posted && !loop_task_unlink(&l->head, &l->tail, t))
		loop_task_unlink(&l->running, NULL, t);
	free(t);
}

int
loop_defer(struct loop *l, loop_task_fn fn, void *arg)
{
	struct loop_task *t;

	if (loop_task_add(&t, l, fn, arg, NULL) < 0)
		return -ENOMEM;
	t->oneshot = true;
	loop_task_post(t);
	return 0;
}

/*
 * Rounds.
 */

static int
loop_timeout(struct loop *l, int timeout_ms)
{
	uint64_t now, due, wait;

	if (l->head != NULL)
		return 0;
	if (l->nheap == 0)
		return timeout_ms;
	now = loop_now_ms();
	due = l->heap[0]->deadline;
	wait = due > now ? due - now : 0;
	if (wait > INT_MAX)
		wait = INT_MAX;
	if (timeout_ms >= 0 && (uint64_t)timeout_ms < wait)
		return timeout_ms;
	return (int)wait;
}

int
loop_run_once(struct loop *l, int timeout_ms, struct err *e)
{
	struct epoll_event evs[LOOP_EVENTS];
	uint64_t count;
	int n, saved;

	/* timers armed before this point may fire in this round */
	n = epoll_wait(l->epfd, evs, LOOP_EVENTS, loop_timeout(l, timeout_ms));
	l->round++;
	if (n < 0) {
		saved = errno;
		if (saved != EINTR)
			return err_set(e, -saved, "event loop: epoll_wait: %s",
			    strerror(saved));
		n = 0;
	}
	for (int i = 0; i < n; i++) {
		struct loop_fd *h = evs[i].data.ptr;

		if (h == NULL) {
			(void)!read(l->evfd, &count, sizeof(count));
			continue;
		}
		if (!h->dead)
			h->fn(h->arg, evs[i].events);
	}
	if (atomic_exchange(&l->woken, false) && l->wake_fn != NULL)
		l->wake_fn(l->wake_arg);
	loop_fire_timers(l);
	loop_run_tasks(l);
	loop_free_dead(l);
	return 0;
}

int
loop_run(struct loop *l, struct err *e)
{
	int rc;

	for (;;) {
		if ((rc = loop_run_once(l, -1, e)) < 0)
			return rc;
		if (atomic_exchange(&l->stop, false))
			return 0;
	}
}
