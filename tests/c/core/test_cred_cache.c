// Unit tests of the credential cache (csrc/core/cred_cache.c): who fetches, who waits and is
// woken, early refresh and its back-off, expiry, remembered failures, claim timeout and
// release, invalidation, a forked child, and many threads at once. The clock is the test's.
// sources: csrc/core/cred_cache.c csrc/core/fork_mutex.c csrc/core/op.c csrc/core/buf.c csrc/util/secret.c
// pkg: libcrypto libcjson libcurl
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/cred_cache.h"

#include "check.h"

static double g_now = 1000.0;
static double test_clock(void)
{
    return g_now;
}

static int g_wakes;
static void count_wake(void)
{
    g_wakes++;
}

static const cfs_cred_policy POLICY = {
    .refresh_margin = 30,
    .expiry_margin = 5,
    .claim_timeout = 60,
    .refresh_backoff = 10,
    .failure_memory = 2,
    .max_fetches = 3,
};

typedef struct seen {
    char id[64];
    char secret[64];
} seen;

static int copy_cred(cfs_cred *cred, void *ctx)
{
    seen *s = ctx;
    snprintf(s->id, sizeof s->id, "%s", cred->id ? cred->id : "");
    snprintf(s->secret, sizeof s->secret, "%s", cred->secret ? cred->secret : "");
    return 0;
}

static cfs_cred make(const char *id, const char *secret)
{
    cfs_cred c;
    memset(&c, 0, sizeof c);
    c.id = strdup(id);
    c.secret = strdup(secret);
    return c;
}

typedef struct op_t {
    cfs_op op;
    cfs_cred_ticket t;
    seen s;
} op_t;

static void op_reset(op_t *o)
{
    free(o->op.where);
    memset(o, 0, sizeof *o);
}

static int decide(cfs_cred_cache *c, op_t *o)
{
    memset(&o->s, 0, sizeof o->s);
    return cfs_cred_decide(c, &o->t, &o->op, copy_cred, &o->s);
}

static void init(cfs_cred_cache *c)
{
    g_wakes = 0;
    g_now = 1000.0;
    CHECK(cfs_cred_cache_init(c, &POLICY, "http://creds.example/x", count_wake) == 0, "init");
    c->clock = test_clock;
}

static void fetched(cfs_cred_cache *c, op_t *o, const char *id, double lifetime)
{
    cfs_cred k = make(id, "s3cr3t");
    CHECK(cfs_cred_fetched(c, &o->t, &k, lifetime, &o->op) == CFS_CRED_USE, "fetched %s", id);
    CHECK(k.id == NULL && k.secret == NULL, "the credential moved into the cache");
}

static void test_cold_start_one_fetches_others_wait(void)
{
    cfs_cred_cache c;
    init(&c);
    op_t a = { 0 }, b = { 0 }, d = { 0 };
    CHECK(decide(&c, &a) == CFS_CRED_FETCH, "first op fetches");
    CHECK(cfs_cred_fetching(&a.t), "it holds the claim");
    CHECK(decide(&c, &b) == CFS_CRED_WAIT, "second waits");
    CHECK(decide(&c, &d) == CFS_CRED_WAIT, "third waits");
    CHECK(g_wakes == 0, "nobody woken yet");
    fetched(&c, &a, "K1", 100);
    CHECK(g_wakes == 1, "the waiters are woken once (%d)", g_wakes);
    CHECK(!cfs_cred_fetching(&a.t), "claim released");
    CHECK(decide(&c, &b) == CFS_CRED_USE && !strcmp(b.s.id, "K1") && !strcmp(b.s.secret, "s3cr3t"),
          "a woken waiter uses it");
    CHECK(decide(&c, &a) == CFS_CRED_USE && !strcmp(a.s.id, "K1"), "the fetcher uses it");
    fetched(&c, &d, "unclaimed", 100); /* a late answer without a claim is still stored */
    CHECK(g_wakes == 1, "no waiter, no wake");
    CHECK(decide(&c, &b) == CFS_CRED_USE && !strcmp(b.s.id, "unclaimed"), "latest stored wins");
    op_reset(&a), op_reset(&b), op_reset(&d);
    cfs_cred_cache_destroy(&c);
}

