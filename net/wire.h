/*
 * wire: the peer protocol's frames and messages, encoded and decoded over
 * memory only.  No I/O, no allocation while decoding, no global state: every
 * function is safe from any thread and is what the fuzzer drives.
 *
 * A frame is
 *
 *	u32 length	big-endian; bytes of type + payload, 1..WIRE_FRAME_MAX
 *	u8  type	enum wire_type
 *	    payload	length - 1 bytes
 *
 * Inside a payload, integers are big-endian and a string is a u16 byte count
 * followed by the bytes (no NUL).  A node id is a string that satisfies
 * config_valid_id(); text (reasons, hosts) is printable: no byte below 0x20
 * and no 0x7f.  Every decoder checks each length against what is left of the
 * frame before using it and that it consumed the frame exactly; anything
 * else is -EPROTO.  Whatever decodes re-encodes to the identical bytes.
 *
 * Message types are stable numbers; a type is never reused for another
 * layout.  Types 16..63 belong to replication (catalogue, subscribe, events,
 * snapshot) and are added in the same style with the primitives below.
 *
 *	 1 HELLO  u16 version, id, listen ("HOST:PORT" or ""), u64 nonce
 *	 2 PING   u64 token
 *	 3 PONG   u64 token (the token of the PING it answers)
 *	 4 BYE    u16 code (enum wire_bye_code), reason
 *	 5 PEERS  u16 count (<= WIRE_PEERS_MAX), count x { id, host, u16 port }
 *
 * Replication (SPEC §8; see net/sync.c):
 *
 *	16 CATALOGUE   u8 flags (WIRE_CAT_FULL), u16 count (<= WIRE_CAT_MAX),
 *	               count x { device, u64 epoch, source id, u64 created_ns,
 *	               u64 first, u64 head, u64 snapshot, u8 role, upstream,
 *	               u8 hops (0 at the source; 255 no known path) }
 *	17 SUBSCRIBE   device, u64 epoch, u64 from, u32 sub
 *	18 UNSUBSCRIBE device, u32 sub
 *	19 EVENTS      device, u32 sub, u64 first, u32 count, u64 head (the
 *	               sender's, >= first + count - 1), u32 n, n bytes of
 *	               count lines "payload\n"
 *	20 SNAPSHOT    device, u32 sub, u8 mode, u64 rev, u64 offset,
 *	               u64 total, u64 at, u32 n, n bytes (the payload's bytes
 *	               at..at+n of total)
 *	21 REJECT      device, u32 sub, reason
 *	22 ACK         device, u64 epoch, u16 count (<= WIRE_ACK_MAX),
 *	               count x { node id, u64 head, u64 durable (<= head),
 *	               u64 at (the holder's clock, ms since 1970) }: heads
 *	               of the device that the sender and the holders behind it
 *	               have applied and hold on stable storage (SPEC §8.10)
 *	23 WANT        device, u64 epoch, u64 rev: a source's fsync waits for
 *	               rev to be on stable storage: sync now and acknowledge
 *
 * A device is a string that satisfies config_valid_id() with at most
 * WIRE_DEVICE_MAX bytes; upstream is a node id or "".
 *
 * Encoders append one whole frame to a struct buf (core/buf.h) and leave it
 * untouched on failure; the buffer's maximum bounds what they may write.
 */
#ifndef ODOFS_WIRE_H
#define ODOFS_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "config.h"

#define WIRE_VERSION		2	/* 2: catalogue entries carry hops */
#define WIRE_HEADER		4		/* the u32 length */
#define WIRE_FRAME_MAX		(8u << 20)	/* type + payload, bytes */
#define WIRE_STR_MAX		65535		/* bytes of one string */
#define WIRE_ID_MAX		CONFIG_ID_MAX	/* bytes of a node id */
#define WIRE_ADDR_MAX		(CONFIG_ADDR_MAX - 1) /* "HOST:PORT" */
#define WIRE_HOST_MAX		255		/* host of a PEERS entry */
#define WIRE_REASON_MAX		255		/* BYE reason */
#define WIRE_PEERS_MAX		1024		/* entries of one PEERS */

