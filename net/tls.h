/*
 * tls: mutual TLS 1.3 for peer connections; the only file that includes
 * OpenSSL.  Two objects:
 *
 *   struct tls_ctx   this node's identity (certificate, key) and the one CA
 *                    every peer must be signed by.  Opened once, at start-up
 *                    (so an unreadable or mismatched file fails before the
 *                    mount), then shared read-only by every connection.
 *   struct tls       one connection's TLS state over a non-blocking socket
 *                    the caller owns; driven by the caller's event loop.
 *
 * Both sides present and verify certificates (TLS 1.3 only, the CA file as
 * the only trust anchor, a short chain).  Host names are not checked: a
 * peer's identity is its certificate's subject CN, which must be a valid
 * node id (config_valid_id) for the handshake to succeed; the caller compares
 * it with what the peer says it is.
 *
 * Writing never raises SIGPIPE (sockets are written with MSG_NOSIGNAL).
 * Threads: tls_ctx_open() and tls_ctx_close() in one thread while no struct
 * tls uses the context; a struct tls belongs to one thread (the net thread).
 * Each call clears and then drains OpenSSL's (thread-local) error queue.
 */
#ifndef ODOFS_TLS_H
#define ODOFS_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "err.h"

#define TLS_VERIFY_DEPTH	2	/* peer, up to one intermediate, CA */

struct tls_ctx;
struct tls;

/*
 * Loads cert (PEM, optionally followed by its chain), key (PEM) and ca
 * (PEM, one or more CA certificates).  Returns 0 and *out (free with
 * tls_ctx_close()), or -ENOENT / -EACCES / -EINVAL with e naming the key and
 * the file: "tls.cert /path: cannot load certificate: <reason>",
 * "tls.key /path: does not match tls.cert /path".
 */
int tls_ctx_open(struct tls_ctx **out, const char *cert, const char *key,
    const char *ca, struct err *e);
void tls_ctx_close(struct tls_ctx *t);

/*
 * Copies the subject CN of our own certificate into id[size] (size at least
 * CONFIG_ID_MAX + 1).  Returns 0, or -EINVAL when there is no CN or it is
 * not a valid node id, with e saying so.
 */
int tls_ctx_own_id(const struct tls_ctx *t, char *id, size_t size,
    struct err *e);

/*
 * Verifies our own certificate against the CA (issuer, validity dates,
 * purpose), as a peer would.  Returns 0 or -EINVAL with e:
 * "tls.cert /path: not accepted by tls.ca /path: certificate has expired".
 * Policy (refuse to start, or warn) is the caller's.
 */
int tls_ctx_check(const struct tls_ctx *t, struct err *e);

/* Results of the non-blocking calls besides 0 (done) and -errno. */
enum tls_status {
	TLS_OK = 0,
	TLS_WANT_READ = 1,	/* call again when the socket is readable */
	TLS_WANT_WRITE = 2,	/* call again when the socket is writable */
	TLS_EOF = 3,		/* the peer closed the connection */
};

/*
 * Starts TLS on the connected, non-blocking socket fd (not taken: the
 * caller closes it after tls_close()), as the server (accepted socket) or
 * the client.  Returns 0 and *out, or -ENOMEM with e.
 */
int tls_open(struct tls **out, struct tls_ctx *t, int fd, bool server,
    struct err *e);
/* Frees the TLS state; sends nothing.  Accepts NULL. */
void tls_close(struct tls *s);

/*
 * Advances the handshake.  Returns TLS_OK once it is complete (the peer's
 * certificate verified and its CN a valid node id; see tls_peer_id()),
 * TLS_WANT_READ / TLS_WANT_WRITE, TLS_EOF when the peer hung up, or
 * -EPROTO / -ECONNRESET / ... with e one line: "certificate verify failed
 * (unable to get local issuer certificate)", "tlsv1 alert unknown ca".
 */
int tls_handshake(struct tls *s, struct err *e);

/*
 * Reads up to n decrypted bytes into p.  Returns TLS_OK with *got > 0,
 * TLS_WANT_READ / TLS_WANT_WRITE (the socket direction to wait for, then
 * call again), TLS_EOF (close_notify, or the socket closed), or -errno with e.
 */
int tls_read(struct tls *s, void *p, size_t n, size_t *got, struct err *e);

/*
 * Writes up to n bytes of p.  Returns TLS_OK with *put > 0 (possibly less
 * than n: records are written one at a time), TLS_WANT_READ /
 * TLS_WANT_WRITE, or -errno with e.  After a WANT, the next call must offer
 * the same bytes again (p may have moved; n may have grown, but not shrunk).
 */
int tls_write(struct tls *s, const void *p, size_t n, size_t *put,
    struct err *e);

/* Whether decrypted or undecrypted bytes wait inside the TLS state. */
bool tls_pending(const struct tls *s);

/*
 * Sends close_notify, once, without waiting for the peer's.  Returns TLS_OK,
 * TLS_WANT_READ / TLS_WANT_WRITE (call again), or -errno with e.
 */
int tls_shutdown(struct tls *s, struct err *e);

/*
 * The peer certificate's subject CN, valid after tls_handshake() returned
 * TLS_OK, until tls_close(); "" before.
 */
const char *tls_peer_id(const struct tls *s);

#endif
