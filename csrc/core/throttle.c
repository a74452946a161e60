/* Adaptive concurrency per host (AIMD), as S3's guidance asks of clients: a 503 or 429
 * (SlowDown, Too Many Requests) halves the number of ops a process keeps in flight to that
 * host, and each window's worth of successes adds one back, up to the largest concurrency
 * of the stores using it. Until a host first pushes back, and again once it has not for
 * QUIET_S seconds, only each store's own concurrency applies. A host is scheme://authority of the requests' URL; every store of
 * the process sending to it shares its window. Everything here runs under engine.lock,
 * except cfs_throttle_rejected, which takes it. */
#include "core/engine_internal.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HOST_KEY_MAX 256
/* A host that has not pushed back for this long gets its window lifted: a long-lived
 * process must not stay throttled by one busy minute, and the next push-back halves it
 * again from what is in flight then. */
#define QUIET_S 10.0

struct cfs_host_window {
    char key[HOST_KEY_MAX];     /* scheme://host:port */
    double window;              /* ops in flight allowed; INFINITY until the first push-back */
    int active;                 /* ops in flight counted against it */
    int cap;                    /* the largest concurrency of a store attached */
    unsigned epoch;             /* bumped at each decrease: one decrease per window of ops */
    struct timespec pushed_back; /* when it last pushed back */
    uint64_t decreases;
    cfs_host_window *next;
};

/* scheme://authority of a URL, without userinfo: the host an op's requests go to. */
static void host_key(const char *url, char *out, size_t n)
{
    const char *sep = strstr(url, "://");
    if (!sep) {
        snprintf(out, n, "%s", url);
        return;
    }
    const char *auth = sep + 3;
    size_t len = strcspn(auth, "/?#");
    const char *at = memrchr(auth, '@', len);
    if (at) {
        len -= (size_t)(at + 1 - auth);
        auth = at + 1;
    }
    snprintf(out, n, "%.*s://%.*s", (int)(sep - url), url, (int)len, auth);
}

static cfs_host_window *host_window_locked(engine *e, const char *url)
{
    char key[HOST_KEY_MAX];
    host_key(url, key, sizeof key);
    for (cfs_host_window *h = e->hosts; h; h = h->next)
        if (strcmp(h->key, key) == 0)
            return h;
    cfs_host_window *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    memcpy(h->key, key, sizeof key);
    h->window = INFINITY;
    h->next = e->hosts;
    e->hosts = h;
    return h;
}

static void count_locked(cfs_host_window *h, cfs_op *op)
{
    op->host = h;
    op->host_epoch = h->epoch;
    h->active++;
}

void cfs_throttle_attach(engine *e, cfs_op *op, const char *url)
{
    if (op->host || op->parent)
        return; /* counted already; parts of an upload count in their parent */
    pthread_mutex_lock(&e->lock);
    cfs_limiter *l = op->limiter;
    if (!l->host) {
        l->host = host_window_locked(e, url);
        if (l->host && l->host->cap < l->cfg.concurrency)
            l->host->cap = l->cfg.concurrency;
    }
    if (l->host)
        count_locked(l->host, op);
    pthread_mutex_unlock(&e->lock);
}

static double seconds_since(struct timespec t)
{
    struct timespec now = now_mono();
    return (double)(now.tv_sec - t.tv_sec) + (double)(now.tv_nsec - t.tv_nsec) / 1e9;
}

int cfs_throttle_has_room_locked(const cfs_limiter *l)
{
    cfs_host_window *h = l->host;
    if (!h || h->active < h->window)
        return 1;
    if (seconds_since(h->pushed_back) < QUIET_S)
        return 0;
    h->window = INFINITY; /* quiet for long enough: lifted */
    return 1;
}

void cfs_throttle_admitted_locked(cfs_op *op)
{
    if (op->limiter->host)
        count_locked(op->limiter->host, op);
}

void cfs_throttle_completed_locked(cfs_op *op)
{
    cfs_host_window *h = op->host;
    if (!h)
        return;
    op->host = NULL;
    h->active--;
    if (op->status == CFS_OK && isfinite(h->window)) {
        h->window += 1.0 / h->window; /* one more per window's worth of successes */
        if (h->window > h->cap)
            h->window = h->cap;
    }
}

int cfs_throttle_hedge_begin(engine *e, cfs_op *op, cfs_host_window **counted)
{
    *counted = NULL;
    pthread_mutex_lock(&e->lock);
    cfs_host_window *h = op->host;
    int ok = 1;
    if (h) {
        /* a host that pushed back gets no extra request while its window is full */
        ok = !isfinite(h->window) || h->active < h->window;
        if (ok) {
            h->active++;
            *counted = h;
        }
    }
    pthread_mutex_unlock(&e->lock);
    return ok;
}

void cfs_throttle_hedge_end(engine *e, cfs_host_window *h)
{
    pthread_mutex_lock(&e->lock);
    h->active--; /* windows live as long as the engine */
    pthread_mutex_unlock(&e->lock);
}

void cfs_throttle_rejected(engine *e, cfs_op *op)
{
    pthread_mutex_lock(&e->lock);
    cfs_host_window *h = op->host;
    /* once per window: only an op admitted since the last decrease (not one that was in
     * flight then, nor its retries) halves it again */
    if (h && op->host_epoch == h->epoch) {
        double from = isfinite(h->window) ? h->window : h->active;
        h->window = from / 2 < 1 ? 1 : from / 2;
        h->pushed_back = now_mono();
        h->epoch++;
        h->decreases++;
    }
    pthread_mutex_unlock(&e->lock);
}

void cfs_throttle_stats_locked(engine *e, uint64_t *decreases)
{
    uint64_t n = 0;
    for (cfs_host_window *h = e->hosts; h; h = h->next)
        n += h->decreases;
    *decreases = n;
}
