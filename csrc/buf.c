#include "buf.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14; older kernels answer EINVAL, which is ignored */
#endif

/* Large buffers (object bodies) go back to a small process-wide pool when freed and are
 * handed out again: memory that stays mapped costs no page faults, where fresh memory
 * costs a fault and a page clear for every 4 KiB (the largest cost of a zarr read here). */
#define POOL_MIN_BLOCK (256 * 1024)
#define POOL_MAX_BYTES (128 * 1024 * 1024)
#define POOL_SLOTS 32

/* Buffers of CFS_BUF_MAP_MIN bytes and more are anonymous mappings of their own, with the
 * data starting CFS_BUF_MAP_OFFSET bytes into the first page (see buf.h): they grow with
 * mremap (no copy), and their whole pages can be moved into a bytes object. Every buffer
 * whose cap is at least CFS_BUF_MAP_MIN is such a mapping, smaller ones come from malloc:
 * (data, cap) alone says which, so buffers stay plain structs that may be copied. */
static size_t page_size(void)
{
    long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? (size_t)p : 4096;
}

static int is_mapped(size_t cap)
{
    return cap >= CFS_BUF_MAP_MIN;
}

/* A fresh mapping holding at least `want` bytes after CFS_BUF_MAP_OFFSET; NULL if none. */
static char *map_new(size_t want, size_t *cap, int populate)
{
    size_t ps = page_size();
    if (want > SIZE_MAX - CFS_BUF_MAP_OFFSET - ps)
        return NULL;
    size_t len = (want + CFS_BUF_MAP_OFFSET + ps - 1) / ps * ps;
    char *base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED)
        return NULL;
    /* The body is about to be written end to end: one call faults every page in, which
     * costs less than a page fault per 4 KiB (a hint: failure changes nothing). */
    if (populate)
        (void)madvise(base, len, MADV_POPULATE_WRITE);
    *cap = len - CFS_BUF_MAP_OFFSET;
    return base + CFS_BUF_MAP_OFFSET;
}

static void map_free(char *data, size_t cap)
{
    munmap(data - CFS_BUF_MAP_OFFSET, cap + CFS_BUF_MAP_OFFSET);
}

/* Grow a mapping to hold `want` bytes, moving it if need be (no copy). NULL on failure,
 * the old mapping then untouched. */
static char *map_grow(char *data, size_t cap, size_t want, size_t *new_cap)
{
    size_t ps = page_size();
    if (want > SIZE_MAX - CFS_BUF_MAP_OFFSET - ps)
        return NULL;
    size_t len = (want + CFS_BUF_MAP_OFFSET + ps - 1) / ps * ps;
    char *base = mremap(data - CFS_BUF_MAP_OFFSET, cap + CFS_BUF_MAP_OFFSET, len, MREMAP_MAYMOVE);
    if (base == MAP_FAILED)
        return NULL;
    *new_cap = len - CFS_BUF_MAP_OFFSET;
    return base + CFS_BUF_MAP_OFFSET;
}

/* The malloc'd block behind a heap buffer's data (see CFS_BUF_HEAP_HEADER). */
static char *heap_block(char *data)
{
    return data - CFS_BUF_HEAP_HEADER;
}

static void storage_free(char *data, size_t cap)
{
    if (!data)
        return;
    if (is_mapped(cap))
        map_free(data, cap);
    else
        free(heap_block(data));
}

static pthread_mutex_t g_pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct { char *data; size_t cap; } g_pool[POOL_SLOTS]; /* guarded by g_pool_lock */
static size_t g_pool_bytes;                                    /* guarded by g_pool_lock */
static pthread_once_t g_pool_once = PTHREAD_ONCE_INIT;

static void pool_after_fork_child(void)
{
    /* another thread may have held the lock mid-update: start empty (the parent's blocks
     * stay allocated in this process, unused) */
    pthread_mutex_init(&g_pool_lock, NULL);
    memset(g_pool, 0, sizeof g_pool);
    g_pool_bytes = 0;
}

static void pool_init(void)
{
    pthread_atfork(NULL, NULL, pool_after_fork_child);
}

/* A pooled block of at least `want` bytes and at most 4 times that, or NULL. */
static char *pool_take(size_t want, size_t *cap)
{
    pthread_once(&g_pool_once, pool_init);
    int best = -1;
    pthread_mutex_lock(&g_pool_lock);
    for (int i = 0; i < POOL_SLOTS; i++)
        if (g_pool[i].data && g_pool[i].cap >= want && g_pool[i].cap / 4 <= want &&
            (best < 0 || g_pool[i].cap < g_pool[best].cap))
            best = i;
    char *p = NULL;
    if (best >= 0) {
        p = g_pool[best].data;
        *cap = g_pool[best].cap;
        g_pool_bytes -= *cap;
        g_pool[best].data = NULL;
    }
    pthread_mutex_unlock(&g_pool_lock);
    return p;
}

void cfs_buf_pool_put(char *data, size_t cap)
{
    if (!data)
        return;
    if (cap >= POOL_MIN_BLOCK && cap <= POOL_MAX_BYTES) {
        pthread_once(&g_pool_once, pool_init);
        pthread_mutex_lock(&g_pool_lock);
        for (int i = 0; i < POOL_SLOTS && g_pool_bytes + cap <= POOL_MAX_BYTES; i++) {
            if (!g_pool[i].data) {
                g_pool[i].data = data;
                g_pool[i].cap = cap;
                g_pool_bytes += cap;
                data = NULL;
                break;
            }
        }
        pthread_mutex_unlock(&g_pool_lock);
    }
    storage_free(data, cap);
}

