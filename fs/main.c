/*
 * main: the composition root.  Parses the command line and the
 * configuration, opens core, reserves the peer listening socket, mounts,
 * runs the FUSE loop, and tears down in reverse order.  No other file sees
 * config, core, net and fuse together.
 *
 * Everything that can be wrong with the invocation is found before the
 * mount, and reported as one line on stderr ("odofs: ...") with exit
 * status 1.  Without -f the process forks first (LevelDB's threads must be
 * born in the daemon) and the parent waits on a pipe for the child's
 * verdict, so the caller still sees that one line and the right status.
 */

#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "fs.h"
#include "holders.h"
#include "journal.h"
#include "listen.h"
#include "log.h"
#include "peering.h"
#include "pipes.h"
#include "quorum.h"
#include "repair.h"
#include "snapshot.h"

#define MAIN_CACHE_BYTES	(8u << 20)
#define MAIN_MAX_THREADS	8
#define MAIN_MAX_FUSE_OPTS	32
#define MAIN_FUSE_OPT_MAX	1024	/* bytes of one -o option */

struct args {
	const char *config;
	const char *id;
	const char *data;
	const char *listen;
	const char *peers[CONFIG_MAX_PEERS];
	size_t npeers;
	const char *cert, *key, *ca;
	const char *fuse_opts[MAIN_MAX_FUSE_OPTS];
	size_t nfuse_opts;
	const char *mountpoint;
	bool foreground;
	bool debug;
	bool check_config;
	const char *repair;		/* --repair DATA_DIR */
};

enum {
	OPT_ID = 256, OPT_DATA, OPT_LISTEN, OPT_PEER, OPT_CERT, OPT_KEY,
	OPT_CA, OPT_VERSION, OPT_HELP, OPT_CHECK, OPT_REPAIR,
};

static const struct option main_longopts[] = {
	{ "config", required_argument, NULL, 'c' },
	{ "id", required_argument, NULL, OPT_ID },
	{ "data", required_argument, NULL, OPT_DATA },
	{ "listen", required_argument, NULL, OPT_LISTEN },
	{ "peer", required_argument, NULL, OPT_PEER },
	{ "cert", required_argument, NULL, OPT_CERT },
	{ "key", required_argument, NULL, OPT_KEY },
	{ "ca", required_argument, NULL, OPT_CA },
	{ "check-config", no_argument, NULL, OPT_CHECK },
	{ "repair", required_argument, NULL, OPT_REPAIR },
	{ "version", no_argument, NULL, OPT_VERSION },
	{ "help", no_argument, NULL, OPT_HELP },
	{ NULL, 0, NULL, 0 },
};

static void
main_usage(FILE *f)
{
	fprintf(f,
	    "usage: odofs [OPTIONS] MOUNTPOINT\n"
	    "       odofs --check-config [-c FILE] [OPTIONS]\n"
	    "       odofs --repair DATA_DIR [-c FILE] [--id NAME]\n"
	    "\n"
	    "  -c, --config FILE  libconfig file (see odofs.conf)\n"
	    "  --id NAME          this node's id (default: node.id, else the host name)\n"
	    "  --data DIR         data directory (default ~/.local/share/odofs/<id>)\n"
	    "  --listen HOST:PORT accept peers on this address\n"
	    "  --peer HOST:PORT   a seed peer; repeatable\n"
	    "  --cert FILE        this node's TLS certificate\n"
	    "  --key FILE         its private key\n"
	    "  --ca FILE          the CA that signs every peer\n"
	    "  -f                 stay in the foreground\n"
	    "  -d                 debug logging\n"
	    "  -o OPT[,OPT]       FUSE mount options\n"
	    "  --check-config     check the configuration, print \"configuration OK\"\n"
	    "  --repair DATA_DIR  salvage a damaged store, cut damaged journals at\n"
	    "                     their first bad revision, report what was dropped\n"
	    "  --version          print the version\n"
	    "  --help             print this help\n");
}

