/*
 * test_net: net/loop, net/tls and net/conn over real sockets on 127.0.0.1,
 * in one process.  The loop runs inline: WAIT_FOR() turns it round by round
 * until a condition holds or a deadline passes (no fixed sleeps).  Ports come
 * from listen_open("127.0.0.1:0").  Certificates are made once by
 * etc/gen-certs.sh (found through ODOFS_SOURCE_ROOT, which meson sets) into
 * a private temporary directory: node-a and node-b from one CA, "rogue"
 * from another.
 *
 * Covered: the loop's timers (order, ties, cancel, re-arm, delete from the
 * callback, no spinning on delay 0), tasks and loop_defer, descriptors
 * removed mid-round, loop_wake() and loop_stop() from another thread; TLS
 * context errors naming their file; the handshake and peer ids; frames
 * both ways, one of 4 MiB; a certificate from another CA refused on either
 * side; a silent TCP client timed out; a garbage client closed; a 4 GiB
 * header refused without allocating it; a zero-length header; backpressure
 * (-ENOBUFS with a receiver that does not read, bounded memory on both
 * sides, on_writable, then everything in order); a graceful close that
 * delivers what was queued; a close that cannot flush ends after
 * CONN_LINGER_MS; connect refused; on_close exactly once.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "listen.h"
#include "loop.h"
#include "tls.h"
#include "unit.h"
#include "wire.h"

#define T_TYPE		40		/* a test frame: u64 seq, u32 n, n bytes */
#define HANDSHAKE_MS	5000
#define WAIT_MS		10000

static struct loop *L;
static char certdir[256], roguedir[256];

/* Turns the loop until cond holds or ms pass; then checks cond. */
#define WAIT_FOR(cond, ms) do {						\
	uint64_t deadline_ = loop_now_ms() + (ms);			\
	while (!(cond) && loop_now_ms() < deadline_)			\
		loop_run_once(L, 10, NULL);				\
	CHECK(cond);							\
} while (0)

/* Turns the loop for ms, whatever happens (to see that nothing more does). */
static void
spin(int ms)
{
	uint64_t deadline = loop_now_ms() + (uint64_t)ms;

	while (loop_now_ms() < deadline)
		loop_run_once(L, 5, NULL);
}

static void
cert_paths(const char *dir, const char *id, char *cert, char *key, char *ca)
{
	snprintf(cert, CONFIG_PATH_MAX, "%s/%s.pem", dir, id);
	snprintf(key, CONFIG_PATH_MAX, "%s/%s.key", dir, id);
	snprintf(ca, CONFIG_PATH_MAX, "%s/ca.pem", dir);
}

/* A context for id with certificates from certdir, trusting cadir's CA. */
static struct tls_ctx *
ctx_for(const char *dir, const char *id, const char *cadir)
{
	static char cert[CONFIG_PATH_MAX], key[CONFIG_PATH_MAX],
	    ca[CONFIG_PATH_MAX];
	struct tls_ctx *t = NULL;
	struct err e;

	cert_paths(dir, id, cert, key, ca);
	snprintf(ca, sizeof(ca), "%s/ca.pem", cadir);
	if (tls_ctx_open(&t, cert, key, ca, &e) < 0) {
		fprintf(stderr, "tls_ctx_open: %s\n", e.msg);
		exit(2);
	}
	return t;
}

/*
 * One side of a connection under test.
 */
struct side {
	const char *name;
	struct conn *c;
	int opened;
	int closed;
	char reason[CONN_REASON_MAX];
	char peer_id[CONFIG_ID_MAX + 1];
	char peer_addr[CONN_ADDR_MAX];
	bool echo;		/* send every frame back */
	bool pause_on_open;	/* conn_set_reading(false) in on_open */
	bool pin_buffers;	/* small fixed kernel socket buffers */
	uint64_t frames;	/* received */
	uint64_t bytes;		/* payload bytes received */
	uint64_t next_seq;
	bool bad;		/* a frame out of order or corrupt */
	size_t largest;		/* largest payload received */
	size_t max_recv_buffer;	/* seen in stats while receiving */
	int writable;		/* on_writable calls */
	/* streaming sender: frames seq < stream_to, of stream_fill bytes */
	uint64_t stream_seq, stream_to;
	size_t stream_fill;
	size_t max_queued;	/* seen in stats while sending */
};

static int
make_frame(struct buf *b, uint64_t seq, size_t fill)
{
	struct wire_enc w;
	uint8_t chunk[4096];

	wire_enc_begin(&w, b, T_TYPE);
	wire_put_u64(&w, seq);
	wire_put_u32(&w, (uint32_t)fill);
	for (size_t off = 0; off < fill; off += sizeof(chunk)) {
		size_t n = fill - off < sizeof(chunk) ? fill - off :
		    sizeof(chunk);

		for (size_t i = 0; i < n; i++)
			chunk[i] = (uint8_t)(seq + off + i);
		wire_put_bytes(&w, chunk, n);
	}
	return wire_enc_end(&w);
}

