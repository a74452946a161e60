/* file:// and plain paths: objects are files under a root directory. Writes go to a
 * temporary file in the target directory and are renamed into place, so a reader never
 * sees a partial object. Runs on engine worker threads. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/backend.h"
#include "util/keys.h"

/* Names of in-progress writes; never listed. */
#define TEMP_PREFIX ".cfs-tmp-"

extern const cfs_backend_ops cfs_file_backend;

typedef struct file_backend {
    cfs_backend base;
    char *root;     /* absolute, no trailing '/' (except "/") */
    char *url;      /* file:// + root */
} file_backend;

static void file_close(cfs_backend *b)
{
    file_backend *f = (file_backend *)b;
    if (!f)
        return;
    free(f->root);
    free(f->url);
    free(f);
}

static cfs_backend *file_open(const char *url, cfs_options *opts, char *err, size_t errlen)
{
    (void)opts;
    const char *path = url;
    if (strncmp(url, "file://", 7) == 0)
        path = url + 7;
    if (*path == '\0') {
        snprintf(err, errlen, "file URL has no path: %s", url);
        return NULL;
    }
    file_backend *f = calloc(1, sizeof *f);
    if (!f)
        goto oom;
    f->base.ops = &cfs_file_backend;
    if (path[0] == '/') {
        f->root = strdup(path);
    } else {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd)) {
            snprintf(err, errlen, "cannot resolve relative path %s: %s", path, strerror(errno));
            file_close(&f->base);
            return NULL;
        }
        f->root = cfs_path_join(cwd, path);
    }
    if (!f->root)
        goto oom;
    size_t n = strlen(f->root);
    while (n > 1 && f->root[n - 1] == '/')
        f->root[--n] = '\0';
    f->url = malloc(n + 8);
    if (!f->url)
        goto oom;
    snprintf(f->url, n + 8, "file://%s", f->root);
    return &f->base;
oom:
    file_close(f ? &f->base : NULL);
    snprintf(err, errlen, "out of memory");
    return NULL;
}

static cfs_status errno_status(int e)
{
    return (e == ENOENT || e == ENOTDIR || e == EISDIR) ? CFS_ENOTFOUND : CFS_EIO;
}

/* mkdir -p for the directories above `path`, the root included. */
static int make_parents(char *path)
{
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        int rc = mkdir(path, 0777);
        int e = errno;
        *p = '/';
        if (rc < 0 && e != EEXIST)
            return -1;
    }
    return 0;
}

/* Remove now-empty directories from `path`'s parent up to (not including) root. */
static void prune_empty_parents(const char *root, char *path)
{
    size_t root_len = strlen(root);
    for (;;) {
        char *slash = strrchr(path, '/');
        if (!slash || (size_t)(slash - path) <= root_len)
            return;
        *slash = '\0';
        if (rmdir(path) < 0)
            return;
    }
}

static int read_all(int fd, char *dst, size_t n, off_t at)
{
    size_t done = 0;
    while (done < n) {
        ssize_t k = pread(fd, dst + done, n - done, at + (off_t)done);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        done += (size_t)k;
    }
    return 0;
}

static int write_all(int fd, const char *src, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t k = write(fd, src + done, n - done);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -1;
        done += (size_t)k;
    }
    return 0;
}

static void file_get(cfs_op *op, const char *path, int head_only)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        cfs_op_fail(op, errno_status(errno), "%s", strerror(errno));
        return;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        cfs_op_fail(op, S_ISDIR(st.st_mode) ? CFS_ENOTFOUND : CFS_EIO, "not a regular file");
        close(fd);
        return;
    }
    int64_t size = st.st_size, start, end;
    op->size = size;
    if (head_only) {
        close(fd);
        return;
    }
    if (cfs_range_resolve(&op->range, size, &start, &end) < 0) {
        cfs_op_fail(op, CFS_ERANGE, "range starts at %lld, past the end (%lld bytes)",
                    (long long)op->range.start, (long long)size);
        close(fd);
        return;
    }
    size_t n = (size_t)(end - start);
    cfs_buf_reset(&op->data);
    if (cfs_buf_reserve(&op->data, n + 1) < 0) {
        cfs_op_fail(op, CFS_ENOMEM, "out of memory for %zu bytes", n);
    } else if (read_all(fd, op->data.data, n, (off_t)start) < 0) {
        cfs_op_fail(op, CFS_EIO, "read failed: %s", errno ? strerror(errno) : "file shrank");
    } else {
        op->data.len = n;
    }
    close(fd);
}

