/*
 * keys: see keys.h.  Encoding only; the store and the journal decide what
 * the values mean.
 */
#include <string.h>

#include "keys.h"

void
keys_put_u32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

void
keys_put_u64(unsigned char *p, uint64_t v)
{
	keys_put_u32(p, (uint32_t)(v >> 32));
	keys_put_u32(p + 4, (uint32_t)v);
}

uint32_t
keys_get_u32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

uint64_t
keys_get_u64(const unsigned char *p)
{
	return (uint64_t)keys_get_u32(p) << 32 | keys_get_u32(p + 4);
}

void
keys_event(unsigned char *out, uint32_t devno, uint64_t offset, uint64_t rev)
{
	out[0] = 'E';
	keys_put_u32(out + 1, devno);
	keys_put_u64(out + 5, offset);
	keys_put_u64(out + 13, rev);
}

bool
keys_event_parse(const void *k, size_t len, uint32_t devno, uint64_t *offset,
    uint64_t *rev)
{
	const unsigned char *p = k;

	if (len != KEYS_EVENT_LEN || p[0] != 'E' || keys_get_u32(p + 1) != devno)
		return false;
	*offset = keys_get_u64(p + 5);
	*rev = keys_get_u64(p + 13);
	return true;
}

void
keys_rev(unsigned char *out, uint32_t devno, uint64_t rev)
{
	out[0] = 'R';
	keys_put_u32(out + 1, devno);
	keys_put_u64(out + 5, rev);
}

bool
keys_rev_parse(const void *k, size_t len, uint32_t devno, uint64_t *rev)
{
	const unsigned char *p = k;

	if (len != KEYS_REV_LEN || p[0] != 'R' || keys_get_u32(p + 1) != devno)
		return false;
	*rev = keys_get_u64(p + 5);
	return true;
}

bool
keys_rev_indexed(uint64_t rev)
{
	return rev % KEYS_REV_STRIDE == 1;
}

size_t
keys_dev(unsigned char *out, const char *id, size_t idlen)
{
	out[0] = 'D';
	memcpy(out + 1, id, idlen);
	return 1 + idlen;
}

size_t
keys_holder(unsigned char *out, const char *dev, size_t devlen,
    const char *node, size_t nodelen)
{
	out[0] = 'H';
	memcpy(out + 1, dev, devlen);
	out[1 + devlen] = '\0';
	memcpy(out + 2 + devlen, node, nodelen);
	return 2 + devlen + nodelen;
}

bool
keys_holder_parse(const void *k, size_t len, const char **dev,
    size_t *devlen, const char **node, size_t *nodelen)
{
	const unsigned char *p = k, *z;

	if (len < 4 || len > KEYS_HOLDER_MAX || p[0] != 'H' ||
	    (z = memchr(p + 1, '\0', len - 1)) == NULL || z == p + 1 ||
	    z == p + len - 1)
		return false;
	*dev = (const char *)p + 1;
	*devlen = (size_t)(z - p - 1);
	*node = (const char *)z + 1;
	*nodelen = (size_t)(p + len - z - 1);
	return true;
}

void
keys_fh(unsigned char *out, uint64_t seq)
{
	out[0] = 'G';
	keys_put_u64(out + 1, seq);
}

bool
keys_fh_parse(const void *k, size_t len, uint64_t *seq)
{
	const unsigned char *p = k;

	if (len != KEYS_FH_LEN || p[0] != 'G')
		return false;
	*seq = keys_get_u64(p + 1);
	return true;
}

void
keys_fh_val(unsigned char *out, uint32_t idx, uint64_t first, uint32_t count)
{
	keys_put_u32(out, idx);
	keys_put_u64(out + 4, first);
	keys_put_u32(out + 12, count);
}

bool
keys_fh_val_parse(const void *v, size_t len, uint32_t *idx, uint64_t *first,
    uint32_t *count)
{
	const unsigned char *p = v;

	if (len != KEYS_FH_VAL_LEN)
		return false;
	*idx = keys_get_u32(p);
	*first = keys_get_u64(p + 4);
	*count = keys_get_u32(p + 12);
	return true;
}
