/* The transfer engine: a few lanes per process, each one transfer thread driving its own
 * libcurl multi handle from epoll (curl_multi_socket_action), and a small pool of worker
 * threads that run the local backends and the backends' prepare() and verify() steps
 * (hashing, decompression).
 *
 * Lanes: one transfer thread moves about 1.2 GB/s of large bodies, or 25,000 small
 * responses a second (2 cores here), and is then the limit; a lane per core (up to
 * MAX_LANES) spreads that work. An admitted op is given to the lane where its store has the fewest ops in
 * flight, so a store with concurrency C keeps at most about C/lanes connections per lane
 * (libcurl cannot share connections between multi handles across threads), and runs on
 * that lane to the end: its retries, its prepare()/verify() round trips and its child ops'
 * completions come back there.
 *
 * An op may fan out into child ops (the parts of a multipart upload): each child is a
 * transfer of its own, outside admission control, spread over the lanes, and goes back
 * to its parent's backend (child_done) on the parent's lane when it completes.
 *
 * This file: starting the engine (once per process, again in a forked child), the worker
 * threads, giving up on cancelled ops, and the stats. engine_internal.h lists the other
 * files and says what each lock guards. */
#include "core/engine_internal.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

static pthread_mutex_t g_engine_lock = PTHREAD_MUTEX_INITIALIZER;
static engine *g_engine;        /* guarded by g_engine_lock; reset in the child after fork */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_curl_ok;
static atomic_uint g_cancel_gen; /* bumped by each cfs_engine_notice_cancel: lanes then look */

/* ---------- fork ---------- */

static void after_fork_child(void)
{
    /* The parent's threads do not exist here; its engine's state may be mid-update.
     * Abandon it (its sockets belong to the parent) and start fresh on first use. */
    pthread_mutex_init(&g_engine_lock, NULL);
    g_engine = NULL;
}

static void global_init(void)
{
    g_curl_ok = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
    pthread_atfork(NULL, NULL, after_fork_child);
}

/* ---------- local work ---------- */

/* Queue an op for a worker thread (under e->lock). */
void cfs_engine_push_work_locked(engine *e, cfs_op *op)
{
    queue_push(&e->work, op);
    pthread_cond_signal(&e->work_cv);
}

/* Give a remote op without a transfer to a worker thread, for its prepare() or verify(). */
void cfs_engine_hand_to_worker(engine *e, cfs_op *op, int job)
{
    op->engine_priv = NULL;
    op->worker_job = job;
    pthread_mutex_lock(&e->lock);
    cfs_engine_push_work_locked(e, op);
    pthread_mutex_unlock(&e->lock);
}

static _Thread_local int t_on_worker;

int cfs_engine_on_worker(void)
{
    return t_on_worker;
}

static void *worker_main(void *arg)
{
    engine *e = arg;
    pthread_setname_np(pthread_self(), "cfs-worker");
    t_on_worker = 1;
    for (;;) {
        pthread_mutex_lock(&e->lock);
        while (!e->work.head)
            pthread_cond_wait(&e->work_cv, &e->lock);
        cfs_op *op = queue_pop(&e->work);
        pthread_mutex_unlock(&e->lock);
        const cfs_backend_ops *ops = op->backend->ops;
        if (op->worker_job == JOB_DECODE) { /* a remote GET's body (coding.c) */
            op->worker_job = JOB_VERIFY;
            cfs_coding_decode(op);
            cfs_engine_complete(e, op);
            continue;
        }
        if (op->worker_job == JOB_ENCODE) { /* a remote PUT's body, then its request */
            op->worker_job = JOB_VERIFY;
            if (cfs_engine_may_give_up(op, 0)) {
                cfs_engine_fail_cancelled(op);
            } else if (cfs_coding_encode(op) == 0) {
                lane *ln = &e->lanes[op->lane];
                cfs_lane_hand(e, ln, &ln->ready, op);
                continue;
            }
            cfs_engine_complete(e, op);
            continue;
        }
        if (is_local(op) && cfs_coding_needs_encode(op) && !cfs_engine_may_give_up(op, 0) &&
            cfs_coding_encode(op) < 0) {
            cfs_engine_complete(e, op);
            continue;
        }
        if ((is_local(op) || op->worker_job == JOB_PREPARE) && cfs_engine_may_give_up(op, 0)) {
            cfs_engine_fail_cancelled(op); /* not executed, or not sent once prepared */
        } else if (is_local(op)) {
            op->attempts++;
            ops->execute(op->backend, op);
        } else if (op->worker_job == JOB_PREPARE) {
            if (ops->prepare(op->backend, op) == 0) { /* back to its lane for the request */
                lane *ln = &e->lanes[op->lane];
                cfs_lane_hand(e, ln, &ln->ready, op);
                continue;
            }
        } else if (ops->verify(op->backend, op) == CFS_NEXT_RETRY &&
                   op->attempts < op->limiter->cfg.retry.max_attempts) {
            lane *ln = &e->lanes[op->lane];
            cfs_lane_hand(e, ln, &ln->verify_failed, op);
            continue;
        }
        cfs_engine_complete(e, op);
    }
    return NULL;
}