static void file_put(cfs_op *op, char *path)
{
    size_t plen = strlen(path);
    char *slash = strrchr(path, '/');
    size_t dir_len = (size_t)(slash - path);
    char *tmp = malloc(plen + sizeof(TEMP_PREFIX) + 8);
    if (!tmp) {
        cfs_op_fail(op, CFS_ENOMEM, "out of memory");
        return;
    }
    snprintf(tmp, plen + sizeof(TEMP_PREFIX) + 8, "%.*s/" TEMP_PREFIX "XXXXXX", (int)dir_len, path);
    int fd = -1;
    /* A concurrent delete may prune the directory between mkdir and mkstemp: try again. */
    for (int tries = 0; tries < 5 && fd < 0; tries++) {
        if (make_parents(tmp) < 0)
            break;
        memcpy(tmp + dir_len + 1 + sizeof(TEMP_PREFIX) - 1, "XXXXXX", 6);
        fd = mkstemp(tmp);
        if (fd < 0 && errno != ENOENT)
            break;
    }
    if (fd < 0) {
        cfs_op_fail(op, CFS_EIO, "cannot create a file in %.*s: %s", (int)dir_len, path,
                    strerror(errno));
        free(tmp);
        return;
    }
    int ok = write_all(fd, op->body, op->body_len) == 0 && fchmod(fd, 0644) == 0;
    int e = errno;
    if (close(fd) < 0 && ok) {
        ok = 0;
        e = errno;
    }
    if (ok) {
        if (op->if_none_match) {
            /* link() fails if the name exists: an atomic create-if-absent */
            if (link(tmp, path) < 0) {
                e = errno;
                if (e == EEXIST)
                    cfs_op_fail(op, CFS_EEXISTS, "already exists");
                else
                    cfs_op_fail(op, CFS_EIO, "cannot create: %s", strerror(e));
            }
            unlink(tmp);
        } else if (rename(tmp, path) < 0) {
            e = errno;
            cfs_op_fail(op, CFS_EIO, "cannot rename into place: %s", strerror(e));
            unlink(tmp);
        }
    } else {
        cfs_op_fail(op, CFS_EIO, "write failed: %s", strerror(e));
        unlink(tmp);
    }
    free(tmp);
}

/* Walk `dir` (relative, "" or ending in '/'), adding entries whose relative path starts
 * with `prefix`. */
static int walk(file_backend *f, cfs_op *op, cfs_buf *rel, const char *prefix, size_t prefix_len)
{
    char *abs = cfs_path_join(f->root, rel->len ? rel->data : "");
    if (!abs)
        return -1;
    DIR *d = opendir(abs);
    free(abs);
    if (!d)
        return (errno == ENOENT || errno == ENOTDIR) ? 0 : -2;
    int rc = 0;
    size_t base_len = rel->len;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d))) {
        const char *n = de->d_name;
        if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0 ||
            strncmp(n, TEMP_PREFIX, sizeof(TEMP_PREFIX) - 1) == 0)
            continue;
        rel->len = base_len;
        if (cfs_buf_append_str(rel, n) < 0 || cfs_buf_terminate(rel) < 0) {
            rc = -1;
            break;
        }
        /* keep only paths that share the prefix so far */
        size_t cmp = rel->len < prefix_len ? rel->len : prefix_len;
        if (strncmp(rel->data, prefix, cmp) != 0)
            continue;
        struct stat st;
        if (fstatat(dirfd(d), n, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue; /* deleted meanwhile */
        if (S_ISDIR(st.st_mode)) {
            if (rel->len < prefix_len || op->recursive) {
                if (cfs_buf_append(rel, "/", 1) < 0 || cfs_buf_terminate(rel) < 0)
                    rc = -1;
                else
                    rc = walk(f, op, rel, prefix, prefix_len);
            } else if (cfs_entries_add(&op->entries, rel->data, rel->len, -1, 1) < 0) {
                rc = -1;
            }
        } else if (S_ISREG(st.st_mode) && rel->len >= prefix_len) {
            if (cfs_entries_add(&op->entries, rel->data, rel->len, st.st_size, 0) < 0)
                rc = -1;
        }
    }
    rel->len = base_len;
    closedir(d);
    return rc;
}

