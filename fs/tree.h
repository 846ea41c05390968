/*
 * tree: inode numbers and names of the mounted tree (SPEC §2).
 *
 * Inodes are computed, not allocated: the root and the node's own files
 * have fixed numbers, and device i owns the TREE_DEV_SLOTS numbers from
 * TREE_DEV_BASE + i * TREE_DEV_SLOTS.  Device indexes are stable (devices
 * are never removed), so an inode names the same file for the life of the
 * process and the kernel's cache can never be confused.  from/<rev> files
 * carry the device and the revision in the number itself: the top bit set,
 * the device in the next TREE_FROM_DEV_BITS bits, the revision below.
 * Pure functions.
 */
#ifndef ODOFS_TREE_H
#define ODOFS_TREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum tree_kind {
	TREE_NONE = 0,
	TREE_ROOT,
	TREE_STATUS,		/* .status */
	TREE_METRICS,		/* .metrics */
	TREE_FIREHOSE,		/* .live */
	TREE_PEERS,		/* .peers */
	TREE_DEV,		/* <device>/ */
	TREE_EVENTS,		/* <device>/events */
	TREE_SNAPSHOT,		/* <device>/snapshot */
	TREE_INFO,		/* <device>/info */
	TREE_LIVE,		/* <device>/live */
	TREE_FROM,		/* <device>/from/ */
	TREE_FROM_REV,		/* <device>/from/<rev> */
};

struct tree_node {
	enum tree_kind kind;
	uint32_t dev;		/* device index for the per-device kinds */
	uint64_t rev;		/* TREE_FROM_REV */
};

#define TREE_DEV_BASE	16
#define TREE_DEV_SLOTS	8
#define TREE_FROM_FLAG	(1ull << 63)
#define TREE_FROM_DEV_BITS 23
#define TREE_REV_BITS	(63 - TREE_FROM_DEV_BITS)
#define TREE_REV_MAX	((1ull << TREE_REV_BITS) - 1)

/* The inode of (kind, dev); of from/<rev> with kind TREE_FROM_REV. */
uint64_t tree_ino(enum tree_kind kind, uint32_t dev);
uint64_t tree_ino_from(uint32_t dev, uint64_t rev);

/*
 * Parses a from/ name: decimal digits only, at most TREE_REV_MAX.  Returns
 * false for anything else.
 */
bool tree_parse_rev(const char *name, uint64_t *rev);

/* Decodes ino; false (kind TREE_NONE) for numbers no file has. */
bool tree_decode(uint64_t ino, uint32_t ndevs, struct tree_node *out);

/* Whether kind is a directory. */
bool tree_is_dir(enum tree_kind kind);

/*
 * The type and permission bits of a node of kind (SPEC §2, §3), which the
 * kernel enforces (the mount has default_permissions).  The owner, the
 * daemon's user, may write what takes writes: events and snapshot when local
 * (this node is the device's source), the root and device directories
 * (mkdir); everything else is read-only, and everyone may read.  With
 * group_writes (fs.group is set) the group may write what the owner may:
 * 0664 and 0775 instead of 0644 and 0755.  0 for TREE_NONE.
 */
mode_t tree_mode(enum tree_kind kind, bool local, bool group_writes);

/*
 * The node's own root entries and the files of a device directory.  The
 * first *_nlisted of each are listed; the rest, the live pipes, are opened
 * by name and never listed (SPEC §2), so recursive tools (cp -a, tar,
 * rsync, grep -r) never open a file whose reads never end.
 */
struct tree_entry {
	const char *name;
	enum tree_kind kind;
};
extern const struct tree_entry tree_root_files[];
extern const size_t tree_root_nfiles;
extern const size_t tree_root_nlisted;
extern const struct tree_entry tree_dev_files[];
extern const size_t tree_dev_nfiles;
extern const size_t tree_dev_nlisted;

/* Finds name among entries; TREE_NONE when absent. */
enum tree_kind tree_find(const struct tree_entry *entries, size_t n,
    const char *name);

#endif
