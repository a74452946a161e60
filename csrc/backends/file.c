/* file:// and plain paths: objects are files under a root directory. Runs on engine
 * worker threads.
 *
 * Every path is resolved beneath the root with openat2(RESOLVE_BENEATH), so no key, and
 * no symbolic link met on the way, reaches outside it; where openat2 is missing (Linux
 * before 5.6) a walk with O_NOFOLLOW refuses every link instead. Links are:
 * - followed by reads (get, getsize, ranges, the source of a copy) while their target lies
 *   beneath the root; one leading outside is an error, never read;
 * - never written through: a write makes a new file in the key's directory and links or
 *   renames it onto the key's name, so a link at that name is replaced, not followed;
 * - never followed by listing, delete or rmdir: a link is neither listed nor descended
 *   into, and a key whose path crosses one is not deleted.
 *
 * The new file is unnamed (O_TMPFILE) until it is in place, where the filesystem allows;
 * else, and while it replaces a file, it has a temporary name ".cfs-tmp-<pid>-<random>",
 * never listed; rmdir and clear remove the ones left by a crashed writer, those untouched
 * for stale_temp_seconds. durable=True fsyncs each file before it is put in place and its
 * directory after.
 *
 * Content-encoded objects follow CloudFiles' convention: key K stored gzip-, br- or
 * zstd-encoded is the file K.gz, K.br or K.zstd. A read of K opens K, else the first of
 * those that exists, and says its encoding (op->attrs.content_encoding; the engine decodes
 * it); a listing shows K; a write of K removes the other variants once it is in place;
 * a delete removes whichever exist. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "backends/file.h"
#include "core/backend.h"
#include "util/codec.h"
#include "util/keys.h"

/* Names of in-progress writes; never listed. */
#define TEMP_PREFIX ".cfs-tmp-"
#define STALE_TEMP_DEFAULT 3600L

extern const cfs_backend_ops cfs_file_backend;

