/*
 * wire: see wire.h.  The encoder writes a placeholder header, appends the
 * payload through buf_append() (so the caller's buffer maximum holds) and
 * patches the length at the end; a frame growing past WIRE_FRAME_MAX fails
 * as soon as it does, before the buffer grows further.  The decoder is a
 * cursor that never reads past its end: every get first checks the bytes
 * left, and a failure is sticky so a message decoder can read all its fields
 * and check once.  Validation is shared by both directions (wire_text_ok,
 * config_valid_id, wire_peer_addr_ok), which is what makes "decodes, so
 * re-encodes identically" hold: a string that decodes has no NUL, so its
 * strlen() is its wire length.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "wire.h"

const char *
wire_type_name(uint8_t type, char *tmp, size_t size)
{
	switch (type) {
	case WIRE_HELLO:
		return "hello";
	case WIRE_PING:
		return "ping";
	case WIRE_PONG:
		return "pong";
	case WIRE_BYE:
		return "bye";
	case WIRE_PEERS:
		return "peers";
	case WIRE_CATALOGUE:
		return "catalogue";
	case WIRE_SUBSCRIBE:
		return "subscribe";
	case WIRE_UNSUBSCRIBE:
		return "unsubscribe";
	case WIRE_EVENTS:
		return "events";
	case WIRE_SNAPSHOT:
		return "snapshot";
	case WIRE_REJECT:
		return "reject";
	case WIRE_ACK:
		return "ack";
	case WIRE_WANT:
		return "want";
	default:
		snprintf(tmp, size, "type %u", type);
		return tmp;
	}
}

static uint32_t
wire_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

int
wire_frame_peek(const uint8_t *p, size_t n, size_t *frame_len)
{
	uint32_t len;

	*frame_len = 0;
	if (n < WIRE_HEADER)
		return 0;
	len = wire_be32(p);
	*frame_len = (size_t)len + WIRE_HEADER;
	if (len == 0)
		return -EPROTO;
	if (len > WIRE_FRAME_MAX)
		return -EMSGSIZE;
	if (n < *frame_len)
		return 0;
	return (int)*frame_len;
}

int
wire_frame_split(const uint8_t *p, size_t n, uint8_t *type,
    const uint8_t **payload, size_t *len)
{
	size_t flen;
	int rc;

	*type = 0;
	*payload = NULL;
	*len = 0;
	if ((rc = wire_frame_peek(p, n, &flen)) <= 0)
		return rc;
	*type = p[WIRE_HEADER];
	*payload = p + WIRE_HEADER + 1;
	*len = flen - WIRE_HEADER - 1;
	return rc;
}

/*
 * Encoder.
 */

void
wire_enc_begin(struct wire_enc *w, struct buf *b, uint8_t type)
{
	static const uint8_t hdr[WIRE_HEADER] = { 0 };

	w->b = b;
	w->start = b->len;
	w->rc = buf_append(b, hdr, sizeof(hdr));
	if (w->rc == 0)
		w->rc = buf_append(b, &type, 1);
}

int
wire_enc_fail(struct wire_enc *w, int rc)
{
	if (w->rc == 0)
		w->rc = rc;
	return w->rc;
}

int
wire_put_bytes(struct wire_enc *w, const void *p, size_t n)
{
	size_t used;

	if (w->rc != 0)
		return w->rc;
	used = w->b->len - w->start - WIRE_HEADER;
	if (n > WIRE_FRAME_MAX - used)
		return wire_enc_fail(w, -EMSGSIZE);
	return wire_enc_fail(w, buf_append(w->b, p, n));
}

int
wire_put_u8(struct wire_enc *w, uint8_t v)
{
	return wire_put_bytes(w, &v, 1);
}

int
wire_put_u16(struct wire_enc *w, uint16_t v)
{
	uint8_t p[2] = { (uint8_t)(v >> 8), (uint8_t)v };

	return wire_put_bytes(w, p, sizeof(p));
}

int
wire_put_u32(struct wire_enc *w, uint32_t v)
{
	uint8_t p[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16),
	    (uint8_t)(v >> 8), (uint8_t)v };

	return wire_put_bytes(w, p, sizeof(p));
}

int
wire_put_u64(struct wire_enc *w, uint64_t v)
{
	wire_put_u32(w, (uint32_t)(v >> 32));
	return wire_put_u32(w, (uint32_t)v);
}

int
wire_put_str(struct wire_enc *w, const char *s, size_t n)
{
	if (n > WIRE_STR_MAX)
		return wire_enc_fail(w, -EINVAL);
	wire_put_u16(w, (uint16_t)n);
	return wire_put_bytes(w, s, n);
}

int
wire_put_id(struct wire_enc *w, const char *id)
{
	size_t n = strnlen(id, WIRE_ID_MAX + 1);

	if (!config_valid_id(id, n, WIRE_ID_MAX))
		return wire_enc_fail(w, -EINVAL);
	return wire_put_str(w, id, n);
}

