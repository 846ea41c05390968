/*
 * noted: what changed for live pipes since the delivery thread last
 * looked.  Committers and parking readers note a device (or the firehose);
 * the delivery thread takes all the notes at once and looks only at those
 * devices' pipes, so a round costs what changed, not every open pipe.
 *
 * A device is noted at most once between two takes.  When a note cannot
 * be kept (no memory), the set says "everything" instead: the next round
 * then looks at every pipe, so nothing is ever missed.  Safe to call from
 * any thread; its lock is a leaf lock.
 */
#ifndef ODOFS_NOTED_H
#define ODOFS_NOTED_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct noted {
	pthread_mutex_t lock;
	uint32_t *v;		/* the devices noted, each once */
	size_t n, cap;
	uint32_t *taken;	/* the last take's, the taker's to read */
	size_t taken_cap;
	uint8_t *flag;		/* flag[idx]: idx is in v */
	size_t nflag;
	bool firehose;
	bool all;		/* look at everything */
};

/* What one take holds: valid until the next take. */
struct noted_set {
	const uint32_t *dev;
	size_t n;
	bool firehose;
	bool all;		/* every pipe; dev is then empty */
};

void noted_init(struct noted *t);
void noted_fini(struct noted *t);

void noted_device(struct noted *t, uint32_t idx);
void noted_firehose(struct noted *t);
void noted_everything(struct noted *t);

/* Takes every note so far; notes from now on are for the next take. */
void noted_take(struct noted *t, struct noted_set *out);

#endif
