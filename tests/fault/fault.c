/*
 * fault: a disk that fails under LevelDB, for the integration tests.
 *
 * odofs keeps a reserve of space and inodes so that LevelDB never meets a
 * full disk; only a race with another program, a quota or a failing disk
 * makes a LevelDB write fail, and that path (the store fails for writes,
 * then reopens) cannot be reached on purpose from outside.  LD_PRELOADed
 * into a daemon with ODOFS_FAULT_DIR set to its data dir, this makes
 * every write to a file opened for writing there, every fsync of one and
 * every new file there fail with ENOSPC while the file ODOFS_FAULT_FLAG
 * exists, as a full quota would.  Reads are untouched.  Test code only:
 * it is never installed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#define FAULT_FDS	65536

static _Atomic bool marked[FAULT_FDS];	/* open for writing in the dir */

static bool
fault_in_dir(int dirfd, const char *path)
{
	const char *dir = getenv("ODOFS_FAULT_DIR");
	size_t n;

	if (dir == NULL || path == NULL || (path[0] != '/' && dirfd != AT_FDCWD))
		return false;
	n = strlen(dir);
	return strncmp(path, dir, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

static bool
fault_on(void)
{
	const char *flag = getenv("ODOFS_FAULT_FLAG");

	return flag != NULL && access(flag, F_OK) == 0;
}

static int
fault_open(int (*real)(int, const char *, int, ...), int dirfd,
    const char *path, int flags, mode_t mode)
{
	bool in = fault_in_dir(dirfd, path);
	int fd;

	if (in && (flags & O_CREAT) && fault_on()) {
		errno = ENOSPC;
		return -1;
	}
	fd = real(dirfd, path, flags, mode);
	if (fd >= 0 && fd < FAULT_FDS)
		marked[fd] = in && (flags & O_ACCMODE) != O_RDONLY;
	return fd;
}

#define FAULT_REAL(name, type) \
	static type real_##name; \
	if (real_##name == NULL) \
		real_##name = (type)dlsym(RTLD_NEXT, #name)

#define FAULT_MODE(flags, mode) do { \
	if ((flags) & (O_CREAT | __O_TMPFILE)) { \
		va_list ap; \
		va_start(ap, flags); \
		mode = va_arg(ap, mode_t); \
		va_end(ap); \
	} \
} while (0)

typedef int (*openat_fn)(int, const char *, int, ...);
typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef int (*sync_fn)(int);

int
openat(int dirfd, const char *path, int flags, ...)
{
	mode_t mode = 0;

	FAULT_MODE(flags, mode);
	FAULT_REAL(openat, openat_fn);
	return fault_open(real_openat, dirfd, path, flags, mode);
}

int
openat64(int dirfd, const char *path, int flags, ...)
{
	mode_t mode = 0;

	FAULT_MODE(flags, mode);
	FAULT_REAL(openat64, openat_fn);
	return fault_open(real_openat64, dirfd, path, flags, mode);
}

int
open(const char *path, int flags, ...)
{
	mode_t mode = 0;

	FAULT_MODE(flags, mode);
	FAULT_REAL(openat, openat_fn);
	return fault_open(real_openat, AT_FDCWD, path, flags, mode);
}

int
open64(const char *path, int flags, ...)
{
	mode_t mode = 0;

	FAULT_MODE(flags, mode);
	FAULT_REAL(openat64, openat_fn);
	return fault_open(real_openat64, AT_FDCWD, path, flags, mode);
}

static bool
fault_fd(int fd)
{
	return fd >= 0 && fd < FAULT_FDS && marked[fd] && fault_on();
}

ssize_t
write(int fd, const void *buf, size_t len)
{
	FAULT_REAL(write, write_fn);
	if (fault_fd(fd)) {
		errno = ENOSPC;
		return -1;
	}
	return real_write(fd, buf, len);
}

int
fsync(int fd)
{
	FAULT_REAL(fsync, sync_fn);
	if (fault_fd(fd)) {
		errno = ENOSPC;
		return -1;
	}
	return real_fsync(fd);
}

int
fdatasync(int fd)
{
	FAULT_REAL(fdatasync, sync_fn);
	if (fault_fd(fd)) {
		errno = ENOSPC;
		return -1;
	}
	return real_fdatasync(fd);
}

int
close(int fd)
{
	FAULT_REAL(close, sync_fn);
	if (fd >= 0 && fd < FAULT_FDS)
		marked[fd] = false;
	return real_close(fd);
}