enum wire_type {
	WIRE_HELLO = 1,
	WIRE_PING = 2,
	WIRE_PONG = 3,
	WIRE_BYE = 4,
	WIRE_PEERS = 5,
	/* 6..15: spare for the session layer */
	WIRE_REPL_FIRST = 16,	/* 16..63: replication messages */
	WIRE_CATALOGUE = 16,
	WIRE_SUBSCRIBE = 17,
	WIRE_UNSUBSCRIBE = 18,
	WIRE_EVENTS = 19,
	WIRE_SNAPSHOT = 20,
	WIRE_REJECT = 21,
	WIRE_ACK = 22,
	WIRE_WANT = 23,
	WIRE_REPL_LAST = 63,
};

/* A lower-case name for logs: "hello", ..., "type 17" for others. */
const char *wire_type_name(uint8_t type, char *tmp, size_t size);

/*
 * Frames.
 */

/*
 * Looks at the start of a receive buffer.  Returns 0 when more bytes are
 * needed, the length of the whole frame (header included, > 0) when p holds
 * a complete one, -EPROTO for a declared length of 0, or -EMSGSIZE for one
 * above WIRE_FRAME_MAX.  *frame_len is the whole frame's length as soon as
 * the header is complete (so a reader knows how much room the frame needs,
 * and can name the declared size in an error), else 0.  Nothing is
 * allocated, whatever the header says.
 */
int wire_frame_peek(const uint8_t *p, size_t n, size_t *frame_len);

/*
 * Splits the one complete frame at the start of p: its type, and its
 * payload (pointing into p).  Returns the frame's length, 0 when p is not
 * yet a whole frame, or the errors of wire_frame_peek().
 */
int wire_frame_split(const uint8_t *p, size_t n, uint8_t *type,
    const uint8_t **payload, size_t *len);

/*
 * The encoder: wire_enc_begin() writes a header into b; the puts append the
 * payload; wire_enc_end() fills in the length.  Errors are sticky: each put
 * returns the first error so far (0, -EINVAL, -EMSGSIZE, -E2BIG for b's
 * maximum, -ENOMEM), and wire_enc_end() returns it after cutting b back to
 * where the frame began.  Only one frame may be open on a buf at a time.
 */
struct wire_enc {
	struct buf *b;
	size_t start;		/* offset of the frame's header in b */
	int rc;			/* first error, sticky */
};

void wire_enc_begin(struct wire_enc *w, struct buf *b, uint8_t type);
int wire_put_u8(struct wire_enc *w, uint8_t v);
int wire_put_u16(struct wire_enc *w, uint16_t v);
int wire_put_u32(struct wire_enc *w, uint32_t v);
int wire_put_u64(struct wire_enc *w, uint64_t v);
/* Raw bytes, no length; the caller writes one first if the reader needs it. */
int wire_put_bytes(struct wire_enc *w, const void *p, size_t n);
/* u16 length + bytes; -EINVAL when n > WIRE_STR_MAX. */
int wire_put_str(struct wire_enc *w, const char *s, size_t n);
/* A node id (config_valid_id); -EINVAL otherwise. */
int wire_put_id(struct wire_enc *w, const char *id);
/* Marks the frame as failed with rc (a validation in a message encoder). */
int wire_enc_fail(struct wire_enc *w, int rc);
/* Fills in the length; returns 0 or the first error (b restored). */
int wire_enc_end(struct wire_enc *w);

/*
 * The decoder: a cursor over one payload.  Each get returns 0, or -EPROTO
 * when the payload is too short or the value is invalid; the error is
 * sticky, and a failed get zeroes its output.  wire_dec_end() returns the
 * first error, or -EPROTO when bytes are left over.
 */
struct wire_dec {
	const uint8_t *p;	/* next byte */
	size_t left;		/* bytes not yet read */
	int rc;			/* first error, sticky */
};

void wire_dec_init(struct wire_dec *d, const uint8_t *p, size_t n);
int wire_get_u8(struct wire_dec *d, uint8_t *v);
int wire_get_u16(struct wire_dec *d, uint16_t *v);
int wire_get_u32(struct wire_dec *d, uint32_t *v);
int wire_get_u64(struct wire_dec *d, uint64_t *v);
/* n raw bytes; *p points into the payload (valid as long as it is). */
int wire_get_bytes(struct wire_dec *d, size_t n, const uint8_t **p);
/* A string's bytes without copying: *p into the payload, *n its length. */
int wire_get_strref(struct wire_dec *d, const uint8_t **p, size_t *n);
/*
 * A printable string (wire_text_ok) copied into dst[size] with a NUL;
 * -EPROTO when it does not fit (length >= size) or is not printable.
 */