typedef struct file_backend {
    cfs_backend base;
    char *root;              /* absolute, no trailing '/' (except "/") */
    char *url;               /* file:// + root */
    int durable;             /* fsync file and directory on every write */
    long stale_temp_seconds; /* rmdir/clear remove temporary files idle this long */
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
    f->stale_temp_seconds = STALE_TEMP_DEFAULT;
    if (cfs_options_take_bool(opts, "durable", &f->durable, err, errlen) < 0 ||
        cfs_options_take_long(opts, "stale_temp_seconds", 0, LONG_MAX, &f->stale_temp_seconds, err,
                              errlen) < 0) {
        file_close(&f->base);
        return NULL;
    }
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

/* ---------- resolving beneath the root ---------- */

enum { FOLLOW_BENEATH = 0, NO_SYMLINKS = 1 };

/* 0 until openat2 answers ENOSYS once; then the walk is used. */
static atomic_int g_no_openat2;

/* After a failed open with O_NOFOLLOW: if `name` is a link, say so with ELOOP (as
 * openat2 does; O_DIRECTORY reports ENOTDIR for it). */
static void name_link_loop(int dirfd, const char *name)
{
    int e = errno;
    struct stat st;
    if (e == ENOTDIR && fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
        e = ELOOP;
    errno = e;
}

/* The fallback: one component at a time, refusing every symbolic link. */
static int walk_nofollow(int dirfd, const char *rel, int flags, mode_t mode)
{
    int cur = dirfd;
    const char *p = rel;
    for (;;) {
        const char *slash = strchr(p, '/');
        if (!slash)
            break;
        char name[NAME_MAX + 1];
        size_t n = (size_t)(slash - p);
        if (n == 0 || n > NAME_MAX) {
            errno = n ? ENAMETOOLONG : ENOENT;
            goto fail;
        }
        memcpy(name, p, n);
        name[n] = '\0';
        int next = openat(cur, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0) {
            name_link_loop(cur, name);
            goto fail;
        }
        if (cur != dirfd)
            close(cur);
        cur = next;
        p = slash + 1;
    }
    int fd = openat(cur, *p ? p : ".", flags | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0)
        name_link_loop(cur, *p ? p : ".");
    int e = errno;
    if (cur != dirfd)
        close(cur);
    errno = e;
    return fd;
fail:
    e = errno;
    if (cur != dirfd)
        close(cur);
    errno = e;
    return -1;
}

/* Open `rel` ("" for the directory itself) beneath `dirfd`. A link leading outside fails
 * with EXDEV; any link fails with ELOOP under NO_SYMLINKS (and in the fallback). */
static int open_beneath(int dirfd, const char *rel, int flags, mode_t mode, int how_links)
{
    if (!atomic_load(&g_no_openat2)) {
        struct open_how how = {
            .flags = (uint64_t)(flags | O_CLOEXEC),
            .mode = (flags & O_CREAT) ? mode : 0,
            .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS |
                       (how_links == NO_SYMLINKS ? RESOLVE_NO_SYMLINKS : 0),
        };
        int fd;
        do
            fd = (int)syscall(SYS_openat2, dirfd, *rel ? rel : ".", &how, sizeof how);
        while (fd < 0 && (errno == EAGAIN || errno == EINTR));
        if (fd >= 0 || errno != ENOSYS)
            return fd;
        atomic_store(&g_no_openat2, 1);
    }
    return walk_nofollow(dirfd, rel, flags, mode);
}

static int open_root(const file_backend *f)
{
    return open(f->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
}

static cfs_status errno_status(int e)
{
    return (e == ENOENT || e == ENOTDIR || e == EISDIR) ? CFS_ENOTFOUND : CFS_EIO;
}

/* Record a failure to reach a path, saying so plainly when a link was the reason. A
 * missing path is a missing key for reads and deletes, never for a write. */
static void fail_resolve(cfs_op *op, int e, const char *what, int writing)
{
    if (e == EXDEV)
        cfs_op_fail(op, CFS_EIO, "cannot %s: a symbolic link leads outside the store's root", what);
    else if (e == ELOOP)
        cfs_op_fail(op, CFS_EIO, "cannot %s: the path crosses a symbolic link, not followed here",
                    what);
    else
        cfs_op_fail(op, writing ? CFS_EIO : errno_status(e), "cannot %s: %s", what, strerror(e));
}

/* The directory part of a key ("" at the top level) and its last name. */
static char *key_dir(const char *key, const char **name)
{
    const char *slash = strrchr(key, '/');
    *name = slash ? slash + 1 : key;
    return strndup(key, slash ? (size_t)(slash - key) : 0);
}

/* mkdir the directory dir[0:upto] in its parent, resolved beneath the root; an existing
 * one (or a link, which open_beneath judges next) is fine. Returns 0 or -1. */
static int make_dir_beneath(int root, const char *dir, size_t upto, int how_links)
{
    char *prefix = strndup(dir, upto);
    const char *last;
    char *parent = prefix ? key_dir(prefix, &last) : NULL;
    int pfd = parent ? open_beneath(root, parent, O_PATH | O_DIRECTORY, 0, how_links) : -1;
    int rc = pfd >= 0 && (mkdirat(pfd, last, 0777) == 0 || errno == EEXIST) ? 0 : -1;
    int e = errno;
    if (pfd >= 0)
        close(pfd);
    free(parent);
    free(prefix);
    errno = e;
    return rc;
}

/* mkdir -p the root itself (a path the user gave: links in it are theirs to follow). */
static int make_root(const file_backend *f)
{
    char *path = cfs_path_join(f->root, "");
    if (!path)
        return -1;
    int rc = 0;
    for (char *p = path + 1; *p && rc == 0; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0777) < 0 && errno != EEXIST)
            rc = -1;
        *p = '/';
    }
    free(path);
    return rc;
}

/* Open the directory `dir` ("" for the root) beneath the root, for reading entries and
 * *at calls; with `create`, make it (and the root) first. -1 with errno on failure. */
static int open_dir(const file_backend *f, const char *dir, int create, int how_links)
{
    int root = open_root(f);
    if (root < 0 && errno == ENOENT && create && make_root(f) == 0)
        root = open_root(f);
    if (root < 0)
        return -1;
    int fd = open_beneath(root, dir, O_RDONLY | O_DIRECTORY, 0, how_links);
    if (fd < 0 && errno == ENOENT && create && *dir) {
        int made = 0;
        for (size_t at = 0;;) { /* one directory at a time, each beneath the root */
            const char *slash = strchr(dir + at, '/');
            size_t upto = slash ? (size_t)(slash - dir) : strlen(dir);
            made = make_dir_beneath(root, dir, upto, how_links) == 0;
            if (!made || !slash)
                break;
            at = upto + 1;
        }
        if (made)
            fd = open_beneath(root, dir, O_RDONLY | O_DIRECTORY, 0, how_links);
    }
    int e = errno;
    close(root);
    errno = e;
    return fd;
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

/* The encoded variants of a key, in the order CloudFiles looks for them. */
static const cfs_codec g_variants[] = { CFS_CODEC_GZIP, CFS_CODEC_BR, CFS_CODEC_ZSTD };
#define N_VARIANTS (sizeof g_variants / sizeof g_variants[0])

/* Open the file of `key`, or of its first encoded variant (*codec says which); links are
 * followed beneath the root. -1 with errno (that of the key itself) if none opens. */
static int open_stored(int root, const char *key, cfs_codec *codec)
{
    *codec = CFS_CODEC_NONE;
    int fd = open_beneath(root, key, O_RDONLY, 0, FOLLOW_BENEATH);
    if (fd >= 0 || errno != ENOENT)
        return fd;
    size_t n = strlen(key);
    char *path = malloc(n + 8);
    if (!path) {
        errno = ENOMEM;
        return -1;
    }
    for (size_t i = 0; i < N_VARIANTS && fd < 0; i++) {
        snprintf(path, n + 8, "%s%s", key, cfs_codec_suffix(g_variants[i]));
        fd = open_beneath(root, path, O_RDONLY, 0, FOLLOW_BENEATH);
        if (fd >= 0)
            *codec = g_variants[i];
        else if (errno != ENOENT)
            break;
    }
    free(path);
    if (fd < 0 && errno == ENOENT)
        errno = ENOENT;
    return fd;
}

/* Open the stored file of `key` for op (a GET, HEAD or COPY; links are followed while
 * they stay beneath the root): op->attrs.content_encoding and op->size set from it, its
 * stat in *st. The descriptor, or -1 after cfs_op_fail(). */
static int open_object(file_backend *f, cfs_op *op, const char *key, struct stat *st)
{
    int root = open_root(f);
    cfs_codec codec = CFS_CODEC_NONE;
    int fd = root >= 0 ? open_stored(root, key, &codec) : -1;
    int e = errno;
    if (root >= 0)
        close(root);
    if (fd < 0) {
        fail_resolve(op, e, "read", 0);
        return -1;
    }
    free(op->attrs.content_encoding);
    op->attrs.content_encoding = NULL;
    if (codec != CFS_CODEC_NONE && !(op->attrs.content_encoding = strdup(cfs_codec_name(codec)))) {
        cfs_op_fail(op, CFS_ENOMEM, "out of memory");
    } else if (fstat(fd, st) < 0) {
        cfs_op_fail(op, CFS_EIO, "cannot stat: %s", strerror(errno));
    } else if (!S_ISREG(st->st_mode)) {
        cfs_op_fail(op, S_ISDIR(st->st_mode) ? CFS_ENOTFOUND : CFS_EIO, "not a regular file");
    } else {
        op->size = st->st_size;
        return fd;
    }
    close(fd);
    return -1;
}

/* GET and HEAD. */
static void file_get(file_backend *f, cfs_op *op, const char *key, int head_only)
{
    struct stat st;
    int fd = open_object(f, op, key, &st);
    if (fd < 0)
        return;
    int64_t size = st.st_size, start, end;
    if (head_only) {
        /* a file keeps only its bytes: its time, and an ETag of size and time as a web
         * server makes one (nginx: "mtime-size" in hex) */
        char etag[64];
        op->attrs.last_modified_ms =
            (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
        snprintf(etag, sizeof etag, "\"%llx-%llx\"", (unsigned long long)st.st_mtim.tv_sec,
                 (unsigned long long)size);
        if (cfs_attr_set(&op->attrs.etag, etag, strlen(etag)) < 0)
            cfs_op_fail(op, CFS_ENOMEM, "out of memory");
        close(fd);
        return;
    }
    cfs_range range = op->range;
    if (op->attrs.content_encoding && !op->raw && range.kind != CFS_RANGE_NONE) {
        range.kind = CFS_RANGE_NONE; /* the engine decodes the whole, then cuts the range */
        op->whole_stored = 1;
    }
    if (cfs_range_resolve(&range, size, &start, &end) < 0) {
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

/* A new temporary file in `dirfd`, its name written to `name`: ".cfs-tmp-<pid>-<random>". */
/* A fresh hidden temporary name in `name`. */
static void temp_name(char *name, size_t size)
{
    static atomic_ulong seq;
    uint64_t r = 0;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r)
        r = ((uint64_t)time(NULL) << 20) ^ (uint64_t)atomic_fetch_add(&seq, 1);
    snprintf(name, size, TEMP_PREFIX "%ld-%016llx", (long)getpid(), (unsigned long long)r);
}

/* Whether /proc/self/fd is there to name an O_TMPFILE file with linkat (1 yes, 0 no). */
static pthread_once_t g_proc_fd_once = PTHREAD_ONCE_INIT;
static int g_proc_fd_ok; /* written once, under g_proc_fd_once */

static void proc_fd_probe(void)
{
    g_proc_fd_ok = access("/proc/self/fd", X_OK) == 0;
}

/* The file a PUT writes, not yet in place: an unnamed O_TMPFILE file (tmp[0] == '\0')
 * where the filesystem and /proc allow, else a file with a hidden temporary name (in
 * tmp). An unnamed file is put in place with one link, where a named one takes a create
 * and a rename: half the changes to the directory, whose lock concurrent writers share
 * (40% less CPU per 64 KiB file at 4 writers on ext4), and a crash leaves nothing behind.
 * Returns the fd, or -1 with errno set. */
static int make_temp(int dirfd, char *tmp, size_t size)
{
    pthread_once(&g_proc_fd_once, proc_fd_probe);
    if (g_proc_fd_ok) {
        int fd = openat(dirfd, ".", O_WRONLY | O_TMPFILE | O_CLOEXEC, 0600);
        if (fd >= 0) {
            tmp[0] = '\0';
            return fd;
        }
        if (errno == ENOENT) /* the directory went away: the caller makes it again */
            return -1;
        /* EOPNOTSUPP, EISDIR (kernels before 3.11), EINVAL: not here, name it instead */
    }
    for (int tries = 0; tries < 16; tries++) {
        temp_name(tmp, size);
        int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd >= 0 || errno != EEXIST)
            return fd;
    }
    return -1;
}

/* Give the unnamed file fd the name `name` in dfd, which must not exist. 0, or -1 with
 * errno set (EEXIST: the name exists). */
static int link_unnamed(int fd, int dfd, const char *name)
{
    char path[48];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    return linkat(AT_FDCWD, path, dfd, name, AT_SYMLINK_FOLLOW);
}

/* Give the unnamed file fd a hidden temporary name in dfd (into tmp), to rename it onto
 * a name that exists. 0, or -1 with errno set. */
static int name_unnamed(int fd, int dfd, char *tmp, size_t size)
{
    for (int tries = 0; tries < 16; tries++) {
        temp_name(tmp, size);
        if (link_unnamed(fd, dfd, tmp) == 0)
            return 0;
        if (errno != EEXIST)
            break;
    }
    tmp[0] = '\0';
    return -1;
}

/* Write the new file's bytes; the fd stays open (an unnamed file would be gone at its
 * close). A body in a file is copied in the kernel (a reflink where the filesystem shares
 * extents), else through a buffer of FILL_PIECE bytes. Returns 0, or -1 after
 * cfs_op_fail(). */
#define FILL_PIECE (1u << 20)

static int fill_temp(int fd, cfs_op *op)
{
    size_t done = 0;
    if (op->body_file) {
        off_t in = (off_t)op->body_offset;
        while (done < op->body_len) {
            ssize_t k = copy_file_range(op->body_file->fd, &in, fd, NULL, op->body_len - done, 0);
            if (k < 0 && errno == EINTR)
                continue;
            if (k <= 0) /* not here (EXDEV, EINVAL...), or the file shrank: the buffer says */
                break;
            done += (size_t)k;
        }
    }
    char *piece = NULL;
    while (done < op->body_len) {
        size_t n = op->body_len - done;
        if (op->body_file) {
            n = n < FILL_PIECE ? n : FILL_PIECE;
            if (!piece && !(piece = malloc(FILL_PIECE))) {
                cfs_op_fail(op, CFS_ENOMEM, "out of memory");
                return -1;
            }
            if (cfs_op_body_read(op, done, piece, n) < 0) {
                free(piece);
                return -1;
            }
        }
        if (write_all(fd, op->body_file ? piece : op->body + done, n) < 0) {
            cfs_op_fail(op, CFS_EIO, "write failed: %s", strerror(errno));
            free(piece);
            return -1;
        }
        done += n;
    }
    free(piece);
    return 0;
}

/* Remove the variants of `name` (in the directory dfd) other than `keep`'s: the key's
 * plain file and its encoded ones; how many were there in *found. Returns 0, or an errno. */
static int remove_variants(int dfd, const char *name, cfs_codec keep, int *found)
{
    char path[NAME_MAX + 8];
    int err = 0;
    *found = 0;
    for (size_t i = 0; i <= N_VARIANTS; i++) {
        cfs_codec c = i == 0 ? CFS_CODEC_NONE : g_variants[i - 1];
        if (c == keep)
            continue;
        if ((size_t)snprintf(path, sizeof path, "%s%s", name, cfs_codec_suffix(c)) >= sizeof path)
            continue; /* longer than any file name: cannot exist */
        struct stat st;
        if (fstatat(dfd, path, &st, AT_SYMLINK_NOFOLLOW) < 0 || S_ISDIR(st.st_mode))
            continue;
        if (unlinkat(dfd, path, 0) == 0)
            ++*found;
        else if (errno != ENOENT && !err)
            err = errno;
    }
    return err;
}

/* Whether any variant of `name` exists in dfd (create-if-absent looks at them all). */
static int any_variant(int dfd, const char *name)
{
    char path[NAME_MAX + 8];
    for (size_t i = 0; i <= N_VARIANTS; i++) {
        cfs_codec c = i == 0 ? CFS_CODEC_NONE : g_variants[i - 1];
        struct stat st;
        if ((size_t)snprintf(path, sizeof path, "%s%s", name, cfs_codec_suffix(c)) < sizeof path &&
            fstatat(dfd, path, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode))
            return 1;
    }
    return 0;
}

/* Put the written file fd (unnamed, or named tmp) in place as `name` in dfd: a link for
 * create-if-absent, which fails if the name exists; else a rename onto the name (a link
 * there is replaced, not followed), or for an unnamed file a link when the name is free.
 * On success tmp[0] is '\0' (nothing left to remove). Records failures on op. */
static void place_file(cfs_op *op, int fd, int dfd, char *tmp, size_t tmp_size, const char *name)
{
    int e = 0;
    if (!tmp[0]) {
        if (link_unnamed(fd, dfd, name) == 0)
            return;
        e = errno;
        if (e == EEXIST && op->if_none_match) {
            cfs_op_fail(op, CFS_EEXISTS, "already exists");
            return;
        }
        if (e != EEXIST || name_unnamed(fd, dfd, tmp, tmp_size) < 0) {
            cfs_op_fail(op, CFS_EIO, "cannot create: %s", strerror(e != EEXIST ? e : errno));
            return;
        }
        /* replacing: now named tmp, renamed onto the name below */
    } else if (op->if_none_match) {
        if (linkat(dfd, tmp, dfd, name, 0) < 0) {
            e = errno;
            if (e == EEXIST)
                cfs_op_fail(op, CFS_EEXISTS, "already exists");
            else
                cfs_op_fail(op, CFS_EIO, "cannot create: %s", strerror(e));
        }
        return; /* the temporary name is removed by the caller */
    }
    if (renameat(dfd, tmp, dfd, name) < 0)
        cfs_op_fail(op, CFS_EIO, "cannot rename into place: %s", strerror(errno));
    else
        tmp[0] = '\0'; /* renamed: nothing to remove */
}

/* A file being written, not yet in place: open as fd in the key's directory (dfd),
 * unnamed (tmp[0] == '\0') or named tmp. */
typedef struct new_file {
    int dfd;
    int fd;
    char tmp[sizeof(TEMP_PREFIX) + 48];
} new_file;

/* Make the new file in the directory `dir` of a key (made first if missing), resolved
 * beneath the root. Returns 0, or -1 after cfs_op_fail() (nothing left open). */
static int new_file_open(file_backend *f, cfs_op *op, const char *dir, new_file *nf)
{
    nf->dfd = nf->fd = -1;
    nf->tmp[0] = '\0';
    /* A concurrent delete may remove the emptied directory before the file is made in it */
    for (int tries = 0; tries < 5 && nf->fd < 0; tries++) {
        if (nf->dfd >= 0)
            close(nf->dfd);
        nf->dfd = open_dir(f, dir, 1, FOLLOW_BENEATH);
        if (nf->dfd < 0)
            break;
        nf->fd = make_temp(nf->dfd, nf->tmp, sizeof nf->tmp);
        if (nf->fd < 0 && errno != ENOENT)
            break;
    }
    if (nf->fd >= 0)
        return 0;
    fail_resolve(op, errno, "create a file", 1);
    if (nf->dfd >= 0)
        close(nf->dfd);
    nf->dfd = -1;
    return -1;
}

/* Give up a new file: nothing of it stays. */
static void new_file_drop(new_file *nf)
{
    if (nf->fd >= 0)
        close(nf->fd);
    if (nf->tmp[0] && nf->dfd >= 0)
        unlinkat(nf->dfd, nf->tmp, 0);
    if (nf->dfd >= 0)
        close(nf->dfd);
    nf->dfd = nf->fd = -1;
    nf->tmp[0] = '\0';
}

/* Put the written new file in place as `base` + the suffix of `codec` (place_file), then
 * remove the key's other variants; durable: the file is flushed before and its directory
 * after. Unless op->status is already a failure (then the file is only dropped). Closes
 * everything of nf; failures are recorded on op. */
static void new_file_place(file_backend *f, cfs_op *op, new_file *nf, const char *base,
                           cfs_codec codec)
{
    char *name = cfs_asprintf("%s%s", base, cfs_codec_suffix(codec));
    int found, e;
    if (op->status != CFS_OK)
        ;
    else if (!name)
        cfs_op_fail(op, CFS_ENOMEM, "out of memory");
    else if (fchmod(nf->fd, 0644) < 0 || (f->durable && fsync(nf->fd) < 0))
        cfs_op_fail(op, CFS_EIO, "write failed: %s", strerror(errno));
    else if (op->if_none_match && any_variant(nf->dfd, base))
        cfs_op_fail(op, CFS_EEXISTS, "already exists");
    else
        place_file(op, nf->fd, nf->dfd, nf->tmp, sizeof nf->tmp, name);
    if (close(nf->fd) < 0 && op->status == CFS_OK)
        cfs_op_fail(op, CFS_EIO, "write failed: %s", strerror(errno));
    nf->fd = -1;
    if (op->status == CFS_OK && (e = remove_variants(nf->dfd, base, codec, &found)) != 0)
        cfs_op_fail(op, CFS_EIO, "written, but an older variant stays: %s", strerror(e));
    if (nf->tmp[0]) { /* a failure, or a create-if-absent's link: the name goes */
        unlinkat(nf->dfd, nf->tmp, 0);
        nf->tmp[0] = '\0';
    }
    if (op->status == CFS_OK && f->durable && fsync(nf->dfd) < 0)
        cfs_op_fail(op, CFS_EIO, "cannot flush the directory: %s", strerror(errno));
    new_file_drop(nf);
    free(name);
}

/* PUT: a new file in the key's directory (new_file_open), its bytes written, put in
 * place as the key's name (new_file_place). */
static void file_put(file_backend *f, cfs_op *op, const char *key)
{
    cfs_codec codec = CFS_CODEC_NONE;
    if (cfs_codec_parse(op->attrs.content_encoding, &codec) < 0) {
        cfs_op_fail(op, CFS_EINVALID, "content encoding '%.40s' has no file suffix here",
                    op->attrs.content_encoding);
        return;
    }
    const char *base;
    char *dir = key_dir(key, &base);
    if (!dir) {
        cfs_op_fail(op, CFS_ENOMEM, "out of memory");
        return;
    }
    new_file nf;
    if (new_file_open(f, op, dir, &nf) == 0) {
        fill_temp(nf.fd, op); /* a failure is on op: new_file_place drops the file */
        new_file_place(f, op, &nf, base, codec);
    }
    free(dir);
}

static void prune_empty_parents(file_backend *f, const char *key)
{
    char *dir = strdup(key);
    while (dir) {
        char *slash = strrchr(dir, '/');
        if (!slash)
            break;
        *slash = '\0';
        const char *last;
        char *parent = key_dir(dir, &last);
        int pfd = parent ? open_dir(f, parent, 0, NO_SYMLINKS) : -1;
        int removed = pfd >= 0 && unlinkat(pfd, last, AT_REMOVEDIR) == 0;
        if (pfd >= 0)
            close(pfd);
        free(parent);
        if (!removed)
            break;
    }
    free(dir);
}

/* DELETE: never through a link; a key that is itself a link removes the link. */
static void file_delete(file_backend *f, cfs_op *op, const char *key)
{
    const char *name;
    char *dir = key_dir(key, &name);
    if (!dir) {
        cfs_op_fail(op, CFS_ENOMEM, "out of memory");
        return;
    }
    int dfd = open_dir(f, dir, 0, NO_SYMLINKS);
    int found = 0, e;
    if (dfd < 0) {
        fail_resolve(op, errno, "delete", 0);
    } else if ((e = remove_variants(dfd, name, (cfs_codec)-1, &found)) != 0) {
        cfs_op_fail(op, errno_status(e), "%s", strerror(e));
    } else if (!found) {
        cfs_op_fail(op, CFS_ENOTFOUND, "%s", strerror(ENOENT));
    } else {
        close(dfd);
        dfd = -1;
        prune_empty_parents(f, key);
    }
    if (dfd >= 0)
        close(dfd);
    free(dir);
}

/* Walk the directory open as `dfd` (relative path `rel`, "" or ending in '/'), adding
 * entries whose relative path starts with `prefix`. Links are skipped. Takes `dfd`. */
static int walk(int dfd, cfs_op *op, cfs_buf *rel, const char *prefix, size_t prefix_len)
{
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return -2;
    }
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
                int sub = openat(dirfd(d), n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sub < 0)
                    continue; /* replaced or removed meanwhile */
                if (cfs_buf_append(rel, "/", 1) < 0 || cfs_buf_terminate(rel) < 0) {
                    close(sub);
                    rc = -1;
                } else {
                    rc = walk(sub, op, rel, prefix, prefix_len);
                }
            } else if (cfs_entries_add(&op->entries, rel->data, rel->len, -1, 1) < 0) {
                rc = -1;
            }
        } else if (S_ISREG(st.st_mode) && rel->len >= prefix_len) {
            /* K.gz, K.br, K.zstd are the key K stored encoded */
            size_t len = rel->len;
            for (size_t i = 0; i < N_VARIANTS; i++) {
                const char *sfx = cfs_codec_suffix(g_variants[i]);
                size_t sl = strlen(sfx);
                if (len > sl && strcmp(rel->data + len - sl, sfx) == 0 &&
                    rel->data[len - sl - 1] != '/') {
                    len -= sl;
                    break;
                }
            }
            char etag[64];
            snprintf(etag, sizeof etag, "\"%llx-%llx\"", (unsigned long long)st.st_mtim.tv_sec,
                     (unsigned long long)st.st_size);
            if (len >= prefix_len &&
                (cfs_entries_add(&op->entries, rel->data, len, st.st_size, 0) < 0 ||
                 cfs_entries_set_info(
                     &op->entries, (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000,
                     etag, strlen(etag)) < 0))
                rc = -1;
        }
    }
    rel->len = base_len;
    closedir(d);
    return rc;
}

