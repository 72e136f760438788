/* Whole files in, atomic files out (io/file.h). */
#include "file.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../tensor/base.h"

char *gb__io_file_read(const char *path, size_t *len, const char *op) {
    FILE *f = fopen(path, "rb");
    if (!f) return gb__fail_null(GB_ERR_IO, "%s: cannot open %s: %s", op, path, strerror(errno));
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 65536 + 1 > cap) {
            cap = cap ? cap * 2 : 1 << 20;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return gb__fail_null(GB_ERR_ALLOC, "%s: out of memory reading %s", op, path);
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    bool err = ferror(f);
    int e = errno;
    fclose(f);
    if (err) {
        free(buf);
        return gb__fail_null(GB_ERR_IO, "%s: cannot read %s: %s", op, path, strerror(e));
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

static const char *gb__io_file_kind(mode_t mode) {
    return S_ISDIR(mode) ? "a directory" : S_ISFIFO(mode) ? "a FIFO" : S_ISCHR(mode) ? "a character device"
           : S_ISBLK(mode) ? "a block device" : S_ISSOCK(mode) ? "a socket" : "not a regular file";
}

/* What is at path may be replaced by a new regular file (file.h's rules);
 * *mode gets its permission bits (0644 when there is nothing yet) and
 * out->target a followed link's target. */
static gb_status gb__io_file_check(gb__io_file_out *out, const char *path, unsigned flags, mode_t *mode, const char *op) {
    struct stat sb;
    *mode = 0644;
    if (lstat(path, &sb) != 0) {
        if (errno == ENOENT) return GB_OK;
        return gb__fail(GB_ERR_IO, "%s: %s: cannot create: %s", op, path, strerror(errno));
    }
    if (S_ISLNK(sb.st_mode)) {
        if (!(flags & GB__FILE_FOLLOW))
            return gb__fail(GB_ERR_IO, "%s: %s: is a symbolic link; refusing to replace it (give its target's path)",
                            op, path);
        if (!(out->target = realpath(path, NULL)) || stat(out->target, &sb) != 0)
            return gb__fail(GB_ERR_IO, "%s: %s: cannot follow the symbolic link: %s", op, path, strerror(errno));
    }
    if (!S_ISREG(sb.st_mode))
        return gb__fail(GB_ERR_IO, "%s: %s: is %s, not a regular file", op, path, gb__io_file_kind(sb.st_mode));
    if (!(sb.st_mode & 0222) || access(out->target ? out->target : path, W_OK) != 0)
        return gb__fail(GB_ERR_IO, "%s: %s: cannot replace: %s (the file is read-only)", op, path, strerror(EACCES));
    *mode = sb.st_mode & 07777;
    return GB_OK;
}

gb_status gb__io_file_create(gb__io_file_out *out, const char *path, unsigned flags, const char *op) {
    *out = (gb__io_file_out){.path = path};
    mode_t mode;
    gb_status st = gb__io_file_check(out, path, flags, &mode, op);
    if (st != GB_OK) {
        gb__io_file_discard(out);
        return st;
    }
    const char *dest = out->target ? out->target : path;
    size_t tlen = strlen(dest) + 16;
    if (!(out->tmp = gb__malloc(tlen, op))) {
        gb__io_file_discard(out);
        return GB_ERR_ALLOC;
    }
    snprintf(out->tmp, tlen, "%s.tmp-XXXXXX", dest);
    int fd = mkstemp(out->tmp);
    if (fd < 0) {
        gb_status s = gb__fail(GB_ERR_IO, "%s: %s: cannot create: %s", op, path, strerror(errno));
        free(out->tmp);
        out->tmp = NULL;
        gb__io_file_discard(out);
        return s;
    }
    fchmod(fd, mode); /* mkstemp makes 0600: a new file is for others to read too, a replaced one keeps its bits */
    if (!(out->fp = fdopen(fd, "wb"))) {
        gb_status s = gb__fail(GB_ERR_IO, "%s: %s: cannot create: %s", op, path, strerror(errno));
        close(fd);
        gb__io_file_discard(out);
        return s;
    }
    return GB_OK;
}

gb_status gb__io_file_commit(gb__io_file_out *out, const char *op) {
    bool bad = ferror(out->fp);
    int rc = fclose(out->fp);
    out->fp = NULL;
    gb_status s = GB_OK;
    if (bad || rc != 0) s = gb__fail(GB_ERR_IO, "%s: %s: cannot write: %s", op, out->path, strerror(errno));
    else if (rename(out->tmp, out->target ? out->target : out->path) != 0)
        s = gb__fail(GB_ERR_IO, "%s: %s: cannot replace: %s", op, out->path, strerror(errno));
    if (s != GB_OK) {
        gb__io_file_discard(out);
        return s;
    }
    free(out->tmp);
    out->tmp = NULL;
    free(out->target);
    out->target = NULL;
    return GB_OK;
}

void gb__io_file_discard(gb__io_file_out *out) {
    if (out->fp) fclose(out->fp);
    out->fp = NULL;
    if (out->tmp) {
        unlink(out->tmp);
        free(out->tmp);
    }
    out->tmp = NULL;
    free(out->target);
    out->target = NULL;
}

gb_status gb__io_file_write(const char *path, const void *data, size_t len, unsigned flags, const char *op) {
    gb__io_file_out out;
    gb_status s = gb__io_file_create(&out, path, flags, op);
    if (s != GB_OK) return s;
    if (len && fwrite(data, 1, len, out.fp) != len) {
        s = gb__fail(GB_ERR_IO, "%s: %s: cannot write: %s", op, path, strerror(errno));
        gb__io_file_discard(&out);
        return s;
    }
    return gb__io_file_commit(&out, op);
}

bool gb__io_file_is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

bool gb__io_file_is_regular(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

const char *gb__io_file_not_regular(const char *path, char *buf, size_t size) {
    struct stat sb;
    if (stat(path, &sb) == 0) {
        if (S_ISREG(sb.st_mode)) return NULL;
        return S_ISDIR(sb.st_mode)    ? "a directory"
               : S_ISFIFO(sb.st_mode) ? "a FIFO"
               : S_ISCHR(sb.st_mode)  ? "a character device"
               : S_ISBLK(sb.st_mode)  ? "a block device"
               : S_ISSOCK(sb.st_mode) ? "a socket"
                                      : "not a regular file";
    }
    int e = errno;
    struct stat lsb;
    bool link = lstat(path, &lsb) == 0 && S_ISLNK(lsb.st_mode);
    if (link && e == ELOOP) return "a symbolic link loop";
    if (link && e == ENOENT) return "a dangling symbolic link";
    if (e == ENOENT || e == ENOTDIR) return NULL;
    snprintf(buf, size, "not readable: %s", strerror(e));
    return buf;
}
