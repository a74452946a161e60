#include "buf.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Large buffers (object bodies) go back to a small process-wide pool when freed and are
 * handed out again: memory that stays mapped costs no page faults, where fresh memory
 * costs a fault and a page clear for every 4 KiB (the largest cost of a zarr read here). */
#define POOL_MIN_BLOCK (256 * 1024)
#define POOL_MAX_BYTES (128 * 1024 * 1024)
#define POOL_SLOTS 32

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
    free(data);
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
    size_t cap = b->cap ? b->cap : 256;
    while (cap < want)
        cap = cap > SIZE_MAX / 2 ? want : cap * 2;
    char *p = realloc(b->data, cap);
    if (!p)
        return -1;
    b->data = p;
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
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}
