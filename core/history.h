/*
 * history: the peer history of SPEC §7.  Host, port and id of every peer
 * that became active, and when it was last active, kept in the store
 * ('P' <id> keys) so a restarted node redials them.  Blocking; used by the
 * net thread.
 */
#ifndef ODOFS_HISTORY_H
#define ODOFS_HISTORY_H

#include <stdint.h>

#include "err.h"
#include "journal.h"

#define HISTORY_HOST_MAX	255

struct history_entry {
	char id[JOURNAL_NODE_MAX + 1];
	char host[HISTORY_HOST_MAX + 1];
	uint16_t port;
	uint64_t last_active;		/* seconds since the epoch */
};

/* Records (or refreshes) an entry.  Returns 0 or -EIO / -EINVAL. */
int history_save(struct journal *j, const struct history_entry *h,
    struct err *e);

typedef void (*history_fn)(void *arg, const struct history_entry *h);
/* Calls fn for every entry, in id order.  Bad records are skipped. */
int history_load(struct journal *j, history_fn fn, void *arg, struct err *e);

#endif
