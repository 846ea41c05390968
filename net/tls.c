/*
 * tls: see tls.h.  One SSL_CTX serves both roles (TLS_method(), pinned to
 * TLS 1.3 as both minimum and maximum).  Trust comes from the configured CA
 * file only: the system's default paths are never loaded.  Session tickets
 * and the session cache are off (peers keep long connections; resumption
 * buys nothing and would add state).  SSL_MODE_RELEASE_BUFFERS keeps an
 * idle connection's TLS memory small; partial writes let a large frame go
 * out record by record while the caller's queue stays unchanged.
 *
 * The socket is wrapped in a small BIO of our own rather than OpenSSL's
 * socket BIO so that writes use send(MSG_NOSIGNAL): a peer that resets the
 * connection gives EPIPE, never SIGPIPE, whatever the process's signal
 * setup.  The BIO reports end of file, so OpenSSL can tell a peer that hung
 * up without close_notify; both are TLS_EOF to the caller.
 *
 * Every error message comes from the first entry of OpenSSL's error queue
 * (then cleared), with the X.509 verify result added when the handshake
 * failed on the certificate.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tls.h"

#define TLS_REASON_MAX 256

struct tls_ctx {
	SSL_CTX *ssl;
	BIO_METHOD *bio;		/* the MSG_NOSIGNAL socket BIO */
	char cert[CONFIG_PATH_MAX];	/* for messages */
	char ca[CONFIG_PATH_MAX];
};

struct tls {
	SSL *ssl;
	int fd;
	bool eof;			/* recv() returned 0 */
	bool done;			/* handshake complete */
	bool shut;			/* close_notify sent */
	size_t wretry;			/* length of a write to repeat, or 0 */
	char peer_id[CONFIG_ID_MAX + 1];
};

/* The first queued OpenSSL error as one lower-case-ish line; clears all. */
static const char *
tls_reason(char *buf, size_t size, unsigned long *code_out)
{
	unsigned long code = ERR_get_error();
	const char *r;

	if (code_out != NULL)
		*code_out = code;
	if (code == 0)
		snprintf(buf, size, "unknown error");
	else if ((r = ERR_reason_error_string(code)) != NULL)
		snprintf(buf, size, "%s", r);
	else
		ERR_error_string_n(code, buf, size);
	ERR_clear_error();
	return buf;
}

/*
 * The socket BIO.
 */

static int
tls_bio_write(BIO *b, const char *p, int n)
{
	struct tls *s = BIO_get_data(b);
	ssize_t r;

	BIO_clear_retry_flags(b);
	r = send(s->fd, p, (size_t)n, MSG_NOSIGNAL);
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK ||
	    errno == EINTR))
		BIO_set_retry_write(b);
	return (int)r;
}

static int
tls_bio_read(BIO *b, char *p, int n)
{
	struct tls *s = BIO_get_data(b);
	ssize_t r;

	BIO_clear_retry_flags(b);
	r = recv(s->fd, p, (size_t)n, 0);
	if (r == 0)
		s->eof = true;
	else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK ||
	    errno == EINTR))
		BIO_set_retry_read(b);
	return (int)r;
}

static int
tls_bio_puts(BIO *b, const char *str)
{
	return tls_bio_write(b, str, (int)strlen(str));
}

static long
tls_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct tls *s = BIO_get_data(b);

	(void)num;
	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1;
	case BIO_CTRL_EOF:
		return s != NULL && s->eof;
	case BIO_C_GET_FD:
		if (s == NULL)
			return -1;
		if (ptr != NULL)
			*(int *)ptr = s->fd;
		return s->fd;
	case BIO_CTRL_GET_CLOSE:
		return BIO_NOCLOSE;
	case BIO_CTRL_SET_CLOSE:
		return 1;
	default:
		return 0;
	}
}

static int
tls_bio_create(BIO *b)
{
	BIO_set_data(b, NULL);
	BIO_set_init(b, 1);
	return 1;
}

static int
tls_bio_destroy(BIO *b)
{
	BIO_set_data(b, NULL);
	return 1;
}

