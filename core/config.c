/*
 * config: libconfig in, validated plain structs out.  See config.h.
 *
 * One table, config_keys[], names every key of SPEC §10 with its type, the
 * field of struct config it fills, its bounds and its default.  The same
 * table fills the defaults, drives loading (each setting of the file is
 * looked up by its dotted path, so an unknown key at any depth is an error)
 * and re-checks the bounds in config_check() after the command line has
 * written into the struct.  Loading works on a copy and commits only when
 * the whole file is good, so a failed load leaves cfg as it was.  Every
 * message is one line, "file:line: key: problem"; user text quoted in a
 * message is cut short and stripped of control bytes.
 *
 * We read the file ourselves (bounded, CONFIG_FILE_MAX) and hand libconfig
 * the text: libconfig 1.5 silently truncates a plain integer literal that
 * does not fit in 32 bits (heartbeat_ms = 4294967396 reads as 100), so a
 * small lexer first appends the L suffix to every plain integer literal
 * (all of them, so that an array never mixes int and int64), and the range
 * check then sees the real value.  For the same reason @include is refused:
 * an included file would escape that pass.  Addresses are checked by hand
 * (no resolver, no socket headers in core).  Relative paths and a leading
 * "~/" are made absolute in config_check(), since the daemon may chdir("/")
 * when it goes to the background.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libconfig.h>

#include "config.h"

#define CONFIG_FILE_MAX		(1024 * 1024)	/* bytes of a config file */
#define CONFIG_KEY_MAX		256		/* bytes of a dotted key path */
#define CONFIG_SHOW_MAX		64		/* bytes of user text in a message */
#define CONFIG_GRBUF_MIN	4096		/* getgrnam_r's buffer at first */
#define CONFIG_GRBUF_MAX	(1024 * 1024)	/* at most (many members) */

enum key_type {
	KEY_GROUP,	/* a { } group of further keys */
	KEY_STRING,	/* char[size] */
	KEY_UINT,	/* unsigned integer of size 4 or 8, in [min, max] */
	KEY_BOOL,	/* bool */
	KEY_LEVEL,	/* enum log_level, by name */
	KEY_STRINGS,	/* char[nmax][size] and a size_t count */
	KEY_UINTS,	/* uint32_t[nmax] and a size_t count, each in [min, max] */
};

#define KEY_NONEMPTY	0x1	/* lists: at least one entry */
#define KEY_ASCENDING	0x2	/* KEY_UINTS: no entry below the one before */

struct key {
	const char	*path;		/* "peering.heartbeat_ms" */
	enum key_type	 type;
	size_t		 off;		/* of the field in struct config */
	size_t		 size;		/* of the field, or of one list entry */
	size_t		 nmax;		/* lists: most entries */
	size_t		 count;		/* lists: offset of the size_t count */
	long long	 min, max;	/* KEY_UINT, and each KEY_UINTS entry */
	int		 flags;
	int		(*check)(const char *, struct err *);	/* strings */
	long long	 def;		/* KEY_UINT, KEY_BOOL, KEY_LEVEL */
	const char	*sdef;		/* KEY_STRING; KEY_STRINGS: one entry */
	const uint32_t	*adef;		/* KEY_UINTS */
	size_t		 nadef;
};

static int config_check_id_opt(const char *, struct err *);
static int config_check_addr_opt(const char *, struct err *);
static int config_check_glob(const char *, struct err *);

static const uint32_t config_backoff_default[] = {
	5000, 10000, 30000, 60000, 600000, 3600000,
};

#define FOFF(f)		offsetof(struct config, f)
#define FSIZE(f)	sizeof(((struct config *)0)->f)
#define NELEM(a)	(sizeof(a) / sizeof((a)[0]))

#define K_GROUP(p)	{ .path = (p), .type = KEY_GROUP }
#define K_STR(p, f, chk, d)						\
	{ .path = (p), .type = KEY_STRING, .off = FOFF(f),		\
	  .size = FSIZE(f), .check = (chk), .sdef = (d) }
#define K_UINT(p, f, lo, hi, d)						\
	{ .path = (p), .type = KEY_UINT, .off = FOFF(f),		\
	  .size = FSIZE(f), .min = (lo), .max = (hi), .def = (d) }
#define K_BOOL(p, f, d)							\
	{ .path = (p), .type = KEY_BOOL, .off = FOFF(f),		\
	  .size = FSIZE(f), .def = (d) }
#define K_LEVEL(p, f, d)						\
	{ .path = (p), .type = KEY_LEVEL, .off = FOFF(f),		\
	  .size = FSIZE(f), .def = (d) }
#define K_STRS(p, f, n, chk, d)						\
	{ .path = (p), .type = KEY_STRINGS, .off = FOFF(f),		\
	  .size = FSIZE(f[0]), .nmax = FSIZE(f) / FSIZE(f[0]),		\
	  .count = FOFF(n), .check = (chk), .sdef = (d) }