/* ---------- giving up ---------- */

/* Whether an op whose caller gave up may be dropped now without leaving anything half
 * done (the rule engine.h states): a read at any point, a part of a multipart upload (its
 * parent aborts the upload), any other op while it is not on the wire and has not gone
 * past its first step. */
int cfs_engine_may_give_up(const cfs_op *op, int on_the_wire)
{
    const cfs_op *owner = op->parent ? op->parent : op;
    if (!owner->cancel || !atomic_load_explicit(owner->cancel, memory_order_relaxed))
        return 0;
    if (op->parent || op->kind == CFS_OP_GET || op->kind == CFS_OP_HEAD || op->kind == CFS_OP_LIST)
        return 1;
    return !on_the_wire && op->step == 0;
}

void cfs_engine_fail_cancelled(cfs_op *op)
{
    cfs_op_fail(op, CFS_ECANCELLED, "given up: the call was interrupted");
}

unsigned cfs_engine_cancel_gen(void)
{
    return atomic_load(&g_cancel_gen);
}

/* Have every lane of this process's engine look at its lists before it next sleeps. */
static void wake_every_lane(void)
{
    engine *e = cfs_engine_current();
    if (!e || e->pid != getpid())
        return;
    for (int i = 0; i < e->n_lanes; i++)
        cfs_lane_wake(&e->lanes[i]);
}

void cfs_engine_notice_cancel(void)
{
    atomic_fetch_add(&g_cancel_gen, 1);
    wake_every_lane(); /* each drops its cancelled transfers */
}

void cfs_engine_release_parked(void)
{
    cfs_transfer_bump_park_gen();
    wake_every_lane(); /* each releases its parked ops */
}

/* ---------- lifecycle ---------- */

/* A lane per core this process may run on (its CPU affinity), up to MAX_LANES. */
static int lanes_wanted(void)
{
    cpu_set_t cpus;
    long n = sched_getaffinity(0, sizeof cpus, &cpus) == 0 ? CPU_COUNT(&cpus)
                                                           : sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > MAX_LANES ? MAX_LANES : (int)n;
}

/* libcurl's locking of the share: a mutex per kind of shared data. */
static void share_lock(CURL *handle, curl_lock_data data, curl_lock_access access, void *userp)
{
    (void)handle;
    (void)access;
    engine *e = userp;
    if (data >= 0 && data < CURL_LOCK_DATA_LAST)
        pthread_mutex_lock(&e->share_locks[data]);
}

static void share_unlock(CURL *handle, curl_lock_data data, void *userp)
{
    (void)handle;
    engine *e = userp;
    if (data >= 0 && data < CURL_LOCK_DATA_LAST)
        pthread_mutex_unlock(&e->share_locks[data]);
}

