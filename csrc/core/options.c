#include "core/options.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cfs_options_add(cfs_options *o, const char *name, const char *value)
{
    if (o->len == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 8;
        cfs_option *p = realloc(o->items, cap * sizeof *p);
        if (!p)
            return -1;
        o->items = p;
        o->cap = cap;
    }
    char *n = strdup(name), *v = strdup(value);
    if (!n || !v) {
        free(n);
        free(v);
        return -1;
    }
    o->items[o->len++] = (cfs_option){ n, v, 0 };
    return 0;
}

void cfs_options_free(cfs_options *o)
{
    for (size_t i = 0; i < o->len; i++) {
        free(o->items[i].name);
        free(o->items[i].value);
    }
    free(o->items);
    o->items = NULL;
    o->len = o->cap = 0;
}

const char *cfs_options_take(cfs_options *o, const char *name)
{
    for (size_t i = 0; i < o->len; i++) {
        if (strcmp(o->items[i].name, name) == 0) {
            o->items[i].taken = 1;
            return o->items[i].value;
        }
    }
    return NULL;
}

int cfs_options_take_long(cfs_options *o, const char *name, long lo, long hi, long *value,
                          char *err, size_t errlen)
{
    const char *s = cfs_options_take(o, name);
    if (!s)
        return 0;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *s == '\0' || *end != '\0' || v < lo || v > hi) {
        snprintf(err, errlen, "option %s must be an integer from %ld to %ld, not %s", name, lo, hi,
                 s);
        return -1;
    }
    *value = v;
    return 1;
}

int cfs_options_take_double(cfs_options *o, const char *name, double lo, double hi, double *value,
                            char *err, size_t errlen)
{
    const char *s = cfs_options_take(o, name);
    if (!s)
        return 0;
    char *end;
    double v = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || !isfinite(v) || v < lo || v > hi) {
        snprintf(err, errlen, "option %s must be a number from %g to %g, not %s", name, lo, hi, s);
        return -1;
    }
    *value = v;
    return 1;
}

int cfs_options_take_bool(cfs_options *o, const char *name, int *value, char *err, size_t errlen)
{
    const char *s = cfs_options_take(o, name);
    if (!s)
        return 0;
    if (strcmp(s, "1") == 0 || strcmp(s, "true") == 0) {
        *value = 1;
        return 1;
    }
    if (strcmp(s, "0") == 0 || strcmp(s, "false") == 0) {
        *value = 0;
        return 1;
    }
    snprintf(err, errlen, "option %s must be True or False, not %s", name, s);
    return -1;
}

const char *cfs_options_unknown(const cfs_options *o)
{
    for (size_t i = 0; i < o->len; i++)
        if (!o->items[i].taken)
            return o->items[i].name;
    return NULL;
}
