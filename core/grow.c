/*
 * grow: see grow.h.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "grow.h"

void *
grow_to_index(void *v, size_t *n, size_t idx, size_t size)
{
	size_t len = *n ? *n : 64;
	char *w;

	if (idx < *n)
		return v;
	while (len <= idx) {
		if (len > SIZE_MAX / 2)
			return NULL;
		len *= 2;
	}
	if (len > SIZE_MAX / size || (w = realloc(v, len * size)) == NULL)
		return NULL;
	memset(w + *n * size, 0, (len - *n) * size);
	*n = len;
	return w;
}