static int
send_frame(struct side *s, uint64_t seq, size_t fill)
{
	struct buf b;
	int rc;

	buf_init(&b, WIRE_HEADER + WIRE_FRAME_MAX);
	if ((rc = make_frame(&b, seq, fill)) == 0)
		rc = conn_send(s->c, b.data, b.len);
	buf_release(&b);
	return rc;
}

static void
check_frame(struct side *s, uint8_t type, const uint8_t *p, size_t n)
{
	struct wire_dec d;
	const uint8_t *fill;
	uint64_t seq;
	uint32_t len;

	wire_dec_init(&d, p, n);
	wire_get_u64(&d, &seq);
	wire_get_u32(&d, &len);
	wire_get_bytes(&d, len, &fill);
	if (type != T_TYPE || wire_dec_end(&d) < 0 || seq != s->next_seq) {
		if (!s->bad)
			fprintf(stderr, "%s: bad frame: type %u, seq %llu, "
			    "want %llu\n", s->name, type,
			    (unsigned long long)seq,
			    (unsigned long long)s->next_seq);
		s->bad = true;
		return;
	}
	for (size_t i = 0; i < len; i++) {
		if (fill[i] != (uint8_t)(seq + i)) {
			s->bad = true;
			fprintf(stderr, "%s: frame %llu corrupt at %zu\n",
			    s->name, (unsigned long long)seq, i);
			return;
		}
	}
	s->next_seq++;
}

static void
on_open(void *arg, struct conn *c)
{
	struct side *s = arg;

	s->opened++;
	snprintf(s->peer_id, sizeof(s->peer_id), "%s", conn_peer_id(c));
	if (s->pause_on_open)
		conn_set_reading(c, false);
}

static void
on_frame(void *arg, struct conn *c, uint8_t type, const uint8_t *p,
    size_t n)
{
	struct side *s = arg;
	struct conn_stats st;

	s->frames++;
	s->bytes += n;
	if (n > s->largest)
		s->largest = n;
	conn_stats(c, &st);
	if (st.recv_buffer > s->max_recv_buffer)
		s->max_recv_buffer = st.recv_buffer;
	if (s->echo) {
		uint8_t hdr[WIRE_HEADER + 1] = { (uint8_t)((n + 1) >> 24),
		    (uint8_t)((n + 1) >> 16), (uint8_t)((n + 1) >> 8),
		    (uint8_t)(n + 1), type };
		struct buf b;

		buf_init(&b, WIRE_HEADER + WIRE_FRAME_MAX);
		if (buf_append(&b, hdr, sizeof(hdr)) < 0 ||
		    buf_append(&b, p, n) < 0 ||
		    conn_send(c, b.data, b.len) < 0) {
			fprintf(stderr, "%s: echo failed\n", s->name);
			s->bad = true;
		}
		buf_release(&b);
		return;
	}
	check_frame(s, type, p, n);
}

/* Sends stream frames while they fit; the rest from on_writable. */
static void
stream(struct side *s)
{
	struct conn_stats st;
	int rc;

	while (s->stream_seq < s->stream_to) {
		rc = send_frame(s, s->stream_seq, s->stream_fill);
		if (rc == -ENOBUFS)
			break;
		if (rc < 0) {
			fprintf(stderr, "%s: send: %s\n", s->name,
			    strerror(-rc));
			s->bad = true;
			break;
		}
		s->stream_seq++;
		conn_stats(s->c, &st);
		if (st.send_queued > s->max_queued)
			s->max_queued = st.send_queued;
	}
}

static void
on_writable(void *arg, struct conn *c)
{
	struct side *s = arg;

	(void)c;
	s->writable++;
	stream(s);
}

static void
on_close(void *arg, struct conn *c, const char *reason)
{
	struct side *s = arg;

	if (s->c != NULL && s->c != c) {
		fprintf(stderr, "%s: on_close for another conn\n", s->name);
		s->bad = true;
	}
	s->closed++;
	snprintf(s->reason, sizeof(s->reason), "%s", reason);
	snprintf(s->peer_addr, sizeof(s->peer_addr), "%s",
	    conn_peer_addr(c));
	CHECK(conn_fd(c) == -1);
	s->c = NULL;
}

static const struct conn_cb callbacks = {
	.on_open = on_open,
	.on_frame = on_frame,
	.on_writable = on_writable,
	.on_close = on_close,
};

/*
 * The server: a listening socket on the loop; each accepted connection
 * goes to the side in `accepting`.
 */
static struct {
	int fd;
	struct loop_fd *h;
	struct sockaddr_in addr;
	struct tls_ctx *tls;
	uint32_t handshake_ms;
	struct side *accepting;
	int accepted;
} srv;

/*
 * Fixes fd's kernel buffers at PIN_BYTES each way.  An explicit SO_RCVBUF
 * or SO_SNDBUF switches off the kernel's autotuning for that socket, so
 * what a non-reading peer's kernel absorbs no longer depends on the
 * machine's net.ipv4.tcp_rmem / tcp_wmem (up to 32 MiB on some): it is
 * at most a few times PIN_BYTES (the kernel doubles the value for its
 * bookkeeping), far below CONN_SEND_MAX.
 */
