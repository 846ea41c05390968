/*
 * pipes: see pipes.h.
 *
 * A pipe is a cursor (device and revision, or a firehose cursor) plus at
 * most one parked request and one poll handle.  Reads that can be answered
 * at once are answered in the worker thread; the rest are parked and the
 * worker returns.  A parked read is answered by whoever sees data for it
 * first: the committing thread for a few readers (it saves a wake-up), the
 * delivery thread for the rest.  The delivery thread sleeps on an eventfd
 * that commits write to; a parking read writes to it only when data came
 * while it was parking.
 *
 * A round looks only at the pipes of the devices noted since the last
 * (noted.h): a commit notes its device and .live, a read or poll that
 * finds data as it parks notes its own, and a round re-notes a device
 * whose pipes wait for their turn.  So a round costs what changed, not
 * every open pipe.  Rounds start PIPES_GAP_US apart at the soonest, so
 * that commits to many devices, each with a reader of its own, share
 * rounds instead of making one each.
 *
 * Delivery never holds a lock across a store read, a reply or a poll
 * notification: under p->lock it only collects the pipes that wait and
 * have data, taking a reference on each; it then answers them with no
 * list lock held (s->lock is held for the cursor's read, not the reply),
 * and drops the references.  Opens, closes and reads of other pipes go on
 * meanwhile.  A pipe closed during a delivery is freed by whoever drops
 * the last reference.
 *
 * Under load, deliveries are paced per pipe.  When many pipes wait with
 * data, each is answered at most once an interval, counted from its last
 * answer, so that commits pile up and each reader gets all of them with
 * one reply instead of one reply an event; meanwhile a read near the end
 * waits for its turn rather than take what little is there.  The interval
 * keeps the delivery thread busy at most 1 / PIPES_SHARE of the time,
 * given what an answer costs (measured), and is at most PIPES_BUDGET_US,
 * which bounds how long an event waits for a reader that keeps up.  The
 * pipes answered in one round all count from the round's start: they
 * keep the same turn, stay in step and share one store read a round.
 *
 * A round keeps at most PIPES_WINDOW readers answered and not back (their
 * next read not yet seen).  Every answer wakes a reader, whose next read
 * goes into /dev/fuse's one queue, ahead of the writers' requests, and a
 * worker takes it.  Answering hundreds at once made hundreds of processes
 * runnable and queued hundreds of reads ahead of an append: the writer
 * stalled for the whole burst, and the readers at its end were late.
 * Only readers that come back promptly pace a round: once it has waited
 * PIPES_WINDOW_WAIT_US in vain, the rest of the round is answered without
 * waiting.  Readers that work on each batch before reading again, exit,
 * or are stopped would otherwise cost the round that long for every place
 * after the first PIPES_WINDOW, and delay every reader behind them.
 *
 * Exactly one reply per parked request (FUSE-NOTES §3).  A request becomes
 * deliverable (s->req) only after its interrupt callback is registered; the
 * callback and the deliverer each take it out of the pipe under s->lock,
 * and whoever takes it answers it.  Before answering, the deliverer calls
 * fuse_req_interrupt_func(req, NULL, NULL), which waits for a callback
 * already running on req (libfuse runs it under req's lock), so a pipe is
 * never freed under a running callback: a release can only follow the
 * reply.
 *
 * Lock order: p->lock, then s->lock, then p->out_lock.  No
 * fuse_req_interrupt_func() call is made holding any (it may run the
 * callback, which takes s->lock).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/queue.h>
#include <time.h>
#include <unistd.h>

#include "grow.h"
#include "log.h"
#include "noted.h"
#include "pipes.h"

#define PIPES_TICK_MS		1000	/* housekeeping: firehose pruning */
#define PIPES_MAX_READ		(1u << 20)
#define PIPES_INLINE_MAX	4	/* parked reads answered by the committer */
#define PIPES_BATCH_MIN		8	/* pipes with data that mean load */
/* under load, the longest a pipe waits between answers */
#define PIPES_BUDGET_US		25000
/* under load, rounds take at most 1 / PIPES_SHARE of the time */
#define PIPES_SHARE		4
/* rounds an interval at most; a pipe's turn comes this early or late */
#define PIPES_SLOTS		16
/* readers answered and whose next read has not come, at most */
#define PIPES_WINDOW		8
/* how long a round waits for an answered reader to come back */
#define PIPES_WINDOW_WAIT_US	2000
/* under load, a read this close to the end waits for its turn */
#define PIPES_NEAR_EVENTS	4096
/* rounds start at least this far apart (the latency it adds, at most) */
#define PIPES_GAP_US		1000
/* device pipes are counted in this many buckets, by device index */
#define PIPES_BUCKETS		1024

enum pipe_kind {
	PIPE_DEVICE,
	PIPE_FIREHOSE,
};

/* Where a pipe reads next. */
struct pipe_cursor {
	enum pipe_kind kind;
	uint32_t idx;			/* PIPE_DEVICE */
	uint64_t rev;			/* PIPE_DEVICE: next revision */
	size_t skip;			/* PIPE_DEVICE: bytes of it given */
	struct journal_fh_cursor fh;	/* PIPE_FIREHOSE */
};