static void file_list(file_backend *f, cfs_op *op)
{
    const char *prefix = op->key;
    size_t prefix_len = strlen(prefix);
    const char *last = strrchr(prefix, '/');
    cfs_buf rel = { 0 };
    int rc = 0;
    if (last && cfs_buf_append(&rel, prefix, (size_t)(last - prefix) + 1) < 0)
        rc = -1;
    if (rc == 0 && cfs_buf_terminate(&rel) < 0)
        rc = -1;
    if (rc == 0)
        rc = walk(f, op, &rel, prefix, prefix_len);
    if (rc == -1)
        cfs_op_fail(op, CFS_ENOMEM, "out of memory listing");
    else if (rc == -2)
        cfs_op_fail(op, CFS_EIO, "cannot list: %s", strerror(errno));
    cfs_buf_free(&rel);
}

/* Remove the empty directories in the tree at `path` (bottom-up), and `path` itself unless
 * it is the root. Directories that still hold something stay. */
static void remove_empty_dirs(const char *path, int is_root)
{
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
            char *sub = cfs_path_join(path, de->d_name);
            if (sub)
                remove_empty_dirs(sub, 0);
            free(sub);
        }
    }
    closedir(d);
    if (!is_root)
        rmdir(path); /* fails, harmlessly, if something is left */
}

/* COPY: read the source, then write it like a PUT (temp file, rename). */
static void file_copy(file_backend *f, cfs_op *op, char *dst_path)
{
    char *src_path = cfs_path_join(f->root, op->source);
    if (!src_path) {
        cfs_op_fail(op, CFS_ENOMEM, "out of memory");
        return;
    }
    file_get(op, src_path, 0);
    free(src_path);
    if (op->status != CFS_OK)
        return;
    op->body = op->data.data ? op->data.data : "";
    op->body_len = op->data.len;
    file_put(op, dst_path);
    op->body = NULL;
    op->body_len = 0;
}

static void file_execute(cfs_backend *b, cfs_op *op)
{
    file_backend *f = (file_backend *)b;
    char *path = cfs_path_join(f->root, op->key);
    if (!path || cfs_op_set_where(op, path) < 0) {
        free(path);
        cfs_op_fail(op, CFS_ENOMEM, "out of memory");
        return;
    }
    switch (op->kind) {
    case CFS_OP_GET:
        file_get(op, path, 0);
        break;
    case CFS_OP_HEAD:
        file_get(op, path, 1);
        break;
    case CFS_OP_PUT:
        file_put(op, path);
        break;
    case CFS_OP_DELETE:
        if (unlink(path) < 0)
            cfs_op_fail(op, errno_status(errno), "%s", strerror(errno));
        else
            prune_empty_parents(f->root, path);
        break;
    case CFS_OP_LIST:
        file_list(f, op);
        break;
    case CFS_OP_RMDIR:
        remove_empty_dirs(path, op->key[0] == '\0');
        break;
    case CFS_OP_DELETE_MANY: /* delete_many_max is 0: never submitted here */
        cfs_op_fail(op, CFS_EINVALID, "no multi-key delete");
        break;
    case CFS_OP_COPY:
        file_copy(f, op, path);
        break;
    }
    free(path);
}

static const char *file_url(cfs_backend *b)
{
    return ((file_backend *)b)->url;
}

static const char *const file_schemes[] = { "file", NULL };

const cfs_backend_ops cfs_file_backend = {
    .name = "file",
    .schemes = file_schemes,
    .capabilities = CFS_CAP_ATOMIC_IF_ABSENT,
    .open = file_open,
    .close = file_close,
    .execute = file_execute,
    .url = file_url,
};
