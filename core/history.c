/*
 * history: see history.h.  Value: u16 host length, host, u16 port, u64
 * last active; big-endian like every key and value of the store.
 */
#include <errno.h>
#include <string.h>

#include "config.h"
#include "history.h"
#include "keys.h"
#include "store.h"

#define HISTORY_KEY_MAX	(1 + JOURNAL_NODE_MAX)
#define HISTORY_VAL_MAX	(2 + HISTORY_HOST_MAX + 2 + 8)

static size_t
history_key(unsigned char *k, const char *id)
{
	size_t n = strlen(id);

	k[0] = 'P';
	memcpy(k + 1, id, n);
	return 1 + n;
}

int
history_save(struct journal *j, const struct history_entry *h, struct err *e)
{
	unsigned char k[HISTORY_KEY_MAX], v[HISTORY_VAL_MAX];
	size_t hl = strlen(h->host), kl;
	struct store_batch *b;
	int rc;

	if (!config_valid_id(h->id, strlen(h->id), JOURNAL_NODE_MAX) ||
	    hl == 0 || hl > HISTORY_HOST_MAX)
		return err_set(e, -EINVAL, "history: bad entry");
	kl = history_key(k, h->id);
	v[0] = (unsigned char)(hl >> 8);
	v[1] = (unsigned char)hl;
	memcpy(v + 2, h->host, hl);
	v[2 + hl] = (unsigned char)(h->port >> 8);
	v[3 + hl] = (unsigned char)h->port;
	keys_put_u64(v + 4 + hl, h->last_active);
	if ((b = store_batch_new()) == NULL)
		return err_set(e, -ENOMEM, "out of memory");
	store_batch_put(b, k, kl, v, 12 + hl);
	rc = store_write(journal_store(j), b, false, e);
	store_batch_free(b);
	return rc;
}

int
history_load(struct journal *j, history_fn fn, void *arg, struct err *e)
{
	struct store_iter *it;
	int rc;

	if ((it = store_iter_new(journal_store(j), false)) == NULL)
		return err_set(e, -ENOMEM, "out of memory");
	for (store_iter_seek(it, "P", 1); store_iter_valid(it);
	    store_iter_next(it)) {
		struct history_entry h;
		size_t kl, vl, hl;
		const unsigned char *k = store_iter_key(it, &kl);
		const unsigned char *v = store_iter_value(it, &vl);

		if (kl < 1 || k[0] != 'P')
			break;
		if (kl - 1 > JOURNAL_NODE_MAX || vl < 2)
			continue;
		hl = (size_t)v[0] << 8 | v[1];
		if (hl == 0 || hl > HISTORY_HOST_MAX || vl != 12 + hl)
			continue;
		memcpy(h.id, k + 1, kl - 1);
		h.id[kl - 1] = '\0';
		if (!config_valid_id(h.id, kl - 1, JOURNAL_NODE_MAX))
			continue;
		memcpy(h.host, v + 2, hl);
		h.host[hl] = '\0';
		h.port = (uint16_t)(v[2 + hl] << 8 | v[3 + hl]);
		h.last_active = keys_get_u64(v + 4 + hl);
		fn(arg, &h);
	}
	rc = store_iter_status(it, e);
	store_iter_free(it);
	return rc;
}
