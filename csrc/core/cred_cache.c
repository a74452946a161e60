/* The cache of one credential (see cred_cache.h). */
#include "core/cred_cache.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/secret.h"

void cfs_cred_clear(cfs_cred *c)
{
    if (!c)
        return;
    free(c->id);
    cfs_secret_free(c->secret);
    cfs_secret_free(c->token);
    cfs_secret_wipe(c, sizeof *c); /* the derived value too; leaves zeros */
}

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int cfs_cred_cache_init(cfs_cred_cache *c, const cfs_cred_policy *policy, const char *where,
                        void (*wake)(void))
{
    memset(c, 0, sizeof *c);
    c->policy = *policy;
    if (c->policy.max_fetches < 1)
        c->policy.max_fetches = 1;
    c->wake = wake;
    c->clock = mono_now;
    if (!(c->where = strdup(where ? where : "")))
        return -1;
    if (cfs_fork_mutex_init(&c->lock) < 0) {
        free(c->where);
        c->where = NULL;
        return -1;
    }
    return 0;
}

void cfs_cred_cache_destroy(cfs_cred_cache *c)
{
    if (!c->where)
        return; /* never initialised */
    cfs_cred_clear(&c->cred);
    free(c->fail_where);
    free(c->where);
    cfs_fork_mutex_destroy(&c->lock);
    memset(c, 0, sizeof *c);
}

/* Lock. In a forked child the fetching op and the parked ops were the parent's threads'. */
static void lock(cfs_cred_cache *c)
{
    if (cfs_fork_mutex_lock(&c->lock)) {
        c->claim = 0;
        c->waiting = 0;
    }
}

static void unlock(cfs_cred_cache *c)
{
    cfs_fork_mutex_unlock(&c->lock);
}

/* Under the lock: replace the credential (moved from *cred). */
static void store_locked(cfs_cred_cache *c, cfs_cred *cred, double lifetime, double now)
{
    cfs_cred_clear(&c->cred);
    c->cred = *cred;
    memset(cred, 0, sizeof *cred);
    c->have = 1;
    c->gen++;
    if (isinf(lifetime)) {
        c->expires_at = c->refresh_at = c->usable_until = INFINITY;
    } else {
        double refresh =
            c->policy.refresh_margin < lifetime / 2 ? c->policy.refresh_margin : lifetime / 2;
        double expiry =
            c->policy.expiry_margin < lifetime / 10 ? c->policy.expiry_margin : lifetime / 10;
        c->expires_at = now + lifetime;
        c->refresh_at = c->expires_at - refresh;
        c->usable_until = c->expires_at - expiry;
    }
    c->refresh_not_before = 0;
    c->failed_until = 0;
}

void cfs_cred_cache_seed(cfs_cred_cache *c, cfs_cred *cred, double lifetime)
{
    lock(c);
    store_locked(c, cred, lifetime, c->clock());
    unlock(c);
}

/* Under the lock: the claim ends; returns whether parked ops must be woken. */
static int end_claim_locked(cfs_cred_cache *c, cfs_cred_ticket *t)
{
    if (t->claim && c->claim == t->claim)
        c->claim = 0;
    t->claim = 0;
    t->cache = NULL;
    t->op = NULL;
    int wake = c->waiting;
    c->waiting = 0;
    return wake;
}

static void wake_parked(cfs_cred_cache *c, int wake)
{
    if (wake && c->wake)
        c->wake();
}

static void claim_locked(cfs_cred_cache *c, cfs_cred_ticket *t, cfs_op *op, double now)
{
    c->claim = t->claim = ++c->claims;
    c->claimed_at = now;
    t->cache = c;
    t->op = op;
    t->fetches++;
}

/* Under the lock: answer for the next failure_memory seconds with this failure. */
static void remember_failure_locked(cfs_cred_cache *c, const cfs_op *op, const char *where,
                                    double now)
{
    c->failed_until = now + c->policy.failure_memory;
    c->fail_status = op->status != CFS_OK ? op->status : CFS_EAUTH;
    memcpy(c->fail_message, op->message, sizeof c->fail_message);
    free(c->fail_where);
    c->fail_where = where ? strdup(where) : NULL;
}

