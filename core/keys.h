/*
 * keys: the LevelDB key layout.  Integers are big-endian, so LevelDB's
 * bytewise order is journal order:
 *
 *	'D' <device id>                      -> device record (see devtable.c)
 *	'E' <devno u32> <offset u64> <rev u64> -> <payload>
 *	'R' <devno u32> <rev u64>            -> <offset u64>   (sparse: every
 *	                                        KEYS_REV_STRIDE-th revision)
 *	'G' <seq u64>                        -> <idx u32> <first rev u64>
 *	                                        <count u32>  (the firehose log;
 *	                                        process-local, cleared at open)
 *	'H' <device id> 0 <node id>          -> <epoch u64> <head u64>
 *	                                        <durable u64> <at ms u64>
 *	                                        (a holder's acknowledgement,
 *	                                        see holders.h)
 *
 * The payload is stored without its newline.  Events are keyed by byte
 * offset first, so a read at any offset is one seek; the
 * sparse revision index makes a read from any revision one seek plus at most
 * KEYS_REV_STRIDE - 1 steps.  Both stay O(log n) in the journal's length and
 * cost no memory.  Pure functions, no allocation.
 */
#ifndef ODOFS_KEYS_H
#define ODOFS_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KEYS_EVENT_LEN	21	/* 'E' + 4 + 8 + 8 */
#define KEYS_REV_LEN	13	/* 'R' + 4 + 8 */
#define KEYS_DEV_MAX	129	/* 'D' + 128 */
#define KEYS_FH_LEN	9	/* 'G' + 8 */
#define KEYS_FH_VAL_LEN	16
#define KEYS_REV_STRIDE	64
#define KEYS_HOLDER_MAX	(1 + 128 + 1 + 64)	/* 'H' id 0 node */
#define KEYS_HOLDER_VAL_LEN	32

void keys_put_u32(unsigned char *p, uint32_t v);
void keys_put_u64(unsigned char *p, uint64_t v);
uint32_t keys_get_u32(const unsigned char *p);
uint64_t keys_get_u64(const unsigned char *p);

/*
 * Fills out (KEYS_EVENT_LEN bytes) with the event key of (devno, offset,
 * rev).  Offsets and revisions grow together, so seeking (devno, off, 0)
 * finds the event that starts at off, or the one after it.
 */
void keys_event(unsigned char *out, uint32_t devno, uint64_t offset,
    uint64_t rev);
/* Parses an event key; false if k is not an event key of devno. */
bool keys_event_parse(const void *k, size_t len, uint32_t devno,
    uint64_t *offset, uint64_t *rev);

/* Fill out (KEYS_REV_LEN bytes) with the revision-index key. */
void keys_rev(unsigned char *out, uint32_t devno, uint64_t rev);
bool keys_rev_parse(const void *k, size_t len, uint32_t devno, uint64_t *rev);
/* Whether revision rev gets an index entry. */
bool keys_rev_indexed(uint64_t rev);

/*
 * Fills out (KEYS_HOLDER_MAX bytes) with the key of device dev's holder
 * node; returns its length.
 */
size_t keys_holder(unsigned char *out, const char *dev, size_t devlen,
    const char *node, size_t nodelen);
/*
 * Parses a holder key: the device id and node id (pointers into k, not
 * terminated) and their lengths; false if k is not one.
 */
bool keys_holder_parse(const void *k, size_t len, const char **dev,
    size_t *devlen, const char **node, size_t *nodelen);

/* Firehose log key of commit seq (KEYS_FH_LEN bytes). */
void keys_fh(unsigned char *out, uint64_t seq);
bool keys_fh_parse(const void *k, size_t len, uint64_t *seq);
/* Its value (KEYS_FH_VAL_LEN bytes): device, first revision, count. */
void keys_fh_val(unsigned char *out, uint32_t idx, uint64_t first,
    uint32_t count);
bool keys_fh_val_parse(const void *v, size_t len, uint32_t *idx,
    uint64_t *first, uint32_t *count);

/* Device record key; returns its length (1 + idlen). out: KEYS_DEV_MAX. */
size_t keys_dev(unsigned char *out, const char *id, size_t idlen);

#endif