#define PIN_BYTES	(64 << 10)

static void
pin_buffers(int fd)
{
	int n = PIN_BYTES;

	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &n, sizeof(n)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &n, sizeof(n)) < 0) {
		perror("setsockopt");
		exit(2);
	}
}

static void
on_accept(void *arg, uint32_t events)
{
	struct err e;
	int fd;

	(void)arg;
	(void)events;
	/* accept everything pending: the listening socket is non-blocking */
	while ((fd = accept4(srv.fd, NULL, NULL, SOCK_NONBLOCK |
	    SOCK_CLOEXEC)) >= 0) {
		struct side *s = srv.accepting;

		srv.accepted++;
		if (s == NULL || s->c != NULL) {
			close(fd);
			continue;
		}
		if (s->pin_buffers)
			pin_buffers(fd);
		if (conn_accept(&s->c, L, srv.tls, fd, srv.handshake_ms,
		    &callbacks, s, &e) < 0)
			fprintf(stderr, "conn_accept: %s\n", e.msg);
	}
}

static void
server_start(void)
{
	socklen_t len = sizeof(srv.addr);
	struct err e;

	srv.fd = listen_open("127.0.0.1:0", &e);
	if (srv.fd < 0) {
		fprintf(stderr, "listen_open: %s\n", e.msg);
		exit(2);
	}
	getsockname(srv.fd, (struct sockaddr *)&srv.addr, &len);
	srv.tls = ctx_for(certdir, "node-b", certdir);
	srv.handshake_ms = HANDSHAKE_MS;
	if (loop_fd_add(&srv.h, L, srv.fd, EPOLLIN, on_accept, NULL, &e) < 0) {
		fprintf(stderr, "loop_fd_add: %s\n", e.msg);
		exit(2);
	}
}

static void
server_stop(void)
{
	loop_fd_del(srv.h);
	close(srv.fd);
	tls_ctx_close(srv.tls);
}

static void
dial(struct side *s, struct tls_ctx *t)
{
	struct err e;

	if (conn_connect(&s->c, L, t, (struct sockaddr *)&srv.addr,
	    sizeof(srv.addr), HANDSHAKE_MS, &callbacks, s, &e) < 0) {
		fprintf(stderr, "conn_connect: %s\n", e.msg);
		CHECK(0);
	}
}

/* A plain TCP socket connected to the server. */
static int
plain_connect(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || connect(fd, (struct sockaddr *)&srv.addr,
	    sizeof(srv.addr)) < 0) {
		perror("plain connect");
		exit(2);
	}
	return fd;
}

/* Whether the plain socket has been closed by the server (EOF or RST). */
static bool
plain_closed(int fd)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	char tmp[4096];
	ssize_t n;

	if (poll(&pfd, 1, 0) <= 0)
		return false;
	while ((n = recv(fd, tmp, sizeof(tmp), MSG_DONTWAIT)) > 0)
		;
	return n == 0 || (n < 0 && errno != EAGAIN);
}

/*
 * The loop by itself.
 */

static char fired[64];
static size_t nfired;
static int rearms;
static struct loop_timer *self_del;

static void
mark(void *arg)
{
	if (nfired < sizeof(fired) - 1)
		fired[nfired++] = *(const char *)arg;
}

static void
rearm(void *arg)
{
	struct loop_timer **t = arg;

	if (++rearms < 5)
		loop_timer_arm(*t, 0);
}

static void
del_self(void *arg)
{
	(void)arg;
	mark((void *)"d");
	loop_timer_del(self_del);
	self_del = NULL;
}

static struct loop_fd *pipe_h[2];
static int pipe_calls[2];

static void
on_pipe(void *arg, uint32_t events)
{
	int i = (int)(intptr_t)arg;

	(void)events;
	pipe_calls[i]++;
	/* whichever comes first removes the other: it must not be called */
	loop_fd_del(pipe_h[1 - i]);
	pipe_h[1 - i] = NULL;
	loop_fd_del(pipe_h[i]);
	pipe_h[i] = NULL;
}

static int woken;

static void
on_wake(void *arg)
{
	(void)arg;
	woken++;
}

static void *
waker(void *arg)
{
	struct loop *l = arg;

	usleep(20000);
	loop_wake(l);
	usleep(20000);
	loop_stop(l);
	return NULL;
}

static struct loop_task *task_a;
static int task_runs;

static void
task_fn(void *arg)
{
	(void)arg;
	task_runs++;
}

static void
task_delete_other(void *arg)
{
	struct loop_task **other = arg;

	task_runs++;
	loop_task_del(*other);
	*other = NULL;
}

