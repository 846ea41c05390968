/*
 * grow: arrays indexed by device (or any small dense index) that grow to
 * hold the index they are asked for.  One rule for every such table, so
 * that none of them doubles or zeroes differently.
 */
#ifndef ODOFS_GROW_H
#define ODOFS_GROW_H

#include <stddef.h>

/*
 * Returns v (of *n elements of size bytes) grown to hold index idx: its
 * length doubled (from 64) until it does, the new elements zeroed, *n
 * updated.  v itself when it holds idx already.  NULL when there is no
 * memory (or the length would overflow); v and *n are then unchanged.
 */
void *grow_to_index(void *v, size_t *n, size_t idx, size_t size);

#endif
