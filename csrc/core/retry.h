/* Retry policy: which failures are transient, and how long to wait before the next try.
 * Pure functions, tested directly. */
#ifndef CFS_RETRY_H
#define CFS_RETRY_H
#include <stdint.h>

typedef struct cfs_retry_policy {
    int max_attempts;       /* total tries, first included */
    double base_seconds;    /* window of the first backoff */
    double cap_seconds;     /* largest window */
} cfs_retry_policy;

#define CFS_RETRY_DEFAULT { 6, 0.1, 20.0 }

/* Is this HTTP status worth retrying? (408, 429, 5xx except 501/505) */
int cfs_retry_status_is_transient(long http_status);

/* Full-jitter exponential backoff: uniform in [0, min(cap, base * 2^(attempt-1))].
 * `attempt` counts tries already made (>= 1); `random01` is uniform in [0, 1). A server's
 * Retry-After (seconds, < 0 if none) wins when larger, bounded by the cap. */
double cfs_retry_delay(const cfs_retry_policy *p, int attempt, double random01,
                       double retry_after_seconds);

/* Parse a Retry-After header value (delta-seconds or an HTTP date). Returns seconds
 * from `now_epoch`, or -1 if unparseable. */
double cfs_retry_after_parse(const char *value, int64_t now_epoch);

#endif
