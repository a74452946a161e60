/* The transfer engine: a lane per core (up to four), each a thread owning a libcurl multi
 * handle, plus a few worker threads for local backends and hashing. Callers on any thread submit ops; completion calls
 * op->on_done on an engine thread (which must not block: it signals a waiter or schedules
 * a future). The engine knows no protocol: it drives backend build()/finish()/execute().
 *
 * After fork() the child starts a fresh engine on first use; ops in flight in the parent
 * are not seen by the child. */
#ifndef CFS_ENGINE_H
#define CFS_ENGINE_H
#include "core/op.h"
#include "core/retry.h"

/* Per-store transfer settings and admission control. The engine counts active ops
 * against `max_active`; everything beyond waits in the limiter's own queue. */
typedef struct cfs_limiter cfs_limiter;

typedef struct cfs_transfer_config {
    int concurrency;            /* ops in flight for this store */
    cfs_retry_policy retry;
    long connect_timeout_ms;
    long stall_timeout_s;       /* abort when no byte moves for this long */
    long buffer_size;           /* CURLOPT_BUFFERSIZE */
    int http2;                  /* offer HTTP/2 over TLS and multiplex on few connections */
    /* Hedged reads (transfer.c): a GET or HEAD still unanswered (no response header) after
     * a delay gets a second request on another connection; the first answer wins and the
     * other is cancelled. Off when hedge is 0. The delay is hedge_delay seconds if > 0, else
     * the hedge_quantile of the store's recent times to the first byte; at most a
     * hedge_budget fraction of requests are hedges (a token bucket). 0: the default. */
    int hedge;
    double hedge_quantile;      /* default CFS_HEDGE_QUANTILE */
    double hedge_budget;        /* default CFS_HEDGE_BUDGET */
    double hedge_delay;         /* seconds; 0: learned */
    long long max_decoded_size; /* a content-encoded body decodes to at most this many bytes */
} cfs_transfer_config;

#define CFS_HEDGE_QUANTILE 0.95
#define CFS_HEDGE_BUDGET 0.05

#define CFS_TRANSFER_DEFAULT \
    { 64, CFS_RETRY_DEFAULT, 10000, 30, 512 * 1024, 0, 0, 0, 0, 0, 2LL << 30 }

/* Create a limiter (registers it with the engine). NULL on out-of-memory. */
cfs_limiter *cfs_limiter_new(const cfs_transfer_config *cfg);
/* Release; ops submitted against it must all have completed. */
void cfs_limiter_free(cfs_limiter *l);
const cfs_transfer_config *cfs_limiter_config(const cfs_limiter *l);
/* Bytes of the store's uploads still in progress that the service holds already (S3
 * multipart parts stored, a GCS resumable session's chunks). An upload's bytes leave the
 * count when it completes, done or failed: a caller adds the count to the bytes of the
 * objects it saw complete for a running total. Any thread. */
int64_t cfs_limiter_upload_bytes_held(const cfs_limiter *l);

/* Submit an op (op->limiter, op->backend and op->on_done set). Never blocks on I/O.
 * Returns 0, or -1 if the engine cannot start (the op is then not completed). */
int cfs_engine_submit(cfs_op *op);

/* A waiter collects completed ops of one batch; the caller waits with the GIL released.
 * Used as on_done=cfs_waiter_done, ctx=waiter. */
typedef struct cfs_waiter cfs_waiter;
cfs_waiter *cfs_waiter_new(void);
void cfs_waiter_free(cfs_waiter *w);
void cfs_waiter_done(cfs_op *op, void *waiter);
/* Wait until at least `min_done` ops have completed, or `timeout_ms` passed (< 0: no
 * limit), and return every completed op as a list linked by op->next (NULL if none).
 * Waiting for several at once spares the caller a wakeup per completion; min_done must
 * not exceed the ops still in flight. */
cfs_op *cfs_waiter_take(cfs_waiter *w, int min_done, long timeout_ms);
/* The flag for op->cancel of the ops this waiter collects. */
const atomic_int *cfs_waiter_cancel_flag(cfs_waiter *w);
/* Set that flag and tell the engine (cfs_engine_notice_cancel). */
void cfs_waiter_cancel(cfs_waiter *w);

/* Once the flag an op's `cancel` points to is set (the caller gave up: a Ctrl-C, a
 * cancelled future, results no longer wanted): have the engine give up at once what
 * leaves nothing half done: reads at any point, parts of a multipart upload (whose upload
 * is then aborted), any other op before its first request goes out or while it waits to
 * retry it. Those complete soon, with CFS_ECANCELLED; the others (a write on the wire,
 * the later steps of an upload) complete as usual. */
void cfs_engine_notice_cancel(void);

/* Count and statistics, for tests and benchmarks. */
typedef struct cfs_engine_stats {
    uint64_t requests;          /* HTTP transfers started */
    uint64_t retries;
    uint64_t connections;       /* new connections opened */
    uint64_t parked;            /* times an op was parked (CFS_BUILD_WAIT) */
    int lanes;                  /* transfer threads (0 until the engine starts) */
    uint64_t window_decreases;  /* hosts' in-flight windows halved on a 503 or 429 */
    uint64_t hedges;            /* hedge requests sent (counted in requests too) */
    uint64_t hedges_won;        /* ... whose answer was used (the first request's cancelled) */
} cfs_engine_stats;
void cfs_engine_get_stats(cfs_engine_stats *out);

#endif