static void
test_loop(void)
{
	static const char a = 'a', b = 'b', c = 'c', x = 'x';
	struct loop_timer *ta, *tb, *tc, *tx, *tr;
	struct loop_task *t1, *t2;
	int fds[2][2];
	pthread_t th;
	struct err e;
	uint64_t start;

	/* order by deadline, ties by arming order; a cancelled one never */
	CHECK_EQ_INT(loop_timer_add(&ta, L, mark, (void *)&a, &e), 0);
	CHECK_EQ_INT(loop_timer_add(&tb, L, mark, (void *)&b, &e), 0);
	CHECK_EQ_INT(loop_timer_add(&tc, L, mark, (void *)&c, &e), 0);
	CHECK_EQ_INT(loop_timer_add(&tx, L, mark, (void *)&x, &e), 0);
	CHECK_EQ_INT(loop_timer_add(&self_del, L, del_self, NULL, &e), 0);
	start = loop_now_ms();	/* before arming: deadlines count from then */
	loop_timer_arm(ta, 60);
	loop_timer_arm(tb, 20);
	loop_timer_arm(tc, 20);
	loop_timer_arm(tx, 30);
	loop_timer_arm(self_del, 40);
	CHECK(loop_timer_armed(tx));
	loop_timer_cancel(tx);
	CHECK(!loop_timer_armed(tx));
	WAIT_FOR(nfired == 4, 2000);
	CHECK(loop_now_ms() - start >= 60);
	CHECK(strcmp(fired, "bcda") == 0);
	CHECK(self_del == NULL);
	spin(50);
	CHECK_EQ_INT(nfired, 4);
	loop_timer_del(ta);
	loop_timer_del(tb);
	loop_timer_del(tc);
	loop_timer_del(tx);

	/* re-arming with delay 0 from the callback fires once per round */
	CHECK_EQ_INT(loop_timer_add(&tr, L, rearm, &tr, &e), 0);
	loop_timer_arm(tr, 0);
	loop_run_once(L, 0, NULL);
	CHECK_EQ_INT(rearms, 1);
	loop_run_once(L, 0, NULL);
	CHECK_EQ_INT(rearms, 2);
	WAIT_FOR(rearms == 5, 1000);
	CHECK(!loop_timer_armed(tr));
	loop_timer_del(tr);

	/* tasks: once per post, after the round; deletion while posted */
	CHECK_EQ_INT(loop_task_add(&task_a, L, task_fn, NULL, &e), 0);
	loop_task_post(task_a);
	loop_task_post(task_a);
	CHECK_EQ_INT(task_runs, 0);
	loop_run_once(L, 0, NULL);
	CHECK_EQ_INT(task_runs, 1);
	loop_run_once(L, 0, NULL);
	CHECK_EQ_INT(task_runs, 1);
	CHECK_EQ_INT(loop_task_add(&t1, L, task_delete_other, &t2, &e), 0);
	CHECK_EQ_INT(loop_task_add(&t2, L, task_fn, NULL, &e), 0);
	loop_task_post(t1);
	loop_task_post(t2);	/* t1 deletes it before its turn */
	loop_run_once(L, 0, NULL);
	CHECK_EQ_INT(task_runs, 2);
	CHECK(t2 == NULL);
	loop_task_post(task_a);
	loop_task_del(task_a);
	loop_run_once(L, 0, NULL);
	CHECK_EQ_INT(task_runs, 2);
	loop_task_del(t1);
	CHECK_EQ_INT(loop_defer(L, task_fn, NULL), 0);
	loop_run_once(L, 0, NULL);
	CHECK_EQ_INT(task_runs, 3);

	/* a handle removed in the round is not called, even if ready */
	for (int i = 0; i < 2; i++) {
		CHECK_EQ_INT(pipe(fds[i]), 0);
		CHECK_EQ_INT(write(fds[i][1], "x", 1), 1);
		CHECK_EQ_INT(loop_fd_add(&pipe_h[i], L, fds[i][0], EPOLLIN,
		    on_pipe, (void *)(intptr_t)i, &e), 0);
	}
	loop_run_once(L, 100, NULL);
	CHECK_EQ_INT(pipe_calls[0] + pipe_calls[1], 1);
	loop_run_once(L, 0, NULL);
	CHECK_EQ_INT(pipe_calls[0] + pipe_calls[1], 1);
	for (int i = 0; i < 2; i++) {
		close(fds[i][0]);
		close(fds[i][1]);
	}

	/* wake and stop from another thread */
	loop_on_wake(L, on_wake, NULL);
	pthread_create(&th, NULL, waker, L);
	CHECK_EQ_INT(loop_run(L, &e), 0);
	pthread_join(th, NULL);
	CHECK_EQ_INT(woken, 1);
	loop_on_wake(L, NULL, NULL);
}

/*
 * TLS contexts.
 */

static void
write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (f == NULL) {
		perror(path);
		exit(2);
	}
	fputs(text, f);
	fclose(f);
}