/* LIST: from the prefix's directory, which is reached without crossing a link. */
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
    if (rc == 0) {
        char *dir = strndup(prefix, last ? (size_t)(last - prefix) : 0);
        int dfd = dir ? open_dir(f, dir, 0, NO_SYMLINKS) : -1;
        if (!dir)
            rc = -1;
        else if (dfd >= 0 && (rc = walk(dfd, op, &rel, prefix, prefix_len)) == 0)
            cfs_entries_sort_unique(&op->entries); /* K and K.gz are one key */
        else if (errno != ENOENT && errno != ENOTDIR && errno != ELOOP)
            rc = -2; /* a missing directory, or a link, holds no keys */
        free(dir);
    }
    if (rc == -1)
        cfs_op_fail(op, CFS_ENOMEM, "out of memory listing");
    else if (rc == -2)
        cfs_op_fail(op, CFS_EIO, "cannot list: %s", strerror(errno));
    cfs_buf_free(&rel);
}

/* Whether the directory entry `name` is a temporary file left by a writer that crashed:
 * one nobody has written to for `stale` seconds. */
static int stale_temp(const char *name, const struct stat *st, long stale, time_t now)
{
    return strncmp(name, TEMP_PREFIX, sizeof(TEMP_PREFIX) - 1) == 0 && S_ISREG(st->st_mode) &&
           now - st->st_mtime >= stale;
}

