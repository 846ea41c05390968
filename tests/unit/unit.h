/*
 * unit: a minimal test harness for the C unit tests.  Each test file defines
 * unit_main(), which calls the test functions; CHECK records a failure with
 * file and line and goes on, so one run reports every broken expectation.
 * The process exits non-zero when anything failed.
 */
#ifndef ODOFS_UNIT_H
#define ODOFS_UNIT_H

#include <stdio.h>

extern int unit_failures;
extern int unit_checks;

#define CHECK(cond) do {						\
	unit_checks++;							\
	if (!(cond)) {							\
		unit_failures++;					\
		fprintf(stderr, "%s:%d: check failed: %s\n",		\
		    __FILE__, __LINE__, #cond);				\
	}								\
} while (0)

#define CHECK_EQ_INT(a, b) do {						\
	long long va_ = (long long)(a), vb_ = (long long)(b);		\
	unit_checks++;							\
	if (va_ != vb_) {						\
		unit_failures++;					\
		fprintf(stderr, "%s:%d: check failed: %s == %s "	\
		    "(%lld != %lld)\n", __FILE__, __LINE__, #a, #b,	\
		    va_, vb_);						\
	}								\
} while (0)

/* Makes a fresh temporary directory; returns its path (static storage). */
const char *unit_tmpdir(void);

/* Removes a directory tree (best effort). */
void unit_rmtree(const char *path);

/* Defined by each test file. */
void unit_main(void);

#endif