struct pipe {
	pthread_mutex_t lock;		/* protects everything below but links */
	struct pipes *owner;
	struct pipe_cursor cur;
	fuse_req_t parking;		/* interrupt callback being registered */
	bool parking_intr;		/* ... and it was interrupted */
	struct journal_pin *pin;	/* PIPE_DEVICE: keeps rev from compaction */
	fuse_req_t req;			/* parked, deliverable */
	size_t want;			/* its size */
	struct fuse_pollhandle *ph;	/* newest poll handle */
	bool full;			/* the last read filled its buffer */
	bool out;			/* answered in a round, not back yet */
	uint64_t last;			/* when it was last given data, us */
	atomic_bool waiting;		/* req or ph set (written under lock) */
	/* under p->lock */
	unsigned refs;			/* the open file's, one per delivery */
	TAILQ_ENTRY(pipe) link;		/* p->pipes, until closed */
	TAILQ_ENTRY(pipe) dlink;	/* its device's list, or p->fhpipes */
};

TAILQ_HEAD(pipe_list, pipe);

/* Pipes collected for one delivery round, each with a reference. */
struct pipe_batch {
	struct pipe **v;
	size_t n, cap;
};

struct pipes {
	struct journal *journal;
	struct fuse_session *se;
	int efd;			/* wakes the delivery thread */
	pthread_t thread;
	bool started;
	atomic_bool stopping;
	pthread_mutex_t lock;		/* protects pipes, every pipe's refs */
	struct pipe_list pipes;
	/* under lock: each device's pipes (NULL: none yet), .live's */
	struct pipe_list **bydev;
	size_t nbydev;
	struct pipe_list fhpipes;
	/* what a round looks at: the devices (and .live) noted since the last */
	struct noted noted;
	struct pipe_batch batch;	/* the delivery thread's */
	_Atomic uint64_t open, parked, delivered, rounds, wakeups;
	_Atomic uint64_t polling;	/* pipes with a poll handle */
	_Atomic uint64_t slow_rounds;	/* ended their window (readers slow) */
	_Atomic uint64_t examined;	/* pipes looked at for delivery */
	/*
	 * Open pipes of the devices whose index is i modulo PIPES_BUCKETS,
	 * and open firehose pipes: a commit to a device with no pipe wakes
	 * nobody, however many pipes other devices have.
	 */
	_Atomic unsigned watching[PIPES_BUCKETS];
	_Atomic unsigned firehoses;
	atomic_bool coalescing;		/* under load: pipes take turns */
	atomic_bool kicked;		/* a round is due: efd was written */
	/* the delivery thread's pacing (PIPES_BUDGET_US) */
	_Atomic uint64_t interval;	/* between a pipe's answers; 0: none */
	uint64_t cost;			/* round time per answer, us, average */
	/* the window of the round in progress */
	_Atomic unsigned out;		/* pipes with out set */
	atomic_bool out_wait;		/* the delivery thread waits on out_cond */
	pthread_mutex_t out_lock;
	pthread_cond_t out_cond;	/* CLOCK_MONOTONIC */
};

static uint64_t
pipes_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static uint64_t
pipes_now_ms(void)
{
	return pipes_now_us() / 1000;
}

/*
 * Wakes the delivery thread for a round.  One write to the eventfd until
 * the thread takes it: under load every commit would make one otherwise.
 */
static void
pipes_kick(struct pipes *p)
{
	uint64_t one = 1;

	if (atomic_exchange(&p->kicked, true))
		return;
	(void)!write(p->efd, &one, sizeof(one));
}

/*
 * Notes for the next round where a pipe reads: the firehose (fh) or
 * device idx.  Before every kick that is for data.
 */
static void
pipes_mark(struct pipes *p, bool fh, uint32_t idx)
{
	if (fh)
		noted_firehose(&p->noted);
	else
		noted_device(&p->noted, idx);
}

/* Notes s's device, or the firehose, for the next round. */
static void
pipes_mark_pipe(struct pipes *p, const struct pipe *s)
{
	pipes_mark(p, s->cur.kind == PIPE_FIREHOSE, s->cur.idx);
}

struct pipe_share;
static bool pipe_deliver(struct pipes *p, struct pipe *s, bool eof,
    bool notify, struct pipe_share *sh, bool window);
static bool pipe_ready(struct pipes *p, const struct pipe *s);
struct pipe_pace;
static size_t pipes_collect_all(struct pipes *p, struct pipe_batch *b,
    size_t max, bool eof, struct pipe_pace *pc, bool remark);
static void pipes_release(struct pipes *p, struct pipe_batch *b);

void
pipes_notify(void *arg, uint32_t idx, uint64_t head)
{
	struct pipes *p = arg;
	struct pipe *mine[PIPES_INLINE_MAX];
	struct pipe_batch b = { mine, 0, PIPES_INLINE_MAX };
	bool polled = false, dev, fh;
	size_t more;

	(void)head;
	/*
	 * No pipe on this device (nor .live): no wake-up, a syscall and a
	 * context switch, and no walk of every other device's pipes.
	 */
	dev = atomic_load(&p->watching[idx % PIPES_BUCKETS]) != 0;
	fh = atomic_load(&p->firehoses) != 0;
	if (!dev && !fh)
		return;
	/*
	 * No read parked and no poll waiting: every reader is busy with its
	 * last answer, or stopped.  There is nothing to answer, and a wake-up
	 * for every append would cost the writer half its speed.  A read or
	 * poll that comes later counts itself in before it looks at the
	 * head, and this commit stored the head before looking here: one of
	 * the two sees the other (pipes_read()).
	 */
	if (atomic_load(&p->parked) == 0 && atomic_load(&p->polling) == 0)
		return;
	/*
	 * A few parked readers are answered here, in the committing thread:
	 * that saves the wake-up of the delivery thread, which is most of a
	 * blocked reader's latency.  Many are left to the delivery thread,
	 * so that one append never waits for hundreds of replies.
	 */
	if (atomic_load(&p->parked) > PIPES_INLINE_MAX ||
	    atomic_load(&p->open) > PIPES_INLINE_MAX * 4 ||
	    atomic_load(&p->stopping) || pthread_mutex_trylock(&p->lock) != 0) {
		if (dev)
			noted_device(&p->noted, idx);
		if (fh)
			noted_firehose(&p->noted);
		pipes_kick(p);
		return;
	}
	/* at most PIPES_INLINE_MAX * 4 pipes: a walk of them all is cheap */
	more = pipes_collect_all(p, &b, PIPES_INLINE_MAX, false, NULL, false);
	pthread_mutex_unlock(&p->lock);
	/* no poll notification from inside a request (FUSE-NOTES §2) */
	for (size_t i = 0; i < b.n; i++)
		polled |= pipe_deliver(p, b.v[i], false, false, NULL, false);
	pipes_release(p, &b);
	if (polled || more > 0) {
		/* those may be any device's */
		noted_everything(&p->noted);
		pipes_kick(p);
	}
}

