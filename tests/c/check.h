/* The one assertion macro of the C unit tests: count checks, report each failure with its
 * place, keep going. main() ends with CHECK_REPORT(). */
#ifndef CFS_TEST_CHECK_H
#define CFS_TEST_CHECK_H
#include <stdio.h>

static int failures = 0, checks = 0;

#define CHECK(cond, ...)                                         \
    do {                                                         \
        checks++;                                                \
        if (!(cond)) {                                           \
            failures++;                                          \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                        \
            fprintf(stderr, "\n");                               \
        }                                                        \
    } while (0)

#endif