#define K_UINTS(p, f, n, lo, hi, fl, d)					\
	{ .path = (p), .type = KEY_UINTS, .off = FOFF(f),		\
	  .size = FSIZE(f[0]), .nmax = FSIZE(f) / FSIZE(f[0]),		\
	  .count = FOFF(n), .min = (lo), .max = (hi), .flags = (fl),	\
	  .adef = (d), .nadef = NELEM(d) }

#define MS_DAY		86400000LL
#define EVENTS_MAX	(1LL << 62)

/*
 * Every key of SPEC §10.  The bounds are here and nowhere else; etc/odofs.conf
 * documents them.  max_event_bytes may exceed what one FUSE write carries
 * (about 1 MiB less a page): a line is assembled across writes.
 */
static const struct key config_keys[] = {
	K_GROUP("node"),
	K_STR("node.id", node_id, config_check_id_opt, ""),
	K_STR("node.data_dir", data_dir, NULL, ""),
	K_STR("listen", listen, config_check_addr_opt, ""),
	K_STRS("peers", peers, npeers, config_check_addr, NULL),
	K_GROUP("tls"),
	K_STR("tls.cert", tls_cert, NULL, ""),
	K_STR("tls.key", tls_key, NULL, ""),
	K_STR("tls.ca", tls_ca, NULL, ""),
	K_GROUP("peering"),
	K_UINT("peering.tick_ms", tick_ms, 10, 60000, 1000),
	K_UINT("peering.heartbeat_ms", heartbeat_ms, 100, MS_DAY, 30000),
	K_UINT("peering.handshake_ms", handshake_ms, 100, 600000, 10000),
	K_UINTS("peering.backoff_ms", backoff_ms, nbackoff, 1, MS_DAY,
	    KEY_NONEMPTY | KEY_ASCENDING, config_backoff_default),
	K_UINT("peering.purgatory_ms", purgatory_ms, 0, MS_DAY, 600000),
	K_BOOL("peering.exchange", exchange, true),
	K_UINT("peering.max_peers", max_peers, 1, 4096, 256),
	K_GROUP("sync"),
	K_UINT("sync.evaluate_ms", evaluate_ms, 100, MS_DAY, 10000),
	K_UINT("sync.stall_ms", stall_ms, 100, MS_DAY, 30000),
	K_STRS("sync.devices", devices, ndevices, config_check_glob, "*"),
	K_GROUP("snapshot"),
	K_UINT("snapshot.every_events", snapshot_every_events, 0, EVENTS_MAX,
	    0),
	K_UINT("snapshot.every_seconds", snapshot_every_seconds, 0, 31536000,
	    0),
	K_STR("snapshot.command", snapshot_command, NULL, ""),
	K_UINT("snapshot.timeout_seconds", snapshot_timeout_seconds, 1, 86400,
	    60),
	K_BOOL("snapshot.compact", snapshot_compact, false),
	K_UINT("snapshot.keep_events", snapshot_keep_events, 0, EVENTS_MAX, 0),
	K_STRS("snapshot.retain_for", retain_for, nretain_for,
	    config_check_glob, NULL),
	K_UINT("snapshot.retain_max_bytes", retain_max_bytes, 0,
	    UINT64_C(1) << 50, 0),
	K_GROUP("limits"),
	K_UINT("limits.max_event_bytes", max_event_bytes, 1, 4194304,
	    1048576),
	K_GROUP("durability"),
	K_BOOL("durability.sync", sync, false),
	K_UINT("durability.replicas", replicas, 0, 64, 0),
	K_UINT("durability.replica_timeout_ms", replica_timeout_ms, 100,
	    MS_DAY, 30000),
	K_UINT("durability.ack_sync_ms", ack_sync_ms, 1, 60000, 100),
	K_GROUP("fs"),
	K_STR("fs.group", fs_group, NULL, ""),
	K_GROUP("log"),
	K_LEVEL("log.level", log_level, LOG_LEVEL_INFO),
};

