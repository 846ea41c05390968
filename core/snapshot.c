/*
 * snapshot: see snapshot.h.
 *
 * The worker wakes on a condition variable (kicked by commits when
 * every_events is set, by manual installs) and at least once a second.
 * Per device it keeps when the last snapshot was made, when a failed
 * command may run again, and whether a compaction is owed; these arrays
 * grow with the number of devices only.  The command runs with
 * posix_spawn in its own process group, fed from the store in 64 KiB
 * pieces through a non-blocking pipe while its output is collected (at
 * most JOURNAL_SNAPSHOT_MAX bytes), all under one poll() deadline, so
 * neither side can deadlock on a full pipe.  No lock an appender needs is
 * held while it runs.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "snapshot.h"

extern char **environ;

#define SNAP_FEED_CHUNK		(64u << 10)
#define SNAP_STDERR_KEEP	1024
#define SNAP_RETRY_MIN_NS	1000000000ull
#define SNAP_RETRY_MAX_NS	60000000000ull
#define SNAP_SCAN_GAP_NS	100000000ull	/* at most 10 scans a second */

struct snapdev {
	uint64_t last_ns;		/* last snapshot, or first seen */
	uint64_t retry_ns;		/* no command before this */
	uint64_t retry_gap_ns;		/* doubles with each failure */
	bool compact;			/* a compaction is owed */
	struct snapshot_retained kept;	/* under s->lock (renderers read) */
};

struct snapshotter {
	struct journal *journal;
	struct snapshot_opts o;
	char *command, *tmp_dir;	/* owned copies */
	pthread_t thread;
	bool started;
	pthread_mutex_t lock;		/* protects kicked, stop, want_compact */
	pthread_cond_t cond;
	bool kicked, stop;
	uint8_t *want_compact;		/* per device, set by installs */
	size_t nwant;
	struct snapdev *devs;		/* worker thread; grown under lock */
	size_t ndevs;
	_Atomic uint64_t runs, failures, compactions;
};

