/*
 * loop: the net thread's event loop, in the shape of Redis's ae.c: epoll for
 * descriptors, one-shot timers, an eventfd to wake it, and deferred tasks.
 *
 * Threads: a loop belongs to the one thread that runs it.  Every function
 * here must be called from that thread (or before it starts), except
 * loop_wake() and loop_stop(), which any thread may call at any time
 * between loop_open() and loop_close().
 *
 * One dispatch round (loop_run_once) is: wait for descriptors, the first
 * timer's deadline or a wake-up; call the callbacks of ready descriptors;
 * call the wake callback if woken; fire the timers that are due; run the
 * deferred tasks posted so far; free what was unregistered.  Callbacks may
 * add, change and remove anything, including their own registration: a
 * handle removed during a round never has its callback called afterwards,
 * and its memory lives until the round ends.
 *
 * Objects are never freed inside their own callback by the loop's users:
 * a connection that ends posts a task (loop_task_post) to free itself, so
 * the free happens after every callback of the round has returned.
 *
 * Descriptors are level-triggered; events are EPOLL* bits (EPOLLIN,
 * EPOLLOUT, and EPOLLERR / EPOLLHUP, which are always reported).
 */
#ifndef ODOFS_LOOP_H
#define ODOFS_LOOP_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"

struct loop;
struct loop_fd;		/* a registered descriptor */
struct loop_timer;	/* a one-shot timer, re-armable */
struct loop_task;	/* a deferred call, re-postable */

typedef void (*loop_fd_fn)(void *arg, uint32_t events);
typedef void (*loop_timer_fn)(void *arg);
typedef void (*loop_task_fn)(void *arg);
typedef void (*loop_wake_fn)(void *arg);

/* Milliseconds of CLOCK_MONOTONIC. */
uint64_t loop_now_ms(void);

/* Returns 0 and *out (free with loop_close()), or -errno with e. */
int loop_open(struct loop **out, struct err *e);

/*
 * Runs the tasks still posted (so connections that ended finish freeing),
 * then frees the loop.  Every descriptor, timer and task must have been
 * removed first; no thread may call loop_wake() any more.  Accepts NULL.
 */
void loop_close(struct loop *l);

/*
 * Runs rounds until loop_stop().  Returns 0 after a stop, or -errno with e
 * when epoll fails.  The stop request is consumed, so loop_run() may be
 * called again.
 */
int loop_run(struct loop *l, struct err *e);

/*
 * Runs one round, waiting at most timeout_ms (-1: until something happens;
 * 0: not at all) for events.  Returns 0 or -errno with e.  For tests and
 * for callers that drive the loop themselves.
 */
int loop_run_once(struct loop *l, int timeout_ms, struct err *e);

/* Thread-safe: makes loop_run() return after the current round. */
void loop_stop(struct loop *l);

/*
 * Thread-safe and async-signal-safe: makes the loop thread call the wake
 * callback soon.  Wakes that come before the callback runs are coalesced
 * into one call; a wake that comes after it started causes another.
 */
void loop_wake(struct loop *l);

/* Sets the callback of loop_wake() (NULL for none). */
void loop_on_wake(struct loop *l, loop_wake_fn fn, void *arg);

/*
 * Descriptors.  loop_fd_add() registers fd (which the caller keeps owning,
 * and closes only after loop_fd_del()) for events; returns 0 and *out, or
 * -errno with e.  loop_fd_mod() changes the events (0 is allowed: only
 * errors and hang-ups are then reported); returns 0 or -errno.
 * loop_fd_del() unregisters; accepts NULL.
 */
int loop_fd_add(struct loop_fd **out, struct loop *l, int fd,
    uint32_t events, loop_fd_fn fn, void *arg, struct err *e);
int loop_fd_mod(struct loop_fd *h, uint32_t events);
void loop_fd_del(struct loop_fd *h);
uint32_t loop_fd_events(const struct loop_fd *h);

/*
 * Timers, one-shot, millisecond resolution.  loop_timer_add() makes a
 * disarmed timer (0 and *out, or -ENOMEM with e); arming and cancelling it
 * never fail.  loop_timer_arm() (re)arms it to fire delay_ms from now: a
 * timer armed in a round fires in a later round, even with delay 0, so a
 * callback that re-arms its own timer cannot spin the loop.  Timers due at
 * the same millisecond fire in the order they were armed.
 * loop_timer_del() cancels and frees; it may be called from the timer's own
 * callback; accepts NULL.
 */
int loop_timer_add(struct loop_timer **out, struct loop *l,
    loop_timer_fn fn, void *arg, struct err *e);
void loop_timer_arm(struct loop_timer *t, uint64_t delay_ms);
void loop_timer_cancel(struct loop_timer *t);
bool loop_timer_armed(const struct loop_timer *t);
void loop_timer_del(struct loop_timer *t);

/*
 * Deferred tasks: fn(arg) runs in the loop thread after the current round's
 * callbacks, once per post.  A task is allocated once (loop_task_add: 0 and
 * *out, or -ENOMEM with e), so posting it can never fail: the way to free
 * an object "later" when failing is not an option.  Posting a task that is
 * already posted does nothing.  A task posted while tasks run runs in the
 * next round (which then does not wait).  loop_task_del() unposts and
 * frees; it may be called from the task's own function; accepts NULL.
 */
int loop_task_add(struct loop_task **out, struct loop *l, loop_task_fn fn,
    void *arg, struct err *e);
void loop_task_post(struct loop_task *t);
void loop_task_del(struct loop_task *t);

/*
 * One-shot convenience: runs fn(arg) once after the current round.
 * Returns 0 or -ENOMEM (then nothing will run).
 */
int loop_defer(struct loop *l, loop_task_fn fn, void *arg);

#endif
