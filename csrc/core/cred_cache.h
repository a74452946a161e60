/* The cache of one credential that the ops of a store share (S3 keys from a container
 * endpoint, IMDS or STS; a GCS access token): who fetches it, when it is refreshed, and
 * what the other ops do meanwhile. Named for what it is, a cache: the credentials
 * themselves are the backends' (backends/s3/credentials.h, backends/gcs/auth.h).
 *
 * The fetch is the backend's: one more step of the op that needs the credential, sent
 * through the engine like any request. Before each request an op builds, the backend asks
 * cfs_cred_decide(), which answers
 *   CFS_CRED_USE     a credential is usable: use() copied what the request needs (under
 *                    the lock, so a refresh cannot free it meanwhile);
 *   CFS_CRED_FETCH   this op fetches, holding the claim: nothing usable and no op fetching,
 *                    or an early refresh (the credential is within its refresh margin: the
 *                    other ops go on using it meanwhile); also the retry of its own fetch;
 *   CFS_CRED_WAIT    nothing usable and another op is fetching: build() returns
 *                    CFS_BUILD_WAIT and the engine parks the op until that fetch ends (the
 *                    cache then calls its wake hook, cfs_engine_release_parked);
 *   CFS_CRED_FAILED  the op failed (cfs_op_fail, op->where): a fetch failed a moment ago
 *                    and that failure is remembered (failure_memory) so that a batch does
 *                    not fetch once per key, or this op fetched max_fetches times already.
 * The op that fetched reports cfs_cred_fetched() or cfs_cred_fetch_failed(); a claim held
 * by an op that completes otherwise (cancelled, retries spent on the wire: the engine
 * tells the backend nothing) is given up by cfs_cred_release() when its state is freed,
 * and after claim_timeout in any case.
 *
 * Times: a credential of lifetime L (as received) is refreshed, by one op, from
 * min(refresh_margin, L/2) before it expires and no longer used from min(expiry_margin,
 * L/10) before; after a failed early refresh the current one is used and no refresh is
 * tried for refresh_backoff seconds. Monotonic clock.
 *
 * Thread-safe (one lock per cache). In a forked child the first lock forgets the claim of
 * the parent's fetching thread and its parked ops; the credential itself stays. Every
 * secret is wiped (util/secret.h) when it is replaced or freed. */
#ifndef CFS_CRED_CACHE_H
#define CFS_CRED_CACHE_H
#include <math.h>

#include "core/backend.h"
#include "core/fork_mutex.h"
#include "core/op.h"

#define CFS_CRED_DERIVED_LEN 32
/* The lifetime of a credential that does not expire. */
#define CFS_CRED_FOREVER INFINITY

/* One credential. */
typedef struct cfs_cred {
    char *id;               /* not secret (an access key id), or NULL */
    char *secret;           /* secret: a secret key, an access token */
    char *token;            /* secret: a session token, or NULL */
    /* a value derived from the secret, cached with it (S3: the day's signing key), and
     * what it was derived for ("": nothing yet); wiped with it */
    unsigned char derived[CFS_CRED_DERIVED_LEN];
    char derived_tag[16];
} cfs_cred;

/* Wipe and free the fields, and zero the struct. */
void cfs_cred_clear(cfs_cred *c);

typedef struct cfs_cred_policy {
    double refresh_margin;  /* seconds before expiry an early refresh starts (at most L/2) */
    double expiry_margin;   /* seconds before expiry it is no longer used (at most L/10) */
    double claim_timeout;   /* a fetch not over after this long is given up */
    double refresh_backoff; /* after a failed early refresh, seconds without another */
    double failure_memory;  /* after a failed fetch, seconds its failure answers for it */
    int max_fetches;        /* fetches one op may make */
} cfs_cred_policy;

typedef struct cfs_cred_cache {
    cfs_cred_policy policy;
    char *where;            /* where it is fetched from, for messages (no secret) */
    void (*wake)(void);     /* releases the ops parked on CFS_CRED_WAIT */
    double (*clock)(void);  /* monotonic seconds (tests may set their own) */
    cfs_fork_mutex lock;    /* guards everything below */
    cfs_cred cred;
    int have;
    double expires_at, refresh_at, usable_until;
    unsigned long gen;      /* bumped with each credential stored */
    unsigned long claim;    /* the claim in force (its number), 0 if none */
    unsigned long claims;   /* claims made, to number them */
    double claimed_at;
    double refresh_not_before;
    double failed_until;    /* the failure below answers until then */
    cfs_status fail_status;
    char fail_message[sizeof(((cfs_op *)0)->message)];
    char *fail_where;
    int waiting;            /* ops were told CFS_CRED_WAIT since the last wake */
} cfs_cred_cache;