static uint64_t
snap_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void
snap_kick(struct snapshotter *s)
{
	pthread_mutex_lock(&s->lock);
	s->kicked = true;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

void
snapshot_notify(struct snapshotter *s, uint32_t idx, uint64_t head)
{
	(void)idx;
	(void)head;
	if (s != NULL && s->o.every_events > 0 && s->command[0] != '\0')
		snap_kick(s);
}

void
snapshot_installed(struct snapshotter *s, uint32_t idx)
{
	if (s == NULL)
		return;
	pthread_mutex_lock(&s->lock);
	if (idx >= s->nwant) {
		size_t n = idx + 1 > s->nwant * 2 ? idx + 1 : s->nwant * 2;
		uint8_t *w = realloc(s->want_compact, n);

		if (w == NULL) {
			pthread_mutex_unlock(&s->lock);
			log_warnx("snapshot: out of memory; compaction of a "
			    "device postponed to the next snapshot");
			return;
		}
		memset(w + s->nwant, 0, n - s->nwant);
		s->want_compact = w;
		s->nwant = n;
	}
	s->want_compact[idx] = 1;
	s->kicked = true;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

/* Writes the previous snapshot of idx into a new temporary file. */
static int
snap_prev_file(struct snapshotter *s, uint32_t idx, char *path, size_t size,
    struct err *e)
{
	struct journal_snap *sn = NULL;
	char buf[SNAP_FEED_CHUNK];
	uint64_t off = 0;
	ssize_t n;
	int fd, rc = 0;

	snprintf(path, size, "%s/snapshot-prev-XXXXXX", s->tmp_dir);
	if ((fd = mkostemp(path, O_CLOEXEC)) < 0)
		return err_set(e, -errno, "snapshot: cannot create %s: %s", path,
		    strerror(errno));
	if ((rc = journal_snap_open(s->journal, idx, &sn, e)) < 0)
		goto out;
	while ((n = journal_snap_read(sn, off, buf, sizeof(buf), e)) > 0) {
		if (write(fd, buf, (size_t)n) != n) {
			rc = err_set(e, -errno, "snapshot: writing %s: %s", path,
			    strerror(errno));
			goto out;
		}
		off += (uint64_t)n;
	}
	if (n < 0)
		rc = (int)n;
out:
	journal_snap_close(sn);
	close(fd);
	if (rc < 0)
		unlink(path);
	return rc;
}

/* The last non-empty line of a stderr tail, for the log. */
static void
snap_last_line(const char *p, size_t n, char *out, size_t size)
{
	while (n > 0 && (p[n - 1] == '\n' || p[n - 1] == '\r'))
		n--;
	size_t start = n;

	while (start > 0 && p[start - 1] != '\n')
		start--;
	snprintf(out, size, "%.*s", (int)(n - start), p + start);
	for (char *c = out; *c != '\0'; c++)
		if ((unsigned char)*c < 0x20)
			*c = '?';
}

struct snap_run {
	int in, out, err;		/* our ends; -1 when closed */
	pid_t pid;
	struct buf output;
	char errtail[SNAP_STDERR_KEEP];
	size_t errlen;
	char feed[SNAP_FEED_CHUNK];
	size_t feed_len, feed_off;
	uint64_t rev, to;		/* next revision to feed, last one */
	size_t skip;
};

/* Refills run->feed from the store; closes stdin when all is fed. */
static int
snap_refill(struct snapshotter *s, uint32_t idx, struct snap_run *r,
    struct err *e)
{
	ssize_t n;

	if (r->feed_off < r->feed_len)
		return 0;
	if (r->rev > r->to) {
		close(r->in);
		r->in = -1;
		return 0;
	}
	n = journal_read_range(s->journal, idx, &r->rev, &r->skip, r->to, false,
	    r->feed, sizeof(r->feed), e);
	if (n < 0)
		return (int)n;
	if (n == 0)
		return err_set(e, -EIO, "snapshot: events up to %llu missing",
		    (unsigned long long)r->to);
	r->feed_len = (size_t)n;
	r->feed_off = 0;
	return 0;
}

static void
snap_close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/*
 * Runs the command for device idx over revisions from..to.  On success the
 * output is in r->output.  Returns 0, or a negative errno with e saying
 * why (exit status, signal, timeout, too much output) and the last line of
 * the command's stderr.
 */
static int
snap_run_command(struct snapshotter *s, uint32_t idx, const char *id,
    uint64_t from, uint64_t to, const char *prev, struct snap_run *r,
    struct err *e)
{
	int pin[2] = { -1, -1 }, pout[2] = { -1, -1 }, perr[2] = { -1, -1 };
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t def, none;
	char env_dev[JOURNAL_ID_MAX + 32], env_from[48], env_to[48];
	char env_snap[4200], last[256];
	char **envp = NULL;
	size_t nenv = 0;
	uint64_t deadline;
	int rc = 0, status = 0;
	bool exited = false;

	r->in = r->out = r->err = -1;
	r->pid = -1;
	r->rev = from;
	r->to = to;
	if (pipe2(pin, O_CLOEXEC) < 0 || pipe2(pout, O_CLOEXEC) < 0 ||
	    pipe2(perr, O_CLOEXEC) < 0) {
		rc = err_set(e, -errno, "snapshot: pipe: %s", strerror(errno));
		goto out;
	}
	for (char **v = environ; *v != NULL; v++)
		nenv++;
	if ((envp = calloc(nenv + 5, sizeof(*envp))) == NULL) {
		rc = err_set(e, -ENOMEM, "out of memory");
		goto out;
	}
	nenv = 0;
	for (char **v = environ; *v != NULL; v++)
		if (strncmp(*v, "ODOFS_", 6) != 0)
			envp[nenv++] = *v;
	snprintf(env_dev, sizeof(env_dev), "ODOFS_DEVICE=%s", id);
	snprintf(env_from, sizeof(env_from), "ODOFS_FROM=%llu",
	    (unsigned long long)from);
	snprintf(env_to, sizeof(env_to), "ODOFS_TO=%llu", (unsigned long long)to);
	snprintf(env_snap, sizeof(env_snap), "ODOFS_SNAPSHOT=%s", prev);
	envp[nenv++] = env_dev;
	envp[nenv++] = env_from;
	envp[nenv++] = env_to;
	envp[nenv++] = env_snap;
	envp[nenv] = NULL;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, pin[0], 0);
	posix_spawn_file_actions_adddup2(&fa, pout[1], 1);
	posix_spawn_file_actions_adddup2(&fa, perr[1], 2);
	posix_spawnattr_init(&attr);
	sigemptyset(&none);
	sigemptyset(&def);
	sigaddset(&def, SIGPIPE);
	sigaddset(&def, SIGINT);
	sigaddset(&def, SIGTERM);
	sigaddset(&def, SIGHUP);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &def);
	posix_spawnattr_setpgroup(&attr, 0);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP |
	    POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	{
		char *argv[] = { "/bin/sh", "-c", s->command, NULL };

		rc = posix_spawn(&r->pid, "/bin/sh", &fa, &attr, argv, envp);
	}
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	if (rc != 0) {
		r->pid = -1;
		rc = err_set(e, -rc, "snapshot: cannot run /bin/sh: %s",
		    strerror(rc));
		goto out;
	}
	r->in = pin[1];
	r->out = pout[0];
	r->err = perr[0];
	pin[1] = pout[0] = perr[0] = -1;
	/* the child's ends: with ours open, its output never ends */
	snap_close_fd(&pin[0]);
	snap_close_fd(&pout[1]);
	snap_close_fd(&perr[1]);
	fcntl(r->in, F_SETFL, O_NONBLOCK);
	fcntl(r->out, F_SETFL, O_NONBLOCK);
	fcntl(r->err, F_SETFL, O_NONBLOCK);

	deadline = snap_now_ns() + (uint64_t)s->o.timeout_seconds * 1000000000ull;
	while (rc == 0 && (r->in >= 0 || r->out >= 0 || r->err >= 0 || !exited)) {
		struct pollfd pfd[3];
		int np = 0, timeout;
		uint64_t now = snap_now_ns();

		if (now >= deadline) {
			rc = err_set(e, -ETIMEDOUT, "timed out after %u s",
			    s->o.timeout_seconds);
			break;
		}
		if (r->in >= 0 && (rc = snap_refill(s, idx, r, e)) < 0)
			break;
		if (r->in >= 0)
			pfd[np++] = (struct pollfd){ r->in, POLLOUT, 0 };
		if (r->out >= 0)
			pfd[np++] = (struct pollfd){ r->out, POLLIN, 0 };
		if (r->err >= 0)
			pfd[np++] = (struct pollfd){ r->err, POLLIN, 0 };
		if (np == 0) {
			/* output closed: wait for the exit */
			pid_t w = waitpid(r->pid, &status, WNOHANG);

			if (w == r->pid) {
				exited = true;
				r->pid = -1;
				break;
			}
			usleep(10000);
			continue;
		}
		timeout = (int)((deadline - now) / 1000000ull) + 1;
		if (poll(pfd, (nfds_t)np, timeout) < 0) {
			if (errno == EINTR)
				continue;
			rc = err_set(e, -errno, "snapshot: poll: %s",
			    strerror(errno));
			break;
		}
		for (int i = 0; i < np && rc == 0; i++) {
			if (pfd[i].revents == 0)
				continue;
			if (pfd[i].fd == r->in) {
				ssize_t n = write(r->in, r->feed + r->feed_off,
				    r->feed_len - r->feed_off);

				if (n > 0)
					r->feed_off += (size_t)n;
				else if (n < 0 && errno != EAGAIN)
					snap_close_fd(&r->in);	/* EPIPE: it
								   stopped reading */
			} else if (pfd[i].fd == r->out) {
				char b[SNAP_FEED_CHUNK];
				ssize_t n = read(r->out, b, sizeof(b));

				if (n > 0) {
					if (buf_append(&r->output, b, (size_t)n) < 0)
						rc = err_set(e, -EFBIG, "output over "
						    "%u bytes", JOURNAL_SNAPSHOT_MAX);
				} else if (n == 0 || errno != EAGAIN) {
					snap_close_fd(&r->out);
				}
			} else {
				char b[SNAP_STDERR_KEEP];
				ssize_t n = read(r->err, b, sizeof(b));

				if (n > 0) {
					/* keep the last SNAP_STDERR_KEEP bytes */
					if ((size_t)n + r->errlen > sizeof(r->errtail)) {
						size_t drop = (size_t)n + r->errlen -
						    sizeof(r->errtail);

						memmove(r->errtail, r->errtail + drop,
						    r->errlen - drop);
						r->errlen -= drop;
					}
					memcpy(r->errtail + r->errlen, b, (size_t)n);
					r->errlen += (size_t)n;
				} else if (n == 0 || errno != EAGAIN) {
					snap_close_fd(&r->err);
				}
			}
		}
	}
	if (r->pid > 0) {
		/* failed or timed out: the whole process group goes */
		kill(-r->pid, SIGKILL);
		waitpid(r->pid, &status, 0);
		exited = true;
		r->pid = -1;
	}
	snap_last_line(r->errtail, r->errlen, last, sizeof(last));
	if (rc == 0 && WIFEXITED(status) && WEXITSTATUS(status) != 0)
		rc = err_set(e, -ECHILD, "exit status %d%s%s",
		    WEXITSTATUS(status), last[0] ? ": " : "", last);
	else if (rc == 0 && WIFSIGNALED(status))
		rc = err_set(e, -ECHILD, "killed by signal %d%s%s",
		    WTERMSIG(status), last[0] ? ": " : "", last);
	else if (rc < 0 && last[0] != '\0' && strlen(e->msg) + 3 < sizeof(e->msg)) {
		size_t n = strlen(e->msg);

		snprintf(e->msg + n, sizeof(e->msg) - n, ": %s", last);
	}
out:
	snap_close_fd(&pin[0]);
	snap_close_fd(&pin[1]);
	snap_close_fd(&pout[0]);
	snap_close_fd(&pout[1]);
	snap_close_fd(&perr[0]);
	snap_close_fd(&perr[1]);
	snap_close_fd(&r->in);
	snap_close_fd(&r->out);
	snap_close_fd(&r->err);
	free(envp);
	return rc;
}

