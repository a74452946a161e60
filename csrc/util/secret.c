#include "util/secret.h"

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cfs_secret_wipe(void *p, size_t n)
{
    if (p && n)
        OPENSSL_cleanse(p, n);
}

void cfs_secret_free(char *s)
{
    if (s) {
        cfs_secret_wipe(s, strlen(s));
        free(s);
    }
}

void cfs_secret_buf_free(cfs_buf *b)
{
    cfs_secret_wipe(b->data, b->cap);
    cfs_buf_free(b);
}

static void wipe_json(cJSON *item)
{
    for (; item; item = item->next) {
        if (item->valuestring && !(item->type & cJSON_IsReference))
            cfs_secret_wipe(item->valuestring, strlen(item->valuestring));
        if (item->string && !(item->type & cJSON_StringIsConst))
            cfs_secret_wipe(item->string, strlen(item->string));
        wipe_json(item->child);
    }
}

void cfs_secret_json_delete(cJSON *root)
{
    wipe_json(root);
    cJSON_Delete(root);
}

char *cfs_secret_read_file(const char *path, size_t max)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(max + 2);
    size_t n = buf ? fread(buf, 1, max + 1, f) : 0;
    fclose(f);
    if (!buf)
        return NULL;
    buf[n] = '\0';
    int ok = n <= max;
    while (n &&
           (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        buf[--n] = '\0';
    for (size_t i = 0; ok && i < n; i++)
        if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f)
            ok = 0;
    char *out = ok && n ? strdup(buf) : NULL;
    cfs_secret_wipe(buf, max + 2);
    free(buf);
    return out;
}
