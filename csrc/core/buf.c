#include "core/buf.h"

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

/* A body of known size this large is faulted in with one call when its block is made:
 * cheaper than a page fault per 4 KiB as it is written (buf.h). */
#define PREFAULT_MIN ((size_t)4 << 20)

static void prefault(char *block, size_t len)
{
    long ps = sysconf(_SC_PAGESIZE);
    uintptr_t page = ps > 0 ? (uintptr_t)ps : 4096;
    uintptr_t first = ((uintptr_t)block + page - 1) / page * page;
    uintptr_t end = ((uintptr_t)block + len) / page * page;
    if (end > first)
        (void)madvise((void *)first, end - first, MADV_POPULATE_WRITE); /* a hint */
}

/* The malloc'd block behind a buffer's data (see CFS_BUF_HEAP_HEADER). */
static char *heap_block(char *data)
{
    return data - CFS_BUF_HEAP_HEADER;
}

static void storage_free(char *data)
{
    if (data)
        free(heap_block(data));
}

static pthread_mutex_t g_pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    char *data;
    size_t cap;
} g_pool[POOL_SLOTS]; /* guarded by g_pool_lock */
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
    storage_free(data);
}

/* Give the buffer exactly `cap` bytes of room in all (cap > b->cap), from the pool for a
 * first block when one fits. Returns 0 or -1. */
static int buf_grow(cfs_buf *b, size_t cap)
{
    if (!b->data && cap >= POOL_MIN_BLOCK) {
        size_t pooled_cap;
        char *pooled = pool_take(cap, &pooled_cap);
        if (pooled) {
            b->data = pooled;
            b->cap = pooled_cap;
            return 0;
        }
    }
    if (cap > SIZE_MAX - CFS_BUF_HEAP_HEADER)
        return -1;
    char *p = realloc(b->data ? heap_block(b->data) : NULL, cap + CFS_BUF_HEAP_HEADER);
    if (!p)
        return -1;
    if (!b->data && cap >= PREFAULT_MIN)
        prefault(p, cap + CFS_BUF_HEAP_HEADER);
    b->data = p + CFS_BUF_HEAP_HEADER;
    b->cap = cap;
    return 0;
}

int cfs_buf_reserve(cfs_buf *b, size_t need)
{
    if (need <= b->cap - b->len)
        return 0;
    if (need > SIZE_MAX - b->len)
        return -1;
    size_t want = b->len + need, cap;
    if (!b->data) {
        /* a first reservation is mostly a body of known length: exactly that, so that
         * the body can become a bytes object as it lies (cfs_buf_release_block) */
        cap = want < 256 ? 256 : want;
    } else {
        cap = b->cap;
        while (cap < want)
            cap = cap > SIZE_MAX / 2 ? want : cap * 2;
    }
    return buf_grow(b, cap);
}

int cfs_buf_reserve_expected(cfs_buf *b, size_t need, size_t expected)
{
    if (need <= b->cap - b->len)
        return 0;
    if (need > SIZE_MAX - b->len)
        return -1;
    size_t want = b->len + need;
    if (want > expected)
        return cfs_buf_reserve(b, need); /* more than announced: grow as for any buffer */
    size_t cap = !b->data ? CFS_BUF_FIRST_RESERVE : b->cap > SIZE_MAX / 2 ? SIZE_MAX : b->cap * 2;
    if (cap < want)
        cap = want;
    if (cap > expected)
        cap = expected;
    return buf_grow(b, cap);
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
    /* callers free() what they steal: give them the start of the malloc'd block */
    if (p) {
        p = memmove(heap_block(p), p, b->len); /* the header's room holds the NUL */
        p[b->len] = '\0';
    }
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

char *cfs_buf_release_block(cfs_buf *b)
{
    if (!b->data || b->cap == b->len)
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
