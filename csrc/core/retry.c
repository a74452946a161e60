#include "core/retry.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int cfs_retry_status_is_transient(long s)
{
    return s == 408 || s == 429 || (s >= 500 && s <= 599 && s != 501 && s != 505);
}

double cfs_retry_delay(const cfs_retry_policy *p, int attempt, double random01,
                       double retry_after_seconds)
{
    double window = p->base_seconds;
    for (int i = 1; i < attempt && window < p->cap_seconds; i++)
        window *= 2.0;
    if (window > p->cap_seconds)
        window = p->cap_seconds;
    double delay = window * random01;
    if (retry_after_seconds > delay)
        delay = retry_after_seconds > p->cap_seconds ? p->cap_seconds : retry_after_seconds;
    return delay < 0 ? 0 : delay;
}

double cfs_retry_after_parse(const char *value, int64_t now_epoch)
{
    while (*value == ' ')
        value++;
    if (isdigit((unsigned char)*value)) {
        char *end;
        double s = strtod(value, &end);
        while (*end == ' ')
            end++;
        return (*end == '\0' && isfinite(s)) ? s : -1;
    }
    /* HTTP-date, IMF-fixdate form: "Sun, 06 Nov 1994 08:49:37 GMT" */
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = strptime(value, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!end || *end != '\0')
        return -1;
    time_t when = timegm(&tm);
    double d = (double)((int64_t)when - now_epoch);
    return d < 0 ? 0 : d;
}
