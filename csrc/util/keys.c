#include "util/keys.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_segments(const char *key, size_t len, int allow_trailing_slash, char *err,
                          size_t errlen)
{
    if (memchr(key, '\0', len)) {
        snprintf(err, errlen, "key contains a NUL character");
        return -1;
    }
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && key[i] != '/')
            continue;
        size_t seg = i - start;
        if (seg == 0 && !(allow_trailing_slash && i == len && len > 0)) {
            snprintf(err, errlen, "key has an empty path segment (leading, trailing or double '/')");
            return -1;
        }
        if ((seg == 1 && key[start] == '.') ||
            (seg == 2 && key[start] == '.' && key[start + 1] == '.')) {
            snprintf(err, errlen, "key has a '.' or '..' path segment");
            return -1;
        }
        start = i + 1;
    }
    return 0;
}

int cfs_key_check(const char *key, size_t len, char *err, size_t errlen)
{
    if (len == 0) {
        snprintf(err, errlen, "key is empty");
        return -1;
    }
    return check_segments(key, len, 0, err, errlen);
}

int cfs_prefix_check(const char *prefix, size_t len, char *err, size_t errlen)
{
    if (len == 0)
        return 0;
    return check_segments(prefix, len, 1, err, errlen);
}

int cfs_url_encode(cfs_buf *out, const char *s, size_t len, int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    if (cfs_buf_reserve(out, len * 3 + 1) < 0)
        return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/')) {
            out->data[out->len++] = (char)c;
        } else {
            out->data[out->len++] = '%';
            out->data[out->len++] = hex[c >> 4];
            out->data[out->len++] = hex[c & 15];
        }
    }
    out->data[out->len] = '\0';
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int cfs_url_decode(cfs_buf *out, const char *s, size_t len, int plus_is_space)
{
    if (cfs_buf_reserve(out, len + 1) < 0)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '%') {
            out->data[out->len++] = plus_is_space && s[i] == '+' ? ' ' : s[i];
            continue;
        }
        if (i + 2 >= len)
            return -1;
        int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
        if (hi < 0 || lo < 0)
            return -1;
        out->data[out->len++] = (char)(hi * 16 + lo);
        i += 2;
    }
    out->data[out->len] = '\0';
    return 0;
}

char *cfs_path_join(const char *base, const char *key)
{
    size_t bl = strlen(base), kl = strlen(key);
    while (bl > 0 && base[bl - 1] == '/')
        bl--;
    while (kl > 0 && *key == '/') {
        key++;
        kl--;
    }
    char *p = malloc(bl + kl + 2);
    if (!p)
        return NULL;
    memcpy(p, base, bl);
    p[bl] = '/';
    memcpy(p + bl + 1, key, kl);
    p[bl + 1 + kl] = '\0';
    return p;
}