/*
 * s is back (a read, a poll or its close after an answer of a round): its
 * place in the round's window is free.  Caller holds s->lock.
 */
static void
pipe_back(struct pipes *p, struct pipe *s)
{
	if (!s->out)
		return;
	s->out = false;
	if (atomic_fetch_sub(&p->out, 1) - 1 <= PIPES_WINDOW / 2 &&
	    atomic_load(&p->out_wait)) {
		pthread_mutex_lock(&p->out_lock);
		pthread_cond_signal(&p->out_cond);
		pthread_mutex_unlock(&p->out_lock);
	}
}

/* Whether s's cursor has something to read.  Caller holds s->lock. */
static bool
pipe_ready(struct pipes *p, const struct pipe *s)
{
	if (s->cur.kind == PIPE_FIREHOSE)
		return journal_firehose_ready(p->journal, &s->cur.fh);
	return s->cur.rev <= journal_head(p->journal, s->cur.idx) ||
	    s->cur.rev < journal_first(p->journal, s->cur.idx);
}

/* Whether a read of s should wait for its turn (under load). */
static bool
pipe_should_wait(struct pipes *p, const struct pipe *s)
{
	uint64_t end;

	/* a reader that is behind (its last read was full) never waits */
	if (!atomic_load(&p->coalescing) || s->full)
		return false;
	if (s->cur.kind == PIPE_FIREHOSE)
		return journal_firehose_watermark(p->journal) - s->cur.fh.seq <
		    PIPES_NEAR_EVENTS;
	end = journal_head(p->journal, s->cur.idx) + 1;
	return s->cur.rev >= journal_first(p->journal, s->cur.idx) &&
	    end - s->cur.rev < PIPES_NEAR_EVENTS;
}

/*
 * Reads from s's cursor into buf.  Returns bytes (0: nothing), or a
 * negative errno (-ERANGE: the cursor fell behind a compaction).  Caller
 * holds s->lock.
 */
static ssize_t
pipe_fill(struct pipes *p, struct pipe *s, char *buf, size_t size)
{
	struct err e;
	ssize_t n;

	err_clear(&e);
	if (s->cur.kind == PIPE_FIREHOSE)
		n = journal_firehose_read(p->journal, &s->cur.fh, buf, size,
		    &e);
	else
		n = journal_read_from(p->journal, s->cur.idx, &s->cur.rev,
		    &s->cur.skip, false, buf, size, &e);
	if (n < 0 && n != -ERANGE)
		log_warnx("live read failed: %s", e.msg);
	return n;
}

/*
 * Takes what s's cursor has, up to size bytes, into a new buffer: *out and
 * the count, 0 when nothing, or a negative errno (*out NULL).  Caller holds
 * s->lock; the reply is sent after it is released (a reply lets the reader
 * close, and a release may free s).
 */
static ssize_t
pipe_take(struct pipes *p, struct pipe *s, size_t size, char **out)
{
	char *buf;
	ssize_t n;

	*out = NULL;
	if (size > PIPES_MAX_READ)
		size = PIPES_MAX_READ;
	if ((buf = malloc(size ? size : 1)) == NULL)
		return -ENOMEM;
	n = pipe_fill(p, s, buf, size);
	s->full = n == (ssize_t)size;
	if (n <= 0) {
		free(buf);
		return n;
	}
	if (s->pin != NULL)
		journal_pin_rev(s->pin, s->cur.rev);
	s->last = pipes_now_us();
	*out = buf;
	return n;
}

/* Answers req with what pipe_take() gave. */
static void
pipe_reply(fuse_req_t req, const char *buf, ssize_t n)
{
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
}

/*
 * The interrupt callback.  libfuse runs it under req's own lock, either
 * from the thread that received FUSE_INTERRUPT (holding a reference on
 * req) or synchronously inside fuse_req_interrupt_func() when the
 * interrupt came first.  In the second case answering here would free req
 * under libfuse's feet, so a request still being parked is only flagged,
 * and pipes_read() answers it.
 */
static void
pipe_interrupt(fuse_req_t req, void *arg)
{
	struct pipe *s = arg;

	pthread_mutex_lock(&s->lock);
	if (s->req == req) {
		s->req = NULL;
		atomic_fetch_sub(&s->owner->parked, 1);
	} else {
		if (s->parking == req)
			s->parking_intr = true;
		req = NULL;
	}
	pthread_mutex_unlock(&s->lock);
	/* s may be freed as soon as the reply is out: touch it no more */
	if (req != NULL)
		fuse_reply_err(req, EINTR);
}

