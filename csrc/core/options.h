/* Options given to a store, as name/value strings; each layer takes the ones it knows
 * and whatever is left over is an unknown option (an error). */
#ifndef CFS_OPTIONS_H
#define CFS_OPTIONS_H
#include <stddef.h>

typedef struct cfs_option {
    char *name;
    char *value;
    int taken;
} cfs_option;

typedef struct cfs_options {
    cfs_option *items;
    size_t len, cap;
} cfs_options;

int cfs_options_add(cfs_options *o, const char *name, const char *value);
void cfs_options_free(cfs_options *o);
/* The value of `name` (marking it taken), or NULL if absent. */
const char *cfs_options_take(cfs_options *o, const char *name);
/* Typed takes: return 0 if absent (value untouched), 1 if set, -1 if malformed
 * (with a message in err). */
int cfs_options_take_long(cfs_options *o, const char *name, long lo, long hi, long *value,
                          char *err, size_t errlen);
int cfs_options_take_double(cfs_options *o, const char *name, double lo, double hi, double *value,
                            char *err, size_t errlen);
int cfs_options_take_bool(cfs_options *o, const char *name, int *value, char *err, size_t errlen);
/* The first option nobody took, or NULL. */
const char *cfs_options_unknown(const cfs_options *o);

#endif
