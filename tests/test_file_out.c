/* Where output goes (io/file.h, gb_safetensors_save, the CLI's --out):
 * regular files only, written beside their name and renamed over it.
 *
 * Each case makes what it needs in a fresh directory (a FIFO with mkfifo,
 * links with symlink, a read-only file with chmod) and checks the outcome
 * against what the file system says afterwards (lstat, the bytes read
 * back), not against glassbox's own output. */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "gbtest.h"
#include "io/file.h" /* the writer's follow option, on purpose */

static char dir[4096];

static void fresh_dir(void) {
    snprintf(dir, sizeof dir, "%s/file-out-XXXXXX", gbt_tmp_dir());
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static const char *in_dir(const char *name) {
    static char path[4352 + 64];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return path;
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static void assert_text(const char *path, const char *want) {
    char *got = gbt_read_file(path, NULL);
    ck_assert_msg(got && !strcmp(got, want), "%s holds '%s', expected '%s'", path, got ? got : "(unreadable)", want);
    free(got);
}

/* Entries in the directory: a failed write leaves no temporary file. */
static int entries(void) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    if (d) closedir(d);
    return n;
}

static gb_status save(const char *path) {
    gb_tensor *t = gb_arange(0, 4, 1);
    gb_status st = gb_safetensors_save(path, 1, (const char *[]){"t"}, &t, GB_DTYPE_F32, NULL);
    gb_tensor_free(t);
    return st;
}

START_TEST(test_out_writes_and_replaces_regular_files) {
    fresh_dir();
    char path[4352 + 64];
    snprintf(path, sizeof path, "%s", in_dir("a.safetensors"));
    gbt_ok_status(save(path)); /* new */
    gbt_ok_status(save(path)); /* replaced */
    gb_safetensors *st = gb_safetensors_open(path);
    gbt_ok(st);
    gb_tensor *t = gb_safetensors_get(st, "t"), *want = gb_arange(0, 4, 1);
    gbt_assert_close(t, want, 0, 0, "the saved tensor read back");
    gb_tensor_free(t), gb_tensor_free(want);
    gb_safetensors_free(st);
    ck_assert_int_eq(entries(), 1);
    /* a replaced file keeps its permission bits */
    chmod(path, 0600);
    gbt_ok_status(gb__io_file_write(path, "x", 1, 0, "test"));
    struct stat sb;
    ck_assert_int_eq(lstat(path, &sb), 0);
    ck_assert_int_eq(sb.st_mode & 0777, 0600);
    assert_text(path, "x");
}
END_TEST

START_TEST(test_out_refuses_what_is_not_a_regular_file) {
    fresh_dir();
    char path[4352 + 64];
    struct stat sb;

    snprintf(path, sizeof path, "%s", in_dir("fifo"));
    ck_assert_int_eq(mkfifo(path, 0644), 0);
    gbt_fails_with(save(path) == GB_ERR_IO, GB_ERR_IO, "safetensors save: ");
    ck_assert_msg(strstr(gb_last_error(), "/fifo: is a FIFO, not a regular file"), "%s", gb_last_error());
    ck_assert_msg(lstat(path, &sb) == 0 && S_ISFIFO(sb.st_mode), "the FIFO was replaced");

    snprintf(path, sizeof path, "%s", in_dir("sub"));
    ck_assert_int_eq(mkdir(path, 0755), 0);
    gbt_fails_with(save(path) == GB_ERR_IO, GB_ERR_IO, "/sub: is a directory, not a regular file");
    ck_assert_msg(lstat(path, &sb) == 0 && S_ISDIR(sb.st_mode), "the directory was replaced");

    /* a device node of our own (as root; elsewhere mknod is refused) */
    snprintf(path, sizeof path, "%s", in_dir("null"));
    if (mknod(path, S_IFCHR | 0666, makedev(1, 3)) == 0) {
        gbt_fails_with(save(path) == GB_ERR_IO, GB_ERR_IO, "/null: is a character device, not a regular file");
        ck_assert_msg(lstat(path, &sb) == 0 && S_ISCHR(sb.st_mode), "the device node was replaced");
    } else {
        gbt_skip("test_out_refuses_what_is_not_a_regular_file",
                 "the device-node case: mknod is not permitted here (%s)", strerror(errno));
    }
    ck_assert_int_eq(entries(), 2 + (lstat(path, &sb) == 0)); /* no temporary file left */
}
END_TEST

START_TEST(test_out_refuses_symlinks_unless_asked_to_follow) {
    fresh_dir();
    char target[4352 + 64], link[4352 + 64];
    snprintf(target, sizeof target, "%s", in_dir("target"));
    snprintf(link, sizeof link, "%s", in_dir("link"));
    write_text(target, "old");
    ck_assert_int_eq(symlink("target", link), 0);
    gbt_fails_with(save(link) == GB_ERR_IO, GB_ERR_IO, "/link: is a symbolic link; refusing to replace it");
    assert_text(target, "old");

    /* followed: the target is replaced, the link stays a link to it */
    gbt_ok_status(gb__io_file_write(link, "new", 3, GB__FILE_FOLLOW, "test"));
    struct stat sb;
    ck_assert_msg(lstat(link, &sb) == 0 && S_ISLNK(sb.st_mode), "the link was replaced");
    assert_text(target, "new");
    ck_assert_int_eq(entries(), 2);

    /* dangling, and a loop: refused either way */
    ck_assert_int_eq(symlink("nowhere", in_dir("dangling")), 0);
    gbt_fails_with(gb__io_file_write(in_dir("dangling"), "x", 1, 0, "test") == GB_ERR_IO, GB_ERR_IO, "is a symbolic link");
    gbt_fails_with(gb__io_file_write(in_dir("dangling"), "x", 1, GB__FILE_FOLLOW, "test") == GB_ERR_IO, GB_ERR_IO,
                   "/dangling: cannot follow the symbolic link: No such file or directory");
    ck_assert_int_eq(symlink("loop", in_dir("loop")), 0);
    gbt_fails_with(gb__io_file_write(in_dir("loop"), "x", 1, GB__FILE_FOLLOW, "test") == GB_ERR_IO, GB_ERR_IO,
                   "/loop: cannot follow the symbolic link: Too many levels of symbolic links");
    ck_assert_int_eq(entries(), 4);
}
END_TEST

START_TEST(test_out_respects_a_read_only_file) {
    fresh_dir();
    char path[4352 + 64];
    snprintf(path, sizeof path, "%s", in_dir("ro.safetensors"));
    write_text(path, "keep");
    ck_assert_int_eq(chmod(path, 0444), 0);
    /* refused by its mode bits, also for root (whom access() would let through) */
    gbt_fails_with(save(path) == GB_ERR_IO, GB_ERR_IO,
                   "/ro.safetensors: cannot replace: Permission denied (the file is read-only)");
    assert_text(path, "keep");
    ck_assert_int_eq(entries(), 1);
    /* a file with write bits for others but not for us: only testable when not root */
    if (geteuid() == 0) {
        gbt_skip("test_out_respects_a_read_only_file",
                 "the case of a file writable by others but not by us: running as root, where permission bits are "
                 "not enforced");
    } else {
        ck_assert_int_eq(chmod(path, 0444 | 0020), 0);
        gbt_fails_with(save(path) == GB_ERR_IO, GB_ERR_IO, "cannot replace: Permission denied");
    }
}
END_TEST

Suite *gb_suite_file_out(void) {
    Suite *s = suite_create("file_out");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_out_writes_and_replaces_regular_files);
    tcase_add_test(tc, test_out_refuses_what_is_not_a_regular_file);
    tcase_add_test(tc, test_out_refuses_symlinks_unless_asked_to_follow);
    tcase_add_test(tc, test_out_respects_a_read_only_file);
    suite_add_tcase(s, tc);
    return s;
}