/* One line on stderr, the way every start-up error is reported. */
static void
main_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
main_fail(const char *fmt, ...)
{
	va_list ap;

	fputs("odofs: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static int
main_parse_args(int argc, char **argv, struct args *a)
{
	int c;

	memset(a, 0, sizeof(*a));
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":c:fdo:hV", main_longopts,
	    NULL)) != -1) {
		switch (c) {
		case 'c':
			a->config = optarg;
			break;
		case OPT_ID:
			a->id = optarg;
			break;
		case OPT_DATA:
			a->data = optarg;
			break;
		case OPT_LISTEN:
			a->listen = optarg;
			break;
		case OPT_PEER:
			if (a->npeers == CONFIG_MAX_PEERS) {
				main_fail("--peer: more than %d peers",
				    CONFIG_MAX_PEERS);
				return -1;
			}
			a->peers[a->npeers++] = optarg;
			break;
		case OPT_CERT:
			a->cert = optarg;
			break;
		case OPT_KEY:
			a->key = optarg;
			break;
		case OPT_CA:
			a->ca = optarg;
			break;
		case 'f':
			a->foreground = true;
			break;
		case 'd':
			a->debug = true;
			break;
		case 'o':
			if (a->nfuse_opts == MAIN_MAX_FUSE_OPTS) {
				main_fail("-o: too many option groups");
				return -1;
			}
			a->fuse_opts[a->nfuse_opts++] = optarg;
			break;
		case OPT_CHECK:
			a->check_config = true;
			break;
		case OPT_REPAIR:
			a->repair = optarg;
			break;
		case 'V':
		case OPT_VERSION:
			printf("odofs %s (libfuse %d.%d)\n", ODOFS_VERSION,
			    FUSE_MAJOR_VERSION, FUSE_MINOR_VERSION);
			exit(0);
		case 'h':
		case OPT_HELP:
			main_usage(stdout);
			exit(0);
		case ':':
			main_fail("option %s needs an argument",
			    argv[optind - 1]);
			return -1;
		default:
			main_fail("unknown option %s (see odofs --help)",
			    argv[optind - 1]);
			return -1;
		}
	}
	if (optind < argc)
		a->mountpoint = argv[optind++];
	if (optind < argc) {
		main_fail("unexpected argument '%s' (one mountpoint only)",
		    argv[optind]);
		return -1;
	}
	if (a->mountpoint == NULL && !a->check_config && a->repair == NULL) {
		main_fail("missing MOUNTPOINT (see odofs --help)");
		return -1;
	}
	return 0;
}

static int
main_copy(char *dst, size_t size, const char *src, const char *what)
{
	if (strlen(src) >= size) {
		main_fail("%s: too long", what);
		return -1;
	}
	memcpy(dst, src, strlen(src) + 1);
	return 0;
}

/* Defaults, then the file, then the command line; then the whole check. */
static int
main_configure(const struct args *a, struct config *cfg)
{
	struct err e;

	err_clear(&e);
	config_defaults(cfg);
	if (a->config != NULL && config_load(cfg, a->config, &e) < 0) {
		main_fail("%s", e.msg);
		return -1;
	}
	if ((a->id && main_copy(cfg->node_id, sizeof(cfg->node_id), a->id,
	    "--id") < 0) ||
	    (a->data && main_copy(cfg->data_dir, sizeof(cfg->data_dir),
	    a->data, "--data") < 0) ||
	    (a->listen && main_copy(cfg->listen, sizeof(cfg->listen),
	    a->listen, "--listen") < 0) ||
	    (a->cert && main_copy(cfg->tls_cert, sizeof(cfg->tls_cert),
	    a->cert, "--cert") < 0) ||
	    (a->key && main_copy(cfg->tls_key, sizeof(cfg->tls_key), a->key,
	    "--key") < 0) ||
	    (a->ca && main_copy(cfg->tls_ca, sizeof(cfg->tls_ca), a->ca,
	    "--ca") < 0))
		return -1;
	if (a->npeers > 0) {
		cfg->npeers = 0;
		for (size_t i = 0; i < a->npeers; i++)
			if (main_copy(cfg->peers[cfg->npeers++],
			    sizeof(cfg->peers[0]), a->peers[i], "--peer") < 0)
				return -1;
	}
	if (a->debug)
		cfg->log_level = LOG_LEVEL_DEBUG;
	if (config_check(cfg, &e) < 0) {
		main_fail("%s", e.msg);
		return -1;
	}
	return 0;
}