int wire_get_str(struct wire_dec *d, char *dst, size_t size);
/* A node id into dst[WIRE_ID_MAX + 1]; -EPROTO unless config_valid_id. */
int wire_get_id(struct wire_dec *d, char *dst);
/*
 * An id of at most max bytes (config_valid_id) into dst[max + 1]; with
 * optional, "" is accepted too.
 */
int wire_get_name(struct wire_dec *d, char *dst, size_t max, bool optional);
/* Marks the decode as failed with rc (a validation in a message decoder). */
int wire_dec_fail(struct wire_dec *d, int rc);
int wire_dec_end(struct wire_dec *d);

/* Text on the wire: no NUL, no byte below 0x20, no 0x7f. */
bool wire_text_ok(const char *s, size_t n);

/*
 * Messages.  Encoders append one frame to b and return 0, -EINVAL for a
 * message that breaks the rules above (the peer would refuse it), or an
 * error of the encoder.  Decoders take the payload of a frame of that type
 * (what conn's on_frame gives) and return 0 or -EPROTO; their output is
 * zeroed, or partially filled, on failure.
 */

struct wire_hello {
	uint16_t version;			/* WIRE_VERSION */
	char id[WIRE_ID_MAX + 1];		/* the sender's node id */
	char listen[WIRE_ADDR_MAX + 1];	/* "HOST:PORT" or "" */
	uint64_t nonce;				/* random per process run */
};

int wire_hello_encode(struct buf *b, const struct wire_hello *m);
/*
 * The version comes first and is kept in any layout to come: for a version
 * other than WIRE_VERSION, decoding stops after it and returns
 * -EPROTONOSUPPORT with m->version set, so the caller can say which.
 */
int wire_hello_decode(const uint8_t *p, size_t n, struct wire_hello *m);

int wire_ping_encode(struct buf *b, uint64_t token);
int wire_ping_decode(const uint8_t *p, size_t n, uint64_t *token);
int wire_pong_encode(struct buf *b, uint64_t token);
int wire_pong_decode(const uint8_t *p, size_t n, uint64_t *token);

/* Codes of BYE; a receiver treats an unknown code like WIRE_BYE_ERROR. */
enum wire_bye_code {
	WIRE_BYE_SHUTDOWN = 0,	/* the sender is stopping */
	WIRE_BYE_ERROR = 1,	/* anything else; see the reason */
	WIRE_BYE_VERSION = 2,	/* unsupported protocol version */
	WIRE_BYE_IDENTITY = 3,	/* introduction does not match certificate */
	WIRE_BYE_SELF = 4,	/* a connection to ourselves */
	WIRE_BYE_DUPLICATE = 5,	/* that id already has an active connection */
	WIRE_BYE_PROTOCOL = 6,	/* a bad or unexpected frame */
	WIRE_BYE_FULL = 7,	/* at max_peers; the PEERS before it name others */
};

struct wire_bye {
	uint16_t code;
	char reason[WIRE_REASON_MAX + 1];	/* printable, may be "" */
};

int wire_bye_encode(struct buf *b, const struct wire_bye *m);
int wire_bye_decode(const uint8_t *p, size_t n, struct wire_bye *m);

/*
 * One entry of PEERS.  host is a host name, an IPv4 address or an IPv6
 * address without brackets: "host:port" (or "[host]:port") passes
 * config_check_addr().  port is 1..65535.
 */
struct wire_peer {
	char id[WIRE_ID_MAX + 1];
	char host[WIRE_HOST_MAX + 1];
	uint16_t port;
};

int wire_peers_encode(struct buf *b, const struct wire_peer *peers,
    size_t count);
/*
 * Decodes into peers[cap]; *count is the number of entries.  -EPROTO for a
 * bad frame (count above WIRE_PEERS_MAX included), -ENOSPC when a valid
 * count exceeds cap (cap = WIRE_PEERS_MAX never fails so).
 */
int wire_peers_decode(const uint8_t *p, size_t n, struct wire_peer *peers,
    size_t cap, size_t *count);

/* Whether host and port make a PEERS entry (see struct wire_peer). */
bool wire_peer_addr_ok(const char *host, uint16_t port);

/*
 * Replication messages.
 */
