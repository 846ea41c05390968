/*
 * jobs: a background thread for the net thread's slow work, in the shape
 * of Redis's bio.c: store writes (replicated events, which may sync, and
 * snapshots that reset a replica) run there, so the loop never waits on
 * the disk.
 *
 * A job is two calls: run(arg) in the job thread, then done(arg) in the
 * loop's thread, once run has returned.  Jobs run one at a time in the
 * order they were posted, and their done calls come in the same order, so
 * a caller that posts the writes of one journal in order sees them made
 * and reported in order.  What a job touches between its post and its
 * done belongs to the job; run must not touch what the loop's thread owns.
 *
 * Completions wake the loop through an eventfd of their own.  jobs_close()
 * lets the thread finish every job posted, then calls the done calls that
 * are left, in the caller's thread: nothing posted is lost or leaked (and
 * a job stuck on a disk that never answers holds the close until it does).
 */
#ifndef ODOFS_JOBS_H
#define ODOFS_JOBS_H

#include "err.h"
#include "loop.h"

struct jobs;

typedef void (*jobs_fn)(void *arg);

/* Starts the thread; 0 and *out, or -errno with e.  From l's thread. */
int jobs_open(struct jobs **out, struct loop *l, struct err *e);

/* Finishes every job (see above), stops the thread.  Accepts NULL. */
void jobs_close(struct jobs *j);

/* Posts a job; 0, or -ENOMEM (nothing will run).  From l's thread. */
int jobs_post(struct jobs *j, jobs_fn run, jobs_fn done, void *arg);

#endif