/* Builds one snapshot of idx by running the command. */
static int
snap_build(struct snapshotter *s, uint32_t idx, struct journal_info *in)
{
	struct snap_run *r;
	char prev[4096];
	struct err e;
	int rc;

	err_clear(&e);
	if ((r = calloc(1, sizeof(*r))) == NULL)
		return -ENOMEM;
	buf_init(&r->output, JOURNAL_SNAPSHOT_MAX);
	atomic_fetch_add(&s->runs, 1);
	if ((rc = snap_prev_file(s, idx, prev, sizeof(prev), &e)) == 0) {
		rc = snap_run_command(s, idx, in->id, in->snapshot_rev + 1,
		    in->head, prev, r, &e);
		unlink(prev);
	}
	if (rc == 0)
		rc = journal_snapshot_install(s->journal, idx, in->head,
		    r->output.data ? r->output.data : "", r->output.len, &e);
	if (rc < 0) {
		atomic_fetch_add(&s->failures, 1);
		log_warnx("snapshot command failed: device %s, revisions "
		    "%llu-%llu: %s", in->id,
		    (unsigned long long)in->snapshot_rev + 1,
		    (unsigned long long)in->head, e.msg);
	}
	buf_release(&r->output);
	free(r);
	return rc;
}

/*
 * snapshot.retain_for: the first revision compaction may keep, at most
 * want, so that no matching holder of idx loses an event it has not made
 * durable; past retain_max_bytes of events kept for it, compaction goes
 * on without it.  What is kept, and for whom, goes to sd->kept.
 */