static void test_early_refresh_and_backoff(void)
{
    cfs_cred_cache c;
    init(&c);
    op_t a = { 0 }, b = { 0 };
    decide(&c, &a);
    fetched(&c, &a, "K1", 100); /* refresh from 70 s (margin 30 <= L/2), unusable from 95 s */
    decide(&c, &a);
    g_now += 69;
    CHECK(decide(&c, &b) == CFS_CRED_USE, "before the refresh point: use");
    g_now += 2;
    CHECK(decide(&c, &a) == CFS_CRED_FETCH, "past it: one op refreshes");
    CHECK(decide(&c, &b) == CFS_CRED_USE && !strcmp(b.s.id, "K1"),
          "the others keep the current one");
    cfs_op_fail(&a.op, CFS_ETRANSIENT, "HTTP 500");
    CHECK(cfs_cred_fetch_failed(&c, &a.t, &a.op, 1) == CFS_CRED_USE,
          "a failed early refresh is not retried: use the current");
    CHECK(a.op.status == CFS_OK && a.op.message[0] == '\0', "its failure is cleared");
    CHECK(decide(&c, &a) == CFS_CRED_USE && !strcmp(a.s.id, "K1"), "and it goes on with K1");
    g_now += 9;
    CHECK(decide(&c, &b) == CFS_CRED_USE && !cfs_cred_fetching(&b.t),
          "no refresh within the back-off");
    g_now += 1.5;
    CHECK(decide(&c, &b) == CFS_CRED_FETCH, "after the back-off, refresh again");
    fetched(&c, &b, "K2", 3600);
    CHECK(decide(&c, &b) == CFS_CRED_USE && !strcmp(b.s.id, "K2"), "the refreshed one");
    CHECK(decide(&c, &a) == CFS_CRED_USE && !strcmp(a.s.id, "K2"), "for everyone");
    op_reset(&a), op_reset(&b);
    cfs_cred_cache_destroy(&c);
}

static void test_short_lifetime_scales_margins(void)
{
    cfs_cred_cache c;
    init(&c);
    op_t a = { 0 };
    decide(&c, &a);
    fetched(&c, &a, "K1", 12); /* refresh from 6 s, usable until 10.8 s */
    decide(&c, &a);
    g_now += 5.9;
    CHECK(decide(&c, &a) == CFS_CRED_USE, "half the lifetime: no refresh yet");
    g_now += 0.2;
    CHECK(decide(&c, &a) == CFS_CRED_FETCH, "refresh after half of it");
    cfs_op_fail(&a.op, CFS_EAUTH, "refused");
    cfs_cred_fetch_failed(&c, &a.t, &a.op, 0);
    g_now += 4.6; /* 10.7 */
    CHECK(decide(&c, &a) == CFS_CRED_USE, "still usable at 10.7 s");
    g_now += 0.2;
    CHECK(decide(&c, &a) == CFS_CRED_FETCH, "not at 10.9 s: fetch before use");
    op_reset(&a);
    cfs_cred_cache_destroy(&c);
}

static void test_failure_remembered_then_forgotten(void)
{
    cfs_cred_cache c;
    init(&c);
    op_t a = { 0 }, b = { 0 }, d = { 0 };
    CHECK(decide(&c, &a) == CFS_CRED_FETCH, "fetch");
    CHECK(decide(&c, &b) == CFS_CRED_WAIT, "wait");
    cfs_op_fail(&a.op, CFS_ETRANSIENT, "HTTP 503");
    CHECK(cfs_cred_fetch_failed(&c, &a.t, &a.op, 1) == CFS_CRED_FETCH,
          "nothing usable: retry, claim kept");
    CHECK(decide(&c, &a) == CFS_CRED_FETCH, "its retry fetches again");
    CHECK(decide(&c, &b) == CFS_CRED_WAIT && g_wakes == 0, "the other still waits");
    cfs_op_fail(&a.op, CFS_EAUTH, "credentials from http://creds.example/x refused: HTTP 401");
    cfs_op_set_where(&a.op, "http://creds.example/x");
    CHECK(cfs_cred_fetch_failed(&c, &a.t, &a.op, 0) == CFS_CRED_FAILED,
          "nothing usable: the op fails");
    CHECK(g_wakes == 1, "the waiter is woken by the failure");
    CHECK(decide(&c, &b) == CFS_CRED_FAILED, "the woken waiter fails at once");
    CHECK(b.op.status == CFS_EAUTH && strstr(b.op.message, "HTTP 401") && b.op.where &&
              !strcmp(b.op.where, "http://creds.example/x"),
          "with the same failure: %s", b.op.message);
    g_now += 1.9;
    CHECK(decide(&c, &d) == CFS_CRED_FAILED, "within the failure memory");
    g_now += 0.2;
    CHECK(decide(&c, &d) == CFS_CRED_FETCH, "after it, fetch again");
    op_reset(&a), op_reset(&b), op_reset(&d);
    cfs_cred_cache_destroy(&c);
}