/* RMDIR: below the directory open as `dfd`, remove stale temporary files and the
 * directories left empty (bottom-up), never descending into a link. Takes `dfd`. */
static void remove_empty_dirs(file_backend *f, int dfd, time_t now)
{
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *n = de->d_name;
        struct stat st;
        if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0 ||
            fstatat(dirfd(d), n, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        if (stale_temp(n, &st, f->stale_temp_seconds, now)) {
            unlinkat(dirfd(d), n, 0);
        } else if (S_ISDIR(st.st_mode)) {
            int sub = openat(dirfd(d), n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0) {
                remove_empty_dirs(f, sub, now);
                unlinkat(dirfd(d), n, AT_REMOVEDIR); /* fails, harmlessly, if something is left */
            }
        }
    }
    closedir(d);
}

static void file_rmdir(file_backend *f, cfs_op *op)
{
    int dfd = open_dir(f, op->key, 0, NO_SYMLINKS);
    if (dfd < 0)
        return; /* missing, or a link: nothing of the store's below it */
    remove_empty_dirs(f, dfd, time(NULL));
    size_t n = strlen(op->key);
    while (n && op->key[n - 1] == '/')
        n--;
    if (!n)
        return; /* the root stays */
    char *dir = strndup(op->key, n);
    const char *last;
    char *parent = dir ? key_dir(dir, &last) : NULL;
    int pfd = parent ? open_dir(f, parent, 0, NO_SYMLINKS) : -1;
    if (pfd >= 0) {
        unlinkat(pfd, last, AT_REMOVEDIR);
        close(pfd);
    }
    free(parent);
    free(dir);
}