int cfs_cred_decide(cfs_cred_cache *c, cfs_cred_ticket *t, cfs_op *op,
                    int (*use)(cfs_cred *cred, void *ctx), void *ctx)
{
    int rc;
    lock(c);
    double now = c->clock();
    if (c->claim && now - c->claimed_at > c->policy.claim_timeout)
        c->claim = 0; /* its op has given up without saying so: another may fetch */
    if (t->claim && c->claim == t->claim) {
        rc = CFS_CRED_FETCH; /* its own fetch, tried again */
        goto out;
    }
    t->claim = 0;
    t->cache = NULL;
    if (c->have && now >= c->expires_at) { /* expired: no use keeping the secret around */
        cfs_cred_clear(&c->cred);
        c->have = 0;
    }
    int fetched = t->fetched;
    t->fetched = 0;
    if (c->have && (now < c->usable_until || (fetched && now < c->expires_at))) {
        if (!fetched && !c->claim && now >= c->refresh_at && now >= c->refresh_not_before &&
            t->fetches < c->policy.max_fetches) {
            claim_locked(c, t, op, now); /* an early refresh: the others go on with this one */
            rc = CFS_CRED_FETCH;
        } else {
            t->gen = c->gen;
            rc = use(&c->cred, ctx) == 0 ? CFS_CRED_USE : CFS_CRED_FAILED;
        }
    } else if (c->claim) {
        c->waiting = 1;
        rc = CFS_CRED_WAIT;
    } else if (now < c->failed_until) {
        op->status = c->fail_status;
        memcpy(op->message, c->fail_message, sizeof op->message);
        if (c->fail_where && cfs_op_set_where(op, c->fail_where) < 0)
            cfs_op_fail(op, CFS_ENOMEM, "out of memory");
        rc = CFS_CRED_FAILED;
    } else if (t->fetches >= c->policy.max_fetches) {
        cfs_op_fail(op, CFS_EAUTH, "no usable credentials from %s after %d fetches", c->where,
                    t->fetches);
        if (cfs_op_set_where(op, c->where) < 0)
            cfs_op_fail(op, CFS_ENOMEM, "out of memory");
        rc = CFS_CRED_FAILED;
    } else {
        claim_locked(c, t, op, now);
        rc = CFS_CRED_FETCH;
    }
out:
    unlock(c);
    return rc;
}

int cfs_cred_fetch_failed(cfs_cred_cache *c, cfs_cred_ticket *t, cfs_op *op, int retry)
{
    lock(c);
    double now = c->clock();
    int usable = c->have && now < c->usable_until;
    if (retry && t->claim && !usable) {
        unlock(c);
        return CFS_CRED_FETCH; /* the others wait for nothing else */
    }
    int wake = end_claim_locked(c, t), rc;
    if (usable) {
        /* an early refresh failed (or another op fetched meanwhile): go on with this one */
        c->refresh_not_before = now + c->policy.refresh_backoff;
        op->status = CFS_OK;
        op->message[0] = '\0';
        rc = CFS_CRED_USE;
    } else {
        remember_failure_locked(c, op, op->where, now);
        rc = CFS_CRED_FAILED;
    }
    unlock(c);
    wake_parked(c, wake);
    return rc;
}

int cfs_cred_fetched(cfs_cred_cache *c, cfs_cred_ticket *t, cfs_cred *cred, double lifetime,
                     cfs_op *op)
{
    if (!(lifetime > 0)) {
        cfs_cred_clear(cred);
        cfs_op_fail(op, CFS_EAUTH, "credentials from %s: they expire at once", c->where);
        return cfs_cred_fetch_failed(c, t, op, 0);
    }
    lock(c);
    store_locked(c, cred, lifetime, c->clock());
    int wake = end_claim_locked(c, t);
    t->fetched = 1;
    unlock(c);
    wake_parked(c, wake);
    return CFS_CRED_USE;
}

void cfs_cred_release(cfs_cred_ticket *t)
{
    cfs_cred_cache *c = t->cache;
    if (!c || !t->claim)
        return;
    lock(c);
    const cfs_op *op = t->op; /* being freed: its where is gone, its status is not */
    double now = c->clock();
    if (c->claim == t->claim && op && op->status != CFS_OK && op->status != CFS_ECANCELLED) {
        if (c->have && now < c->usable_until)
            c->refresh_not_before = now + c->policy.refresh_backoff;
        else
            remember_failure_locked(c, op, c->where, now);
    }
    int wake = end_claim_locked(c, t);
    unlock(c);
    wake_parked(c, wake);
}

void cfs_cred_invalidate(cfs_cred_cache *c, const cfs_cred_ticket *t)
{
    lock(c);
    if (c->have && c->gen == t->gen) {
        cfs_cred_clear(&c->cred);
        c->have = 0;
    }
    unlock(c);
}

int cfs_cred_fetching(const cfs_cred_ticket *t)
{
    return t->claim != 0;
}