static void
test_tls_ctx(void)
{
	char cert[CONFIG_PATH_MAX], key[CONFIG_PATH_MAX], ca[CONFIG_PATH_MAX];
	char bkey[CONFIG_PATH_MAX], junk[CONFIG_PATH_MAX], id[80];
	struct tls_ctx *t;
	struct err e;

	cert_paths(certdir, "node-a", cert, key, ca);
	snprintf(bkey, sizeof(bkey), "%s/node-b.key", certdir);
	snprintf(junk, sizeof(junk), "%s/junk.pem", certdir);
	write_text(junk, "-----BEGIN CERTIFICATE-----\nnot base64\n");

	CHECK_EQ_INT(tls_ctx_open(&t, cert, key, ca, &e), 0);
	CHECK_EQ_INT(tls_ctx_own_id(t, id, sizeof(id), &e), 0);
	CHECK(strcmp(id, "node-a") == 0);
	CHECK_EQ_INT(tls_ctx_check(t, &e), 0);
	tls_ctx_close(t);

	err_clear(&e);
	CHECK_EQ_INT(tls_ctx_open(&t, "/nonexistent/a.pem", key, ca, &e),
	    -ENOENT);
	CHECK(t == NULL);
	CHECK(strstr(e.msg, "tls.cert /nonexistent/a.pem: cannot load "
	    "certificate: No such file") == e.msg);
	CHECK_EQ_INT(tls_ctx_open(&t, cert, "", ca, &e), -EINVAL);
	CHECK(strcmp(e.msg, "tls.key: not set") == 0);
	CHECK_EQ_INT(tls_ctx_open(&t, junk, key, ca, &e), -EINVAL);
	CHECK(strncmp(e.msg, "tls.cert ", 9) == 0 &&
	    strstr(e.msg, "junk.pem: cannot load certificate: ") != NULL);
	CHECK_EQ_INT(tls_ctx_open(&t, cert, bkey, ca, &e), -EINVAL);
	CHECK(strstr(e.msg, "node-b.key: does not match tls.cert ") != NULL);
	CHECK_EQ_INT(tls_ctx_open(&t, cert, junk, ca, &e), -EINVAL);
	CHECK(strstr(e.msg, "junk.pem: cannot load private key: ") != NULL);
	CHECK_EQ_INT(tls_ctx_open(&t, cert, key, junk, &e), -EINVAL);
	CHECK(strstr(e.msg, "tls.ca ") == e.msg &&
	    strstr(e.msg, ": cannot load CA certificates: ") != NULL);
	fprintf(stderr, "(error lines look like: %s)\n", e.msg);

	/* our own certificate against a CA that did not sign it */
	t = ctx_for(roguedir, "rogue", certdir);
	CHECK(tls_ctx_check(t, &e) == -EINVAL);
	CHECK(strstr(e.msg, "not accepted by tls.ca") != NULL);
	fprintf(stderr, "(%s)\n", e.msg);
	tls_ctx_close(t);
}

/*
 * Connections.
 */

static void
reset(struct side *s, const char *name)
{
	memset(s, 0, sizeof(*s));
	s->name = name;
}

static void
test_frames(void)
{
	struct side cl, sv;
	struct tls_ctx *ta = ctx_for(certdir, "node-a", certdir);
	struct conn_stats st;

	reset(&cl, "client");
	reset(&sv, "server");
	sv.echo = true;
	srv.accepting = &sv;
	dial(&cl, ta);
	/* queued before the handshake: sent after it */
	CHECK_EQ_INT(send_frame(&cl, 0, 10), 0);
	WAIT_FOR(cl.opened && sv.opened, WAIT_MS);
	CHECK(strcmp(cl.peer_id, "node-b") == 0);
	CHECK(strcmp(sv.peer_id, "node-a") == 0);
	CHECK(strcmp(conn_peer_id(cl.c), "node-b") == 0);
	CHECK(!conn_incoming(cl.c) && conn_incoming(sv.c));
	CHECK(strncmp(conn_peer_addr(sv.c), "127.0.0.1:", 10) == 0);
	CHECK(conn_fd(cl.c) >= 0);

	/* small frames, a 4 MiB one, small ones: all echoed, in order */
	for (uint64_t i = 1; i < 100; i++)
		CHECK_EQ_INT(send_frame(&cl, i, i * 13), 0);
	CHECK_EQ_INT(send_frame(&cl, 100, (4u << 20) - 12), 0);
	for (uint64_t i = 101; i < 120; i++)
		CHECK_EQ_INT(send_frame(&cl, i, 0), 0);
	WAIT_FOR(cl.next_seq == 120 || cl.bad, WAIT_MS);
	CHECK(!cl.bad && !sv.bad);
	CHECK_EQ_INT(sv.frames, 120);
	CHECK_EQ_INT(cl.largest, 4u << 20);
	CHECK_EQ_INT(sv.largest, 4u << 20);
	/* the receive buffer grew for the big frame only, and shrank back */
	CHECK(sv.max_recv_buffer >= (4u << 20) + WIRE_HEADER + 1);
	CHECK(sv.max_recv_buffer <= CONN_RECV_MAX);
	conn_stats(sv.c, &st);
	CHECK(st.recv_buffer <= (64u << 10));
	CHECK_EQ_INT(st.frames_in, 120);
	CHECK_EQ_INT(st.frames_out, 120);
	conn_stats(cl.c, &st);
	CHECK_EQ_INT(st.send_queued, 0);

	/* not frames: refused */
	CHECK_EQ_INT(conn_send(cl.c, "\0\0\0\5\1", 5), -EINVAL);
	CHECK_EQ_INT(conn_send(cl.c, "", 0), -EINVAL);

	/* a graceful close delivers what was queued, then close_notify */
	sv.echo = false;
	sv.next_seq = 200;
	for (uint64_t i = 200; i < 232; i++)
		CHECK_EQ_INT(send_frame(&cl, i, 64u << 10), 0);
	conn_close(cl.c, "done here");
	CHECK_EQ_INT(cl.closed, 0);	/* never from inside conn_close() */
	CHECK_EQ_INT(conn_send_space(cl.c), 0);
	CHECK_EQ_INT(send_frame(&cl, 999, 1), -EPIPE);
	conn_close(cl.c, "second reason is ignored");
	WAIT_FOR(cl.closed && sv.closed, WAIT_MS);
	CHECK_EQ_INT(sv.next_seq, 232);
	CHECK(!sv.bad);
	CHECK(strcmp(cl.reason, "done here") == 0);
	CHECK(strcmp(sv.reason, "connection closed by peer") == 0);
	CHECK(strncmp(cl.peer_addr, "127.0.0.1:", 10) == 0);
	spin(50);
	CHECK_EQ_INT(cl.closed, 1);
	CHECK_EQ_INT(sv.closed, 1);
	tls_ctx_close(ta);
}