static BIO_METHOD *
tls_bio_method(void)
{
	BIO_METHOD *m;

	m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK |
	    BIO_TYPE_DESCRIPTOR, "odofs socket");
	if (m == NULL)
		return NULL;
	if (!BIO_meth_set_write(m, tls_bio_write) ||
	    !BIO_meth_set_read(m, tls_bio_read) ||
	    !BIO_meth_set_puts(m, tls_bio_puts) ||
	    !BIO_meth_set_ctrl(m, tls_bio_ctrl) ||
	    !BIO_meth_set_create(m, tls_bio_create) ||
	    !BIO_meth_set_destroy(m, tls_bio_destroy)) {
		BIO_meth_free(m);
		return NULL;
	}
	return m;
}

/*
 * The context.
 */

/* Checks that path is set and readable, for a message that names it. */
static int
tls_file_check(const char *key, const char *path, const char *what,
    struct err *e)
{
	int fd, saved;

	if (path == NULL || path[0] == '\0')
		return err_set(e, -EINVAL, "%s: not set", key);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		saved = errno;
		return err_set(e, -saved, "%s %s: cannot load %s: %s", key,
		    path, what, strerror(saved));
	}
	close(fd);
	return 0;
}

/* The subject CN of cert as a node id into id[size], else -EINVAL. */
static int
tls_cert_id(X509 *cert, char *id, size_t size, const char **why)
{
	X509_NAME *name;
	ASN1_STRING *data;
	unsigned char *utf8 = NULL;
	int i, n, rc = -EINVAL;

	*why = "no certificate";
	if (cert == NULL || (name = X509_get_subject_name(cert)) == NULL)
		return rc;
	*why = "no subject CN";
	if ((i = X509_NAME_get_index_by_NID(name, NID_commonName, -1)) < 0)
		return rc;
	*why = "more than one subject CN";
	if (X509_NAME_get_index_by_NID(name, NID_commonName, i) >= 0)
		return rc;
	*why = "subject CN is not text";
	data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
	if ((n = ASN1_STRING_to_UTF8(&utf8, data)) < 0)
		return rc;
	*why = "subject CN is not a valid node id";
	if (config_valid_id((const char *)utf8, (size_t)n, CONFIG_ID_MAX) &&
	    (size_t)n < size) {
		memcpy(id, utf8, (size_t)n);
		id[n] = '\0';
		*why = NULL;
		rc = 0;
	}
	OPENSSL_free(utf8);
	return rc;
}

