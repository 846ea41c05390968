/*
 * repair: odofs --repair DATA_DIR.  Runs LevelDB's repair on the store in
 * dir (which no process may have open), then checks every device and cuts
 * each damaged one at its first bad revision, printing on stdout exactly
 * what was dropped (device, revisions, events, bytes).  node_id tells
 * sources from replicas; with peered (the node has peers), a source that
 * is cut is held read-only and fetches the rest from its peers.  Returns
 * the process exit status: 0 when the store opens whole afterwards, 1 (one
 * line on stderr) when it does not.
 */
#ifndef ODOFS_REPAIR_H
#define ODOFS_REPAIR_H

#include <stdbool.h>

int repair_run(const char *dir, const char *node_id, bool peered);

#endif
