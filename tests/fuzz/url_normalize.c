// libFuzzer target: store URLs as users type them (cfs_url_normalize, cfs_url_redact): the
// result is a URL with a known lower-case scheme or a path, and a message never holds the
// password of the URL it names.
// sources: csrc/core/url.c
// args: -max_len=1024
#include <ctype.h>

#include "core/url.h"

#include "fuzz.h"

static int known(const char *scheme)
{
    return !strcmp(scheme, "s3") || !strcmp(scheme, "gs") || !strcmp(scheme, "http") ||
           !strcmp(scheme, "https") || !strcmp(scheme, "file") || !strcmp(scheme, "mem");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *url = fuzz_cstr(data, size);
    char err[256] = "";
    char *out = cfs_url_normalize(url, known, err, sizeof err);
    if (out) {
        const char *sep = strstr(out, "://");
        if (sep && isalpha((unsigned char)out[0]) && out[0] != '~') {
            size_t n = (size_t)(sep - out);
            int scheme = 1;
            for (size_t i = 0; i < n; i++)
                scheme &= isalnum((unsigned char)out[i]) || out[i] == '+' || out[i] == '-' ||
                          out[i] == '.';
            if (scheme) { /* a URL: its scheme is a known one, in lower case */
                char s[32] = "";
                if (n < sizeof s)
                    memcpy(s, out, n);
                FUZZ_ASSERT(n < sizeof s && known(s));
            }
        }
        free(out);
    } else if (err[0]) {
        FUZZ_ASSERT(memchr(err, '\0', sizeof err));
    }
    char shown[128];
    cfs_url_redact(url, shown, sizeof shown);
    FUZZ_ASSERT(memchr(shown, '\0', sizeof shown));
    free(url);
    return 0;
}
