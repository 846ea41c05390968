/*
 * noted: see noted.h.
 *
 * The devices noted are an array with a flag a device, so a note is O(1)
 * and a take hands the array over.  Two arrays take turns: the taker reads
 * one while notes go to the other, and neither is copied.  Both grow with
 * the number of devices, never with the number of commits.
 */
#include <stdlib.h>
#include <string.h>

#include "grow.h"
#include "noted.h"

void
noted_init(struct noted *t)
{
	memset(t, 0, sizeof(*t));
	pthread_mutex_init(&t->lock, NULL);
}

void
noted_fini(struct noted *t)
{
	free(t->v);
	free(t->taken);
	free(t->flag);
	pthread_mutex_destroy(&t->lock);
}

/* Caller holds t->lock.  Returns false when there is no memory for it. */
static bool
noted_add(struct noted *t, uint32_t idx)
{
	uint8_t *f;

	if ((f = grow_to_index(t->flag, &t->nflag, idx, 1)) == NULL)
		return false;
	t->flag = f;
	if (t->flag[idx])
		return true;
	if (t->n == t->cap) {
		size_t n = t->cap ? 2 * t->cap : 64;
		uint32_t *v = realloc(t->v, n * sizeof(*v));

		if (v == NULL)
			return false;
		t->v = v;
		t->cap = n;
	}
	t->flag[idx] = 1;
	t->v[t->n++] = idx;
	return true;
}

void
noted_device(struct noted *t, uint32_t idx)
{
	pthread_mutex_lock(&t->lock);
	if (!t->all && !noted_add(t, idx))
		t->all = true;
	pthread_mutex_unlock(&t->lock);
}

void
noted_firehose(struct noted *t)
{
	pthread_mutex_lock(&t->lock);
	t->firehose = true;
	pthread_mutex_unlock(&t->lock);
}

void
noted_everything(struct noted *t)
{
	pthread_mutex_lock(&t->lock);
	t->all = true;
	pthread_mutex_unlock(&t->lock);
}

void
noted_take(struct noted *t, struct noted_set *out)
{
	uint32_t *v;
	size_t cap;

	pthread_mutex_lock(&t->lock);
	for (size_t i = 0; i < t->n; i++)
		t->flag[t->v[i]] = 0;
	v = t->v;
	cap = t->cap;
	t->v = t->taken;
	t->cap = t->taken_cap;
	t->taken = v;
	t->taken_cap = cap;
	out->dev = t->all ? NULL : t->taken;
	out->n = t->all ? 0 : t->n;
	out->firehose = t->firehose;
	out->all = t->all;
	t->n = 0;
	t->firehose = false;
	t->all = false;
	pthread_mutex_unlock(&t->lock);
}