int
tls_ctx_open(struct tls_ctx **out, const char *cert, const char *key,
    const char *ca, struct err *e)
{
	struct tls_ctx *t;
	STACK_OF(X509_NAME) *names;
	char why[TLS_REASON_MAX];
	unsigned long code;
	int rc;

	*out = NULL;
	ERR_clear_error();
	if ((rc = tls_file_check("tls.cert", cert, "certificate", e)) < 0 ||
	    (rc = tls_file_check("tls.key", key, "private key", e)) < 0 ||
	    (rc = tls_file_check("tls.ca", ca, "CA certificates", e)) < 0)
		return rc;
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return err_set(e, -ENOMEM, "tls: out of memory");
	snprintf(t->cert, sizeof(t->cert), "%s", cert);
	snprintf(t->ca, sizeof(t->ca), "%s", ca);
	rc = -EINVAL;
	if ((t->ssl = SSL_CTX_new(TLS_method())) == NULL ||
	    (t->bio = tls_bio_method()) == NULL) {
		err_set(e, -ENOMEM, "tls: cannot create context: %s",
		    tls_reason(why, sizeof(why), NULL));
		rc = -ENOMEM;
		goto fail;
	}
	if (!SSL_CTX_set_min_proto_version(t->ssl, TLS1_3_VERSION) ||
	    !SSL_CTX_set_max_proto_version(t->ssl, TLS1_3_VERSION)) {
		err_set(e, rc, "tls: cannot require TLS 1.3: %s",
		    tls_reason(why, sizeof(why), NULL));
		goto fail;
	}
	if (SSL_CTX_use_certificate_chain_file(t->ssl, cert) != 1) {
		err_set(e, rc, "tls.cert %s: cannot load certificate: %s",
		    cert, tls_reason(why, sizeof(why), NULL));
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(t->ssl, key, SSL_FILETYPE_PEM) != 1) {
		tls_reason(why, sizeof(why), &code);
		if (ERR_GET_LIB(code) == ERR_LIB_X509 &&
		    ERR_GET_REASON(code) == X509_R_KEY_VALUES_MISMATCH)
			err_set(e, rc, "tls.key %s: does not match tls.cert %s",
			    key, cert);
		else
			err_set(e, rc, "tls.key %s: cannot load private key: "
			    "%s", key, why);
		goto fail;
	}
	if (SSL_CTX_check_private_key(t->ssl) != 1) {
		ERR_clear_error();
		err_set(e, rc, "tls.key %s: does not match tls.cert %s", key,
		    cert);
		goto fail;
	}
	if (SSL_CTX_load_verify_locations(t->ssl, ca, NULL) != 1) {
		err_set(e, rc, "tls.ca %s: cannot load CA certificates: %s",
		    ca, tls_reason(why, sizeof(why), NULL));
		goto fail;
	}
	/* tell clients which CA we accept (informational) */
	if ((names = SSL_load_client_CA_file(ca)) != NULL)
		SSL_CTX_set_client_CA_list(t->ssl, names);
	ERR_clear_error();
	SSL_CTX_set_verify(t->ssl, SSL_VERIFY_PEER |
	    SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	SSL_CTX_set_verify_depth(t->ssl, TLS_VERIFY_DEPTH);
	/* send the chain of tls.cert as given, not one built from tls.ca */
	SSL_CTX_set_mode(t->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS |
	    SSL_MODE_NO_AUTO_CHAIN);
	SSL_CTX_set_session_cache_mode(t->ssl, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(t->ssl, SSL_OP_NO_TICKET);
	SSL_CTX_set_num_tickets(t->ssl, 0);
	*out = t;
	return 0;
fail:
	tls_ctx_close(t);
	return rc;
}

void
tls_ctx_close(struct tls_ctx *t)
{
	if (t == NULL)
		return;
	SSL_CTX_free(t->ssl);
	if (t->bio != NULL)
		BIO_meth_free(t->bio);
	free(t);
}

int
tls_ctx_own_id(const struct tls_ctx *t, char *id, size_t size,
    struct err *e)
{
	const char *why;

	id[0] = '\0';
	if (tls_cert_id(SSL_CTX_get0_certificate(t->ssl), id, size, &why) < 0)
		return err_set(e, -EINVAL, "tls.cert %s: %s", t->cert, why);
	return 0;
}

int
tls_ctx_check(const struct tls_ctx *t, struct err *e)
{
	static const int purposes[] = { X509_PURPOSE_SSL_SERVER,
	    X509_PURPOSE_SSL_CLIENT };
	STACK_OF(X509) *chain = NULL;
	X509_STORE_CTX *sc = NULL;
	X509 *cert = SSL_CTX_get0_certificate(t->ssl);
	int rc = 0;

	ERR_clear_error();
	SSL_CTX_get0_chain_certs(t->ssl, &chain);
	for (size_t i = 0; i < 2 && rc == 0; i++) {
		if ((sc = X509_STORE_CTX_new()) == NULL ||
		    !X509_STORE_CTX_init(sc, SSL_CTX_get_cert_store(t->ssl),
		    cert, chain)) {
			rc = err_set(e, -ENOMEM, "tls.cert %s: cannot verify: "
			    "out of memory", t->cert);
			break;
		}
		X509_STORE_CTX_set_purpose(sc, purposes[i]);
		if (X509_verify_cert(sc) != 1)
			rc = err_set(e, -EINVAL, "tls.cert %s: not accepted "
			    "by tls.ca %s: %s", t->cert, t->ca,
			    X509_verify_cert_error_string(
			    X509_STORE_CTX_get_error(sc)));
		X509_STORE_CTX_free(sc);
		sc = NULL;
	}
	X509_STORE_CTX_free(sc);
	ERR_clear_error();
	return rc;
}

/*
 * One connection.
 */

int
tls_open(struct tls **out, struct tls_ctx *t, int fd, bool server,
    struct err *e)
{
	struct tls *s;
	BIO *bio;

	*out = NULL;
	ERR_clear_error();
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return err_set(e, -ENOMEM, "tls: out of memory");
	s->fd = fd;
	if ((s->ssl = SSL_new(t->ssl)) == NULL ||
	    (bio = BIO_new(t->bio)) == NULL) {
		ERR_clear_error();
		tls_close(s);
		return err_set(e, -ENOMEM, "tls: out of memory");
	}
	BIO_set_data(bio, s);
	SSL_set_bio(s->ssl, bio, bio);
	if (server)
		SSL_set_accept_state(s->ssl);
	else
		SSL_set_connect_state(s->ssl);
	*out = s;
	return 0;
}

void
tls_close(struct tls *s)
{
	if (s == NULL)
		return;
	SSL_free(s->ssl);
	free(s);
}

/*
 * Maps the result of an SSL_* call (ok false) to a status or -errno with
 * e.  saved is errno right after the call.
 */
static int
tls_result(struct tls *s, int ret, int saved, const char *what,
    struct err *e)
{
	char why[TLS_REASON_MAX];
	unsigned long code;
	long verify;

	switch (SSL_get_error(s->ssl, ret)) {
	case SSL_ERROR_WANT_READ:
		ERR_clear_error();
		return TLS_WANT_READ;
	case SSL_ERROR_WANT_WRITE:
		ERR_clear_error();
		return TLS_WANT_WRITE;
	case SSL_ERROR_ZERO_RETURN:
		ERR_clear_error();
		return TLS_EOF;
	case SSL_ERROR_SYSCALL:
		ERR_clear_error();
		if (saved == 0 || s->eof)
			return TLS_EOF;
		return err_set(e, -saved, "%s%s", what, strerror(saved));
	case SSL_ERROR_SSL:
		tls_reason(why, sizeof(why), &code);
		if (ERR_GET_LIB(code) == ERR_LIB_SSL &&
		    ERR_GET_REASON(code) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
			return TLS_EOF;
		if (ERR_GET_LIB(code) == ERR_LIB_SSL &&
		    ERR_GET_REASON(code) == SSL_R_CERTIFICATE_VERIFY_FAILED &&
		    (verify = SSL_get_verify_result(s->ssl)) != X509_V_OK)
			return err_set(e, -EPROTO, "%s%s (%s)", what, why,
			    X509_verify_cert_error_string(verify));
		return err_set(e, -EPROTO, "%s%s", what, why);
	default:
		ERR_clear_error();
		return err_set(e, -EPROTO, "%sunexpected error", what);
	}
}

int
tls_handshake(struct tls *s, struct err *e)
{
	const char *why;
	int ret, saved;

	if (s->done)
		return TLS_OK;
	ERR_clear_error();
	errno = 0;
	ret = SSL_do_handshake(s->ssl);
	saved = errno;
	if (ret != 1)
		return tls_result(s, ret, saved, "", e);
	if (tls_cert_id(SSL_get0_peer_certificate(s->ssl), s->peer_id,
	    sizeof(s->peer_id), &why) < 0) {
		s->peer_id[0] = '\0';
		return err_set(e, -EPROTO, "peer certificate: %s", why);
	}
	s->done = true;
	return TLS_OK;
}

int
tls_read(struct tls *s, void *p, size_t n, size_t *got, struct err *e)
{
	int ret, saved;

	*got = 0;
	ERR_clear_error();
	errno = 0;
	ret = SSL_read_ex(s->ssl, p, n, got);
	saved = errno;
	if (ret == 1)
		return TLS_OK;
	*got = 0;
	return tls_result(s, ret, saved, "tls read: ", e);
}

int
tls_write(struct tls *s, const void *p, size_t n, size_t *put,
    struct err *e)
{
	int ret, rc, saved;

	*put = 0;
	if (s->wretry != 0 && n > s->wretry)
		n = s->wretry;
	ERR_clear_error();
	errno = 0;
	ret = SSL_write_ex(s->ssl, p, n, put);
	saved = errno;
	if (ret == 1) {
		s->wretry = 0;
		return TLS_OK;
	}
	*put = 0;
	rc = tls_result(s, ret, saved, "tls write: ", e);
	if (rc == TLS_WANT_READ || rc == TLS_WANT_WRITE)
		s->wretry = n;
	else if (rc == TLS_EOF)
		rc = err_set(e, -EPIPE, "tls write: %s", strerror(EPIPE));
	return rc;
}

bool
tls_pending(const struct tls *s)
{
	return SSL_has_pending(s->ssl) == 1;
}

int
tls_shutdown(struct tls *s, struct err *e)
{
	int ret, saved;

	if (s->shut || !s->done)
		return TLS_OK;
	ERR_clear_error();
	errno = 0;
	ret = SSL_shutdown(s->ssl);
	saved = errno;
	if (ret >= 0) {
		s->shut = true;
		return TLS_OK;
	}
	return tls_result(s, ret, saved, "tls shutdown: ", e);
}

const char *
tls_peer_id(const struct tls *s)
{
	return s->peer_id;
}