/* COPY: the source's file (as stored: its encoding kept) written like a PUT's, from the
 * file (fill_temp copies it in the kernel), never held in memory. */
static void file_copy(file_backend *f, cfs_op *op)
{
    struct stat st;
    int fd = open_object(f, op, op->source, &st);
    if (fd < 0)
        return;
    cfs_body_file source = { .fd = fd };
    op->body_file = &source;
    op->body_offset = 0;
    op->body_len = (size_t)st.st_size;
    file_put(f, op, op->key);
    op->body_file = NULL;
    op->body_len = 0;
    close(fd);
}

/* op->where: the path of op->key under the root (what errors name). 0, or -1 (out of
 * memory). */
static int set_where(const file_backend *f, cfs_op *op)
{
    char *path = cfs_path_join(f->root, op->key);
    int set = path ? cfs_op_set_where(op, path) : -1;
    free(path);
    return set;
}

static void file_execute(cfs_backend *b, cfs_op *op)
{
    file_backend *f = (file_backend *)b;
    if (set_where(f, op) < 0) {
        cfs_op_fail(op, CFS_ENOMEM, "out of memory");
        return;
    }
    switch (op->kind) {
    case CFS_OP_GET:
        file_get(f, op, op->key, 0);
        break;
    case CFS_OP_HEAD:
        file_get(f, op, op->key, 1);
        break;
    case CFS_OP_PUT:
        file_put(f, op, op->key);
        break;
    case CFS_OP_DELETE:
        file_delete(f, op, op->key);
        break;
    case CFS_OP_LIST:
        file_list(f, op);
        break;
    case CFS_OP_RMDIR:
        file_rmdir(f, op);
        break;
    case CFS_OP_DELETE_MANY: /* delete_many_max is 0: never submitted here */
        cfs_op_fail(op, CFS_EINVALID, "no multi-key delete");
        break;
    case CFS_OP_COPY:
        file_copy(f, op);
        break;
    }
}

