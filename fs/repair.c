/*
 * repair: odofs --repair DATA_DIR (SPEC §1).  LevelDB's repair salvages
 * every record it can read into new tables; then the journal is opened in
 * repair mode, which checks every device as a normal start does and cuts a
 * damaged one at its first bad revision instead of refusing; each cut is
 * reported here, on stdout, with what it dropped.  A replica cut this way
 * fetches the rest from its peers once the node runs again.  Damaged
 * holder records (acknowledgements) are then written again with nothing
 * acknowledged, or deleted when they name nothing here (holders.h), each
 * reported.  Nothing is mounted; the data dir must not be in use.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "holders.h"
#include "journal.h"
#include "repair.h"
#include "store.h"

struct repair_tally {
	bool peered;
	unsigned cut, reindexed, holders;
	uint64_t revisions, events, bytes;
};

static void
repair_report(void *arg, const char *device, bool source, uint64_t from,
    uint64_t last, uint64_t events, uint64_t bytes, const char *why)
{
	struct repair_tally *t = arg;

	if (from == 0) {
		printf("device %s: %s: revision index written again, no event "
		    "dropped\n", device, why);
		t->reindexed++;
		return;
	}
	t->cut++;
	t->revisions += last - from + 1;
	t->events += events;
	t->bytes += bytes;
	printf("device %s (%s): %s: cut at revision %" PRIu64 ": dropped "
	    "revisions %" PRIu64 "-%" PRIu64 " (%" PRIu64 " event%s in the "
	    "store, %" PRIu64 " bytes)%s\n", device, source ? "source" :
	    "replica", why, from, from, last, events, events == 1 ? "" : "s",
	    bytes, !source ? "; its peers send them again" : t->peered ?
	    "; held read-only from now on, its peers send them again (SPEC "
	    "8.9)" : "; appends go on from the cut");
}

static void
repair_holder(void *arg, const char *dev, size_t devlen, const char *node,
    size_t nodelen, size_t klen, bool kept)
{
	struct repair_tally *t = arg;

	t->holders++;
	if (dev == NULL)
		printf("holder record (a key of %zu bytes): damaged: deleted\n",
		    klen);
	else if (kept)
		printf("holder record of device %.*s, holder %.*s: damaged: "
		    "written again with nothing acknowledged (until it "
		    "acknowledges again, it counts for no fsync and a "
		    "compaction kept for it keeps everything)\n", (int)devlen,
		    dev, (int)nodelen, node);
	else
		printf("holder record of device %.*s, holder %.*s: damaged, "
		    "and no such device here: deleted\n", (int)devlen, dev,
		    (int)nodelen, node);
}

int
repair_run(const char *dir, const char *node_id, bool peered)
{
	struct journal_opts jo;
	struct repair_tally t;
	struct journal *j = NULL;
	struct stat st;
	struct err e;

	memset(&t, 0, sizeof(t));
	t.peered = peered;
	err_clear(&e);
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, "odofs: --repair %s: not a directory\n", dir);
		return 1;
	}
	printf("odofs: repairing %s\n", dir);
	fflush(stdout);
	if (store_repair(dir, &e) < 0) {
		fprintf(stderr, "odofs: %s\n", e.msg);
		return 1;
	}
	memset(&jo, 0, sizeof(jo));
	jo.data_dir = dir;
	jo.node_id = node_id;
	jo.max_event_bytes = JOURNAL_EVENT_MAX;
	jo.cache_bytes = 8u << 20;
	jo.repair = true;
	jo.repair_hold = peered;
	jo.report = repair_report;
	jo.report_arg = &t;
	if (journal_open(&j, &jo, &e) < 0) {
		fprintf(stderr, "odofs: %s\n", e.msg);
		return 1;
	}
	if (holders_repair(j, repair_holder, &t, &e) < 0) {
		fprintf(stderr, "odofs: %s\n", e.msg);
		journal_close(j);
		return 1;
	}
	printf("odofs: repair done: %u device%s, %u cut (%" PRIu64 " revision%s "
	    "dropped, %" PRIu64 " of them still in the store, %" PRIu64
	    " bytes), %u index%s written again, %u holder record%s repaired; "
	    "LevelDB's notes on what it salvaged are in %s/LOG\n",
	    journal_count(j), journal_count(j) == 1 ? "" : "s", t.cut,
	    t.revisions, t.revisions == 1 ? "" : "s", t.events, t.bytes,
	    t.reindexed, t.reindexed == 1 ? "" : "es", t.holders,
	    t.holders == 1 ? "" : "s", dir);
	journal_close(j);
	return 0;
}
