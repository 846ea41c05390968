/*
 * marks: how far each journal reached when odofs last stopped cleanly,
 * kept in DATA_DIR/odofs-marks beside the store, not in it: damage that
 * takes the store's last records (a log cut short or overwritten, which
 * LevelDB's repair then drops with everything after it) leaves the marks
 * alone, so a journal that now ends below its mark is known to have lost
 * acknowledged events instead of looking whole.  A crash leaves the marks
 * of the last clean stop: heads only grow, so they stay lower bounds.
 *
 * The file: one line per device, "<epoch, 16 hex digits> <head> <id>\n";
 * written whole to a temporary file, synced and renamed over the old one.
 * Blocks on the file system; called at open and close only.
 */
#ifndef ODOFS_MARKS_H
#define ODOFS_MARKS_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define MARKS_ID_MAX	128

struct mark {
	char id[MARKS_ID_MAX + 1];
	uint64_t epoch;
	uint64_t head;
};

/*
 * Reads dir's marks into *out (free with free(); NULL and *n = 0 when
 * there is no file).  A file that does not parse is -EUCLEAN, with e
 * naming the line.
 */
int marks_load(const char *dir, struct mark **out, size_t *n, struct err *e);
/* Replaces dir's marks with m[0..n). */
int marks_save(const char *dir, const struct mark *m, size_t n,
    struct err *e);

#endif
