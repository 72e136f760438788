/* Private to glassbox's io/: whole files in, and files replaced atomically
 * (written beside their name and renamed over it, so a failure leaves the
 * old file, or none, never a half-written one). */
#ifndef GB_FILE_H
#define GB_FILE_H

#include <stdbool.h>
#include <stdio.h>

#include "../tensor/tensor.h"

/* Whether path names a directory / a regular file (after symbolic links). */
bool gb__file_is_dir(const char *path);
bool gb__file_is_regular(const char *path);

/* Why path cannot be read as a regular file, for messages: "a directory",
 * "a FIFO", "a dangling symbolic link", "a symbolic link loop", "not
 * readable: Permission denied", ... (in buf, size bytes, or a constant);
 * NULL when path is a regular file or nothing at all is there. */
const char *gb__file_not_regular(const char *path, char *buf, size_t size);

/* The whole file at path, NUL-terminated (caller frees; it may hold other
 * NUL bytes), its length in *len. NULL with GB_ERR_IO ("op: cannot open
 * PATH: reason") or GB_ERR_ALLOC. */
char *gb__file_read(const char *path, size_t *len, const char *op);

/* A file being written: gb__file_create opens fp on a new file beside path;
 * gb__file_commit closes it and renames it to path; gb__file_discard closes
 * and removes it (a no-op once committed, or when create failed). Errors
 * are GB_ERR_IO: "op: PATH: cannot create|write|replace: reason". */
typedef struct gb__file_out {
    FILE *fp;
    char *tmp;
    const char *path;
} gb__file_out;

gb_status gb__file_create(gb__file_out *out, const char *path, const char *op);
gb_status gb__file_commit(gb__file_out *out, const char *op);
void gb__file_discard(gb__file_out *out);

/* len bytes of data as the file path, replaced atomically. */
gb_status gb__file_write(const char *path, const void *data, size_t len, const char *op);

#endif
