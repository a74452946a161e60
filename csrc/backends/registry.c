/* The backend registry: one line per storage protocol. */
#include <stdio.h>
#include <string.h>

#include "core/backend.h"

extern const cfs_backend_ops cfs_http_backend;
extern const cfs_backend_ops cfs_file_backend;
extern const cfs_backend_ops cfs_mem_backend;
extern const cfs_backend_ops cfs_s3_backend;
extern const cfs_backend_ops cfs_gcs_backend;

static const cfs_backend_ops *const registry[] = {
    &cfs_http_backend,
    &cfs_file_backend,
    &cfs_mem_backend,
    &cfs_s3_backend,
    &cfs_gcs_backend,
};

const cfs_backend_ops *cfs_backend_for_url(const char *url)
{
    const char *colon = strstr(url, "://");
    if (!colon)
        return &cfs_file_backend; /* a plain path */
    size_t n = (size_t)(colon - url);
    for (size_t i = 0; i < sizeof registry / sizeof registry[0]; i++)
        for (const char *const *s = registry[i]->schemes; *s; s++)
            if (strlen(*s) == n && strncmp(*s, url, n) == 0)
                return registry[i];
    return NULL;
}

void cfs_backend_schemes(char *out, size_t n)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof registry / sizeof registry[0]; i++)
        for (const char *const *s = registry[i]->schemes; *s; s++) {
            int k = snprintf(out + used, n - used, "%s%s://", used ? ", " : "", *s);
            if (k < 0 || (size_t)k >= n - used)
                return;
            used += (size_t)k;
        }
}

int cfs_backend_is_secret_option(const cfs_backend_ops *ops, const char *option)
{
    for (const char *const *p = ops->secret_options; p && *p; p++)
        if (strcmp(*p, option) == 0)
            return 1;
    return 0;
}
