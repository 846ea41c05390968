/*
 * tree: see tree.h.  The slot of each per-device kind is its offset from
 * the device's base inode.
 */
#include <string.h>

#include "tree.h"

static const enum tree_kind tree_slots[TREE_DEV_SLOTS] = {
	TREE_DEV, TREE_EVENTS, TREE_INFO,
};

const struct tree_entry tree_root_files[] = {
	{ ".status", TREE_STATUS },
	{ ".metrics", TREE_METRICS },
};
const size_t tree_root_nfiles =
    sizeof(tree_root_files) / sizeof(tree_root_files[0]);

const struct tree_entry tree_dev_files[] = {
	{ "events", TREE_EVENTS },
	{ "info", TREE_INFO },
};
const size_t tree_dev_nfiles =
    sizeof(tree_dev_files) / sizeof(tree_dev_files[0]);

uint64_t
tree_ino(enum tree_kind kind, uint32_t dev)
{
	switch (kind) {
	case TREE_ROOT:
		return 1;
	case TREE_STATUS:
		return 2;
	case TREE_METRICS:
		return 3;
	default:
		break;
	}
	for (unsigned s = 0; s < TREE_DEV_SLOTS; s++)
		if (tree_slots[s] == kind)
			return TREE_DEV_BASE + (uint64_t)dev * TREE_DEV_SLOTS + s;
	return 0;
}

bool
tree_decode(uint64_t ino, uint32_t ndevs, struct tree_node *out)
{
	out->kind = TREE_NONE;
	out->dev = 0;
	switch (ino) {
	case 1:
		out->kind = TREE_ROOT;
		return true;
	case 2:
		out->kind = TREE_STATUS;
		return true;
	case 3:
		out->kind = TREE_METRICS;
		return true;
	default:
		break;
	}
	if (ino < TREE_DEV_BASE)
		return false;
	ino -= TREE_DEV_BASE;
	if (ino / TREE_DEV_SLOTS >= ndevs)
		return false;
	out->dev = (uint32_t)(ino / TREE_DEV_SLOTS);
	out->kind = tree_slots[ino % TREE_DEV_SLOTS];
	return out->kind != TREE_NONE;
}

bool
tree_is_dir(enum tree_kind kind)
{
	return kind == TREE_ROOT || kind == TREE_DEV;
}

enum tree_kind
tree_find(const struct tree_entry *entries, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(entries[i].name, name) == 0)
			return entries[i].kind;
	return TREE_NONE;
}
