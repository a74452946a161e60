/* Waiters (engine.h): collect the completed ops of one batch for a caller that waits
 * with the GIL released; a waiter's flag is op->cancel of the ops it collects. */
#include "core/engine.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

struct cfs_waiter {
    pthread_mutex_t lock;
    pthread_cond_t cv;
    cfs_op *done;
    int n_done;
    int want;       /* the waiting caller's min_done: signal once n_done reaches it */
    atomic_int cancelled; /* op->cancel of its ops */
};

cfs_waiter *cfs_waiter_new(void)
{
    cfs_waiter *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    if (pthread_mutex_init(&w->lock, NULL) != 0) {
        free(w);
        return NULL;
    }
    if (pthread_cond_init(&w->cv, NULL) != 0) {
        pthread_mutex_destroy(&w->lock);
        free(w);
        return NULL;
    }
    atomic_init(&w->cancelled, 0);
    return w;
}

void cfs_waiter_free(cfs_waiter *w)
{
    if (!w)
        return;
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

void cfs_waiter_done(cfs_op *op, void *ctx)
{
    cfs_waiter *w = ctx;
    pthread_mutex_lock(&w->lock);
    op->next = w->done;
    w->done = op;
    if (++w->n_done == w->want)
        pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->lock);
}

cfs_op *cfs_waiter_take(cfs_waiter *w, int min_done, long timeout_ms)
{
    struct timespec until;
    if (timeout_ms >= 0) {
        clock_gettime(CLOCK_REALTIME, &until);
        long long ns = until.tv_nsec + timeout_ms * 1000000LL;
        until.tv_sec += ns / 1000000000LL;
        until.tv_nsec = ns % 1000000000LL;
    }
    pthread_mutex_lock(&w->lock);
    if (w->n_done < min_done) {
        w->want = min_done;
        while (w->n_done < min_done) {
            if (timeout_ms < 0)
                pthread_cond_wait(&w->cv, &w->lock);
            else if (pthread_cond_timedwait(&w->cv, &w->lock, &until) == ETIMEDOUT)
                break;
        }
        w->want = 0;
    }
    cfs_op *list = w->done;
    w->done = NULL;
    w->n_done = 0;
    pthread_mutex_unlock(&w->lock);
    return list;
}

const atomic_int *cfs_waiter_cancel_flag(cfs_waiter *w)
{
    return &w->cancelled;
}

void cfs_waiter_cancel(cfs_waiter *w)
{
    if (!atomic_exchange(&w->cancelled, 1))
        cfs_engine_notice_cancel();
}