/* Copies at most CONFIG_SHOW_MAX bytes of s, control bytes as '?'. */
static const char *
config_show(char *buf, size_t size, const char *s)
{
	size_t i, n = 0, max = size - 4;

	if (max > CONFIG_SHOW_MAX)
		max = CONFIG_SHOW_MAX;
	for (i = 0; s[i] != '\0' && n < max; i++) {
		unsigned char c = (unsigned char)s[i];

		buf[n++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	if (s[i] != '\0') {
		memcpy(buf + n, "...", 3);
		n += 3;
	}
	buf[n] = '\0';
	return buf;
}

static void *
config_field(struct config *cfg, const struct key *k)
{
	return (char *)cfg + k->off;
}

static unsigned long long
config_get_uint(const void *p, size_t size)
{
	if (size == sizeof(uint64_t))
		return *(const uint64_t *)p;
	return *(const uint32_t *)p;
}

static void
config_put_uint(void *p, size_t size, unsigned long long v)
{
	if (size == sizeof(uint64_t))
		*(uint64_t *)p = v;
	else
		*(uint32_t *)p = (uint32_t)v;
}

void
config_defaults(struct config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	for (size_t i = 0; i < NELEM(config_keys); i++) {
		const struct key *k = &config_keys[i];
		void *p = config_field(cfg, k);

		switch (k->type) {
		case KEY_GROUP:
			break;
		case KEY_STRING:
			snprintf(p, k->size, "%s", k->sdef);
			break;
		case KEY_UINT:
			config_put_uint(p, k->size, (unsigned long long)k->def);
			break;
		case KEY_BOOL:
			*(bool *)p = k->def != 0;
			break;
		case KEY_LEVEL:
			*(enum log_level *)p = (enum log_level)k->def;
			break;
		case KEY_STRINGS:
			*(size_t *)((char *)cfg + k->count) = 0;
			if (k->sdef != NULL) {
				snprintf(p, k->size, "%s", k->sdef);
				*(size_t *)((char *)cfg + k->count) = 1;
			}
			break;
		case KEY_UINTS:
			for (size_t j = 0; j < k->nadef; j++)
				((uint32_t *)p)[j] = k->adef[j];
			*(size_t *)((char *)cfg + k->count) = k->nadef;
			break;
		}
	}
}

bool
config_peering_enabled(const struct config *cfg)
{
	return cfg->listen[0] != '\0' || cfg->npeers > 0;
}

bool
config_valid_id(const char *s, size_t len, size_t max)
{
	if (s == NULL || len == 0 || len > max || s[0] == '.')
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9'))
			continue;
		if (c == '.' || c == '_' || c == ':' || c == '@' || c == '-')
			continue;
		return false;
	}
	return true;
}

static bool
config_is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool
config_is_xdigit(char c)
{
	return config_is_digit(c) || (c >= 'a' && c <= 'f') ||
	    (c >= 'A' && c <= 'F');
}

/* Four decimal parts 0..255, no leading zeros (getaddrinfo reads octal). */
static bool
config_valid_ipv4(const char *s, size_t len)
{
	size_t i = 0;

	for (int part = 0; part < 4; part++) {
		size_t start = i;
		unsigned v = 0;

		if (part > 0) {
			if (i >= len || s[i] != '.')
				return false;
			start = ++i;
		}
		while (i < len && config_is_digit(s[i]) && i - start < 3)
			v = v * 10 + (unsigned)(s[i++] - '0');
		if (i == start || v > 255 || (s[start] == '0' && i - start > 1))
			return false;
	}
	return i == len;
}

/* RFC 4291 text form: eight groups, one "::", an optional IPv4 tail. */
static bool
config_valid_ipv6(const char *s, size_t len)
{
	size_t i = 0, groups = 0;
	bool gap = false;

	if (len >= 2 && s[0] == ':' && s[1] == ':') {
		gap = true;
		i = 2;
	} else if (len > 0 && s[0] == ':')
		return false;
	while (i < len) {
		size_t j = i;

		while (j < len && config_is_xdigit(s[j]))
			j++;
		if (j < len && s[j] == '.') {
			if (!config_valid_ipv4(s + i, len - i))
				return false;
			groups += 2;
			break;
		}
		if (j == i || j - i > 4)
			return false;
		groups++;
		i = j;
		if (i == len)
			break;
		if (s[i++] != ':' || i == len)
			return false;
		if (s[i] == ':') {
			if (gap)
				return false;
			gap = true;
			i++;
		}
	}
	return gap ? groups <= 7 : groups == 8;
}

/* Labels of [A-Za-z0-9_-], 1..63 bytes, no '-' at either end; 253 in all. */
static bool
config_valid_hostname(const char *s, size_t len)
{
	size_t i = 0;

	if (len > 0 && s[len - 1] == '.')
		len--;
	if (len == 0 || len > 253)
		return false;
	while (i < len) {
		size_t start = i;

		while (i < len && s[i] != '.') {
			char c = s[i];

			if (!config_is_xdigit(c) && !(c >= 'g' && c <= 'z') &&
			    !(c >= 'G' && c <= 'Z') && c != '-' && c != '_')
				return false;
			i++;
		}
		if (i == start || i - start > 63 || s[start] == '-' ||
		    s[i - 1] == '-')
			return false;
		if (i < len && ++i == len)
			return false;
	}
	return true;
}

int
config_check_addr(const char *addr, struct err *e)
{
	char show[CONFIG_SHOW_MAX + 4];
	const char *host, *port, *p;
	size_t hlen, len;
	unsigned long v = 0;

	len = strnlen(addr, CONFIG_ADDR_MAX);
	if (len == 0)
		return err_set(e, -EINVAL, "empty address: expected HOST:PORT");
	config_show(show, sizeof(show), addr);
	if (len >= CONFIG_ADDR_MAX)
		return err_set(e, -EINVAL, "invalid address '%s': longer "
		    "than %d bytes", show, CONFIG_ADDR_MAX - 1);
	if (addr[0] == '[') {
		host = addr + 1;
		if ((p = strchr(host, ']')) == NULL)
			return err_set(e, -EINVAL, "invalid address '%s': "
			    "no ']' after the IPv6 address", show);
		hlen = (size_t)(p - host);
		if (!config_valid_ipv6(host, hlen))
			return err_set(e, -EINVAL, "invalid address '%s': "
			    "bad IPv6 address", show);
		if (p[1] != ':')
			return err_set(e, -EINVAL, "invalid address '%s': "
			    "expected ':PORT' after ']'", show);
		port = p + 2;
	} else {
		host = addr;
		if ((p = strrchr(addr, ':')) == NULL)
			return err_set(e, -EINVAL, "invalid address '%s': "
			    "expected HOST:PORT", show);
		hlen = (size_t)(p - host);
		port = p + 1;
		if (hlen == 0)
			return err_set(e, -EINVAL, "invalid address '%s': "
			    "missing host", show);
		if (memchr(host, ':', hlen) != NULL)
			return err_set(e, -EINVAL, "invalid address '%s': an "
			    "IPv6 address goes in brackets, as [::1]:7400",
			    show);
		if (strspn(host, "0123456789.") >= hlen) {
			if (!config_valid_ipv4(host, hlen))
				return err_set(e, -EINVAL, "invalid address "
				    "'%s': bad IPv4 address", show);
		} else if (!config_valid_hostname(host, hlen))
			return err_set(e, -EINVAL, "invalid address '%s': "
			    "bad host name", show);
	}
	for (p = port; config_is_digit(*p) && p - port < 6; p++)
		v = v * 10 + (unsigned long)(*p - '0');
	if (p == port || *p != '\0' || v < 1 || v > 65535)
		return err_set(e, -EINVAL, "invalid address '%s': port must "
		    "be a number from 1 to 65535", show);
	return 0;
}

static int
config_check_addr_opt(const char *s, struct err *e)
{
	return s[0] == '\0' ? 0 : config_check_addr(s, e);
}

static int
config_check_id_opt(const char *s, struct err *e)
{
	char show[CONFIG_SHOW_MAX + 4];

	if (s[0] == '\0' || config_valid_id(s, strlen(s), CONFIG_ID_MAX))
		return 0;
	return err_set(e, -EINVAL, "invalid id '%s': 1 to %d bytes of "
	    "[A-Za-z0-9._:@-], not starting with '.'",
	    config_show(show, sizeof(show), s), CONFIG_ID_MAX);
}

static int
config_check_glob(const char *s, struct err *e)
{
	if (s[0] == '\0')
		return err_set(e, -EINVAL, "empty pattern");
	return 0;
}

/*
 * Loading.
 */

static int config_fail(struct err *, const char *, const config_setting_t *,
    const char *, const char *, ...) __attribute__((format(printf, 5, 6)));

/* Sets e to "file:line: key: problem" and returns -EINVAL. */
static int
config_fail(struct err *e, const char *path, const config_setting_t *s,
    const char *key, const char *fmt, ...)
{
	char msg[ERR_MSG_MAX];
	const char *file = config_setting_source_file(s);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return err_set(e, -EINVAL, "%s:%u: %s: %s", file != NULL ? file : path,
	    config_setting_source_line(s), key, msg);
}

static int
config_setting_uint(const config_setting_t *s, long long *out)
{
	switch (config_setting_type(s)) {
	case CONFIG_TYPE_INT:
		*out = config_setting_get_int(s);
		return 0;
	case CONFIG_TYPE_INT64:
		*out = config_setting_get_int64(s);
		return 0;
	default:
		return -EINVAL;
	}
}

/* One string setting into dst[k->size], checked; dst untouched on error. */
static int
config_take_string(const struct key *k, const config_setting_t *s,
    char *dst, const char *path, struct err *e)
{
	struct err sub;
	const char *v;
	size_t len;

	if (config_setting_type(s) != CONFIG_TYPE_STRING)
		return config_fail(e, path, s, k->path,
		    "wrong type: expected a string");
	v = config_setting_get_string(s);
	len = strlen(v);
	if (len >= k->size)
		return config_fail(e, path, s, k->path,
		    "too long: %zu bytes, at most %zu", len, k->size - 1);
	if (k->check != NULL && k->check(v, &sub) != 0)
		return config_fail(e, path, s, k->path, "%s", sub.msg);
	memset(dst, 0, k->size);
	memcpy(dst, v, len);
	return 0;
}

static int
config_take_list(struct config *cfg, const struct key *k,
    const config_setting_t *s, const char *path, struct err *e)
{
	char *base = config_field(cfg, k);
	long long v, prev = 0;
	int n, i, rc;

	if (!config_setting_is_array(s) && !config_setting_is_list(s))
		return config_fail(e, path, s, k->path, "wrong type: expected "
		    "%s", k->type == KEY_STRINGS ? "a list of strings" :
		    "an array of integers");
	n = config_setting_length(s);
	if ((size_t)n > k->nmax || (n == 0 && (k->flags & KEY_NONEMPTY)))
		return config_fail(e, path, s, k->path, "must have %d to %zu "
		    "entries, not %d", (k->flags & KEY_NONEMPTY) ? 1 : 0,
		    k->nmax, n);
	memset(base, 0, k->nmax * k->size);
	for (i = 0; i < n; i++) {
		const config_setting_t *el = config_setting_get_elem(s,
		    (unsigned)i);

		if (k->type == KEY_STRINGS) {
			rc = config_take_string(k, el, base + (size_t)i *
			    k->size, path, e);
			if (rc != 0)
				return rc;
			continue;
		}
		if (config_setting_uint(el, &v) != 0)
			return config_fail(e, path, el, k->path, "entry %d: "
			    "wrong type: expected an integer", i + 1);
		if (v < k->min || v > k->max)
			return config_fail(e, path, el, k->path, "entry %d: "
			    "must be between %lld and %lld", i + 1, k->min,
			    k->max);
		if ((k->flags & KEY_ASCENDING) && i > 0 && v < prev)
			return config_fail(e, path, el, k->path, "entry %d: "
			    "%lld is less than the entry before it (%lld)",
			    i + 1, v, prev);
		config_put_uint(base + (size_t)i * k->size, k->size,
		    (unsigned long long)v);
		prev = v;
	}
	*(size_t *)((char *)cfg + k->count) = (size_t)n;
	return 0;
}

static int
config_take(struct config *cfg, const struct key *k, const config_setting_t *s,
    const char *path, struct err *e)
{
	void *p = config_field(cfg, k);
	enum log_level level;
	char show[CONFIG_SHOW_MAX + 4];
	long long v;

	switch (k->type) {
	case KEY_GROUP:
		break;
	case KEY_STRING:
		return config_take_string(k, s, p, path, e);
	case KEY_UINT:
		if (config_setting_uint(s, &v) != 0)
			return config_fail(e, path, s, k->path,
			    "wrong type: expected an integer");
		if (v < k->min || v > k->max)
			return config_fail(e, path, s, k->path,
			    "must be between %lld and %lld", k->min, k->max);
		config_put_uint(p, k->size, (unsigned long long)v);
		break;
	case KEY_BOOL:
		if (config_setting_type(s) != CONFIG_TYPE_BOOL)
			return config_fail(e, path, s, k->path,
			    "wrong type: expected true or false");
		*(bool *)p = config_setting_get_bool(s) != 0;
		break;
	case KEY_LEVEL:
		if (config_setting_type(s) != CONFIG_TYPE_STRING)
			return config_fail(e, path, s, k->path,
			    "wrong type: expected a string");
		if (log_level_parse(config_setting_get_string(s), &level) != 0)
			return config_fail(e, path, s, k->path,
			    "unknown level '%s': use error, warn, info or debug",
			    config_show(show, sizeof(show),
			    config_setting_get_string(s)));
		*(enum log_level *)p = level;
		break;
	case KEY_STRINGS:
	case KEY_UINTS:
		return config_take_list(cfg, k, s, path, e);
	}
	return 0;
}

static const struct key *
config_key_find(const char *path)
{
	for (size_t i = 0; i < NELEM(config_keys); i++)
		if (strcmp(config_keys[i].path, path) == 0)
			return &config_keys[i];
	return NULL;
}

/* Every member of group, in file order: known, well typed, in range. */
static int
config_walk(struct config *cfg, const config_setting_t *group,
    const char *prefix, const char *path, struct err *e)
{
	char key[CONFIG_KEY_MAX];
	int n = config_setting_length(group);
	int rc;

	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(group,
		    (unsigned)i);
		const struct key *k;

		snprintf(key, sizeof(key), "%s%s%s", prefix,
		    prefix[0] != '\0' ? "." : "", config_setting_name(s));
		if ((k = config_key_find(key)) == NULL)
			return config_fail(e, path, s, key, "unknown key");
		if (k->type == KEY_GROUP) {
			if (!config_setting_is_group(s))
				return config_fail(e, path, s, key, "wrong "
				    "type: expected a group { ... }");
			rc = config_walk(cfg, s, key, path, e);
		} else if (config_setting_is_group(s)) {
			return config_fail(e, path, s, key,
			    "wrong type: a value, not a group");
		} else
			rc = config_take(cfg, k, s, path, e);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* Reads the whole file into a NUL-terminated buffer (free with free()). */
static int
config_read_text(const char *path, char **out, size_t *outlen, struct err *e)
{
	struct stat st;
	char *buf = NULL, *nbuf;
	size_t len = 0, cap = 0;
	ssize_t n;
	int fd, rc = 0;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1)
		return err_set(e, -errno, "%s: cannot read: %s", path,
		    strerror(errno));
	if (fstat(fd, &st) == -1) {
		rc = err_set(e, -errno, "%s: cannot read: %s", path,
		    strerror(errno));
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		rc = err_set(e, -EISDIR, "%s: cannot read: %s", path,
		    strerror(EISDIR));
		goto out;
	}
	for (;;) {
		if (len == cap) {
			if (cap > CONFIG_FILE_MAX) {
				rc = err_set(e, -EFBIG, "%s: cannot read: "
				    "larger than %d bytes", path,
				    CONFIG_FILE_MAX);
				goto out;
			}
			cap = cap == 0 ? 16384 : cap * 2;
			if ((nbuf = realloc(buf, cap + 1)) == NULL) {
				rc = err_set(e, -ENOMEM, "%s: cannot read: %s",
				    path, strerror(ENOMEM));
				goto out;
			}
			buf = nbuf;
		}
		n = read(fd, buf + len, cap - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			rc = err_set(e, -errno, "%s: cannot read: %s", path,
			    strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > CONFIG_FILE_MAX) {
		rc = err_set(e, -EFBIG, "%s: cannot read: larger than %d bytes",
		    path, CONFIG_FILE_MAX);
		goto out;
	}
	if (buf == NULL && (buf = malloc(1)) == NULL) {
		rc = err_set(e, -ENOMEM, "%s: cannot read: %s", path,
		    strerror(ENOMEM));
		goto out;
	}
	buf[len] = '\0';
	*out = buf;
	*outlen = len;
	buf = NULL;
out:
	free(buf);
	close(fd);
	return rc;
}

static bool
config_is_name(char c, bool first)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '*')
		return true;
	return !first && (config_is_digit(c) || c == '-' || c == '_');
}

/*
 * Copies one numeric token from in to out, with an 'L' appended when it is a
 * plain integer literal.  Returns the bytes consumed.
 */
static size_t
config_widen_number(const char *in, size_t len, char *out, size_t *o)
{
	size_t i = 0, d;
	bool hex;

	if (in[0] == '-' || in[0] == '+')
		i++;
	hex = i == 0 && len > 2 && in[0] == '0' &&
	    (in[1] == 'x' || in[1] == 'X');
	d = hex ? 2 : i;
	while (i < len) {
		char c = in[i];

		if (config_is_digit(c) || config_is_name(c, true) || c == '.')
			i++;
		else if (!hex && (c == '-' || c == '+') &&
		    (in[i - 1] == 'e' || in[i - 1] == 'E'))
			i++;
		else
			break;
	}
	memcpy(out + *o, in, i);
	*o += i;
	while (d < i && (hex ? config_is_xdigit(in[d]) : config_is_digit(in[d])))
		d++;
	if (d == i)
		out[(*o)++] = 'L';
	return i;
}

/*
 * The lexer of the design note: out (2 * len + 1 bytes) gets in with every
 * plain integer literal made 64-bit.  Strings and comments are
 * copied untouched; NUL bytes and @include are refused.
 */
static int
config_widen(const char *in, size_t len, char *out, const char *path,
    struct err *e)
{
	size_t i = 0, o = 0;
	unsigned line = 1;
	const char *nul;

	if ((nul = memchr(in, '\0', len)) != NULL) {
		for (const char *p = in; p < nul; p++)
			line += *p == '\n';
		return err_set(e, -EINVAL, "%s:%u: syntax error: NUL byte",
		    path, line);
	}
	while (i < len) {
		char c = in[i];
		size_t start = i;

		if (c == '#' || (c == '/' && i + 1 < len && in[i + 1] == '/')) {
			while (i < len && in[i] != '\n')
				i++;
		} else if (c == '/' && i + 1 < len && in[i + 1] == '*') {
			i += 2;
			while (i < len && !(in[i] == '*' && i + 1 < len &&
			    in[i + 1] == '/'))
				line += in[i++] == '\n';
			i = i < len ? i + 2 : len;
		} else if (c == '"') {
			for (i++; i < len && in[i] != '"'; i++) {
				if (in[i] == '\\' && i + 1 < len)
					i++;
				line += in[i] == '\n';
			}
			i = i < len ? i + 1 : len;
		} else if (c == '@') {
			return err_set(e, -EINVAL, "%s:%u: syntax error: "
			    "@include is not supported", path, line);
		} else if (config_is_name(c, true)) {
			while (i < len && config_is_name(in[i], false))
				i++;
		} else if (config_is_digit(c) || ((c == '-' || c == '+') &&
		    i + 1 < len && config_is_digit(in[i + 1]))) {
			i += config_widen_number(in + i, len - i, out, &o);
			continue;
		} else {
			line += c == '\n';
			i++;
		}
		memcpy(out + o, in + start, i - start);
		o += i - start;
	}
	out[o] = '\0';
	return 0;
}

int
config_load(struct config *cfg, const char *path, struct err *e)
{
	config_t lc;
	struct config *tmp = NULL;
	char *text = NULL, *wide = NULL;
	const char *file;
	size_t len = 0;
	int rc;

	config_init(&lc);
	if ((rc = config_read_text(path, &text, &len, e)) != 0)
		goto out;
	if ((wide = malloc(2 * len + 1)) == NULL ||
	    (tmp = malloc(sizeof(*tmp))) == NULL) {
		rc = err_set(e, -ENOMEM, "%s: %s", path, strerror(ENOMEM));
		goto out;
	}
	if ((rc = config_widen(text, len, wide, path, e)) != 0)
		goto out;
	if (!config_read_string(&lc, wide)) {
		file = config_error_file(&lc);
		rc = err_set(e, -EINVAL, "%s:%d: syntax error: %s",
		    file != NULL ? file : path, config_error_line(&lc),
		    config_error_text(&lc));
		goto out;
	}
	memcpy(tmp, cfg, sizeof(*tmp));
	if ((rc = config_walk(tmp, config_root_setting(&lc), "", path, e)) != 0)
		goto out;
	memcpy(cfg, tmp, sizeof(*cfg));
out:
	config_destroy(&lc);
	free(tmp);
	free(wide);
	free(text);
	return rc;
}

/*
 * Checking the whole.
 */

/* Re-checks what the command line may have written past the table's rules. */
static int
config_check_keys(struct config *cfg, struct err *e)
{
	struct err sub;

	for (size_t i = 0; i < NELEM(config_keys); i++) {
		const struct key *k = &config_keys[i];
		char *p = config_field(cfg, k);
		size_t n, j;
		unsigned long long v, prev = 0;

		switch (k->type) {
		case KEY_GROUP:
		case KEY_BOOL:
		case KEY_LEVEL:
			break;
		case KEY_STRING:
			if (strnlen(p, k->size) >= k->size)
				return err_set(e, -EINVAL, "%s: too long: at "
				    "most %zu bytes", k->path, k->size - 1);
			if (k->check != NULL && k->check(p, &sub) != 0)
				return err_set(e, sub.code, "%s: %s", k->path,
				    sub.msg);
			break;
		case KEY_UINT:
			v = config_get_uint(p, k->size);
			if (v < (unsigned long long)k->min ||
			    v > (unsigned long long)k->max)
				return err_set(e, -EINVAL, "%s: must be between "
				    "%lld and %lld", k->path, k->min, k->max);
			break;
		case KEY_STRINGS:
		case KEY_UINTS:
			n = *(size_t *)((char *)cfg + k->count);
			if (n > k->nmax || (n == 0 && (k->flags & KEY_NONEMPTY)))
				return err_set(e, -EINVAL, "%s: must have %d to "
				    "%zu entries, not %zu", k->path,
				    (k->flags & KEY_NONEMPTY) ? 1 : 0, k->nmax,
				    n);
			for (j = 0; j < n; j++) {
				char *el = p + j * k->size;

				if (k->type == KEY_STRINGS) {
					if (strnlen(el, k->size) >= k->size)
						return err_set(e, -EINVAL, "%s: "
						    "entry %zu: too long: at "
						    "most %zu bytes", k->path,
						    j + 1, k->size - 1);
					if (k->check != NULL &&
					    k->check(el, &sub) != 0)
						return err_set(e, sub.code,
						    "%s: %s", k->path, sub.msg);
					continue;
				}
				v = config_get_uint(el, k->size);
				if (v < (unsigned long long)k->min ||
				    v > (unsigned long long)k->max)
					return err_set(e, -EINVAL, "%s: entry "
					    "%zu: must be between %lld and "
					    "%lld", k->path, j + 1, k->min,
					    k->max);
				if ((k->flags & KEY_ASCENDING) && v < prev)
					return err_set(e, -EINVAL, "%s: entry "
					    "%zu: %llu is less than the entry "
					    "before it (%llu)", k->path, j + 1,
					    v, prev);
				prev = v;
			}
			break;
		}
	}
	return 0;
}

/* Makes p (a buffer of size bytes) absolute: "~/x" from $HOME, "x" from cwd. */
static int
config_path_resolve(char *p, size_t size, const char *key, struct err *e)
{
	char buf[CONFIG_PATH_MAX], cwd[CONFIG_PATH_MAX];
	const char *home;
	int n;

	if (p[0] == '\0' || p[0] == '/')
		return 0;
	if (p[0] == '~' && (p[1] == '/' || p[1] == '\0')) {
		home = getenv("HOME");
		if (home == NULL || home[0] != '/')
			return err_set(e, -EINVAL, "%s: cannot expand '~': "
			    "HOME is not an absolute path", key);
		n = snprintf(buf, sizeof(buf), "%s%s", home, p + 1);
	} else {
		if (getcwd(cwd, sizeof(cwd)) == NULL)
			return err_set(e, -errno, "%s: cannot make the path "
			    "absolute: %s", key, strerror(errno));
		n = snprintf(buf, sizeof(buf), "%s/%s", cwd, p);
	}
	if (n < 0 || (size_t)n >= size)
		return err_set(e, -ENAMETOOLONG, "%s: path too long: at most "
		    "%zu bytes", key, size - 1);
	memcpy(p, buf, (size_t)n + 1);
	return 0;
}

static int
config_resolve_id(struct config *cfg, struct err *e)
{
	char host[256], show[CONFIG_SHOW_MAX + 4];
	char *dot;

	if (cfg->node_id[0] != '\0')
		return 0;
	if (gethostname(host, sizeof(host)) == -1)
		return err_set(e, -errno, "node id: cannot get the host name: "
		    "%s; set node.id or --id", strerror(errno));
	host[sizeof(host) - 1] = '\0';
	if ((dot = strchr(host, '.')) != NULL)
		*dot = '\0';
	if (!config_valid_id(host, strlen(host), CONFIG_ID_MAX))
		return err_set(e, -EINVAL, "node id: host name '%s' is not a "
		    "valid id; set node.id or --id",
		    config_show(show, sizeof(show), host));
	memcpy(cfg->node_id, host, strlen(host) + 1);
	return 0;
}

static int
config_resolve_data_dir(struct config *cfg, struct err *e)
{
	const char *xdg = getenv("XDG_DATA_HOME");
	const char *home = getenv("HOME");
	int n;

	if (cfg->data_dir[0] != '\0')
		return config_path_resolve(cfg->data_dir,
		    sizeof(cfg->data_dir), "node.data_dir", e);
	if (xdg != NULL && xdg[0] == '/')
		n = snprintf(cfg->data_dir, sizeof(cfg->data_dir),
		    "%s/odofs/%s", xdg, cfg->node_id);
	else if (home != NULL && home[0] == '/')
		n = snprintf(cfg->data_dir, sizeof(cfg->data_dir),
		    "%s/.local/share/odofs/%s", home, cfg->node_id);
	else
		return err_set(e, -EINVAL, "node.data_dir: no default: neither "
		    "XDG_DATA_HOME nor HOME is an absolute path; set "
		    "node.data_dir or --data");
	if (n < 0 || (size_t)n >= sizeof(cfg->data_dir)) {
		cfg->data_dir[0] = '\0';
		return err_set(e, -ENAMETOOLONG, "node.data_dir: default path "
		    "too long: at most %zu bytes", sizeof(cfg->data_dir) - 1);
	}
	return 0;
}

/* Looks fs.group up in the group database: its gid, or an error. */
static int
config_resolve_group(struct config *cfg, struct err *e)
{
	char show[CONFIG_SHOW_MAX + 4];
	struct group gr, *found = NULL;
	size_t size = CONFIG_GRBUF_MIN;
	char *buf = NULL, *more;
	int rc;

	cfg->fs_gid = 0;
	if (cfg->fs_group[0] == '\0')
		return 0;
	config_show(show, sizeof(show), cfg->fs_group);
	for (;;) {
		if ((more = realloc(buf, size)) == NULL) {
			rc = err_set(e, -ENOMEM, "fs.group: cannot look up "
			    "'%s': %s", show, strerror(ENOMEM));
			goto out;
		}
		buf = more;
		rc = getgrnam_r(cfg->fs_group, &gr, buf, size, &found);
		if (rc != ERANGE || size >= CONFIG_GRBUF_MAX)
			break;
		size *= 2;
	}
	if (rc != 0 && rc != ENOENT)
		rc = err_set(e, -rc, "fs.group: cannot look up '%s': %s", show,
		    strerror(rc));
	else if (found == NULL)
		rc = err_set(e, -EINVAL, "fs.group: no group named '%s'", show);
	else
		cfg->fs_gid = found->gr_gid;
out:
	free(buf);
	return rc;
}

static int
config_check_readable(const char *key, const char *path, struct err *e)
{
	struct stat st;
	int fd, rc = 0;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK))
	    == -1)
		return err_set(e, -errno, "%s: cannot read %s: %s", key, path,
		    strerror(errno));
	if (fstat(fd, &st) == -1)
		rc = err_set(e, -errno, "%s: cannot read %s: %s", key, path,
		    strerror(errno));
	else if (S_ISDIR(st.st_mode))
		rc = err_set(e, -EISDIR, "%s: cannot read %s: %s", key, path,
		    strerror(EISDIR));
	close(fd);
	return rc;
}