void
pipes_read(struct pipes *p, struct pipe *s, fuse_req_t req, size_t size,
    bool nonblock)
{
	/* s may be freed once its read is parked: what pipes_mark() needs */
	uint32_t idx = s->cur.idx;
	bool fh = s->cur.kind == PIPE_FIREHOSE;
	bool intr, ready;
	char *buf = NULL;
	ssize_t n;

	pthread_mutex_lock(&s->lock);
	pipe_back(p, s);
	if (atomic_load(&p->stopping)) {
		pthread_mutex_unlock(&s->lock);
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	if (s->req != NULL || s->parking != NULL) {
		/* one reader at a time per open file */
		pthread_mutex_unlock(&s->lock);
		fuse_reply_err(req, EAGAIN);
		return;
	}
	/*
	 * A cheap look first: most reads of a busy pipe find nothing.  Under
	 * load, a reader near the end waits for its turn too, instead of
	 * taking the few events since its last read at once: else readers
	 * that keep up would poll one round trip per event.
	 */
	n = pipe_ready(p, s) && (nonblock || !pipe_should_wait(p, s)) ?
	    pipe_take(p, s, size, &buf) : 0;
	if (n != 0 || nonblock) {
		pthread_mutex_unlock(&s->lock);
		if (n == 0)
			n = -EAGAIN;
		pipe_reply(req, buf, n);
		free(buf);
		return;
	}
	s->parking = req;
	s->parking_intr = false;
	s->want = size;
	pthread_mutex_unlock(&s->lock);

	/* may run pipe_interrupt() right here, if the signal came already */
	fuse_req_interrupt_func(req, pipe_interrupt, s);

	pthread_mutex_lock(&s->lock);
	s->parking = NULL;
	intr = s->parking_intr;
	if (!intr) {
		s->req = req;
		atomic_fetch_add(&p->parked, 1);
		atomic_store(&s->waiting, true);
	}
	/*
	 * A commit after this look sees s waiting (and p->parked counted)
	 * and wakes a deliverer; one since the look above was not for us:
	 * have it delivered now.
	 */
	ready = !intr && pipe_ready(p, s);
	pthread_mutex_unlock(&s->lock);
	if (intr) {
		fuse_reply_err(req, EINTR);
		return;
	}
	if (ready) {
		pipes_mark(p, fh, idx);
		pipes_kick(p);
	}
}

void
pipes_poll(struct pipes *p, struct pipe *s, fuse_req_t req,
    struct fuse_pollhandle *ph)
{
	unsigned revents;
	bool ready;

	pthread_mutex_lock(&s->lock);
	pipe_back(p, s);
	revents = pipe_ready(p, s) || atomic_load(&p->stopping) ?
	    POLLIN | POLLRDNORM : 0;
	if (ph != NULL) {
		if (revents != 0) {
			fuse_pollhandle_destroy(ph);
		} else {
			if (s->ph != NULL)
				fuse_pollhandle_destroy(s->ph);
			else
				atomic_fetch_add(&p->polling, 1);
			s->ph = ph;
			atomic_store(&s->waiting, true);
		}
	}
	/* as in pipes_read(): data since the look above is for a deliverer */
	ready = ph != NULL && revents == 0 && pipe_ready(p, s);
	pthread_mutex_unlock(&s->lock);
	if (ready)
		pipes_mark_pipe(p, s);	/* before the reply: s is still open */
	fuse_reply_poll(req, revents);
	if (ready)
		pipes_kick(p);
}

/*
 * One store read shared by the pipes of a round whose cursors stand at the
 * same place and that ask for the same size: readers that keep up move in
 * step, so a round reads the store once per device, not once per reader.
 * The round owns buf; the events in it never change once committed.
 */
struct pipe_share {
	bool valid;
	struct pipe_cursor at;		/* before the read */
	size_t want;
	struct pipe_cursor after;	/* after it */
	bool full;			/* it filled the buffer */
	char *buf;
	ssize_t n;
	uint64_t when;			/* the round's start: its pipes' last */
};

static bool
pipe_cursor_same(const struct pipe_cursor *a, const struct pipe_cursor *b)
{
	if (a->kind != b->kind)
		return false;
	if (a->kind == PIPE_FIREHOSE)
		return a->fh.seq == b->fh.seq && a->fh.rev == b->fh.rev &&
		    a->fh.skip == b->fh.skip;
	return a->idx == b->idx && a->rev == b->rev && a->skip == b->skip;
}

/*
 * Takes what s's cursor has for its parked read, from sh when it holds
 * the same read, else from the store (and keeps that in sh).  Returns as
 * pipe_take(); *owned says whether *out is the caller's to free.  Caller
 * holds s->lock.
 */
static ssize_t
pipe_take_shared(struct pipes *p, struct pipe *s, struct pipe_share *sh,
    char **out, bool *owned)
{
	struct pipe_cursor before;
	ssize_t n;

	*owned = true;
	if (sh == NULL)
		return pipe_take(p, s, s->want, out);
	if (sh->valid && sh->want == s->want &&
	    pipe_cursor_same(&sh->at, &s->cur)) {
		/* the same kind and device: only where it stands moves */
		s->cur.rev = sh->after.rev;
		s->cur.skip = sh->after.skip;
		s->cur.fh = sh->after.fh;
		s->full = sh->full;
		s->last = sh->when;
		if (s->pin != NULL)
			journal_pin_rev(s->pin, s->cur.rev);
		*out = sh->buf;
		*owned = false;
		return sh->n;
	}
	before = s->cur;
	n = pipe_take(p, s, s->want, out);
	if (n <= 0)
		return n;
	s->last = sh->when;
	free(sh->buf);
	sh->valid = true;
	sh->at = before;
	sh->want = s->want;
	sh->after = s->cur;
	sh->full = s->full;
	sh->buf = *out;
	sh->n = n;
	*owned = false;
	return n;
}

/*
 * Delivers what s can take.  Caller holds a reference on s (so it cannot
 * be freed under us) and no lock; takes s->lock for the cursor, and
 * replies with no lock held and no callback still running on the request.
 * sh (or NULL) is the round's shared read.  With window, an answer with
 * data takes a place in the round's window until s is back.  Returns
 * whether a poll notification was left to the delivery thread.
 */
static bool
pipe_deliver(struct pipes *p, struct pipe *s, bool eof, bool notify,
    struct pipe_share *sh, bool window)
{
	bool skipped = false, owned = true;
	struct fuse_pollhandle *ph = NULL;
	fuse_req_t req = NULL;
	char *buf = NULL;
	ssize_t n = 0;

	pthread_mutex_lock(&s->lock);
	if (s->req != NULL && (eof || pipe_ready(p, s))) {
		n = eof ? 0 : pipe_take_shared(p, s, sh, &buf, &owned);
		if (n != 0 || eof) {
			req = s->req;
			s->req = NULL;
			atomic_fetch_sub(&p->parked, 1);
		}
		/* before the reply: the next read may come at once */
		if (n > 0 && window && !s->out) {
			s->out = true;
			atomic_fetch_add(&p->out, 1);
		}
		/* ready but empty (a failed commit): stays parked */
	}
	if (s->ph != NULL && (eof || pipe_ready(p, s))) {
		if (!notify) {
			skipped = true;	/* the delivery thread notifies */
		} else {
			ph = s->ph;
			s->ph = NULL;
			atomic_fetch_sub(&p->polling, 1);
		}
	}
	atomic_store(&s->waiting, s->req != NULL || s->ph != NULL);
	pthread_mutex_unlock(&s->lock);
	if (req != NULL) {
		/* waits out a callback already running on req */
		fuse_req_interrupt_func(req, NULL, NULL);
		pipe_reply(req, buf, n);
		if (owned)
			free(buf);
		if (n > 0)
			atomic_fetch_add(&p->delivered, 1);
	}
	if (ph != NULL) {
		fuse_lowlevel_notify_poll(ph);
		fuse_pollhandle_destroy(ph);
	}
	return skipped;
}

/*
 * When pipes that wait and have data are due: with pacing (interval), a
 * pipe given data at `last` is due at last + interval, and a round takes
 * those due by `by`.
 */
struct pipe_pace {
	uint64_t by;			/* take those due by then */
	uint64_t interval;		/* 0: every pipe is due */
	size_t later;			/* out: pipes with data, not due yet */
	uint64_t next;			/* out: the first of them is due then */
};

/*
 * Takes s into b, with a reference, if it waits for data and has it and
 * is due (pc NULL: due; with eof, if it waits).  Caller holds p->lock.
 * Returns false when s has data but is left for a later round: not due
 * yet (counted in pc) or no room in b (counted in *more, up to max).
 */
static bool
pipes_consider(struct pipes *p, struct pipe *s, struct pipe_batch *b,
    size_t max, bool eof, struct pipe_pace *pc, size_t *more)
{
	uint64_t due = 0;
	bool ready;

	atomic_fetch_add_explicit(&p->examined, 1, memory_order_relaxed);
	if (!atomic_load(&s->waiting))
		return true;
	pthread_mutex_lock(&s->lock);
	ready = eof || pipe_ready(p, s);
	if (ready && !eof && pc != NULL && pc->interval > 0)
		due = s->last + pc->interval;
	pthread_mutex_unlock(&s->lock);
	if (!ready)
		return true;
	if (pc != NULL && due > pc->by) {
		if (pc->later++ == 0 || due < pc->next)
			pc->next = due;
		return false;
	}
	if (b->n == max) {
		(*more)++;
		return false;
	}
	if (b->n == b->cap) {
		size_t cap = b->cap ? 2 * b->cap : 64;
		struct pipe **v = realloc(b->v, cap * sizeof(*v));

		/* no memory: another round gets the rest */
		if (v == NULL) {
			(*more)++;
			return false;
		}
		b->v = v;
		b->cap = cap;
	}
	s->refs++;
	b->v[b->n++] = s;
	return true;
}

/*
 * Collects into b, with a reference each, up to max pipes of all that
 * wait for data and have it and are due (pc NULL: all due; all that
 * wait, with eof).  With remark, the pipes left for later are noted for
 * the next round.  Caller holds p->lock.  Returns how many more there
 * were.
 */
static size_t
pipes_collect_all(struct pipes *p, struct pipe_batch *b, size_t max,
    bool eof, struct pipe_pace *pc, bool remark)
{
	struct pipe *s;
	size_t more = 0;

	TAILQ_FOREACH(s, &p->pipes, link)
		if (!pipes_consider(p, s, b, max, eof, pc, &more) && remark)
			pipes_mark_pipe(p, s);
	return more;
}

/*
 * Takes into b, as pipes_consider(), the pipes of l (linked by dlink: a
 * device's, or the firehose's).  Caller holds p->lock.  Returns whether
 * any has data but was left for a later round.
 */
static bool
pipes_consider_list(struct pipes *p, struct pipe_list *l,
    struct pipe_batch *b, struct pipe_pace *pc, size_t *more)
{
	struct pipe *s;
	bool left = false;

	TAILQ_FOREACH(s, l, dlink)
		left |= !pipes_consider(p, s, b, SIZE_MAX, false, pc, more);
	return left;
}

/*
 * Collects into b, as pipes_collect_all(), the pipes that wait, have data
 * and are due among those of the devices (and the firehose) noted since
 * the last round: a commit notes its device, and so does a read or poll
 * that finds data as it parks, so no other pipe can have anything new.
 * A device with pipes left for later stays noted.  With thousands of
 * devices, a round costs what changed, not every open pipe.  Caller
 * holds p->lock.  Returns how many more there were.
 */
static size_t
pipes_collect_noted(struct pipes *p, struct pipe_batch *b,
    struct pipe_pace *pc)
{
	struct noted_set ns;
	size_t more = 0;

	noted_take(&p->noted, &ns);
	if (ns.all)
		return pipes_collect_all(p, b, SIZE_MAX, false, pc, true);
	for (size_t i = 0; i < ns.n; i++) {
		uint32_t idx = ns.dev[i];

		if (idx < p->nbydev && p->bydev[idx] != NULL &&
		    pipes_consider_list(p, p->bydev[idx], b, pc, &more))
			noted_device(&p->noted, idx);
	}
	if (ns.firehose && pipes_consider_list(p, &p->fhpipes, b, pc, &more))
		noted_firehose(&p->noted);
	return more;
}

static void
pipe_free(struct pipes *p, struct pipe *s)
{
	/* a release follows every reply: nothing can be parked here */
	if (s->req != NULL)
		log_warnx("live pipe closed with a parked read");
	if (s->ph != NULL) {
		fuse_pollhandle_destroy(s->ph);
		atomic_fetch_sub(&p->polling, 1);
	}
	journal_pin_free(p->journal, s->pin);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

/* Drops the references of b; frees the pipes closed meanwhile. */
static void
pipes_release(struct pipes *p, struct pipe_batch *b)
{
	size_t n = 0;

	pthread_mutex_lock(&p->lock);
	for (size_t i = 0; i < b->n; i++)
		if (--b->v[i]->refs == 0)
			b->v[n++] = b->v[i];	/* closed: ours to free */
	pthread_mutex_unlock(&p->lock);
	for (size_t i = 0; i < n; i++)
		pipe_free(p, b->v[i]);
	b->n = 0;
}

/* Takes pipe b->v[i] out of the window if it is still there. */
static void
pipes_unwindow(struct pipes *p, struct pipe_batch *b, size_t i)
{
	struct pipe *s = b->v[i];

	pthread_mutex_lock(&s->lock);
	if (s->out) {
		s->out = false;
		atomic_fetch_sub(&p->out, 1);
	}
	pthread_mutex_unlock(&s->lock);
}

/*
 * Waits until the window has room for more answers: when PIPES_WINDOW
 * readers answered in this round (b->v[0..i-1]) have not sent their next
 * read yet, until half of them have (one wake-up for several answers), or
 * for PIPES_WINDOW_WAIT_US.  Returns false when that time ran out first:
 * the readers are not coming back soon, and waiting for them any more
 * would only delay the others.  The caller then ends the window.
 */
static bool
pipes_window_wait(struct pipes *p)
{
	struct timespec ts;
	int rc = 0;

	if (atomic_load(&p->out) < PIPES_WINDOW)
		return true;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_nsec += PIPES_WINDOW_WAIT_US * 1000L;
	ts.tv_sec += ts.tv_nsec / 1000000000L;
	ts.tv_nsec %= 1000000000L;
	pthread_mutex_lock(&p->out_lock);
	atomic_store(&p->out_wait, true);
	while (atomic_load(&p->out) > PIPES_WINDOW / 2 && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&p->out_cond, &p->out_lock, &ts);
	atomic_store(&p->out_wait, false);
	pthread_mutex_unlock(&p->out_lock);
	/* only this thread adds to out: what is back stays back */
	return atomic_load(&p->out) <= PIPES_WINDOW / 2;
}

/*
 * One delivery round: answers the pipes that wait, have data and are due
 * (pc NULL: all of them; all that wait, with eof).  Returns how many it
 * answered.
 *
 * Every answer wakes a reader, which sends its next read at once; a worker
 * takes it from /dev/fuse, in the same queue as the writers' requests.
 * Answering hundreds of readers in one burst would put hundreds of reads
 * ahead of an append and make hundreds of processes runnable at once, so
 * a round keeps at most PIPES_WINDOW readers answered and not back, as
 * long as they come back (pipes_window_wait()).
 */
static size_t
pipes_round(struct pipes *p, bool eof, struct pipe_pace *pc)
{
	struct pipe_batch *b = &p->batch;
	struct pipe_share sh = { .valid = false };
	bool window = !eof;
	size_t n, more;

	sh.when = pipes_now_us();
	pthread_mutex_lock(&p->lock);
	more = eof ? pipes_collect_all(p, b, SIZE_MAX, true, NULL, false) :
	    pipes_collect_noted(p, b, pc);
	pthread_mutex_unlock(&p->lock);
	for (size_t i = 0; i < b->n; i++) {
		if (window && !pipes_window_wait(p)) {
			window = false;
			atomic_fetch_add(&p->slow_rounds, 1);
		}
		pipe_deliver(p, b->v[i], eof, true, &sh, window);
	}
	free(sh.buf);
	n = b->n;
	/* the window is the round's: the next starts empty */
	for (size_t i = 0; i < n; i++)
		pipes_unwindow(p, b, i);
	pipes_release(p, b);
	if (more > 0)
		pipes_kick(p);	/* no memory for all of them: another round */
	if (n > 0)
		atomic_fetch_add(&p->rounds, 1);
	return n;
}

/*
 * Deletes firehose log entries that every reader has passed.  The
 * watermark is read under p->lock: a reader that opens later starts at or
 * above it, so nothing it needs is deleted.
 */
static void
pipes_prune(struct pipes *p)
{
	struct pipe *s;
	uint64_t low;

	pthread_mutex_lock(&p->lock);
	low = journal_firehose_watermark(p->journal);
	TAILQ_FOREACH(s, &p->fhpipes, dlink) {
		pthread_mutex_lock(&s->lock);
		if (s->cur.fh.seq < low)
			low = s->cur.fh.seq;
		pthread_mutex_unlock(&s->lock);
	}
	pthread_mutex_unlock(&p->lock);
	journal_firehose_prune(p->journal, low);
}

/*
 * After a round: how long until the next pipe is due, and the pacing from
 * now on.  Under load (many pipes with data), each pipe is answered at
 * most once an interval, so that commits pile up and each reader gets
 * them with one answer, and answers spread out instead of coming in
 * bursts.  The interval is what keeps the rounds to 1 / PIPES_SHARE of the
 * time, given what an answer costs (measured), and at most
 * PIPES_BUDGET_US: the latency of a reader that keeps up.  With a few
 * readers it is short, and without load there is none.  Returns when to
 * run the next round (0: when kicked).
 */
static uint64_t
pipes_pace(struct pipes *p, size_t answered, uint64_t took,
    const struct pipe_pace *pc)
{
	uint64_t iv, now = pipes_now_us();
	size_t n = answered + pc->later;

	if (answered > 0)
		p->cost = (3 * p->cost + took / answered) / 4;
	atomic_store(&p->coalescing, n >= PIPES_BATCH_MIN);
	iv = n >= PIPES_BATCH_MIN ? n * p->cost * PIPES_SHARE : 0;
	if (iv > PIPES_BUDGET_US)
		iv = PIPES_BUDGET_US;
	atomic_store(&p->interval, iv);
	if (pc->later == 0)
		return 0;
	/*
	 * A round takes those due within iv / PIPES_SLOTS, and the next
	 * comes no sooner: a pipe is answered at most that early or late,
	 * and the pipes are walked at most PIPES_SLOTS times an interval.
	 */
	if (pc->next < now + iv / PIPES_SLOTS)
		return now + iv / PIPES_SLOTS;
	return pc->next;
}

static void *
pipes_main(void *arg)
{
	struct pipes *p = arg;
	struct pollfd pfd = { .fd = p->efd, .events = POLLIN };
	uint64_t n, next = 0, last = 0;
	uint64_t next_prune = pipes_now_ms() + PIPES_TICK_MS;

	pthread_setname_np(pthread_self(), "odofs-live");
	while (!atomic_load(&p->stopping)) {
		struct pipe_pace pc = { .later = 0 };
		uint64_t start, due;
		size_t answered;
		int r = 1;

		if (next == 0) {
			/* nothing due: wait for a commit */
			r = poll(&pfd, 1, PIPES_TICK_MS);
			if (r < 0 && errno != EINTR) {
				log_warn("live pipes: poll");
				break;
			}
		}
		/*
		 * Rounds start PIPES_GAP_US apart at the soonest: under load,
		 * a commit would otherwise make a round of its own, each a
		 * wake-up, when each pipe gets an event (a reader a device).
		 * Commits meanwhile only add to what the round answers.
		 */
		due = next > last + PIPES_GAP_US ? next : last + PIPES_GAP_US;
		if (r > 0 && (start = pipes_now_us()) < due)
			usleep((useconds_t)(due - start));
		if (pipes_now_ms() >= next_prune) {
			/* on time, not when idle: a busy firehose needs it most */
			pipes_prune(p);
			next_prune = pipes_now_ms() + PIPES_TICK_MS;
		}
		if (r == 0) {
			/* idle */
			atomic_store(&p->coalescing, false);
			atomic_store(&p->interval, 0);
		}
		if (r <= 0)
			continue;
		(void)!read(p->efd, &n, sizeof(n));
		atomic_fetch_add(&p->wakeups, 1);
		/* kicks from here on ask for another round */
		atomic_store(&p->kicked, false);
		last = start = pipes_now_us();
		pc.interval = atomic_load(&p->interval);
		pc.by = start + pc.interval / PIPES_SLOTS;
		answered = pipes_round(p, false, &pc);
		next = pipes_pace(p, answered, pipes_now_us() - start, &pc);
	}
	return NULL;
}

int
pipes_start(struct pipes **out, struct journal *j, struct fuse_session *se,
    struct err *e)
{
	struct pipes *p;
	int rc;

	*out = NULL;
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return err_set(e, -ENOMEM, "out of memory");
	p->journal = j;
	p->se = se;
	p->efd = -1;
	pthread_mutex_init(&p->lock, NULL);
	pthread_mutex_init(&p->out_lock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&p->out_cond, &ca);
		pthread_condattr_destroy(&ca);
	}
	TAILQ_INIT(&p->pipes);
	TAILQ_INIT(&p->fhpipes);
	noted_init(&p->noted);
	if ((p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
		rc = err_set(e, -errno, "eventfd: %s", strerror(errno));
		goto fail;
	}
	if ((rc = pthread_create(&p->thread, NULL, pipes_main, p)) != 0) {
		rc = err_set(e, -rc, "live pipes thread: %s", strerror(rc));
		goto fail;
	}
	p->started = true;
	*out = p;
	return 0;
fail:
	pipes_free(p);
	return rc;
}

void
pipes_stop(struct pipes *p)
{
	if (p == NULL || !p->started)
		return;
	atomic_store(&p->stopping, true);
	pipes_kick(p);
	pthread_join(p->thread, NULL);
	p->started = false;
	pipes_round(p, true, NULL);
}

void
pipes_free(struct pipes *p)
{
	if (p == NULL)
		return;
	pipes_stop(p);
	if (p->efd >= 0)
		close(p->efd);
	free(p->batch.v);
	for (size_t i = 0; i < p->nbydev; i++)
		free(p->bydev[i]);
	free(p->bydev);
	noted_fini(&p->noted);
	pthread_cond_destroy(&p->out_cond);
	pthread_mutex_destroy(&p->out_lock);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

/*
 * The list of device idx's pipes, made if need be.  NULL: no memory.
 * Caller holds p->lock.
 */
static struct pipe_list *
pipes_device_list(struct pipes *p, uint32_t idx)
{
	struct pipe_list **v;

	if ((v = grow_to_index(p->bydev, &p->nbydev, idx, sizeof(*v))) == NULL)
		return NULL;
	p->bydev = v;
	if (p->bydev[idx] == NULL) {
		if ((p->bydev[idx] = malloc(sizeof(*p->bydev[idx]))) == NULL)
			return NULL;
		TAILQ_INIT(p->bydev[idx]);
	}
	return p->bydev[idx];
}

static struct pipe *
pipes_add(struct pipes *p, enum pipe_kind kind, uint32_t idx)
{
	struct pipe *s = calloc(1, sizeof(*s));
	struct pipe_list *l;

	if (s == NULL)
		return NULL;
	pthread_mutex_init(&s->lock, NULL);
	s->owner = p;
	s->cur.kind = kind;
	s->cur.idx = idx;
	s->refs = 1;
	pthread_mutex_lock(&p->lock);
	l = kind == PIPE_FIREHOSE ? &p->fhpipes : pipes_device_list(p, idx);
	if (l == NULL) {
		pthread_mutex_unlock(&p->lock);
		pthread_mutex_destroy(&s->lock);
		free(s);
		return NULL;
	}
	if (kind == PIPE_FIREHOSE)
		journal_firehose_open(p->journal, &s->cur.fh);
	TAILQ_INSERT_TAIL(&p->pipes, s, link);
	TAILQ_INSERT_TAIL(l, s, dlink);
	pthread_mutex_unlock(&p->lock);
	atomic_fetch_add(&p->open, 1);
	return s;
}

struct pipe *
pipes_open_device(struct pipes *p, uint32_t idx, uint64_t rev)
{
	struct journal_pin *pin = journal_pin_new(p->journal, idx);
	struct pipe *s;

	if (pin == NULL)
		return NULL;
	journal_pin_rev(pin, rev);
	if ((s = pipes_add(p, PIPE_DEVICE, idx)) == NULL) {
		journal_pin_free(p->journal, pin);
		return NULL;
	}
	pthread_mutex_lock(&s->lock);
	s->cur.rev = rev;
	s->pin = pin;
	pthread_mutex_unlock(&s->lock);
	/* before the first read: it looks for data itself */
	atomic_fetch_add(&p->watching[idx % PIPES_BUCKETS], 1);
	return s;
}

struct pipe *
pipes_open_firehose(struct pipes *p)
{
	struct pipe *s = pipes_add(p, PIPE_FIREHOSE, 0);

	if (s != NULL)
		atomic_fetch_add(&p->firehoses, 1);
	return s;
}

void
pipes_close(struct pipes *p, struct pipe *s)
{
	/* a round holding a reference frees s once p->lock is dropped */
	bool fh = s->cur.kind == PIPE_FIREHOSE;
	uint32_t idx = s->cur.idx;
	bool last;

	pthread_mutex_lock(&p->lock);
	pthread_mutex_lock(&s->lock);
	pipe_back(p, s);
	pthread_mutex_unlock(&s->lock);
	TAILQ_REMOVE(&p->pipes, s, link);
	if (fh) {
		TAILQ_REMOVE(&p->fhpipes, s, dlink);
		journal_firehose_close(p->journal);
	} else {
		TAILQ_REMOVE(p->bydev[idx], s, dlink);
	}
	last = --s->refs == 0;
	pthread_mutex_unlock(&p->lock);
	if (fh)
		atomic_fetch_sub(&p->firehoses, 1);
	else
		atomic_fetch_sub(&p->watching[idx % PIPES_BUCKETS], 1);
	atomic_fetch_sub(&p->open, 1);
	if (last)
		pipe_free(p, s);
}

void
pipes_stats(struct pipes *p, struct pipes_stats *out)
{
	struct pipe *s;

	out->open = atomic_load(&p->open);
	out->parked = atomic_load(&p->parked);
	out->delivered = atomic_load(&p->delivered);
	out->rounds = atomic_load(&p->rounds);
	out->wakeups = atomic_load(&p->wakeups);
	out->slow_rounds = atomic_load(&p->slow_rounds);
	out->examined = atomic_load(&p->examined);
	out->behind = 0;
	pthread_mutex_lock(&p->lock);
	TAILQ_FOREACH(s, &p->pipes, link) {
		pthread_mutex_lock(&s->lock);
		out->behind += pipe_ready(p, s);
		pthread_mutex_unlock(&s->lock);
	}
	pthread_mutex_unlock(&p->lock);
}
