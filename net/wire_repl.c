/*
 * wire_repl: the replication messages of wire.h (types 16..23), in the
 * style of wire.c: each encoder validates what a decoder would refuse, and
 * each decoder checks every length and that it consumed the whole frame,
 * so whatever decodes re-encodes to the same bytes.
 */
#include <errno.h>
#include <string.h>

#include "wire.h"

static int
wire_put_device(struct wire_enc *w, const char *dev)
{
	size_t n = strnlen(dev, WIRE_DEVICE_MAX + 1);

	if (!config_valid_id(dev, n, WIRE_DEVICE_MAX))
		return wire_enc_fail(w, -EINVAL);
	return wire_put_str(w, dev, n);
}

static int
wire_get_device(struct wire_dec *d, char *dst)
{
	return wire_get_name(d, dst, WIRE_DEVICE_MAX, false);
}

/* An id or "" (the upstream of a catalogue entry). */
static int
wire_put_opt_id(struct wire_enc *w, const char *id)
{
	return id[0] == '\0' ? wire_put_str(w, "", 0) : wire_put_id(w, id);
}

static int
wire_get_opt_id(struct wire_dec *d, char *dst)
{
	return wire_get_name(d, dst, WIRE_ID_MAX, true);
}

/*
 * The source is 0 hops from itself; a replica is 1 or more through its
 * upstream, and has no path (WIRE_HOPS_NONE) without one.
 */
static bool
wire_hops_ok(const struct wire_cat_entry *e)
{
	if (e->role == WIRE_ROLE_SOURCE)
		return e->hops == 0;
	return e->hops != 0 && (e->upstream[0] != '\0' ||
	    e->hops == WIRE_HOPS_NONE);
}

int
wire_catalogue_encode(struct buf *b, uint8_t flags,
    const struct wire_cat_entry *e, size_t count)
{
	struct wire_enc w;

	wire_enc_begin(&w, b, WIRE_CATALOGUE);
	if (count > WIRE_CAT_MAX || (flags & ~WIRE_CAT_FULL) != 0)
		wire_enc_fail(&w, -EINVAL);
	wire_put_u8(&w, flags);
	wire_put_u16(&w, (uint16_t)count);
	for (size_t i = 0; i < count && w.rc == 0; i++) {
		if (e[i].role > WIRE_ROLE_REPLICA || e[i].first == 0 ||
		    e[i].first > e[i].head + 1 || e[i].snapshot > e[i].head ||
		    !wire_hops_ok(&e[i]))
			wire_enc_fail(&w, -EINVAL);
		wire_put_device(&w, e[i].device);
		wire_put_u64(&w, e[i].epoch);
		wire_put_id(&w, e[i].source);
		wire_put_u64(&w, e[i].created_ns);
		wire_put_u64(&w, e[i].first);
		wire_put_u64(&w, e[i].head);
		wire_put_u64(&w, e[i].snapshot);
		wire_put_u8(&w, e[i].role);
		wire_put_opt_id(&w, e[i].upstream);
		wire_put_u8(&w, e[i].hops);
	}
	return wire_enc_end(&w);
}

int
wire_catalogue_decode(const uint8_t *p, size_t n, uint8_t *flags,
    struct wire_cat_entry *e, size_t cap, size_t *count)
{
	struct wire_dec d;
	uint16_t c = 0;

	*count = 0;
	wire_dec_init(&d, p, n);
	wire_get_u8(&d, flags);
	wire_get_u16(&d, &c);
	if (d.rc == 0 && ((*flags & ~WIRE_CAT_FULL) != 0 || c > WIRE_CAT_MAX))
		return wire_dec_fail(&d, -EPROTO);
	if (d.rc == 0 && c > cap)
		return -ENOSPC;
	for (size_t i = 0; i < c && d.rc == 0; i++) {
		memset(&e[i], 0, sizeof(e[i]));
		wire_get_device(&d, e[i].device);
		wire_get_u64(&d, &e[i].epoch);
		wire_get_id(&d, e[i].source);
		wire_get_u64(&d, &e[i].created_ns);
		wire_get_u64(&d, &e[i].first);
		wire_get_u64(&d, &e[i].head);
		wire_get_u64(&d, &e[i].snapshot);
		wire_get_u8(&d, &e[i].role);
		wire_get_opt_id(&d, e[i].upstream);
		wire_get_u8(&d, &e[i].hops);
		if (d.rc == 0 && (e[i].role > WIRE_ROLE_REPLICA ||
		    e[i].first == 0 || e[i].head == UINT64_MAX ||
		    e[i].first > e[i].head + 1 || e[i].snapshot > e[i].head ||
		    !wire_hops_ok(&e[i])))
			wire_dec_fail(&d, -EPROTO);
	}
	if (wire_dec_end(&d) < 0)
		return d.rc;
	*count = c;
	return 0;
}