static uint64_t
snap_retain(struct snapshotter *s, uint32_t idx, const struct journal_info *in,
    struct snapdev *sd, uint64_t want)
{
	struct snapshot_retained k;
	struct holder_ack who;
	uint64_t durable, off;

	memset(&k, 0, sizeof(k));
	if (s->o.nretain_for == 0 || s->o.holders == NULL)
		goto out;
	durable = holders_retain(s->o.holders, idx, s->o.retain_for,
	    s->o.nretain_for, &who);
	if (durable == UINT64_MAX || durable + 1 >= want)
		goto out;
	snprintf(k.peer, sizeof(k.peer), "%s", who.peer);
	k.durable = durable;
	k.since_ms = who.at_ms;
	k.events = want - (durable + 1);
	off = journal_rev_offset(s->journal, idx, durable + 1);
	k.bytes = off != UINT64_MAX && off < in->end_offset ?
	    in->end_offset - off : 0;
	if (s->o.retain_max_bytes > 0 && k.bytes > s->o.retain_max_bytes) {
		k.dropped = true;
		if (!sd->kept.dropped)
			log_warnx("compaction of %s goes on past what %s has not "
			    "made durable (revision %llu): %llu bytes kept for "
			    "it reached snapshot.retain_max_bytes", in->id,
			    who.peer, (unsigned long long)durable + 1,
			    (unsigned long long)k.bytes);
	} else {
		want = durable + 1;
		k.retaining = true;
	}
out:
	pthread_mutex_lock(&s->lock);
	sd->kept = k;
	pthread_mutex_unlock(&s->lock);
	return want;
}