static void
test_other_ca(void)
{
	struct side cl, sv;
	struct tls_ctx *t;

	/* a rogue client that trusts only its own CA: it refuses us too */
	reset(&cl, "rogue");
	reset(&sv, "server");
	srv.accepting = &sv;
	t = ctx_for(roguedir, "rogue", roguedir);
	dial(&cl, t);
	WAIT_FOR(cl.closed && sv.closed, WAIT_MS);
	CHECK(!sv.opened);
	fprintf(stderr, "(rogue CA: server: %s; client: %s)\n", sv.reason,
	    cl.reason);
	CHECK(strncmp(sv.reason, "tls handshake: ", 15) == 0);
	CHECK(strstr(cl.reason, "certificate verify failed") != NULL);
	tls_ctx_close(t);

	/* a rogue certificate, trusting our CA: the server refuses it */
	reset(&cl, "rogue");
	reset(&sv, "server");
	srv.accepting = &sv;
	t = ctx_for(roguedir, "rogue", certdir);
	dial(&cl, t);
	WAIT_FOR(cl.closed && sv.closed, WAIT_MS);
	CHECK(!sv.opened);
	fprintf(stderr, "(rogue cert: server: %s; client: %s)\n", sv.reason,
	    cl.reason);
	CHECK(strncmp(sv.reason, "tls handshake: certificate verify failed",
	    40) == 0);
	CHECK(cl.reason[0] != '\0');
	spin(20);
	CHECK_EQ_INT(cl.closed, 1);
	CHECK_EQ_INT(sv.closed, 1);
	tls_ctx_close(t);
}

static void
test_silent_and_garbage(void)
{
	struct side sv;
	uint64_t start;
	int fd;

	/* a TCP client that says nothing: the handshake deadline */
	reset(&sv, "server");
	srv.accepting = &sv;
	srv.handshake_ms = 300;
	start = loop_now_ms();
	fd = plain_connect();
	WAIT_FOR(sv.closed, WAIT_MS);
	CHECK(strcmp(sv.reason, "handshake timeout") == 0);
	CHECK(loop_now_ms() - start >= 290);
	CHECK(!sv.opened);
	WAIT_FOR(plain_closed(fd), WAIT_MS);
	close(fd);
	srv.handshake_ms = HANDSHAKE_MS;

	/* a TCP client that sends something else */
	reset(&sv, "server");
	srv.accepting = &sv;
	fd = plain_connect();
	CHECK(send(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27,
	    MSG_NOSIGNAL) == 27);
	WAIT_FOR(sv.closed, WAIT_MS);
	fprintf(stderr, "(garbage: %s)\n", sv.reason);
	CHECK(strncmp(sv.reason, "tls handshake: ", 15) == 0);
	WAIT_FOR(plain_closed(fd), WAIT_MS);
	close(fd);

	/* one that hangs up mid-handshake */
	reset(&sv, "server");
	srv.accepting = &sv;
	fd = plain_connect();
	close(fd);
	WAIT_FOR(sv.closed, WAIT_MS);
	CHECK(strncmp(sv.reason, "tls handshake: ", 15) == 0);
}