static int
main_check_mountpoint(const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0) {
		main_fail("mountpoint %s: %s", path, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		main_fail("mountpoint %s: not a directory", path);
		return -1;
	}
	return 0;
}

/*
 * libfuse's log.  While FUSE options are being checked (before any thread
 * starts), its messages are collected here instead of logged, so that a
 * bad option becomes one line of ours: libfuse writes some messages in
 * pieces ("fuse: unknown option(s): `", "-o ", "x'\n").
 */
static struct {
	bool on;
	size_t len;
	char text[512];
} main_fuse_held;

static void
main_fuse_hold(bool on)
{
	main_fuse_held.on = on;
	main_fuse_held.len = 0;
	main_fuse_held.text[0] = '\0';
}

/* What libfuse said while held, as one line without its "fuse: " prefix. */
static const char *
main_fuse_said(void)
{
	char *t = main_fuse_held.text, *p;
	size_t n = strlen(t);

	for (p = t; (p = strchr(p, '\n')) != NULL; )
		*p = ' ';
	while (n > 0 && t[n - 1] == ' ')
		t[--n] = '\0';
	return strncmp(t, "fuse: ", 6) == 0 ? t + 6 : t;
}

static void
main_fuse_log(enum fuse_log_level level, const char *fmt, va_list ap)
{
	enum log_level l = LOG_LEVEL_DEBUG;

	if (main_fuse_held.on) {
		size_t room = sizeof(main_fuse_held.text) - main_fuse_held.len;
		int n = vsnprintf(main_fuse_held.text + main_fuse_held.len,
		    room, fmt, ap);

		if (n > 0)
			main_fuse_held.len += (size_t)n < room ? (size_t)n :
			    room - 1;
		return;
	}
	if (level <= FUSE_LOG_ERR)
		l = LOG_LEVEL_ERROR;
	else if (level <= FUSE_LOG_WARNING)
		l = LOG_LEVEL_WARN;
	else if (level <= FUSE_LOG_INFO)
		l = LOG_LEVEL_INFO;
	log_line(l, fmt, ap);
}

/*
 * Tries one FUSE option the way libfuse will take it, in a session that is
 * made and dropped (no mount, no thread), so that a bad one can be named.
 */
static int
main_try_fuse_opt(char *opt)
{
	char *argv[] = { "odofs", "-o", opt, NULL };
	struct fuse_args fa = FUSE_ARGS_INIT(3, argv);
	struct fuse_session *se;
	int rc = 0;

	main_fuse_hold(true);
	se = fuse_session_new(&fa, &ops_table, sizeof(ops_table), NULL);
	if (se != NULL) {
		fuse_session_destroy(se);
	} else {
		main_fail("%s mount option: %s", strstr(main_fuse_said(),
		    "unknown option") ? "unknown" : "bad", opt);
		rc = -1;
	}
	main_fuse_hold(false);
	fuse_opt_free_args(&fa);
	return rc;
}

/*
 * Checks the FUSE options (-o) one by one before anything starts.  They
 * are separated by commas; a backslash escapes the next character, as in
 * fuse_opt.
 */
static int
main_check_fuse_opts(const struct args *a)
{
	char opt[MAIN_FUSE_OPT_MAX];
	int rc = 0;

	for (size_t i = 0; i < a->nfuse_opts && rc == 0; i++) {
		const char *p = a->fuse_opts[i], *end;

		do {
			for (end = p; *end != '\0' && *end != ','; end++)
				if (end[0] == '\\' && end[1] != '\0')
					end++;
			if (end == p) {		/* libfuse refuses it too */
				main_fail("empty mount option in -o '%s'",
				    a->fuse_opts[i]);
				return -1;
			}
			if ((size_t)(end - p) >= sizeof(opt)) {
				main_fail("mount option too long: %.40s...", p);
				return -1;
			}
			memcpy(opt, p, (size_t)(end - p));
			opt[end - p] = '\0';
			rc = main_try_fuse_opt(opt);
			p = end + 1;
		} while (rc == 0 && *end == ',');
	}
	return rc;
}