int
wire_enc_end(struct wire_enc *w)
{
	struct buf *b = w->b;
	size_t len;

	if (w->rc != 0) {
		/* cut back to where the frame began, if it got that far */
		if (b->len > w->start) {
			b->len = w->start;
			b->data[b->len] = '\0';
		}
		return w->rc;
	}
	len = b->len - w->start - WIRE_HEADER;
	b->data[w->start] = (char)(len >> 24);
	b->data[w->start + 1] = (char)(len >> 16);
	b->data[w->start + 2] = (char)(len >> 8);
	b->data[w->start + 3] = (char)len;
	return 0;
}

/*
 * Decoder.
 */

void
wire_dec_init(struct wire_dec *d, const uint8_t *p, size_t n)
{
	d->p = p;
	d->left = n;
	d->rc = 0;
}

int
wire_dec_fail(struct wire_dec *d, int rc)
{
	if (d->rc == 0)
		d->rc = rc;
	return d->rc;
}

int
wire_get_bytes(struct wire_dec *d, size_t n, const uint8_t **p)
{
	*p = NULL;
	if (d->rc != 0)
		return d->rc;
	if (n > d->left)
		return wire_dec_fail(d, -EPROTO);
	*p = d->p;
	d->p += n;
	d->left -= n;
	return 0;
}

int
wire_get_u8(struct wire_dec *d, uint8_t *v)
{
	const uint8_t *p;

	*v = 0;
	if (wire_get_bytes(d, 1, &p) < 0)
		return d->rc;
	*v = p[0];
	return 0;
}

int
wire_get_u16(struct wire_dec *d, uint16_t *v)
{
	const uint8_t *p;

	*v = 0;
	if (wire_get_bytes(d, 2, &p) < 0)
		return d->rc;
	*v = (uint16_t)(p[0] << 8 | p[1]);
	return 0;
}

int
wire_get_u32(struct wire_dec *d, uint32_t *v)
{
	const uint8_t *p;

	*v = 0;
	if (wire_get_bytes(d, 4, &p) < 0)
		return d->rc;
	*v = wire_be32(p);
	return 0;
}

int
wire_get_u64(struct wire_dec *d, uint64_t *v)
{
	const uint8_t *p;

	*v = 0;
	if (wire_get_bytes(d, 8, &p) < 0)
		return d->rc;
	*v = (uint64_t)wire_be32(p) << 32 | wire_be32(p + 4);
	return 0;
}

int
wire_get_strref(struct wire_dec *d, const uint8_t **p, size_t *n)
{
	uint16_t len;

	*p = NULL;
	*n = 0;
	if (wire_get_u16(d, &len) < 0 || wire_get_bytes(d, len, p) < 0)
		return d->rc;
	*n = len;
	return 0;
}

bool
wire_text_ok(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f)
			return false;
	}
	return true;
}

int
wire_get_str(struct wire_dec *d, char *dst, size_t size)
{
	const uint8_t *p;
	size_t n;

	if (size > 0)
		dst[0] = '\0';
	if (wire_get_strref(d, &p, &n) < 0)
		return d->rc;
	if (n >= size || !wire_text_ok((const char *)p, n))
		return wire_dec_fail(d, -EPROTO);
	memcpy(dst, p, n);
	dst[n] = '\0';
	return 0;
}

int
wire_get_name(struct wire_dec *d, char *dst, size_t max, bool optional)
{
	const uint8_t *p;
	size_t n;

	dst[0] = '\0';
	if (wire_get_strref(d, &p, &n) < 0)
		return d->rc;
	if (!(optional && n == 0) && !config_valid_id((const char *)p, n, max))
		return wire_dec_fail(d, -EPROTO);
	memcpy(dst, p, n);
	dst[n] = '\0';
	return 0;
}

int
wire_get_id(struct wire_dec *d, char *dst)
{
	return wire_get_name(d, dst, WIRE_ID_MAX, false);
}

int
wire_dec_end(struct wire_dec *d)
{
	if (d->rc == 0 && d->left != 0)
		d->rc = -EPROTO;
	return d->rc;
}

/*
 * Messages.
 */

static bool
wire_listen_ok(const char *s, size_t n)
{
	return n == 0 || (n <= WIRE_ADDR_MAX && config_check_addr(s, NULL) == 0);
}

int
wire_hello_encode(struct buf *b, const struct wire_hello *m)
{
	struct wire_enc w;
	size_t n = strnlen(m->listen, sizeof(m->listen));

	wire_enc_begin(&w, b, WIRE_HELLO);
	if (m->version != WIRE_VERSION || n == sizeof(m->listen) ||
	    !wire_listen_ok(m->listen, n))
		wire_enc_fail(&w, -EINVAL);
	wire_put_u16(&w, m->version);
	wire_put_id(&w, m->id);
	wire_put_str(&w, m->listen, n);
	wire_put_u64(&w, m->nonce);
	return wire_enc_end(&w);
}