/* SUBSCRIBE, UNSUBSCRIBE and REJECT share a layout prefix. */
static int
wire_sub_encode(struct buf *b, uint8_t type, const struct wire_sub *m)
{
	struct wire_enc w;
	size_t n = strnlen(m->reason, sizeof(m->reason));

	wire_enc_begin(&w, b, type);
	wire_put_device(&w, m->device);
	if (type == WIRE_SUBSCRIBE) {
		if (m->from == 0)
			wire_enc_fail(&w, -EINVAL);
		wire_put_u64(&w, m->epoch);
		wire_put_u64(&w, m->from);
	}
	wire_put_u32(&w, m->sub);
	if (type == WIRE_REJECT) {
		if (n == sizeof(m->reason) || !wire_text_ok(m->reason, n))
			wire_enc_fail(&w, -EINVAL);
		wire_put_str(&w, m->reason, n);
	}
	return wire_enc_end(&w);
}

static int
wire_sub_decode(const uint8_t *p, size_t n, uint8_t type, struct wire_sub *m)
{
	struct wire_dec d;

	memset(m, 0, sizeof(*m));
	wire_dec_init(&d, p, n);
	wire_get_device(&d, m->device);
	if (type == WIRE_SUBSCRIBE) {
		wire_get_u64(&d, &m->epoch);
		wire_get_u64(&d, &m->from);
		if (d.rc == 0 && m->from == 0)
			wire_dec_fail(&d, -EPROTO);
	}
	wire_get_u32(&d, &m->sub);
	if (type == WIRE_REJECT)
		wire_get_str(&d, m->reason, sizeof(m->reason));
	return wire_dec_end(&d);
}

int
wire_subscribe_encode(struct buf *b, const struct wire_sub *m)
{
	return wire_sub_encode(b, WIRE_SUBSCRIBE, m);
}

int
wire_subscribe_decode(const uint8_t *p, size_t n, struct wire_sub *m)
{
	return wire_sub_decode(p, n, WIRE_SUBSCRIBE, m);
}

int
wire_unsubscribe_encode(struct buf *b, const struct wire_sub *m)
{
	return wire_sub_encode(b, WIRE_UNSUBSCRIBE, m);
}

int
wire_unsubscribe_decode(const uint8_t *p, size_t n, struct wire_sub *m)
{
	return wire_sub_decode(p, n, WIRE_UNSUBSCRIBE, m);
}

int
wire_reject_encode(struct buf *b, const struct wire_sub *m)
{
	return wire_sub_encode(b, WIRE_REJECT, m);
}

int
wire_reject_decode(const uint8_t *p, size_t n, struct wire_sub *m)
{
	return wire_sub_decode(p, n, WIRE_REJECT, m);
}

/* Whether lines[0..len) is exactly count lines, each ending in '\n'. */
static bool
wire_lines_ok(const uint8_t *lines, size_t len, uint32_t count)
{
	uint32_t n = 0;
	const uint8_t *p = lines, *end = lines + len, *nl;

	if (len == 0 || lines[len - 1] != '\n')
		return count == 0 && len == 0;
	for (; p < end; p = nl + 1, n++)
		if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL)
			return false;
	return n == count;
}

int
wire_events_encode(struct buf *b, const struct wire_events *m)
{
	struct wire_enc w;

	wire_enc_begin(&w, b, WIRE_EVENTS);
	if (m->first == 0 || m->count == 0 ||
	    m->first > UINT64_MAX - m->count ||
	    m->head < m->first + m->count - 1 ||
	    !wire_lines_ok(m->lines, m->len, m->count))
		wire_enc_fail(&w, -EINVAL);
	wire_put_device(&w, m->device);
	wire_put_u32(&w, m->sub);
	wire_put_u64(&w, m->first);
	wire_put_u32(&w, m->count);
	wire_put_u64(&w, m->head);
	wire_put_u32(&w, m->len);
	wire_put_bytes(&w, m->lines, m->len);
	return wire_enc_end(&w);
}

int
wire_events_decode(const uint8_t *p, size_t n, struct wire_events *m)
{
	struct wire_dec d;

	memset(m, 0, sizeof(*m));
	wire_dec_init(&d, p, n);
	wire_get_device(&d, m->device);
	wire_get_u32(&d, &m->sub);
	wire_get_u64(&d, &m->first);
	wire_get_u32(&d, &m->count);
	wire_get_u64(&d, &m->head);
	wire_get_u32(&d, &m->len);
	wire_get_bytes(&d, m->len, &m->lines);
	if (d.rc == 0 && (m->first == 0 || m->count == 0 ||
	    m->first > UINT64_MAX - m->count ||
	    m->head < m->first + m->count - 1 ||
	    !wire_lines_ok(m->lines, m->len, m->count)))
		wire_dec_fail(&d, -EPROTO);
	return wire_dec_end(&d);
}