/* What one op holds of a cache (in its backend state, zeroed to start). */
typedef struct cfs_cred_ticket {
    cfs_cred_cache *cache;  /* while it holds a claim */
    cfs_op *op;             /* the op holding it */
    unsigned long claim;    /* that claim's number, 0 if none */
    int fetched;            /* stored a credential: use it on the next request */
    int fetches;
    unsigned long gen;      /* generation of the credential its last request carried */
} cfs_cred_ticket;

enum { CFS_CRED_USE, CFS_CRED_FETCH, CFS_CRED_WAIT, CFS_CRED_FAILED };

/* `where` is copied; wake may be NULL. Returns 0, or -1 (out of memory, no mutex). */
int cfs_cred_cache_init(cfs_cred_cache *c, const cfs_cred_policy *policy, const char *where,
                        void (*wake)(void));
void cfs_cred_cache_destroy(cfs_cred_cache *c);
/* Store a credential given up front (options), moved from *cred (left zeroed). lifetime:
 * seconds from now, or CFS_CRED_FOREVER. */
void cfs_cred_cache_seed(cfs_cred_cache *c, cfs_cred *cred, double lifetime);

/* What the op's next request does (above). use(cred, ctx) runs under the lock and returns
 * 0, or -1 after cfs_op_fail(op, ...). */
int cfs_cred_decide(cfs_cred_cache *c, cfs_cred_ticket *t, cfs_op *op,
                    int (*use)(cfs_cred *cred, void *ctx), void *ctx);

/* The op's fetch brought a credential (moved from *cred) valid for `lifetime` seconds (or
 * CFS_CRED_FOREVER): stored, the claim released, the parked ops woken; the op uses it next.
 * Returns CFS_CRED_USE, or, when it has expired already (lifetime <= 0), what
 * cfs_cred_fetch_failed() returns for that failure. */
int cfs_cred_fetched(cfs_cred_cache *c, cfs_cred_ticket *t, cfs_cred *cred, double lifetime,
                     cfs_op *op);

/* The op's fetch failed, op->status, message and where saying how. retry: it may be tried
 * again (a transient failure with attempts left). Returns
 *   CFS_CRED_FETCH   retry the fetch (the claim stays): nothing usable and retry;
 *   CFS_CRED_USE     an early refresh failed, the current credential is still usable: the
 *                    op's failure is cleared and it goes on with it;
 *   CFS_CRED_FAILED  the op fails so; the failure is remembered; the parked ops woken. */
int cfs_cred_fetch_failed(cfs_cred_cache *c, cfs_cred_ticket *t, cfs_op *op, int retry);

/* The op goes away (its state is freed) still holding a claim: it completed without a
 * word on its fetch (retries spent on the wire, cancelled). The claim is given up and the
 * parked ops woken; unless it was cancelled, its failure (op->status and message, still
 * there while the op is freed) is remembered as cfs_cred_fetch_failed() would. */
void cfs_cred_release(cfs_cred_ticket *t);

/* The server refused the credential the op's last request carried: forget it, unless it
 * was replaced already, so that the next request fetches another. */
void cfs_cred_invalidate(cfs_cred_cache *c, const cfs_cred_ticket *t);

/* Whether the op holds the claim (its current request is a fetch). */
int cfs_cred_fetching(const cfs_cred_ticket *t);

/* What build() returns when the op's next request is not its own, after a decision other
 * than CFS_CRED_USE: send its fetch (built), wait (parked), or fail. */
static inline int cfs_cred_build_answer(int decided)
{
    return decided == CFS_CRED_FETCH  ? CFS_BUILD_SEND
           : decided == CFS_CRED_WAIT ? CFS_BUILD_WAIT
                                      : CFS_BUILD_FAILED;
}

/* What finish() answers after cfs_cred_fetched() or cfs_cred_fetch_failed(): retry the
 * fetch, fail, or go on to the op's own request as `step` (its retry budget starts over). */
static inline cfs_next cfs_cred_next(cfs_op *op, int outcome, int step)
{
    if (outcome == CFS_CRED_FETCH)
        return CFS_NEXT_RETRY;
    if (outcome == CFS_CRED_FAILED)
        return CFS_NEXT_DONE;
    return cfs_op_next_step(op, step);
}

#endif
