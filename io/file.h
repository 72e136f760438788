/* Private to glassbox's io/: whole files in, and files replaced atomically
 * (written beside their name and renamed over it, so a failure leaves the
 * old file, or none, never a half-written one). */
#ifndef GB_FILE_H
#define GB_FILE_H

#include <stdbool.h>
#include <stdio.h>

#include "../tensor/tensor.h"

/* Whether path names a directory / a regular file (after symbolic links). */
bool gb__io_file_is_dir(const char *path);
bool gb__io_file_is_regular(const char *path);

/* Why path cannot be read as a regular file, for messages: "a directory",
 * "a FIFO", "a dangling symbolic link", "a symbolic link loop", "not
 * readable: Permission denied", ... (in buf, size bytes, or a constant);
 * NULL when path is a regular file or nothing at all is there. */
const char *gb__io_file_not_regular(const char *path, char *buf, size_t size);

/* The whole file at path, NUL-terminated (caller frees; it may hold other
 * NUL bytes), its length in *len. NULL with GB_ERR_IO ("op: cannot open
 * PATH: reason") or GB_ERR_ALLOC. */
char *gb__io_file_read(const char *path, size_t *len, const char *op);

/* A file being written: gb__io_file_create opens fp on a new file beside path;
 * gb__io_file_commit closes it and renames it to path; gb__io_file_discard closes
 * and removes it (a no-op once committed, or when create failed). Errors
 * are GB_ERR_IO: "op: PATH: cannot create|write|replace: reason".
 *
 * Only regular files are written. What already is at path must be a
 * regular file that may be written: a directory, FIFO, device or socket is
 * refused ("op: PATH: is a FIFO, not a regular file"), and so is a
 * read-only file ("op: PATH: cannot replace: Permission denied (the file
 * is read-only)"), also for root, for whom the permission bits would not
 * stop a rename. A symbolic link is refused too unless flags has
 * GB__FILE_FOLLOW: then its target is replaced (by the same rules) and the
 * link stays. A file replaced keeps its permission bits; a new one gets
 * 0644. */
typedef struct gb__io_file_out {
    FILE *fp;
    char *tmp;
    const char *path; /* as given, for messages */
    char *target;     /* a followed link's target (malloc'd), or NULL: path */
} gb__io_file_out;

#define GB__FILE_FOLLOW 1u /* replace a symbolic link's target, not refuse the link */

gb_status gb__io_file_create(gb__io_file_out *out, const char *path, unsigned flags, const char *op);
gb_status gb__io_file_commit(gb__io_file_out *out, const char *op);
void gb__io_file_discard(gb__io_file_out *out);

/* len bytes of data as the file path, replaced atomically (flags as above). */
gb_status gb__io_file_write(const char *path, const void *data, size_t len, unsigned flags, const char *op);

#endif
