/*
 * tree: inode numbers and names of the mounted tree (SPEC §2).
 *
 * Inodes are computed, not allocated: the root and the node's own files
 * have fixed numbers, and device i owns the TREE_DEV_SLOTS numbers from
 * TREE_DEV_BASE + i * TREE_DEV_SLOTS.  Device indexes are stable (devices
 * are never removed), so an inode names the same file for the life of the
 * process and the kernel's cache can never be confused.  Pure functions.
 */
#ifndef ODOFS_TREE_H
#define ODOFS_TREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum tree_kind {
	TREE_NONE = 0,
	TREE_ROOT,
	TREE_STATUS,		/* .status */
	TREE_METRICS,		/* .metrics */
	TREE_DEV,		/* <device>/ */
	TREE_EVENTS,		/* <device>/events */
	TREE_INFO,		/* <device>/info */
};

struct tree_node {
	enum tree_kind kind;
	uint32_t dev;		/* device index for the per-device kinds */
};

#define TREE_DEV_BASE	16
#define TREE_DEV_SLOTS	8

/* The inode of (kind, dev). */
uint64_t tree_ino(enum tree_kind kind, uint32_t dev);

/* Decodes ino; false (kind TREE_NONE) for numbers no file has. */
bool tree_decode(uint64_t ino, uint32_t ndevs, struct tree_node *out);

/* Whether kind is a directory. */
bool tree_is_dir(enum tree_kind kind);

/* The node's own root entries and the files of a device directory. */
struct tree_entry {
	const char *name;
	enum tree_kind kind;
};
extern const struct tree_entry tree_root_files[];
extern const size_t tree_root_nfiles;
extern const struct tree_entry tree_dev_files[];
extern const size_t tree_dev_nfiles;

/* Finds name among entries; TREE_NONE when absent. */
enum tree_kind tree_find(const struct tree_entry *entries, size_t n,
    const char *name);

#endif