static void
test_bad_headers(void)
{
	static const uint8_t huge[] = { 0xff, 0xff, 0xff, 0xff, T_TYPE };
	static const uint8_t empty[] = { 0, 0, 0, 0 };
	struct tls_ctx *ta = ctx_for(certdir, "node-a", certdir);
	struct side cl, sv;
	struct conn_stats st;

	reset(&cl, "client");
	reset(&sv, "server");
	srv.accepting = &sv;
	dial(&cl, ta);
	WAIT_FOR(cl.opened && sv.opened, WAIT_MS);
	CHECK_EQ_INT(send_frame(&cl, 0, 100), 0);
	CHECK_EQ_INT(conn_send_raw(cl.c, huge, sizeof(huge)), 0);
	WAIT_FOR(cl.closed && sv.closed, WAIT_MS);
	CHECK_EQ_INT(sv.frames, 1);
	CHECK(strcmp(sv.reason, "frame too large: 4294967295 bytes") == 0);
	CHECK(sv.max_recv_buffer <= (64u << 10));
	fprintf(stderr, "(client saw: %s)\n", cl.reason);

	reset(&cl, "client");
	reset(&sv, "server");
	srv.accepting = &sv;
	dial(&cl, ta);
	WAIT_FOR(cl.opened && sv.opened, WAIT_MS);
	conn_stats(sv.c, &st);
	CHECK(st.recv_buffer <= (64u << 10));
	CHECK_EQ_INT(conn_send_raw(cl.c, empty, sizeof(empty)), 0);
	WAIT_FOR(cl.closed && sv.closed, WAIT_MS);
	CHECK(strcmp(sv.reason, "bad frame: zero length") == 0);
	tls_ctx_close(ta);
}

static void
test_backpressure(void)
{
	struct tls_ctx *ta = ctx_for(certdir, "node-a", certdir);
	struct side cl, sv;
	struct conn_stats st;
	uint64_t blocked_first, blocked_at, deadline;
	int rc = 0;

	reset(&cl, "client");
	reset(&sv, "server");
	sv.pause_on_open = true;
	sv.pin_buffers = true;
	srv.accepting = &sv;
	dial(&cl, ta);
	pin_buffers(conn_fd(cl.c));
	WAIT_FOR(cl.opened && sv.opened, WAIT_MS);

	/* the receiver does not read: the sender must hit -ENOBUFS */
	deadline = loop_now_ms() + WAIT_MS;
	while (loop_now_ms() < deadline) {
		rc = send_frame(&cl, cl.stream_seq, 64u << 10);
		if (rc == -ENOBUFS)
			break;
		CHECK_EQ_INT(rc, 0);
		if (rc < 0)
			break;
		cl.stream_seq++;
		conn_stats(cl.c, &st);
		CHECK(st.send_queued <= CONN_SEND_MAX);
		loop_run_once(L, 0, NULL);
	}
	CHECK_EQ_INT(rc, -ENOBUFS);
	blocked_first = cl.stream_seq;
	conn_stats(cl.c, &st);
	fprintf(stderr, "(blocked after %llu frames of 64 KiB, %zu queued)\n",
	    (unsigned long long)blocked_first, st.send_queued);
	CHECK(st.send_queued <= CONN_SEND_MAX);
	CHECK(st.send_queued > CONN_SEND_MAX - (64u << 10) - 64);
	CHECK(conn_send_space(cl.c) < (64u << 10) + 16);
	/*
	 * Keep the queue topped up for a while: the kernel may still take
	 * what is in flight at the moment of the first -ENOBUFS (ACKs free
	 * the sender's buffer into the receiver's), but with both buffers
	 * pinned it absorbs at most a few times 2 x PIN_BYTES in all, so
	 * what ever left the queue stays under ABSORB_MAX: a bound with a
	 * margin of 4 over the kernel's, and 16 times under CONN_SEND_MAX.
	 */
#define ABSORB_MAX	(4u * 4u * PIN_BYTES)
	deadline = loop_now_ms() + 200;
	while (loop_now_ms() < deadline) {
		loop_run_once(L, 5, NULL);
		rc = send_frame(&cl, cl.stream_seq, 64u << 10);
		if (rc == 0)
			cl.stream_seq++;
		else
			CHECK_EQ_INT(rc, -ENOBUFS);
	}
	blocked_at = cl.stream_seq;
	conn_stats(cl.c, &st);
	fprintf(stderr, "(then %llu more while the receiver slept; %llu bytes "
	    "in the kernel's buffers)\n",
	    (unsigned long long)(blocked_at - blocked_first),
	    (unsigned long long)st.bytes_out);
	CHECK(st.bytes_out <= ABSORB_MAX);
	CHECK(st.send_queued <= CONN_SEND_MAX);
	CHECK_EQ_INT(sv.frames, 0);
	conn_stats(sv.c, &st);
	CHECK(st.recv_buffer <= CONN_RECV_MAX);

	/* reading resumes: on_writable streams the rest; all in order */
	cl.stream_to = blocked_at + 300;
	cl.stream_fill = 64u << 10;
	conn_set_reading(sv.c, true);
	WAIT_FOR(sv.next_seq == cl.stream_to || sv.bad || cl.bad, 30000);
	CHECK(!sv.bad && !cl.bad);
	CHECK(cl.writable >= 1);
	CHECK(cl.max_queued <= CONN_SEND_MAX);
	CHECK(sv.max_recv_buffer <= CONN_RECV_MAX);
	fprintf(stderr, "(then %llu frames in order, on_writable %d times)\n",
	    (unsigned long long)sv.next_seq, cl.writable);

	conn_close(sv.c, "server done");
	WAIT_FOR(cl.closed && sv.closed, WAIT_MS);
	CHECK(strcmp(sv.reason, "server done") == 0);
	CHECK(strcmp(cl.reason, "connection closed by peer") == 0);
	tls_ctx_close(ta);
}

