/*
 * jobs: see jobs.h.
 *
 * Two lists under one mutex: todo (posted, not run) and done (run, not
 * reported).  The thread takes the head of todo, runs it unlocked, moves it
 * to done and writes the eventfd when done was empty; the loop's callback
 * takes the whole done list at once and calls the done functions unlocked.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/queue.h>
#include <unistd.h>

#include "jobs.h"
#include "log.h"

struct job {
	STAILQ_ENTRY(job) link;
	jobs_fn run, done;
	void *arg;
};

STAILQ_HEAD(job_list, job);

struct jobs {
	struct loop *loop;
	struct loop_fd *h;
	int efd;
	pthread_t thread;
	bool started;
	pthread_mutex_t lock;		/* protects what follows */
	pthread_cond_t cond;
	struct job_list todo, done;
	bool stop;
};

static void *
jobs_main(void *arg)
{
	struct jobs *j = arg;
	struct job *jb;

	pthread_mutex_lock(&j->lock);
	for (;;) {
		while (STAILQ_EMPTY(&j->todo) && !j->stop)
			pthread_cond_wait(&j->cond, &j->lock);
		if ((jb = STAILQ_FIRST(&j->todo)) == NULL)
			break;		/* stopping, and nothing is left */
		STAILQ_REMOVE_HEAD(&j->todo, link);
		pthread_mutex_unlock(&j->lock);
		jb->run(jb->arg);
		pthread_mutex_lock(&j->lock);
		if (STAILQ_EMPTY(&j->done)) {
			uint64_t one = 1;

			(void)!write(j->efd, &one, sizeof(one));
		}
		STAILQ_INSERT_TAIL(&j->done, jb, link);
	}
	pthread_mutex_unlock(&j->lock);
	return NULL;
}

/* Calls the done functions of the jobs run so far, in order. */
static void
jobs_report(struct jobs *j)
{
	struct job_list l;
	struct job *jb;

	pthread_mutex_lock(&j->lock);
	STAILQ_INIT(&l);
	STAILQ_CONCAT(&l, &j->done);
	pthread_mutex_unlock(&j->lock);
	while ((jb = STAILQ_FIRST(&l)) != NULL) {
		STAILQ_REMOVE_HEAD(&l, link);
		jb->done(jb->arg);
		free(jb);
	}
}

static void
jobs_ready(void *arg, uint32_t events)
{
	struct jobs *j = arg;
	uint64_t n;

	(void)events;
	(void)!read(j->efd, &n, sizeof(n));
	jobs_report(j);
}

int
jobs_open(struct jobs **out, struct loop *l, struct err *e)
{
	struct jobs *j;
	int rc;

	if ((j = calloc(1, sizeof(*j))) == NULL)
		return err_set(e, -ENOMEM, "out of memory");
	j->loop = l;
	j->efd = -1;
	pthread_mutex_init(&j->lock, NULL);
	pthread_cond_init(&j->cond, NULL);
	STAILQ_INIT(&j->todo);
	STAILQ_INIT(&j->done);
	if ((j->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
		rc = err_set(e, -errno, "eventfd: %s", strerror(errno));
		goto fail;
	}
	if ((rc = loop_fd_add(&j->h, l, j->efd, EPOLLIN, jobs_ready, j, e)) < 0)
		goto fail;
	if ((rc = pthread_create(&j->thread, NULL, jobs_main, j)) != 0) {
		rc = err_set(e, -rc, "job thread: %s", strerror(rc));
		goto fail;
	}
	j->started = true;
	*out = j;
	return 0;
fail:
	jobs_close(j);
	return rc;
}

void
jobs_close(struct jobs *j)
{
	if (j == NULL)
		return;
	if (j->started) {
		pthread_mutex_lock(&j->lock);
		j->stop = true;
		pthread_cond_signal(&j->cond);
		pthread_mutex_unlock(&j->lock);
		pthread_join(j->thread, NULL);
	}
	jobs_report(j);
	loop_fd_del(j->h);
	if (j->efd >= 0)
		close(j->efd);
	pthread_cond_destroy(&j->cond);
	pthread_mutex_destroy(&j->lock);
	free(j);
}

int
jobs_post(struct jobs *j, jobs_fn run, jobs_fn done, void *arg)
{
	struct job *jb = malloc(sizeof(*jb));

	if (jb == NULL)
		return -ENOMEM;
	jb->run = run;
	jb->done = done;
	jb->arg = arg;
	pthread_mutex_lock(&j->lock);
	STAILQ_INSERT_TAIL(&j->todo, jb, link);
	pthread_cond_signal(&j->cond);
	pthread_mutex_unlock(&j->lock);
	return 0;
}
