/* AWS temporary credential documents (see aws_creds.h). */
#include "backends/s3/credentials.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/secret.h"

void cfs_aws_creds_clear(cfs_aws_creds *c)
{
    if (!c)
        return;
    free(c->access_key_id);
    cfs_secret_free(c->secret_access_key);
    cfs_secret_free(c->session_token);
    memset(c, 0, sizeof *c);
}

static int digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

int cfs_aws_parse_time(const char *s, int64_t *out)
{
    /* YYYY-MM-DDTHH:MM:SS[.fff][Z|+HH:MM|-HH:MM] */
    int Y, M, D, h, m, sec;
    if (!s || strlen(s) < 19 || digits(s, 4, &Y) || s[4] != '-' || digits(s + 5, 2, &M) || s[7] != '-' ||
        digits(s + 8, 2, &D) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || digits(s + 11, 2, &h) ||
        s[13] != ':' || digits(s + 14, 2, &m) || s[16] != ':' || digits(s + 17, 2, &sec))
        return -1;
    if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60)
        return -1;
    const char *p = s + 19;
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++)
            ;
    int64_t offset = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om;
        if (digits(p + 1, 2, &oh) || p[3] != ':' || digits(p + 4, 2, &om))
            return -1;
        offset = (int64_t)(oh * 3600 + om * 60) * (*p == '-' ? -1 : 1);
        p += 6;
    }
    if (*p)
        return -1;
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = Y - 1900;
    tm.tm_mon = M - 1;
    tm.tm_mday = D;
    tm.tm_hour = h;
    tm.tm_min = m;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -1;
    *out = (int64_t)t - offset;
    return 0;
}

static const char *str_field(const cJSON *root, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
    return cJSON_IsString(v) && v->valuestring[0] ? v->valuestring : NULL;
}

static int header_safe(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 0;
    return 1;
}

int cfs_aws_creds_parse(const char *json, size_t len, cfs_aws_creds *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    cJSON *root = cJSON_ParseWithLength(json ? json : "", len);
    int rc = -1;
    if (!cJSON_IsObject(root)) {
        snprintf(err, errlen, "credentials answer is not a JSON object");
        goto done;
    }
    const char *code = str_field(root, "Code");
    if (code && strcmp(code, "Success") != 0) {
        snprintf(err, errlen, "credentials answer has Code %.60s", code);
        goto done;
    }
    const char *key = str_field(root, "AccessKeyId"), *secret = str_field(root, "SecretAccessKey");
    const char *token = str_field(root, "Token");
    if (!token)
        token = str_field(root, "SessionToken");
    const char *expiration = str_field(root, "Expiration");
    if (!key || !secret) {
        snprintf(err, errlen, "credentials answer without AccessKeyId and SecretAccessKey");
        goto done;
    }
    if (!header_safe(key) || !header_safe(secret) || (token && !header_safe(token))) {
        snprintf(err, errlen, "credentials answer holds control characters");
        goto done;
    }
    if (expiration && cfs_aws_parse_time(expiration, &out->expiration) < 0) {
        snprintf(err, errlen, "credentials answer has a bad Expiration: %.40s", expiration);
        goto done;
    }
    out->access_key_id = strdup(key);
    out->secret_access_key = strdup(secret);
    out->session_token = token ? strdup(token) : NULL;
    if (!out->access_key_id || !out->secret_access_key || (token && !out->session_token)) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    rc = 0;
done:
    if (rc < 0)
        cfs_aws_creds_clear(out);
    cfs_secret_json_delete(root); /* cJSON's copies of the secrets wiped */
    return rc;
}