static void test_claim_timeout_release_and_max_fetches(void)
{
    cfs_cred_cache c;
    init(&c);
    op_t a = { 0 }, b = { 0 };
    CHECK(decide(&c, &a) == CFS_CRED_FETCH, "a fetches");
    g_now += 59;
    CHECK(decide(&c, &b) == CFS_CRED_WAIT, "b waits within the claim timeout");
    g_now += 2;
    CHECK(decide(&c, &b) == CFS_CRED_FETCH, "b takes over a claim past its timeout");
    fetched(&c, &a, "late", 100);
    CHECK(cfs_cred_fetching(&b.t) && c.claim == b.t.claim, "a's late answer leaves b's claim");
    cfs_cred_release(&b.t);
    CHECK(c.claim == 0 && !cfs_cred_fetching(&b.t), "released");
    op_reset(&a), op_reset(&b);

    /* an op that completes holding the claim, failed (its retries spent on the wire): its
     * failure answers for the others a while; cancelled: the next one fetches */
    cfs_cred_invalidate(&c, &(cfs_cred_ticket){ .gen = c.gen });
    g_now += 100;
    CHECK(decide(&c, &a) == CFS_CRED_FETCH, "a fetches");
    CHECK(decide(&c, &b) == CFS_CRED_WAIT, "b waits");
    cfs_op_fail(&a.op, CFS_ETRANSIENT, "Connection refused");
    g_wakes = 0;
    cfs_cred_release(&a.t);
    CHECK(g_wakes == 1 && c.claim == 0, "released, waiter woken");
    CHECK(decide(&c, &b) == CFS_CRED_FAILED && b.op.status == CFS_ETRANSIENT &&
              strstr(b.op.message, "Connection refused") && b.op.where &&
              !strcmp(b.op.where, "http://creds.example/x"),
          "its failure answers for the waiter, naming the cache's URL");
    op_reset(&a), op_reset(&b);
    g_now += 3;
    CHECK(decide(&c, &a) == CFS_CRED_FETCH, "after the failure memory, fetch");
    cfs_op_fail(&a.op, CFS_ECANCELLED, "given up");
    cfs_cred_release(&a.t);
    CHECK(decide(&c, &b) == CFS_CRED_FETCH, "a cancelled fetch is no failure: the next op fetches");
    cfs_cred_release(&b.t);
    op_reset(&a), op_reset(&b);

    /* release wakes the waiters, who then fetch themselves */
    cfs_cred_invalidate(&c, &(cfs_cred_ticket){ .gen = c.gen });
    CHECK(!c.have, "invalidated");
    g_wakes = 0;
    CHECK(decide(&c, &a) == CFS_CRED_FETCH, "fetch after invalidation");
    CHECK(decide(&c, &b) == CFS_CRED_WAIT, "waits");
    cfs_cred_release(&a.t);
    CHECK(g_wakes == 1, "a claim given up wakes the waiters");
    CHECK(decide(&c, &b) == CFS_CRED_FETCH, "and one of them fetches");
    cfs_cred_invalidate(&c, &(cfs_cred_ticket){ .gen = c.gen + 1 });
    op_reset(&a);

    /* answers that have expired already, until the op gives up */
    for (int i = 0; i < POLICY.max_fetches; i++) {
        cfs_cred k = make("old", "x");
        CHECK(cfs_cred_fetched(&c, &b.t, &k, 0, &b.op) == CFS_CRED_FAILED, "expired on arrival");
        CHECK(b.op.status == CFS_EAUTH && strstr(b.op.message, "expire at once"), "%s",
              b.op.message);
        g_now += 3; /* past the failure memory */
        int d = decide(&c, &b);
        CHECK(d == (i + 1 < POLICY.max_fetches ? CFS_CRED_FETCH : CFS_CRED_FAILED), "fetch %d: %d",
              i, d);
    }
    CHECK(strstr(b.op.message, "no usable credentials from http://creds.example/x after 3 fetches"),
          "%s", b.op.message);
    op_reset(&b);
    cfs_cred_cache_destroy(&c);
}

static void test_invalidate_only_the_current(void)
{
    cfs_cred_cache c;
    init(&c);
    op_t a = { 0 }, b = { 0 };
    decide(&c, &a);
    fetched(&c, &a, "K1", 3600);
    CHECK(decide(&c, &a) == CFS_CRED_USE, "use K1");
    cfs_cred_ticket old = a.t;
    cfs_cred k = make("K2", "y");
    cfs_cred_cache_seed(&c, &k, 3600);
    cfs_cred_invalidate(&c, &old);
    CHECK(decide(&c, &a) == CFS_CRED_USE && !strcmp(a.s.id, "K2"), "a refusal of K1 leaves K2");
    cfs_cred_invalidate(&c, &a.t);
    CHECK(decide(&c, &a) == CFS_CRED_FETCH, "a refusal of K2 drops it");
    op_reset(&a), op_reset(&b);
    cfs_cred_cache_destroy(&c);
}

