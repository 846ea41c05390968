/* unit: see unit.h. */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "unit.h"

int unit_failures;
int unit_checks;

const char *
unit_tmpdir(void)
{
	static char path[256];

	snprintf(path, sizeof(path), "%s/odofs-unit-XXXXXX",
	    getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (mkdtemp(path) == NULL) {
		perror("mkdtemp");
		exit(2);
	}
	return path;
}

static int
unit_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void
unit_rmtree(const char *path)
{
	nftw(path, unit_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int
main(void)
{
	unit_main();
	fprintf(stderr, "%d checks, %d failed\n", unit_checks, unit_failures);
	return unit_failures == 0 ? 0 : 1;
}