bool
snapshot_retained(struct snapshotter *s, uint32_t idx,
    struct snapshot_retained *out)
{
	bool any = false;

	pthread_mutex_lock(&s->lock);
	if (idx < s->ndevs) {
		*out = s->devs[idx].kept;
		any = out->retaining || out->dropped;
	}
	pthread_mutex_unlock(&s->lock);
	return any;
}

static void
snap_compact(struct snapshotter *s, uint32_t idx, struct snapdev *sd)
{
	struct journal_info in;
	uint64_t want;
	struct err e;
	int64_t first;

	journal_info(s->journal, idx, &in);
	want = in.snapshot_rev + 1;
	want = want > s->o.keep_events ? want - s->o.keep_events : 1;
	want = snap_retain(s, idx, &in, sd, want);
	if (want <= in.first) {
		/* held back for a holder: look again at the next scan */
		sd->compact = sd->kept.retaining;
		return;
	}
	err_clear(&e);
	first = journal_compact(s->journal, idx, want, &e);
	if (first < 0) {
		log_warnx("compaction failed: device %s: %s", in.id, e.msg);
		return;
	}
	if ((uint64_t)first > in.first)
		atomic_fetch_add(&s->compactions, 1);
	/* held back by a reader or a holder: try again at the next tick */
	sd->compact = (uint64_t)first < want || sd->kept.retaining;
}

static bool
snap_due(struct snapshotter *s, const struct journal_info *in,
    const struct snapdev *sd, uint64_t now)
{
	if (s->command[0] == '\0' || !in->local || in->head <= in->snapshot_rev ||
	    now < sd->retry_ns)
		return false;
	if (s->o.every_events > 0 &&
	    in->head - in->snapshot_rev >= s->o.every_events)
		return true;
	return s->o.every_seconds > 0 &&
	    now - sd->last_ns >= (uint64_t)s->o.every_seconds * 1000000000ull;
}