int
wire_hello_decode(const uint8_t *p, size_t n, struct wire_hello *m)
{
	struct wire_dec d;

	memset(m, 0, sizeof(*m));
	wire_dec_init(&d, p, n);
	if (wire_get_u16(&d, &m->version) < 0)
		return d.rc;
	if (m->version != WIRE_VERSION)
		return -EPROTONOSUPPORT;
	wire_get_id(&d, m->id);
	if (wire_get_str(&d, m->listen, sizeof(m->listen)) == 0 &&
	    !wire_listen_ok(m->listen, strlen(m->listen)))
		wire_dec_fail(&d, -EPROTO);
	wire_get_u64(&d, &m->nonce);
	return wire_dec_end(&d);
}

static int
wire_token_encode(struct buf *b, uint8_t type, uint64_t token)
{
	struct wire_enc w;

	wire_enc_begin(&w, b, type);
	wire_put_u64(&w, token);
	return wire_enc_end(&w);
}

static int
wire_token_decode(const uint8_t *p, size_t n, uint64_t *token)
{
	struct wire_dec d;

	wire_dec_init(&d, p, n);
	wire_get_u64(&d, token);
	return wire_dec_end(&d);
}

int
wire_ping_encode(struct buf *b, uint64_t token)
{
	return wire_token_encode(b, WIRE_PING, token);
}

int
wire_ping_decode(const uint8_t *p, size_t n, uint64_t *token)
{
	return wire_token_decode(p, n, token);
}

int
wire_pong_encode(struct buf *b, uint64_t token)
{
	return wire_token_encode(b, WIRE_PONG, token);
}

int
wire_pong_decode(const uint8_t *p, size_t n, uint64_t *token)
{
	return wire_token_decode(p, n, token);
}

int
wire_bye_encode(struct buf *b, const struct wire_bye *m)
{
	struct wire_enc w;
	size_t n = strnlen(m->reason, sizeof(m->reason));

	wire_enc_begin(&w, b, WIRE_BYE);
	if (n == sizeof(m->reason) || !wire_text_ok(m->reason, n))
		wire_enc_fail(&w, -EINVAL);
	wire_put_u16(&w, m->code);
	wire_put_str(&w, m->reason, n);
	return wire_enc_end(&w);
}

int
wire_bye_decode(const uint8_t *p, size_t n, struct wire_bye *m)
{
	struct wire_dec d;

	memset(m, 0, sizeof(*m));
	wire_dec_init(&d, p, n);
	wire_get_u16(&d, &m->code);
	wire_get_str(&d, m->reason, sizeof(m->reason));
	return wire_dec_end(&d);
}

bool
wire_peer_addr_ok(const char *host, uint16_t port)
{
	char addr[WIRE_HOST_MAX + 16];
	size_t n = strnlen(host, WIRE_HOST_MAX + 1);

	if (n == 0 || n > WIRE_HOST_MAX || port == 0)
		return false;
	if (memchr(host, ':', n) != NULL)
		snprintf(addr, sizeof(addr), "[%s]:%u", host, port);
	else
		snprintf(addr, sizeof(addr), "%s:%u", host, port);
	return config_check_addr(addr, NULL) == 0;
}

int
wire_peers_encode(struct buf *b, const struct wire_peer *peers,
    size_t count)
{
	struct wire_enc w;

	wire_enc_begin(&w, b, WIRE_PEERS);
	if (count > WIRE_PEERS_MAX)
		wire_enc_fail(&w, -EINVAL);
	wire_put_u16(&w, (uint16_t)count);
	for (size_t i = 0; i < count && w.rc == 0; i++) {
		const struct wire_peer *pe = &peers[i];

		if (!wire_peer_addr_ok(pe->host, pe->port))
			wire_enc_fail(&w, -EINVAL);
		wire_put_id(&w, pe->id);
		wire_put_str(&w, pe->host, strlen(pe->host));
		wire_put_u16(&w, pe->port);
	}
	return wire_enc_end(&w);
}

int
wire_peers_decode(const uint8_t *p, size_t n, struct wire_peer *peers,
    size_t cap, size_t *count)
{
	struct wire_dec d;
	uint16_t k;

	*count = 0;
	wire_dec_init(&d, p, n);
	if (wire_get_u16(&d, &k) < 0)
		return d.rc;
	if (k > WIRE_PEERS_MAX)
		return -EPROTO;
	if (k > cap)
		return -ENOSPC;
	for (size_t i = 0; i < k && d.rc == 0; i++) {
		struct wire_peer *pe = &peers[i];

		memset(pe, 0, sizeof(*pe));
		wire_get_id(&d, pe->id);
		wire_get_str(&d, pe->host, sizeof(pe->host));
		wire_get_u16(&d, &pe->port);
		if (d.rc == 0 && !wire_peer_addr_ok(pe->host, pe->port))
			wire_dec_fail(&d, -EPROTO);
	}
	if (wire_dec_end(&d) < 0)
		return d.rc;
	*count = k;
	return 0;
}