/* ---------- a new object written piece by piece (backends/file.h) ---------- */

struct cfs_file_writer {
    new_file nf;
    int durable;
    char *base; /* the key's last name */
};

int cfs_file_backend_is(const cfs_backend *b)
{
    return b && b->ops == &cfs_file_backend;
}

cfs_file_writer *cfs_file_writer_open(cfs_backend *b, cfs_op *op)
{
    file_backend *f = (file_backend *)b;
    const char *base;
    char *dir = set_where(f, op) == 0 ? key_dir(op->key, &base) : NULL;
    cfs_file_writer *w = dir ? calloc(1, sizeof *w) : NULL;
    if (w && !(w->base = strdup(base))) {
        free(w);
        w = NULL;
    }
    if (!w) {
        free(dir);
        cfs_op_fail(op, CFS_ENOMEM, "out of memory");
        return NULL;
    }
    w->durable = f->durable;
    int rc = new_file_open(f, op, dir, &w->nf);
    free(dir);
    if (rc < 0) {
        free(w->base);
        free(w);
        return NULL;
    }
    return w;
}

int cfs_file_open_stored(cfs_backend *b, cfs_op *op)
{
    file_backend *f = (file_backend *)b;
    if (set_where(f, op) < 0) {
        cfs_op_fail(op, CFS_ENOMEM, "out of memory");
        return -1;
    }
    struct stat st;
    return open_object(f, op, op->key, &st);
}

int cfs_file_writer_fd(const cfs_file_writer *w)
{
    return w->nf.fd;
}

void cfs_file_writer_commit(cfs_file_writer *w, cfs_op *op)
{
    cfs_codec codec = CFS_CODEC_NONE;
    if (cfs_codec_parse(op->attrs.content_encoding, &codec) < 0)
        cfs_op_fail(op, CFS_EINVALID, "content encoding '%.40s' has no file suffix here",
                    op->attrs.content_encoding);
    /* new_file_place needs only the durable flag of the store, which may be closed now */
    file_backend f = { .durable = w->durable };
    new_file_place(&f, op, &w->nf, w->base, codec);
    cfs_file_writer_discard(w);
}

void cfs_file_writer_discard(cfs_file_writer *w)
{
    if (!w)
        return;
    new_file_drop(&w->nf);
    free(w->base);
    free(w);
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
