/*
 * tree: see tree.h.  The slot of each per-device kind is its offset from
 * the device's base inode.
 */
#include <string.h>
#include <sys/stat.h>

#include "tree.h"

static const enum tree_kind tree_slots[TREE_DEV_SLOTS] = {
	TREE_DEV, TREE_EVENTS, TREE_INFO, TREE_LIVE, TREE_FROM, TREE_SNAPSHOT,
};

const struct tree_entry tree_root_files[] = {
	{ ".status", TREE_STATUS },
	{ ".metrics", TREE_METRICS },
	{ ".peers", TREE_PEERS },
	{ ".live", TREE_FIREHOSE },	/* not listed */
};
const size_t tree_root_nfiles =
    sizeof(tree_root_files) / sizeof(tree_root_files[0]);
const size_t tree_root_nlisted = 3;

const struct tree_entry tree_dev_files[] = {
	{ "events", TREE_EVENTS },
	{ "snapshot", TREE_SNAPSHOT },
	{ "info", TREE_INFO },
	{ "from", TREE_FROM },
	{ "live", TREE_LIVE },		/* not listed */
};
const size_t tree_dev_nfiles =
    sizeof(tree_dev_files) / sizeof(tree_dev_files[0]);
const size_t tree_dev_nlisted = 4;

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
	case TREE_FIREHOSE:
		return 4;
	case TREE_PEERS:
		return 6;
	default:
		break;
	}
	for (unsigned s = 0; s < TREE_DEV_SLOTS; s++)
		if (tree_slots[s] == kind)
			return TREE_DEV_BASE + (uint64_t)dev * TREE_DEV_SLOTS + s;
	return 0;
}

uint64_t
tree_ino_from(uint32_t dev, uint64_t rev)
{
	return TREE_FROM_FLAG | (uint64_t)dev << TREE_REV_BITS | rev;
}

bool
tree_parse_rev(const char *name, uint64_t *rev)
{
	uint64_t v = 0;

	if (*name == '\0')
		return false;
	for (const char *p = name; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return false;
		if (v > (TREE_REV_MAX - (uint64_t)(*p - '0')) / 10)
			return false;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	*rev = v;
	return true;
}

bool
tree_decode(uint64_t ino, uint32_t ndevs, struct tree_node *out)
{
	out->kind = TREE_NONE;
	out->dev = 0;
	out->rev = 0;
	if (ino & TREE_FROM_FLAG) {
		uint64_t dev = (ino & ~TREE_FROM_FLAG) >> TREE_REV_BITS;

		if (dev >= ndevs)
			return false;
		out->kind = TREE_FROM_REV;
		out->dev = (uint32_t)dev;
		out->rev = ino & TREE_REV_MAX;
		return true;
	}
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
	case 4:
		out->kind = TREE_FIREHOSE;
		return true;
	case 6:
		out->kind = TREE_PEERS;
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
	return kind == TREE_ROOT || kind == TREE_DEV || kind == TREE_FROM;
}

mode_t
tree_mode(enum tree_kind kind, bool local, bool group_writes)
{
	mode_t writable = group_writes ? 0664 : 0644;

	switch (kind) {
	case TREE_ROOT:
	case TREE_DEV:
		return S_IFDIR | writable | 0111;
	case TREE_FROM:
		return S_IFDIR | 0555;
	case TREE_EVENTS:
	case TREE_SNAPSHOT:
		return S_IFREG | (local ? writable : 0444);
	case TREE_STATUS:
	case TREE_METRICS:
	case TREE_FIREHOSE:
	case TREE_PEERS:
	case TREE_INFO:
	case TREE_LIVE:
	case TREE_FROM_REV:
		return S_IFREG | 0444;
	case TREE_NONE:
		break;
	}
	return 0;
}

enum tree_kind
tree_find(const struct tree_entry *entries, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(entries[i].name, name) == 0)
			return entries[i].kind;
	return TREE_NONE;
}