/*
 * Without -f: fork, and have the parent wait for one status byte (0 = mounted)
 * and relay the child's error line.  Returns the pipe's write end in the
 * child (-1 in the foreground); never returns in the parent.
 */
static int
main_background(void)
{
	int p[2], status = 1;
	char msg[1024];
	ssize_t n;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0 || (pid = fork()) < 0) {
		main_fail("cannot fork: %s", strerror(errno));
		exit(1);
	}
	if (pid == 0) {
		close(p[0]);
		setsid();
		/* keep no directory busy; every path is absolute by now */
		(void)!chdir("/");
		return p[1];
	}
	close(p[1]);
	n = read(p[0], msg, sizeof(msg) - 1);
	if (n > 0) {
		status = msg[0];
		msg[n] = '\0';
		if (n > 1)
			fputs(msg + 1, stderr);
	}
	exit(status);
}

/* In the child: report the verdict to the waiting parent. */
static void
main_report(int fd, int status, const char *line)
{
	char msg[1024];
	int n;

	if (fd < 0)
		return;
	n = snprintf(msg, sizeof(msg), "%c%s", status, line ? line : "");
	(void)!write(fd, msg, (size_t)(n < (int)sizeof(msg) ? n : (int)sizeof(msg) - 1));
	close(fd);
}

/*
 * Background mode logs into the data directory once the mount is up, with
 * times; SIGHUP reopens the file (main_on_hup).
 */
static void
main_detach_stdio(const struct config *cfg)
{
	char path[CONFIG_PATH_MAX + 16];
	struct err e;
	int fd;

	snprintf(path, sizeof(path), "%s/odofs.log", cfg->data_dir);
	if ((fd = open("/dev/null", O_RDWR)) >= 0) {
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		close(fd);
	}
	if (log_open_file(path, &e) < 0)
		log_warnx("%s; logging to stderr", e.msg);
}

/* SIGHUP: reopen the log file (logrotate), nothing else. */
static void
main_on_hup(int sig)
{
	(void)sig;
	log_reopen();
}

/*
 * Installs main_on_hup before fuse_set_signal_handlers(), which leaves a
 * signal that already has a handler alone (its own HUP handler would end
 * the session).  SA_RESTART: a HUP interrupts no worker's system call.
 */
static int
main_catch_hup(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = main_on_hup;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	return sigaction(SIGHUP, &sa, NULL);
}

/* Core's commit hook: wake the live pipes and the snapshot policy. */
static void
main_on_commit(void *arg, uint32_t idx, uint64_t head)
{
	struct odofs *o = arg;

	pipes_notify(o->pipes, idx, head);
	snapshot_notify(o->snapshots, idx, head);
	peering_notify(o->peering, idx, head);
}

/* A quorum_want_fn: an fsync waits for the replicas of idx. */
static void
main_want_durable(void *arg, uint32_t idx, uint64_t rev)
{
	struct odofs *o = arg;

	peering_want_durable(o->peering, idx, rev);
}

/* A snapshot was installed (here or from a peer): compact if configured. */
static void
main_on_snapshot(void *arg, uint32_t idx)
{
	struct odofs *o = arg;

	snapshot_installed(o->snapshots, idx);
}

static bool
main_env_flag(const char *name)
{
	const char *v = getenv(name);

	return v != NULL && strcmp(v, "1") == 0;
}

