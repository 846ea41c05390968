/*
 * config: the daemon's configuration as validated plain structs.
 *
 * config.c is the only file that includes libconfig.  Every key of SPEC §10
 * is described once in a table (path, type, bounds, default); loading checks
 * each key's type and range and rejects keys the table does not know, naming
 * the file, the line and the key:
 *
 *	/etc/odofs.conf:12: peering.heartbeat_ms: must be between 100 and 86400000
 *
 * Command-line options are written into the struct on top, and the result
 * is checked as a whole with config_check() (peering needs TLS, and so on).
 * Not thread-safe; used only by the composition root before threads start.
 * After config_check() the struct is read-only and may be shared.
 */
#ifndef ODOFS_CONFIG_H
#define ODOFS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"
#include "log.h"

#define CONFIG_ID_MAX		64	/* bytes of a node id */
#define CONFIG_PATH_MAX		4096
#define CONFIG_ADDR_MAX		300	/* "HOST:PORT" */
#define CONFIG_MAX_PEERS	256	/* seed entries */
#define CONFIG_MAX_BACKOFF	16	/* steps of peering.backoff_ms */
#define CONFIG_MAX_GLOBS	64	/* sync.devices patterns */
#define CONFIG_GLOB_MAX		128
#define CONFIG_COMMAND_MAX	4096
#define CONFIG_GROUP_MAX	256	/* bytes of a group name */

struct config {
	/* node */
	char node_id[CONFIG_ID_MAX + 1];	/* "" until resolved */
	char data_dir[CONFIG_PATH_MAX];	/* "" until resolved */

	char listen[CONFIG_ADDR_MAX];		/* "" = accept no peers */
	char peers[CONFIG_MAX_PEERS][CONFIG_ADDR_MAX];
	size_t npeers;

	/* tls */
	char tls_cert[CONFIG_PATH_MAX];
	char tls_key[CONFIG_PATH_MAX];
	char tls_ca[CONFIG_PATH_MAX];

	/* peering */
	uint32_t tick_ms;
	uint32_t heartbeat_ms;
	uint32_t handshake_ms;
	uint32_t backoff_ms[CONFIG_MAX_BACKOFF];
	size_t nbackoff;
	uint32_t purgatory_ms;
	bool exchange;
	uint32_t max_peers;

	/* sync */
	uint32_t evaluate_ms;
	uint32_t stall_ms;
	char devices[CONFIG_MAX_GLOBS][CONFIG_GLOB_MAX];
	size_t ndevices;

	/* snapshot */
	uint64_t snapshot_every_events;	/* 0 = never */
	uint32_t snapshot_every_seconds;	/* 0 = never */
	char snapshot_command[CONFIG_COMMAND_MAX];
	uint32_t snapshot_timeout_seconds;
	bool snapshot_compact;
	uint64_t snapshot_keep_events;
	/* peer-id globs whose durable acknowledgements gate compaction */
	char retain_for[CONFIG_MAX_GLOBS][CONFIG_GLOB_MAX];
	size_t nretain_for;
	uint64_t retain_max_bytes;	/* 0 = no limit */

	/* limits */
	uint32_t max_event_bytes;

	/* durability */
	bool sync;
	uint32_t replicas;		/* K peers an fsync waits for; 0 none */
	uint32_t replica_timeout_ms;	/* ... at most this long: ETIMEDOUT */
	uint32_t ack_sync_ms;		/* a replica syncs at least this often */

	/* fs */
	char fs_group[CONFIG_GROUP_MAX];	/* "" = no group may write */
	gid_t fs_gid;			/* fs_group's, set by config_check() */

	/* log */
	enum log_level log_level;
};

/* Fills cfg with every default of SPEC §10 (node id and data dir left ""). */
void config_defaults(struct config *cfg);

/*
 * Reads the libconfig file at path over the values already in cfg.  Returns
 * 0, or -EINVAL (syntax, unknown key, wrong type, out of range) or -ENOENT /
 * -EACCES (unreadable file) with e->msg naming "file:line: key: problem".
 */
int config_load(struct config *cfg, const char *path, struct err *e);

/*
 * Validates "HOST:PORT" (HOST a name, IPv4, or [IPv6]; PORT 1..65535).
 * Returns 0 or -EINVAL with the reason in e.
 */
int config_check_addr(const char *addr, struct err *e);

/*
 * Node ids and device ids: 1..max bytes of [A-Za-z0-9._:@-], not starting
 * with '.'.  Returns true when valid.
 */
bool config_valid_id(const char *s, size_t len, size_t max);

/*
 * Resolves what depends on the environment (node id from the host name,
 * data dir from $XDG_DATA_HOME or $HOME, fs.group's gid from the group
 * database) and checks the whole: ids valid, addresses well formed, the
 * group known, peering configured only with tls.cert, tls.key and
 * tls.ca all set and readable.  Returns 0 or a negative errno with e set to
 * one line naming the key.
 */
int config_check(struct config *cfg, struct err *e);

/* Whether peering is configured (listen or any peer). */
bool config_peering_enabled(const struct config *cfg);

#endif
