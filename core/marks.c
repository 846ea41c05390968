/*
 * marks: see marks.h.  A small text file, parsed strictly: it is ours,
 * and a line we cannot read means the file is not what we wrote.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "marks.h"

#define MARKS_FILE	"odofs-marks"
#define MARKS_MAX	(1u << 20)	/* devices: JOURNAL_MAX_DEVICES at most */

int
marks_load(const char *dir, struct mark **out, size_t *n, struct err *e)
{
	char path[4200], line[MARKS_ID_MAX + 64];
	struct mark *m = NULL;
	size_t cap = 0, lineno = 0;
	FILE *f;
	int rc = 0;

	*out = NULL;
	*n = 0;
	snprintf(path, sizeof(path), "%s/%s", dir, MARKS_FILE);
	if ((f = fopen(path, "re")) == NULL)
		return errno == ENOENT ? 0 : err_set(e, -errno, "%s: %s", path,
		    strerror(errno));
	while (fgets(line, sizeof(line), f) != NULL) {
		struct mark k;
		int used = 0;
		size_t idlen;

		lineno++;
		memset(&k, 0, sizeof(k));
		if (sscanf(line, "%16" SCNx64 " %" SCNu64 " %n", &k.epoch,
		    &k.head, &used) != 2 || used == 0 ||
		    (idlen = strcspn(line + used, "\n")) == 0 ||
		    idlen > MARKS_ID_MAX || line[used + idlen] != '\n') {
			rc = err_set(e, -EUCLEAN, "%s, line %zu: not a mark",
			    path, lineno);
			goto out;
		}
		memcpy(k.id, line + used, idlen);
		if (*n == cap) {
			struct mark *bigger;

			if (cap >= MARKS_MAX) {
				rc = err_set(e, -EUCLEAN, "%s: too many marks",
				    path);
				goto out;
			}
			cap = cap ? cap * 2 : 64;
			if ((bigger = realloc(m, cap * sizeof(*m))) == NULL) {
				rc = err_set(e, -ENOMEM, "out of memory");
				goto out;
			}
			m = bigger;
		}
		m[(*n)++] = k;
	}
	if (ferror(f))
		rc = err_set(e, -EIO, "%s: read error", path);
out:
	fclose(f);
	if (rc < 0) {
		free(m);
		*n = 0;
		return rc;
	}
	*out = m;
	return 0;
}

int
marks_save(const char *dir, const struct mark *m, size_t n, struct err *e)
{
	char path[4200], tmp[4220];
	FILE *f;
	int fd, rc = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, MARKS_FILE);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0)
		return err_set(e, -errno, "%s: %s", tmp, strerror(errno));
	if ((f = fdopen(fd, "w")) == NULL) {
		rc = err_set(e, -errno, "%s: %s", tmp, strerror(errno));
		close(fd);
		goto fail;
	}
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%016" PRIx64 " %" PRIu64 " %s\n", m[i].epoch,
		    m[i].head, m[i].id);
	if (fflush(f) != 0 || fsync(fileno(f)) < 0) {
		rc = err_set(e, -errno, "%s: %s", tmp, strerror(errno));
		fclose(f);
		goto fail;
	}
	if (fclose(f) != 0) {
		rc = err_set(e, -errno, "%s: %s", tmp, strerror(errno));
		goto fail;
	}
	if (rename(tmp, path) < 0) {
		rc = err_set(e, -errno, "%s: %s", path, strerror(errno));
		goto fail;
	}
	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		(void)fsync(fd);
		close(fd);
	}
	return 0;
fail:
	unlink(tmp);
	return rc;
}