static void test_forked_child_forgets_the_claim(void)
{
    cfs_cred_cache c;
    init(&c);
    op_t a = { 0 }, b = { 0 };
    CHECK(decide(&c, &a) == CFS_CRED_FETCH, "the parent's op fetches");
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int rc = decide(&c, &b) == CFS_CRED_FETCH ? 0 : 1; /* not WAIT for a thread it lacks */
        _exit(rc);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child fetches for itself");
    CHECK(decide(&c, &b) == CFS_CRED_WAIT, "the parent still waits for its own fetch");
    op_reset(&a), op_reset(&b);
    cfs_cred_cache_destroy(&c);
}

/* Many threads deciding at once: never two fetches at a time, every copy whole. */
static atomic_int g_fetching, g_max_fetching, g_torn, g_fetches;
static atomic_long g_ticks;
static double tick_clock(void)
{
    return (double)atomic_fetch_add(&g_ticks, 1) * 0.001;
}

static void *hammer(void *arg)
{
    cfs_cred_cache *c = arg;
    for (int i = 0; i < 20000; i++) {
        op_t o;
        memset(&o, 0, sizeof o);
        int d = decide(c, &o);
        if (d == CFS_CRED_FETCH) {
            int now = atomic_fetch_add(&g_fetching, 1) + 1;
            if (now > atomic_load(&g_max_fetching))
                atomic_store(&g_max_fetching, now);
            char id[32], secret[32];
            int n = atomic_fetch_add(&g_fetches, 1);
            snprintf(id, sizeof id, "K%d", n);
            snprintf(secret, sizeof secret, "S%d", n);
            cfs_cred k = make(id, secret);
            atomic_fetch_sub(&g_fetching, 1);
            cfs_cred_fetched(c, &o.t, &k, 2.0, &o.op);
        } else if (d == CFS_CRED_USE) {
            if (o.s.id[0] != 'K' || o.s.secret[0] != 'S' || strcmp(o.s.id + 1, o.s.secret + 1) != 0)
                atomic_fetch_add(&g_torn, 1);
        }
        cfs_cred_release(&o.t);
        free(o.op.where);
    }
    return NULL;
}

static void test_threads(void)
{
    cfs_cred_cache c;
    CHECK(cfs_cred_cache_init(&c, &POLICY, "http://x", NULL) == 0, "init");
    c.clock = tick_clock;
    c.policy.refresh_margin = 1.0; /* with lifetime 2 s and 1 ms a tick: a fetch every ~1000 */
    /* every decide() ticks the clock: a fetching thread descheduled while the others tick
     * 60,000 times would lose its claim by timeout (tested on its own above), not by a race */
    c.policy.claim_timeout = 1e12;
    pthread_t th[8];
    for (int i = 0; i < 8; i++)
        pthread_create(&th[i], NULL, hammer, &c);
    for (int i = 0; i < 8; i++)
        pthread_join(th[i], NULL);
    CHECK(atomic_load(&g_max_fetching) == 1, "one fetch at a time (%d)",
          atomic_load(&g_max_fetching));
    CHECK(atomic_load(&g_torn) == 0, "no torn credential (%d)", atomic_load(&g_torn));
    CHECK(atomic_load(&g_fetches) > 10, "refreshed as it aged (%d)", atomic_load(&g_fetches));
    cfs_cred_cache_destroy(&c);
}

static void test_clear_wipes(void)
{
    cfs_cred k = make("id", "secret");
    k.token = strdup("token");
    memset(k.derived, 0xAB, sizeof k.derived);
    strcpy(k.derived_tag, "20250101");
    cfs_cred_clear(&k);
    cfs_cred zero;
    memset(&zero, 0, sizeof zero);
    CHECK(memcmp(&k, &zero, sizeof k) == 0, "cleared to zeros, derived value included");
}

int main(void)
{
    test_cold_start_one_fetches_others_wait();
    test_early_refresh_and_backoff();
    test_short_lifetime_scales_margins();
    test_failure_remembered_then_forgotten();
    test_claim_timeout_release_and_max_fetches();
    test_invalidate_only_the_current();
    test_forked_child_forgets_the_claim();
    test_threads();
    test_clear_wipes();
    printf("cred_cache: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
