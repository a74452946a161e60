/* The backend registry: one line per storage protocol. A backend lives in its own file
 * or folder under csrc/backends/ and defines `const cfs_backend_ops cfs_<name>_backend`;
 * registering it is one X(<name>) line below (tests/test_layout.py checks that a new
 * backend needs nothing more). */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "core/backend.h"

#define CFS_BACKENDS(X) \
    X(http)             \
    X(file)             \
    X(mem)              \
    X(s3)               \
    X(gcs)              \
    /* a new backend: one X(name) line above this one */

#define DECLARE(name) extern const cfs_backend_ops cfs_##name##_backend;
CFS_BACKENDS(DECLARE)
#undef DECLARE

#define ENTRY(name) &cfs_##name##_backend,
static const cfs_backend_ops *const registry[] = { CFS_BACKENDS(ENTRY) };
#undef ENTRY

const cfs_backend_ops *cfs_backend_for_url(const char *url)
{
    /* a scheme is a letter, then letters, digits, '+', '-', '.' (RFC 3986) */
    size_t n = 0;
    while (isalnum((unsigned char)url[n]) ||
           (n && (url[n] == '+' || url[n] == '-' || url[n] == '.')))
        n++;
    if (n == 0 || !isalpha((unsigned char)url[0]) || strncmp(url + n, "://", 3) != 0)
        return &cfs_file_backend; /* a plain path */
    for (size_t i = 0; i < sizeof registry / sizeof registry[0]; i++)
        for (const char *const *s = registry[i]->schemes; *s; s++)
            if (strlen(*s) == n && strncmp(*s, url, n) == 0)
                return registry[i];
    return NULL;
}

int cfs_backend_scheme_known(const char *scheme)
{
    for (size_t i = 0; i < sizeof registry / sizeof registry[0]; i++)
        for (const char *const *s = registry[i]->schemes; *s; s++)
            if (strcmp(*s, scheme) == 0)
                return 1;
    return 0;
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
