/*
 * pipes: the live pipes (SPEC §6): <device>/live, <device>/from/<rev> and
 * .live.  Each open is a cursor over the store; a read with nothing to give
 * is parked (its fuse_req_t kept, no thread blocked) and answered later,
 * with all there is by then.
 *
 * Threads: pipes_open/read/poll/close run in FUSE worker threads;
 * pipes_notify() in any committing thread.  A parked request is answered
 * exactly once: by the committing thread (a few readers), the delivery
 * thread or the interrupt callback (see pipes.c).  Memory per open is
 * constant: nothing is queued for a reader.
 */
#ifndef ODOFS_PIPES_H
#define ODOFS_PIPES_H


#include <fuse_lowlevel.h>
#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "journal.h"

struct pipes;
struct pipe;

/* Starts the delivery thread.  se is used for poll notifications. */
int pipes_start(struct pipes **out, struct journal *j,
    struct fuse_session *se, struct err *e);
/*
 * Stops the delivery thread and answers every parked read with end of
 * file (and wakes every poller), so readers end cleanly at shutdown.
 * Opens and reads after this answer end of file at once.
 */
void pipes_stop(struct pipes *p);
/* Frees p; every pipe must be closed.  Accepts NULL. */
void pipes_free(struct pipes *p);

/* A journal_notify_fn: device idx has new events. */
void pipes_notify(void *p, uint32_t idx, uint64_t head);

/* A cursor on device idx from revision rev; NULL on ENOMEM. */
struct pipe *pipes_open_device(struct pipes *p, uint32_t idx, uint64_t rev);
/* A cursor on every device from the next commit; NULL on ENOMEM. */
struct pipe *pipes_open_firehose(struct pipes *p);
void pipes_close(struct pipes *p, struct pipe *s);

/*
 * Answers req now with what is there (up to size bytes of whole or partial
 * lines), or EAGAIN with nonblock, or parks it until there is something.
 * Under load (many readers), a blocking read of a reader near the end is
 * parked until its turn (at most about 25 ms after its last answer) even
 * when a little is there.
 */
void pipes_read(struct pipes *p, struct pipe *s, fuse_req_t req, size_t size,
    bool nonblock);
/* Answers a poll; keeps ph to notify when data arrives. */
void pipes_poll(struct pipes *p, struct pipe *s, fuse_req_t req,
    struct fuse_pollhandle *ph);

struct pipes_stats {
	uint64_t open;		/* pipes open */
	uint64_t parked;	/* reads waiting */
	uint64_t delivered;	/* parked reads answered with data */
	uint64_t rounds;	/* delivery rounds that answered some */
	uint64_t behind;	/* pipes with events not read yet */
	uint64_t wakeups;	/* delivery thread woken by a commit or read */
	uint64_t slow_rounds;	/* rounds that stopped waiting for readers */
	uint64_t examined;	/* pipes looked at for delivery */
};
void pipes_stats(struct pipes *p, struct pipes_stats *out);

#endif
