/* Durable file writes: write-all with clear errors, and the atomic
 * temporary + fsync + rename + directory fsync sequence every file that must
 * survive a crash goes through. Does not read files or parse formats. */
#include <dtrain/util.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ENOSPC and EDQUOT are "disk full"; any other write failure is an I/O error. */
static int io_error(int err, const char *what, const char *label)
{
    int code = (err == ENOSPC || err == EDQUOT) ? DT_ENOSPC : DT_EIO;
    return dt_set_error_errno(code, err, "%s %s", what, label);
}

int dt_write_all(int fd, const void *buf, size_t len, const char *label)
{
    const char *p = buf;
    while (len) {
        size_t chunk = len > (1u << 30) ? (1u << 30) : len;
        ssize_t w = write(fd, p, chunk);
        if (w < 0) {
            if (errno == EINTR) continue;
            return io_error(errno, "writing", label);
        }
        if (w == 0) return dt_set_error(DT_EIO, "writing %s: write returned 0", label);
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int dt_fsync_parent_dir(const char *path)
{
    size_t plen = strlen(path);
    char *dir = dt_alloc(plen + 2, DT_MEM_OTHER);
    if (!dir) return dt_error_wrap(DT_ENOMEM, "syncing the directory of %s", path);
    memcpy(dir, path, plen + 1);
    char *slash = strrchr(dir, '/');
    if (!slash) strcpy(dir, ".");
    else if (slash == dir) dir[1] = 0;
    else *slash = 0;
    int rc = 0;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) rc = dt_set_error_errno(DT_ESYS, errno, "opening directory %s to sync %s", dir, path);
    else {
        if (fsync(dfd) < 0 && errno != EINVAL) rc = io_error(errno, "syncing the directory of", path);
        close(dfd);
    }
    dt_free(dir);
    return rc;
}

int dt_file_write_atomic(const char *path, dt_file_writer writer, void *ctx)
{
    if (!path || !path[0]) return dt_set_error(DT_EINVAL, "writing a file: empty path");
    size_t plen = strlen(path);
    char *tmp = dt_alloc(plen + 16, DT_MEM_OTHER);
    int fd = -1, rc = 0;
    if (!tmp) return dt_error_wrap(DT_ENOMEM, "writing %s", path);
    snprintf(tmp, plen + 16, "%s.tmp.XXXXXX", path);
    fd = mkstemp(tmp);
    if (fd < 0) {
        rc = dt_set_error_errno(errno == ENOSPC || errno == EDQUOT ? DT_ENOSPC : DT_ESYS, errno,
                                "creating a temporary file for %s", path);
        tmp[0] = 0;
        goto out;
    }
    if (fchmod(fd, 0644) < 0) { rc = dt_set_error_errno(DT_ESYS, errno, "chmod %s", tmp); goto out; }
    DT_CHECK_GOTO(writer(fd, ctx), rc, out);
    if (fsync(fd) < 0) { rc = io_error(errno, "syncing", path); goto out; }
    int cfd = fd;
    fd = -1;
    if (close(cfd) < 0) { rc = io_error(errno, "closing", path); goto out; }
    if (rename(tmp, path) < 0) { rc = dt_set_error_errno(DT_ESYS, errno, "renaming %s to %s", tmp, path); goto out; }
    tmp[0] = 0; /* renamed: nothing to remove */
    rc = dt_fsync_parent_dir(path);
out:
    if (fd >= 0) close(fd);
    if (tmp[0]) unlink(tmp);
    dt_free(tmp);
    return rc;
}