/* One pass over every device.  Worker thread. */
static void
snap_scan(struct snapshotter *s)
{
	uint32_t n = journal_count(s->journal);
	uint64_t now = snap_now_ns();

	pthread_mutex_lock(&s->lock);	/* renderers read devs[].kept */
	if (n > s->ndevs) {
		struct snapdev *d = realloc(s->devs, n * sizeof(*d));

		if (d == NULL) {
			pthread_mutex_unlock(&s->lock);
			return;
		}
		for (size_t i = s->ndevs; i < n; i++)
			d[i] = (struct snapdev){ .last_ns = now };
		s->devs = d;
		s->ndevs = n;
	}
	for (size_t i = 0; i < s->nwant && i < n; i++) {
		if (s->want_compact[i]) {
			s->want_compact[i] = 0;
			s->devs[i].compact = true;
			s->devs[i].last_ns = now;
		}
	}
	pthread_mutex_unlock(&s->lock);
	for (uint32_t i = 0; i < n; i++) {
		struct snapdev *sd = &s->devs[i];
		struct journal_info in;

		if (s->stop)
			return;
		journal_info(s->journal, i, &in);
		if (snap_due(s, &in, sd, now)) {
			if (snap_build(s, i, &in) == 0) {
				sd->last_ns = snap_now_ns();
				sd->retry_gap_ns = 0;
				sd->compact = true;
			} else {
				sd->retry_gap_ns = sd->retry_gap_ns ?
				    sd->retry_gap_ns * 2 : SNAP_RETRY_MIN_NS;
				if (sd->retry_gap_ns > SNAP_RETRY_MAX_NS)
					sd->retry_gap_ns = SNAP_RETRY_MAX_NS;
				sd->retry_ns = snap_now_ns() + sd->retry_gap_ns;
			}
			now = snap_now_ns();
		}
		if (sd->compact && s->o.compact)
			snap_compact(s, i, sd);
		else
			sd->compact = false;
	}
}

static void *
snap_main(void *arg)
{
	struct snapshotter *s = arg;
	uint64_t last_scan = 0;

	pthread_mutex_lock(&s->lock);
	while (!s->stop) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		if (!s->kicked)
			pthread_cond_timedwait(&s->cond, &s->lock, &ts);
		if (s->stop)
			break;
		s->kicked = false;
		pthread_mutex_unlock(&s->lock);
		if (snap_now_ns() - last_scan < SNAP_SCAN_GAP_NS)
			usleep(SNAP_SCAN_GAP_NS / 1000);
		last_scan = snap_now_ns();
		snap_scan(s);
		pthread_mutex_lock(&s->lock);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

int
snapshot_start(struct snapshotter **out, struct journal *j,
    const struct snapshot_opts *o, struct err *e)
{
	struct snapshotter *s;
	int rc;

	*out = NULL;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return err_set(e, -ENOMEM, "out of memory");
	s->journal = j;
	s->o = *o;
	s->command = strdup(o->command ? o->command : "");
	s->tmp_dir = strdup(o->tmp_dir ? o->tmp_dir : "/tmp");
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	if (s->command == NULL || s->tmp_dir == NULL) {
		rc = err_set(e, -ENOMEM, "out of memory");
		goto fail;
	}
	if ((rc = pthread_create(&s->thread, NULL, snap_main, s)) != 0) {
		rc = err_set(e, -rc, "snapshot thread: %s", strerror(rc));
		goto fail;
	}
	s->started = true;
	*out = s;
	return 0;
fail:
	snapshot_stop(s);
	return rc;
}

void
snapshot_stop(struct snapshotter *s)
{
	if (s == NULL)
		return;
	if (s->started) {
		pthread_mutex_lock(&s->lock);
		s->stop = true;
		pthread_cond_signal(&s->cond);
		pthread_mutex_unlock(&s->lock);
		pthread_join(s->thread, NULL);
	}
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s->want_compact);
	free(s->devs);
	free(s->command);
	free(s->tmp_dir);
	free(s);
}

void
snapshot_stats(struct snapshotter *s, struct snapshot_stats *out)
{
	out->runs = atomic_load(&s->runs);
	out->failures = atomic_load(&s->failures);
	out->compactions = atomic_load(&s->compactions);
}