#define WIRE_DEVICE_MAX		128
#define WIRE_CAT_MAX		512	/* entries of one CATALOGUE frame */
#define WIRE_CAT_FULL		0x01	/* the first frame of a whole catalogue */
#define WIRE_ROLE_SOURCE	0
#define WIRE_ROLE_REPLICA	1
#define WIRE_HOPS_NONE		255

struct wire_cat_entry {
	char device[WIRE_DEVICE_MAX + 1];
	uint64_t epoch;
	char source[WIRE_ID_MAX + 1];
	uint64_t created_ns;
	uint64_t first, head, snapshot;
	uint8_t role;				/* WIRE_ROLE_* */
	char upstream[WIRE_ID_MAX + 1];	/* "" for none */
	uint8_t hops;		/* to the source: 0 at it, WIRE_HOPS_NONE unknown */
};
int wire_catalogue_encode(struct buf *b, uint8_t flags,
    const struct wire_cat_entry *e, size_t count);
/* Decodes into e[cap]; -ENOSPC when count exceeds cap. */
int wire_catalogue_decode(const uint8_t *p, size_t n, uint8_t *flags,
    struct wire_cat_entry *e, size_t cap, size_t *count);

struct wire_sub {
	char device[WIRE_DEVICE_MAX + 1];
	uint64_t epoch;				/* SUBSCRIBE only */
	uint64_t from;				/* SUBSCRIBE only */
	uint32_t sub;
	char reason[WIRE_REASON_MAX + 1];	/* REJECT only */
};
int wire_subscribe_encode(struct buf *b, const struct wire_sub *m);
int wire_subscribe_decode(const uint8_t *p, size_t n, struct wire_sub *m);
int wire_unsubscribe_encode(struct buf *b, const struct wire_sub *m);
int wire_unsubscribe_decode(const uint8_t *p, size_t n, struct wire_sub *m);
int wire_reject_encode(struct buf *b, const struct wire_sub *m);
int wire_reject_decode(const uint8_t *p, size_t n, struct wire_sub *m);

/* EVENTS: lines point into the payload when decoded. */
struct wire_events {
	char device[WIRE_DEVICE_MAX + 1];
	uint32_t sub;
	uint64_t first;
	uint32_t count;
	uint64_t head;		/* the sender's: the stream carries it */
	const uint8_t *lines;
	uint32_t len;
};
/*
 * count must be the number of '\n' in lines, which must end in one; head at
 * least first + count - 1.
 */
int wire_events_encode(struct buf *b, const struct wire_events *m);
int wire_events_decode(const uint8_t *p, size_t n, struct wire_events *m);

#define WIRE_SNAP_RESET		0	/* catch-up: the journal continues after it */
#define WIRE_SNAP_INSTALL	1	/* a newer snapshot of events already held */

struct wire_snapshot {
	char device[WIRE_DEVICE_MAX + 1];
	uint32_t sub;
	uint8_t mode;
	uint64_t rev;
	uint64_t offset;	/* RESET: where revision rev + 1 starts */
	uint64_t total;		/* bytes of the whole payload */
	uint64_t at;		/* offset of this chunk in it */
	const uint8_t *data;	/* points into the payload when decoded */
	uint32_t len;
};
int wire_snapshot_encode(struct buf *b, const struct wire_snapshot *m);
int wire_snapshot_decode(const uint8_t *p, size_t n, struct wire_snapshot *m);

#define WIRE_ACK_MAX		256	/* entries of one ACK frame */

struct wire_ack_entry {
	char node[WIRE_ID_MAX + 1];
	uint64_t head, durable, at_ms;
};
struct wire_ack {
	char device[WIRE_DEVICE_MAX + 1];
	uint64_t epoch;
	uint16_t count;
	struct wire_ack_entry e[WIRE_ACK_MAX];
};
/* count 1..WIRE_ACK_MAX; each durable <= head. */
int wire_ack_encode(struct buf *b, const struct wire_ack *m);
int wire_ack_decode(const uint8_t *p, size_t n, struct wire_ack *m);

struct wire_want {
	char device[WIRE_DEVICE_MAX + 1];
	uint64_t epoch;
	uint64_t rev;		/* >= 1 */
};
int wire_want_encode(struct buf *b, const struct wire_want *m);
int wire_want_decode(const uint8_t *p, size_t n, struct wire_want *m);

#endif
