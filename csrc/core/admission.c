/* Admission control: each store's limiter counts its ops in flight against its
 * concurrency and queues the rest. Submitting queues an op; remote ops are admitted by a
 * lane's thread (cfs_admission_admit_locked, each turn of its loop) to the lane where the
 * store has the fewest ops; local ops are admitted here, straight to the worker queue.
 * Completing an op gives its slot back. Also the retry facts backends read from the
 * store's settings (backend.h). */
#include "core/engine_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

cfs_limiter *cfs_limiter_new(const cfs_transfer_config *cfg)
{
    cfs_limiter *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->cfg = *cfg;
    if (l->cfg.concurrency < 1)
        l->cfg.concurrency = 1;
    if (l->cfg.hedge_quantile <= 0 || l->cfg.hedge_quantile >= 1)
        l->cfg.hedge_quantile = CFS_HEDGE_QUANTILE;
    if (l->cfg.hedge_budget <= 0)
        l->cfg.hedge_budget = CFS_HEDGE_BUDGET;
    hedge_state *h = &l->hedge;
    for (int i = 0; i < HEDGE_BUCKETS; i++)
        atomic_init(&h->counts[i], 0);
    atomic_init(&h->total, 0);
    atomic_init(&h->seen, 0);
    atomic_init(&h->delay_ns, 0);
    atomic_init(&h->tokens, 0);
    atomic_init(&l->upload_bytes_held, 0);
    return l;
}

const cfs_transfer_config *cfs_limiter_config(const cfs_limiter *l)
{
    return &l->cfg;
}

int64_t cfs_limiter_upload_bytes_held(const cfs_limiter *l)
{
    /* relaxed: a progress figure, ordered with nothing else */
    return (int64_t)atomic_load_explicit(&l->upload_bytes_held, memory_order_relaxed);
}

void cfs_op_set_bytes_held(cfs_op *op, int64_t held)
{
    int64_t change = held - op->bytes_held;
    op->bytes_held = held;
    if (change)
        atomic_fetch_add_explicit(&op->limiter->upload_bytes_held, (long long)change,
                                  memory_order_relaxed);
}

void cfs_limiter_free(cfs_limiter *l)
{
    if (!l)
        return;
    engine *e = cfs_engine_current();
    if (e && e->pid == getpid() && l->owner_pid == e->pid) {
        pthread_mutex_lock(&e->lock);
        for (cfs_limiter **pp = &e->limiters; *pp; pp = &(*pp)->next) {
            if (*pp == l) {
                *pp = l->next;
                break;
            }
        }
        pthread_mutex_unlock(&e->lock);
    }
    free(l);
}

/* Local ops never pass through the transfer thread: they are admitted here, at
 * submission and as each one completes (under e->lock). */
static void admit_local_locked(engine *e, cfs_limiter *l)
{
    while (l->waiting.head && l->active < l->cfg.concurrency) {
        l->active++;
        cfs_engine_push_work_locked(e, queue_pop(&l->waiting));
    }
}

int cfs_engine_submit(cfs_op *op)
{
    engine *e = cfs_engine_get();
    if (!e)
        return -1;
    cfs_limiter *l = op->limiter;
    pthread_mutex_lock(&e->lock);
    if (l->owner_pid != e->pid) {
        /* first use, or first use in a forked child: (re)register with this engine */
        l->owner_pid = e->pid;
        l->active = 0;
        memset(l->lane_active, 0, sizeof l->lane_active);
        l->waiting.head = l->waiting.tail = NULL;
        l->host = NULL;
        l->next = e->limiters;
        e->limiters = l;
    }
    queue_push(&l->waiting, op);
    int local = is_local(op);
    if (local)
        admit_local_locked(e, l);
    pthread_mutex_unlock(&e->lock);
    if (!local)
        cfs_lane_wake_admission(e);
    return 0;
}

/* Move admissible ops out of the limiter queues (under the lock). Local ones go to the
 * worker queue; each remote one to the lane where its store has the fewest ops. Returns
 * the lanes given ops (a bit per lane) for the caller to wake. */
unsigned cfs_admission_admit_locked(engine *e)
{
    unsigned given = 0;
    for (cfs_limiter *l = e->limiters; l; l = l->next) {
        while (l->waiting.head && l->active < l->cfg.concurrency && cfs_throttle_has_room_locked(l)) {
            cfs_op *op = queue_pop(&l->waiting);
            l->active++;
            cfs_throttle_admitted_locked(op);
            if (op->backend->ops->execute) {
                cfs_engine_push_work_locked(e, op);
                continue;
            }
            int best = 0;
            for (int i = 1; i < e->n_lanes; i++)
                if (l->lane_active[i] < l->lane_active[best])
                    best = i;
            l->lane_active[best]++;
            op->lane = best;
            queue_push(&e->lanes[best].ready, op); /* the caller wakes the lane */
            given |= 1u << best;
        }
    }
    return given;
}

/* An op is done. A child goes back to its parent's lane; any other gives back its slot
 * (admitting the next) and is handed to op->on_done. */
void cfs_engine_complete(engine *e, cfs_op *op)
{
    if (op->parent) {
        /* a child: its parent's backend hears of it on the parent's lane, never here
         * (this may be a worker thread, another lane, or the middle of starting the
         * parent's children) */
        lane *home = &e->lanes[op->parent->lane];
        cfs_lane_hand(e, home, &home->children_done, op);
        return;
    }
    if (cfs_coding_needs_decode(op)) { /* a content-encoded body: decoded on a worker */
        if (!cfs_engine_on_worker()) {
            cfs_engine_hand_to_worker(e, op, JOB_DECODE);
            return;
        }
        cfs_coding_decode(op);
    }
    if (op->status == CFS_ENOTFOUND && op->kind == CFS_OP_PUT) {
        /* a missing key is a read's answer: a write answered "not found" is refused (a
         * backend that can tell says CFS_ENOCONTAINER) */
        char was[sizeof op->message];
        memcpy(was, op->message, sizeof was);
        cfs_op_fail(op, CFS_EHTTP, "the server answered a write with 'not found': %.200s", was);
    }
    /* its bytes now count as a completed object's, wherever its caller counts those */
    cfs_op_set_bytes_held(op, 0);
    int local = is_local(op);
    pthread_mutex_lock(&e->lock);
    op->limiter->active--;
    cfs_throttle_completed_locked(op);
    if (local)
        admit_local_locked(e, op->limiter);
    else
        op->limiter->lane_active[op->lane]--;
    pthread_mutex_unlock(&e->lock);
    if (!local)
        cfs_lane_wake_admission(e); /* a slot is free: admit more */
    op->on_done(op, op->ctx);   /* may free op: touch nothing after */
}

int cfs_op_max_attempts(const cfs_op *op)
{
    return op->limiter->cfg.retry.max_attempts;
}

int cfs_op_last_attempt(const cfs_op *op)
{
    return op->attempts >= op->limiter->cfg.retry.max_attempts;
}
