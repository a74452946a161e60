/* What the libFuzzer targets of tests/fuzz/ share: copies of the input as a C string or
 * split in two (exactly sized, so AddressSanitizer sees a read past the end), and an
 * invariant check that aborts, which libFuzzer reports as a crash with its input.
 * Each target is one parser: `// sources:`, `// pkg:` as in tests/c, `// args:` its
 * libFuzzer flags; built and run by .ci/fuzz. */
#ifndef CFS_FUZZ_H
#define CFS_FUZZ_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_ASSERT(cond)                                                                  \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "invariant failed at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

/* An error message was written and fits its buffer. */
#define FUZZ_ASSERT_MESSAGE(err) FUZZ_ASSERT((err)[0] != '\0' && memchr((err), '\0', sizeof(err)))

/* A malloc'd NUL-terminated copy of the input (a NUL inside ends the string early, as it
 * would a header value); never NULL. */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        abort();
    memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

/* Two inputs in one: the first line (up to '\n', without it) as a C string, and the rest
 * as bytes. Both malloc'd, free them with fuzz_split_free. */
typedef struct fuzz_split {
    char *head;
    char *rest;
    size_t rest_len;
} fuzz_split;

static inline fuzz_split fuzz_split_input(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    size_t head_len = nl ? (size_t)(nl - data) : size;
    size_t skip = nl ? head_len + 1 : size;
    fuzz_split s = { fuzz_cstr(data, head_len), malloc(size - skip ? size - skip : 1), size - skip };
    if (!s.rest)
        abort();
    memcpy(s.rest, data + skip, s.rest_len);
    return s;
}

static inline void fuzz_split_free(fuzz_split *s)
{
    free(s->head);
    free(s->rest);
}

#endif
