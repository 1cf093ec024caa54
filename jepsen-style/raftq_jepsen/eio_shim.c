/* The disk-error nemesis: real failed syscalls in one node (LD_PRELOAD, built by hosts.py).
 *
 * While the file named by RAFTQ_JEPSEN_EIO_FLAG exists, every write, pwrite, pwrite64,
 * writev, pwritev, fsync and fdatasync on a file descriptor whose path lies under
 * RAFTQ_JEPSEN_EIO_DIR fails with -1 / EIO, as a dying disk's would (writes on an O_DSYNC
 * descriptor included: they go through pwrite). Everything else, and everything while the
 * flag is absent, calls the real function (dlsym RTLD_NEXT). Sockets, pipes and the node's
 * log are never under the data dir, so only its journal, meta and snapshot files fail.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static int failing(int fd) {
    const char *flag = getenv("RAFTQ_JEPSEN_EIO_FLAG");
    const char *dir = getenv("RAFTQ_JEPSEN_EIO_DIR");
    if (flag == NULL || dir == NULL || access(flag, F_OK) != 0) return 0;
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return 0;
    path[n] = '\0';
    size_t len = strlen(dir);
    return strncmp(path, dir, len) == 0 && (path[len] == '/' || path[len] == '\0');
}

#define REAL(name) ((__typeof__(&name))dlsym(RTLD_NEXT, #name))
#define EIO_IF_FAILING(fd) do { if (failing(fd)) { errno = EIO; return -1; } } while (0)

ssize_t write(int fd, const void *buf, size_t n) {
    EIO_IF_FAILING(fd);
    return REAL(write)(fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
    EIO_IF_FAILING(fd);
    return REAL(pwrite)(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off) {
    EIO_IF_FAILING(fd);
    return REAL(pwrite64)(fd, buf, n, off);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt) {
    EIO_IF_FAILING(fd);
    return REAL(writev)(fd, iov, cnt);
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off) {
    EIO_IF_FAILING(fd);
    return REAL(pwritev)(fd, iov, cnt, off);
}

int fsync(int fd) {
    EIO_IF_FAILING(fd);
    return REAL(fsync)(fd);
}

int fdatasync(int fd) {
    EIO_IF_FAILING(fd);
    return REAL(fdatasync)(fd);
}