static int
main_run(const struct args *a, struct config *cfg, int report_fd)
{
	struct fuse_args fargs = FUSE_ARGS_INIT(0, NULL);
	struct fuse_loop_config *lcfg = NULL;
	struct fuse_session *se = NULL;
	struct journal_opts jo;
	struct odofs o;
	struct err e;
	int listen_fd = -1, rc = 1;
	char line[ERR_MSG_MAX + 64];

	memset(&o, 0, sizeof(o));
	err_clear(&e);
	line[0] = '\0';
	o.cfg = cfg;
	o.started = time(NULL);
	o.events_page_cache = main_env_flag("ODOFS_EVENTS_PAGE_CACHE");
	pthread_mutex_init(&o.handles_lock, NULL);

	if (cfg->listen[0] != '\0' &&
	    (listen_fd = listen_open(cfg->listen, &e)) < 0) {
		snprintf(line, sizeof(line), "odofs: %s\n", e.msg);
		goto out;
	}
	memset(&jo, 0, sizeof(jo));
	jo.data_dir = cfg->data_dir;
	jo.node_id = cfg->node_id;
	jo.sync = cfg->sync;
	jo.max_event_bytes = cfg->max_event_bytes;
	jo.cache_bytes = MAIN_CACHE_BYTES;
	if (journal_open(&o.journal, &jo, &e) < 0 ||
	    holders_open(&o.holders, o.journal, &e) < 0) {
		snprintf(line, sizeof(line), "odofs: %s\n", e.msg);
		goto out;
	}
	if (config_peering_enabled(cfg)) {
		/* the listening socket is the peering's from here on */
		int fd = listen_fd;

		listen_fd = -1;
		if (peering_open(&o.peering, cfg, o.journal, o.holders, fd,
		    &e) < 0) {
			snprintf(line, sizeof(line), "odofs: %s\n", e.msg);
			goto out;
		}
	}

	/* the kernel enforces the modes the tree shows (SPEC §2) */
	if (fuse_opt_add_arg(&fargs, "odofs") != 0 ||
	    fuse_opt_add_arg(&fargs, "-o") != 0 ||
	    fuse_opt_add_arg(&fargs,
	    "fsname=odofs,subtype=odofs,default_permissions") != 0)
		goto nomem;
	for (size_t i = 0; i < a->nfuse_opts; i++)
		if (fuse_opt_add_arg(&fargs, "-o") != 0 ||
		    fuse_opt_add_arg(&fargs, a->fuse_opts[i]) != 0)
			goto nomem;
	/* each option is good (main_check_fuse_opts); they may still clash */
	main_fuse_hold(true);
	se = fuse_session_new(&fargs, &ops_table, sizeof(ops_table), &o);
	if (se == NULL)
		snprintf(line, sizeof(line), "odofs: bad FUSE options: %s\n",
		    main_fuse_said());
	main_fuse_hold(false);
	if (se == NULL)
		goto out;
	if (pipes_start(&o.pipes, o.journal, se, &e) < 0) {
		snprintf(line, sizeof(line), "odofs: %s\n", e.msg);
		goto out;
	}
	{
		struct snapshot_opts so = {
			.every_events = cfg->snapshot_every_events,
			.every_seconds = cfg->snapshot_every_seconds,
			.command = cfg->snapshot_command,
			.timeout_seconds = cfg->snapshot_timeout_seconds,
			.compact = cfg->snapshot_compact,
			.keep_events = cfg->snapshot_keep_events,
			.tmp_dir = cfg->data_dir,
			.holders = o.holders,
			.retain_for = cfg->retain_for,
			.nretain_for = cfg->nretain_for,
			.retain_max_bytes = cfg->retain_max_bytes,
		};

		if (snapshot_start(&o.snapshots, o.journal, &so, &e) < 0) {
			snprintf(line, sizeof(line), "odofs: %s\n", e.msg);
			goto out;
		}
	}
	if (cfg->replicas > 0) {
		if (quorum_open(&o.quorum, o.holders, cfg->node_id,
		    cfg->replicas, cfg->replica_timeout_ms, main_want_durable,
		    &o, &e) < 0) {
			snprintf(line, sizeof(line), "odofs: %s\n", e.msg);
			goto out;
		}
		holders_set_notify(o.holders, quorum_acked, o.quorum);
	}
	journal_set_notify(o.journal, main_on_commit, &o);
	journal_set_snapshot_notify(o.journal, main_on_snapshot, &o);
	if (main_catch_hup() != 0 || fuse_set_signal_handlers(se) != 0) {
		snprintf(line, sizeof(line), "odofs: cannot set signal handlers\n");
		goto out;
	}
	if (fuse_session_mount(se, a->mountpoint) != 0) {
		snprintf(line, sizeof(line), "odofs: cannot mount on %s\n",
		    a->mountpoint);
		goto out_signals;
	}
	log_info("mounted %s: node %s, data %s, %u devices, %s%s", a->mountpoint,
	    cfg->node_id, cfg->data_dir, journal_count(o.journal),
	    o.peering ? "listening on " : "peering off",
	    o.peering ? (cfg->listen[0] ? cfg->listen : "nothing") : "");
	if (o.peering != NULL && peering_start(o.peering, &e) < 0) {
		snprintf(line, sizeof(line), "odofs: %s\n", e.msg);
		goto nomem_mounted;
	}
	main_report(report_fd, 0, NULL);
	report_fd = -1;
	if (!a->foreground)
		main_detach_stdio(cfg);

	if ((lcfg = fuse_loop_cfg_create()) == NULL)
		goto nomem_mounted;
	fuse_loop_cfg_set_max_threads(lcfg, MAIN_MAX_THREADS);
	fuse_loop_cfg_set_idle_threads(lcfg, MAIN_MAX_THREADS / 2);
	/* a signal ends the loop with the signal number: a clean exit */
	rc = fuse_session_loop_mt(se, lcfg) < 0 ? 1 : 0;
	log_info("unmounting %s", a->mountpoint);
nomem_mounted:
	/* peers hear goodbye; readers blocked in live pipes get end of file */
	peering_stop(o.peering);
	pipes_stop(o.pipes);
	quorum_close(o.quorum);		/* waiting fsyncs: EIO */
	o.quorum = NULL;
	fuse_session_unmount(se);
	ops_release_all(&o);
out_signals:
	fuse_remove_signal_handlers(se);
out:
	peering_close(o.peering);
	quorum_close(o.quorum);
	ops_release_all(&o);
	snapshot_stop(o.snapshots);
	pipes_free(o.pipes);
	if (se != NULL)
		fuse_session_destroy(se);
	fuse_loop_cfg_destroy(lcfg);
	fuse_opt_free_args(&fargs);
	holders_close(o.holders);
	journal_close(o.journal);
	pthread_mutex_destroy(&o.handles_lock);
	if (listen_fd >= 0)
		close(listen_fd);
	if (line[0] != '\0') {
		if (report_fd >= 0)
			main_report(report_fd, 1, line);
		else
			fputs(line, stderr);
	}
	return rc;
nomem:
	snprintf(line, sizeof(line), "odofs: out of memory\n");
	goto out;
}

int
main(int argc, char **argv)
{
	static struct config cfg;	/* large: keep it off the stack */
	static char mountpoint[PATH_MAX];
	struct args a;
	int report_fd = -1;

	if (main_parse_args(argc, argv, &a) < 0)
		return 1;
	if (main_configure(&a, &cfg) < 0)
		return 1;
	log_init(cfg.log_level);
	fuse_set_log_func(main_fuse_log);
	if (main_check_fuse_opts(&a) < 0)
		return 1;
	if (a.check_config) {
		printf("configuration OK\n");
		return 0;
	}
	if (a.repair != NULL)
		return repair_run(a.repair, cfg.node_id,
		    config_peering_enabled(&cfg));
	if (main_check_mountpoint(a.mountpoint) < 0)
		return 1;
	if (!a.foreground) {
		/* the daemon works from "/" */
		if (realpath(a.mountpoint, mountpoint) == NULL) {
			main_fail("mountpoint %s: %s", a.mountpoint,
			    strerror(errno));
			return 1;
		}
		a.mountpoint = mountpoint;
		report_fd = main_background();
	}
	return main_run(&a, &cfg, report_fd);
}