int cfs_buf_reserve(cfs_buf *b, size_t need)
{
    if (need <= b->cap - b->len)
        return 0;
    if (need > SIZE_MAX - b->len)
        return -1;
    size_t want = b->len + need;
    if (!b->data && want >= POOL_MIN_BLOCK) {
        size_t cap;
        char *pooled = pool_take(want, &cap);
        if (pooled) {
            b->data = pooled;
            b->cap = cap;
            return 0;
        }
    }
    size_t cap;
    if (!b->data) {
        /* a first reservation is mostly a body of known length: exactly that, so that
         * the body can become a bytes object as it lies (cfs_buf_release_heap) */
        cap = want < 256 ? 256 : want;
    } else {
        cap = b->cap;
        while (cap < want)
            cap = cap > SIZE_MAX / 2 ? want : cap * 2;
    }
    if (cap >= CFS_BUF_MAP_MIN) {
        /* every mapped buffer holds CFS_BUF_MAP_MIN bytes or more (is_mapped) */
        char *p;
        if (!b->data && want >= CFS_BUF_MAP_MIN) /* a body of known size: faulted in at once */
            p = map_new(want, &cap, 1);
        else if (!b->data)
            p = map_new(cap, &cap, 0);
        else if (is_mapped(b->cap)) /* growing without a known size: no copy */
            p = map_grow(b->data, b->cap, cap, &cap);
        else if ((p = map_new(cap, &cap, 0)) != NULL) {
            memcpy(p, b->data, b->len);
            free(heap_block(b->data));
        }
        if (!p)
            return -1;
        b->data = p;
        b->cap = cap;
        return 0;
    }
    if (cap > SIZE_MAX - CFS_BUF_HEAP_HEADER)
        return -1;
    char *p = realloc(b->data ? heap_block(b->data) : NULL, cap + CFS_BUF_HEAP_HEADER);
    if (!p)
        return -1;
    b->data = p + CFS_BUF_HEAP_HEADER;
    b->cap = cap;
    return 0;
}

int cfs_buf_append(cfs_buf *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    if (cfs_buf_reserve(b, n) < 0)
        return -1;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int cfs_buf_append_str(cfs_buf *b, const char *s)
{
    return cfs_buf_append(b, s, strlen(s));
}

int cfs_buf_terminate(cfs_buf *b)
{
    if (cfs_buf_reserve(b, 1) < 0)
        return -1;
    b->data[b->len] = '\0';
    return 0;
}

void cfs_buf_reset(cfs_buf *b)
{
    b->len = 0;
}

void cfs_buf_free(cfs_buf *b)
{
    cfs_buf_pool_put(b->data, b->cap);
    b->data = NULL;
    b->len = b->cap = 0;
}

char *cfs_asprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

char *cfs_buf_steal(cfs_buf *b, size_t *len)
{
    char *p = b->data;
    if (len)
        *len = b->len;
    /* callers free() what they steal: give them the start of a malloc'd block */
    if (p && is_mapped(b->cap)) {
        char *copy = malloc(b->len + 1);
        if (copy) {
            memcpy(copy, p, b->len);
            copy[b->len] = '\0';
        }
        map_free(p, b->cap);
        p = copy;
    } else if (p) {
        p = memmove(heap_block(p), p, b->len); /* the header's room holds the NUL */
        p[b->len] = '\0';
    }
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

char *cfs_buf_release_heap(cfs_buf *b)
{
    if (!b->data || is_mapped(b->cap) || b->cap == b->len)
        return NULL;
    char *block = heap_block(b->data);
    size_t used = CFS_BUF_HEAP_HEADER + b->len + 1;
    if (b->cap - b->len - 1 > b->len / 8) {
        /* shrinking leaves the block where it is (glibc splits it, or mremaps a large one) */
        char *p = realloc(block, used);
        if (p)
            block = p;
    }
    b->data = NULL;
    b->len = b->cap = 0;
    return block;
}

char *cfs_buf_take(cfs_buf *b, size_t *len, size_t *cap)
{
    char *p = b->data;
    *len = b->len;
    *cap = b->cap;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

size_t cfs_buf_movable_pages(const cfs_buf *b, const char *dst, size_t *skip)
{
    if (!b->data || !is_mapped(b->cap))
        return 0;
    size_t ps = page_size();
    uintptr_t d = (uintptr_t)dst, s = (uintptr_t)b->data;
    if (d % ps != s % ps)
        return 0;
    size_t head = (ps - d % ps) % ps; /* bytes before dst's first whole page */
    if (b->len < head + ps)
        return 0;
    *skip = head;
    return (b->len - head) / ps * ps;
}

int cfs_buf_move_pages(cfs_buf *b, char *dst, size_t skip, size_t n)
{
    /* mremap to a fixed address first unmaps what is there; it fails (ENOMEM) only when
     * the process is at its limit of mappings or out of memory for page tables */
    void *r = mremap(b->data + skip, n, n, MREMAP_MAYMOVE | MREMAP_FIXED, dst + skip);
    if (r == MAP_FAILED) {
        int err = errno;
        /* dst's pages may be gone: map fresh ones back, unless something else took the
         * place in the meantime (MAP_FIXED_NOREPLACE, Linux 4.17) */
        void *again = mmap(dst + skip, n, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        if (again == dst + skip || (again == MAP_FAILED && errno == EEXIST && err != ENOMEM))
            return -1; /* dst is whole again (or was never unmapped): copy instead */
        if (again != MAP_FAILED)
            munmap(again, n); /* an old kernel that ignored NOREPLACE and mapped elsewhere */
        return -2;
    }
    /* what is left of the source: the head and tail pages around the hole */
    map_free(b->data, b->cap);
    b->data = NULL;
    b->len = b->cap = 0;
    return 0;
}