int
wire_snapshot_encode(struct buf *b, const struct wire_snapshot *m)
{
	struct wire_enc w;

	wire_enc_begin(&w, b, WIRE_SNAPSHOT);
	if (m->mode > WIRE_SNAP_INSTALL || m->at > m->total ||
	    m->len > m->total - m->at)
		wire_enc_fail(&w, -EINVAL);
	wire_put_device(&w, m->device);
	wire_put_u32(&w, m->sub);
	wire_put_u8(&w, m->mode);
	wire_put_u64(&w, m->rev);
	wire_put_u64(&w, m->offset);
	wire_put_u64(&w, m->total);
	wire_put_u64(&w, m->at);
	wire_put_u32(&w, m->len);
	wire_put_bytes(&w, m->data, m->len);
	return wire_enc_end(&w);
}

int
wire_snapshot_decode(const uint8_t *p, size_t n, struct wire_snapshot *m)
{
	struct wire_dec d;

	memset(m, 0, sizeof(*m));
	wire_dec_init(&d, p, n);
	wire_get_device(&d, m->device);
	wire_get_u32(&d, &m->sub);
	wire_get_u8(&d, &m->mode);
	wire_get_u64(&d, &m->rev);
	wire_get_u64(&d, &m->offset);
	wire_get_u64(&d, &m->total);
	wire_get_u64(&d, &m->at);
	wire_get_u32(&d, &m->len);
	wire_get_bytes(&d, m->len, &m->data);
	if (d.rc == 0 && (m->mode > WIRE_SNAP_INSTALL || m->at > m->total ||
	    m->len > m->total - m->at))
		wire_dec_fail(&d, -EPROTO);
	return wire_dec_end(&d);
}

static bool
wire_ack_ok(const struct wire_ack *m)
{
	if (m->count == 0 || m->count > WIRE_ACK_MAX)
		return false;
	for (size_t i = 0; i < m->count; i++)
		if (m->e[i].durable > m->e[i].head)
			return false;
	return true;
}

int
wire_ack_encode(struct buf *b, const struct wire_ack *m)
{
	struct wire_enc w;

	wire_enc_begin(&w, b, WIRE_ACK);
	if (!wire_ack_ok(m))
		wire_enc_fail(&w, -EINVAL);
	wire_put_device(&w, m->device);
	wire_put_u64(&w, m->epoch);
	wire_put_u16(&w, m->count);
	for (size_t i = 0; w.rc == 0 && i < m->count; i++) {
		wire_put_id(&w, m->e[i].node);
		wire_put_u64(&w, m->e[i].head);
		wire_put_u64(&w, m->e[i].durable);
		wire_put_u64(&w, m->e[i].at_ms);
	}
	return wire_enc_end(&w);
}

int
wire_ack_decode(const uint8_t *p, size_t n, struct wire_ack *m)
{
	struct wire_dec d;

	m->count = 0;
	m->device[0] = '\0';
	wire_dec_init(&d, p, n);
	wire_get_device(&d, m->device);
	wire_get_u64(&d, &m->epoch);
	wire_get_u16(&d, &m->count);
	if (d.rc == 0 && (m->count == 0 || m->count > WIRE_ACK_MAX))
		wire_dec_fail(&d, -EPROTO);
	for (size_t i = 0; d.rc == 0 && i < m->count; i++) {
		wire_get_id(&d, m->e[i].node);
		wire_get_u64(&d, &m->e[i].head);
		wire_get_u64(&d, &m->e[i].durable);
		wire_get_u64(&d, &m->e[i].at_ms);
	}
	if (d.rc == 0 && !wire_ack_ok(m))
		wire_dec_fail(&d, -EPROTO);
	if (d.rc != 0)
		m->count = 0;
	return wire_dec_end(&d);
}

int
wire_want_encode(struct buf *b, const struct wire_want *m)
{
	struct wire_enc w;

	wire_enc_begin(&w, b, WIRE_WANT);
	if (m->rev == 0)
		wire_enc_fail(&w, -EINVAL);
	wire_put_device(&w, m->device);
	wire_put_u64(&w, m->epoch);
	wire_put_u64(&w, m->rev);
	return wire_enc_end(&w);
}

int
wire_want_decode(const uint8_t *p, size_t n, struct wire_want *m)
{
	struct wire_dec d;

	memset(m, 0, sizeof(*m));
	wire_dec_init(&d, p, n);
	wire_get_device(&d, m->device);
	wire_get_u64(&d, &m->epoch);
	wire_get_u64(&d, &m->rev);
	if (d.rc == 0 && m->rev == 0)
		wire_dec_fail(&d, -EPROTO);
	return wire_dec_end(&d);
}