/* The share of TLS sessions (e->share), or NULL: the engine then works without it. */
static void share_open(engine *e)
{
    int n = 0;
    while (n < CURL_LOCK_DATA_LAST && pthread_mutex_init(&e->share_locks[n], NULL) == 0)
        n++;
    CURLSH *sh = n == CURL_LOCK_DATA_LAST ? curl_share_init() : NULL;
    if (sh && (curl_share_setopt(sh, CURLSHOPT_LOCKFUNC, share_lock) != CURLSHE_OK ||
               curl_share_setopt(sh, CURLSHOPT_UNLOCKFUNC, share_unlock) != CURLSHE_OK ||
               curl_share_setopt(sh, CURLSHOPT_USERDATA, e) != CURLSHE_OK ||
               curl_share_setopt(sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK)) {
        curl_share_cleanup(sh);
        sh = NULL;
    }
    if (!sh)
        while (n > 0)
            pthread_mutex_destroy(&e->share_locks[--n]);
    e->share = sh;
}

/* The engine of this process, started on first use. NULL if it cannot start. */
engine *cfs_engine_get(void)
{
    pthread_once(&g_once, global_init);
    if (!g_curl_ok)
        return NULL;
    pthread_mutex_lock(&g_engine_lock);
    engine *e = g_engine; /* a forked child finds NULL here (after_fork_child) */
    if (e) {
        pthread_mutex_unlock(&g_engine_lock);
        return e;
    }
    e = calloc(1, sizeof *e);
    if (!e)
        goto fail;
    e->pid = getpid();
    if (pthread_mutex_init(&e->lock, NULL) != 0)
        goto fail_free;
    if (pthread_cond_init(&e->work_cv, NULL) != 0)
        goto fail_mutex;
    share_open(e);
    int opened = 0, wanted = lanes_wanted();
    while (opened < wanted && cfs_lane_open(e, &e->lanes[opened], opened) == 0)
        opened++;
    if (opened == 0)
        goto fail_cond;
    /* n_lanes is read by the lanes (under the lock) as soon as they run */
    pthread_mutex_lock(&e->lock);
    e->n_lanes = opened;
    pthread_mutex_unlock(&e->lock);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int started = 0;
    while (started < opened &&
           pthread_create(&e->lanes[started].thread, &attr, cfs_lane_main, &e->lanes[started]) == 0)
        started++;
    if (started < opened) {
        /* fewer lanes: nothing was submitted yet, so nothing waits on the others */
        pthread_mutex_lock(&e->lock);
        e->n_lanes = started;
        pthread_mutex_unlock(&e->lock);
        for (int i = started; i < opened; i++)
            cfs_lane_close(&e->lanes[i]);
        if (started == 0) {
            pthread_attr_destroy(&attr);
            goto fail_cond;
        }
    }
    for (int i = 0; i < WORKER_THREADS; i++)
        if (pthread_create(&e->workers[i], &attr, worker_main, e) == 0)
            e->workers_started++;
    pthread_attr_destroy(&attr);
    /* its lanes are running, so the engine stays even if no worker could start (out of
     * threads): remote ops then still work, local ones and prepare/verify steps wait */
    g_engine = e;
    pthread_mutex_unlock(&g_engine_lock);
    return e;

fail_cond:
    if (e->share) {
        curl_share_cleanup(e->share);
        for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
            pthread_mutex_destroy(&e->share_locks[i]);
    }
    pthread_cond_destroy(&e->work_cv);
fail_mutex:
    pthread_mutex_destroy(&e->lock);
fail_free:
    free(e);
fail:
    pthread_mutex_unlock(&g_engine_lock);
    return NULL;
}

/* The engine if it has started, else NULL (it is not started here). */
engine *cfs_engine_current(void)
{
    pthread_mutex_lock(&g_engine_lock);
    engine *e = g_engine;
    pthread_mutex_unlock(&g_engine_lock);
    return e;
}

void cfs_engine_get_stats(cfs_engine_stats *out)
{
    cfs_transfer_counts(out);
    out->lanes = 0;
    out->window_decreases = 0;
    engine *e = cfs_engine_current();
    if (e) {
        pthread_mutex_lock(&e->lock);
        out->lanes = e->n_lanes;
        cfs_throttle_stats_locked(e, &out->window_decreases);
        pthread_mutex_unlock(&e->lock);
    }
}