/* Closing with a full queue towards a peer that never reads: bounded. */
static void
test_linger(void)
{
	struct tls_ctx *ta = ctx_for(certdir, "node-a", certdir);
	struct side cl, sv;
	uint64_t start;
	int rc;

	reset(&cl, "client");
	reset(&sv, "server");
	sv.pause_on_open = true;
	sv.pin_buffers = true;
	srv.accepting = &sv;
	dial(&cl, ta);
	pin_buffers(conn_fd(cl.c));
	WAIT_FOR(cl.opened && sv.opened, WAIT_MS);
	do {
		rc = send_frame(&cl, cl.stream_seq++, 64u << 10);
		loop_run_once(L, 0, NULL);
	} while (rc == 0);
	CHECK_EQ_INT(rc, -ENOBUFS);
	start = loop_now_ms();
	conn_close(cl.c, "giving up");
	WAIT_FOR(cl.closed, CONN_LINGER_MS + 2000);
	CHECK(loop_now_ms() - start >= CONN_LINGER_MS - 20);
	CHECK(strcmp(cl.reason, "giving up") == 0);
	CHECK_EQ_INT(sv.closed, 0);
	/* the receiver wakes up, reads what made it, and sees the end */
	conn_set_reading(sv.c, true);
	WAIT_FOR(sv.closed, WAIT_MS);
	CHECK(!sv.bad);
	CHECK(sv.frames > 0);
	fprintf(stderr, "(linger: receiver got %llu frames, then: %s)\n",
	    (unsigned long long)sv.frames, sv.reason);
	tls_ctx_close(ta);
}

static void
test_refused_and_early_close(void)
{
	struct tls_ctx *ta = ctx_for(certdir, "node-a", certdir);
	struct sockaddr_in gone;
	socklen_t len = sizeof(gone);
	struct side cl, sv;
	struct err e;
	int fd;

	/* a port nobody listens on */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	gone.sin_family = AF_INET;
	gone.sin_port = 0;
	gone.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bind(fd, (struct sockaddr *)&gone, sizeof(gone));
	getsockname(fd, (struct sockaddr *)&gone, &len);
	close(fd);
	reset(&cl, "client");
	CHECK_EQ_INT(conn_connect(&cl.c, L, ta, (struct sockaddr *)&gone,
	    sizeof(gone), HANDSHAKE_MS, &callbacks, &cl, &e), 0);
	CHECK_EQ_INT(cl.closed, 0);	/* reported from the loop only */
	WAIT_FOR(cl.closed, WAIT_MS);
	CHECK(!cl.opened);
	CHECK(strcmp(cl.reason, "connect: Connection refused") == 0);

	/* closed before the handshake finished */
	reset(&cl, "client");
	reset(&sv, "server");
	srv.accepting = &sv;
	dial(&cl, ta);
	conn_close(cl.c, "changed my mind");
	WAIT_FOR(cl.closed && sv.closed, WAIT_MS);
	CHECK(!cl.opened);
	CHECK(strcmp(cl.reason, "changed my mind") == 0);
	spin(20);
	CHECK_EQ_INT(cl.closed, 1);
	CHECK_EQ_INT(sv.closed, 1);
	tls_ctx_close(ta);
}

static void
make_certs(void)
{
	const char *root = getenv("ODOFS_SOURCE_ROOT");
	const char *tmp = unit_tmpdir();
	char cmd[2048];

	snprintf(certdir, sizeof(certdir), "%s/certs", tmp);
	snprintf(roguedir, sizeof(roguedir), "%s/rogue", tmp);
	snprintf(cmd, sizeof(cmd), "'%s/etc/gen-certs.sh' '%s' node-a node-b "
	    "&& '%s/etc/gen-certs.sh' '%s' rogue", root ? root : ".",
	    certdir, root ? root : ".", roguedir);
	if (system(cmd) != 0) {
		fprintf(stderr, "gen-certs.sh failed\n");
		exit(2);
	}
}

void
unit_main(void)
{
	struct err e;
	char tmp[256];

	if (getenv("ODOFS_TEST_DEBUG") != NULL)
		log_init(LOG_LEVEL_DEBUG);
	make_certs();
	if (loop_open(&L, &e) < 0) {
		fprintf(stderr, "loop_open: %s\n", e.msg);
		exit(2);
	}
	test_loop();
	test_tls_ctx();
	server_start();
	test_frames();
	test_other_ca();
	test_silent_and_garbage();
	test_bad_headers();
	test_backpressure();
	test_linger();
	test_refused_and_early_close();
	server_stop();
	loop_close(L);
	snprintf(tmp, sizeof(tmp), "%s", certdir);
	*strrchr(tmp, '/') = '\0';
	unit_rmtree(tmp);
}