int
config_check(struct config *cfg, struct err *e)
{
	struct {
		const char *key;
		char *path;
		size_t size;
	} tls[] = {
		{ "tls.cert", cfg->tls_cert, sizeof(cfg->tls_cert) },
		{ "tls.key", cfg->tls_key, sizeof(cfg->tls_key) },
		{ "tls.ca", cfg->tls_ca, sizeof(cfg->tls_ca) },
	};
	int rc;

	if ((rc = config_resolve_id(cfg, e)) != 0)
		return rc;
	if ((rc = config_check_keys(cfg, e)) != 0)
		return rc;
	if ((rc = config_resolve_data_dir(cfg, e)) != 0)
		return rc;
	if ((rc = config_resolve_group(cfg, e)) != 0)
		return rc;
	for (size_t i = 0; i < NELEM(tls); i++)
		if ((rc = config_path_resolve(tls[i].path, tls[i].size,
		    tls[i].key, e)) != 0)
			return rc;
	if (!config_peering_enabled(cfg)) {
		/* every fsync would wait for nobody, then fail */
		if (cfg->replicas > 0)
			return err_set(e, -EINVAL, "durability.replicas: %u "
			    "peers wanted, but listen and peers are empty",
			    (unsigned)cfg->replicas);
		return 0;
	}
	for (size_t i = 0; i < NELEM(tls); i++)
		if (tls[i].path[0] == '\0')
			return err_set(e, -EINVAL, "%s: required when listen "
			    "or peers is set", tls[i].key);
	for (size_t i = 0; i < NELEM(tls); i++)
		if ((rc = config_check_readable(tls[i].key, tls[i].path, e))
		    != 0)
			return rc;
	return 0;
}
