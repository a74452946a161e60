/* Google OAuth2: credential files, RS256 JWTs with OpenSSL, token requests and responses. */
#include "backends/gcs/auth.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/base64.h"
#include "util/keys.h"

#define CREDENTIALS_MAX_BYTES (1 << 20)

void cfs_gcs_credentials_clear(cfs_gcs_credentials *c)
{
    free(c->token_uri);
    free(c->client_email);
    free(c->private_key_id);
    EVP_PKEY_free(c->pkey);
    free(c->client_id);
    cfs_secret_free(c->client_secret);
    cfs_secret_free(c->refresh_token);
    cfs_secret_free(c->static_token);
    memset(c, 0, sizeof *c);
}

/* A copy of the string member `name`, NULL if absent; -1 if present but not a string or
 * out of memory. */
static int take_string(const cJSON *root, const char *name, char **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
    *out = NULL;
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsString(v))
        return -1;
    *out = strdup(v->valuestring);
    return *out ? 0 : -1;
}

static void *parse_private_key(const char *pem)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    if (!bio)
        return NULL;
    EVP_PKEY *k = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (k && EVP_PKEY_get_base_id(k) != EVP_PKEY_RSA) {
        EVP_PKEY_free(k);
        return NULL;
    }
    return k;
}

int cfs_gcs_credentials_parse(const char *json, size_t len, const char *token_uri_override,
                              cfs_gcs_credentials *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    cJSON *root = cJSON_ParseWithLength(json, len);
    char *type = NULL, *pem = NULL;
    int rc = -1;
    if (!cJSON_IsObject(root)) {
        snprintf(err, errlen, "credentials are not a JSON object");
        goto out;
    }
    if (take_string(root, "type", &type) < 0 || !type) {
        snprintf(err, errlen, "credentials have no \"type\"");
        goto out;
    }
    if (take_string(root, "token_uri", &out->token_uri) < 0)
        goto bad;
    if (strcmp(type, "service_account") == 0) {
        out->kind = CFS_GCS_CRED_SERVICE_ACCOUNT;
        if (take_string(root, "client_email", &out->client_email) < 0 ||
            take_string(root, "private_key_id", &out->private_key_id) < 0 ||
            take_string(root, "private_key", &pem) < 0)
            goto bad;
        if (!out->client_email || !pem) {
            snprintf(err, errlen, "service account credentials need client_email and private_key");
            goto out;
        }
        if (!(out->pkey = parse_private_key(pem))) {
            snprintf(err, errlen, "service account private_key is not a PEM RSA private key");
            goto out;
        }
    } else if (strcmp(type, "authorized_user") == 0) {
        out->kind = CFS_GCS_CRED_AUTHORIZED_USER;
        if (take_string(root, "client_id", &out->client_id) < 0 ||
            take_string(root, "client_secret", &out->client_secret) < 0 ||
            take_string(root, "refresh_token", &out->refresh_token) < 0)
            goto bad;
        if (!out->client_id || !out->client_secret || !out->refresh_token) {
            snprintf(err, errlen,
                     "authorized_user credentials need client_id, client_secret "
                     "and refresh_token");
            goto out;
        }
    } else {
        snprintf(err, errlen,
                 "unsupported credentials type \"%.40s\" (service_account or "
                 "authorized_user)",
                 type);
        goto out;
    }
    if (token_uri_override) {
        free(out->token_uri);
        out->token_uri = strdup(token_uri_override);
    } else if (!out->token_uri) {
        out->token_uri = strdup(CFS_GCS_DEFAULT_TOKEN_URI);
    }
    if (!out->token_uri) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    rc = 0;
    goto out;
bad:
    snprintf(err, errlen, "credentials have a malformed field (or out of memory)");
out:
    if (rc < 0)
        cfs_gcs_credentials_clear(out);
    free(type);
    cfs_secret_free(pem);
    cfs_secret_json_delete(root);
    return rc;
}

int cfs_gcs_credentials_load(const char *path, const char *token_uri_override,
                             cfs_gcs_credentials *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot read credentials file %s: %s", path, strerror(errno));
        return -1;
    }
    cfs_buf b = { 0 };
    char chunk[4096];
    size_t n;
    int rc = -1;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (b.len + n > CREDENTIALS_MAX_BYTES) {
            snprintf(err, errlen, "credentials file %s is too large", path);
            goto out;
        }
        if (cfs_buf_append(&b, chunk, n) < 0) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
    }
    if (ferror(f)) {
        snprintf(err, errlen, "cannot read credentials file %s", path);
        goto out;
    }
    char why[200];
    if (cfs_gcs_credentials_parse(b.data ? b.data : "", b.len, token_uri_override, out, why,
                                  sizeof why) < 0) {
        snprintf(err, errlen, "credentials file %s: %s", path, why);
        goto out;
    }
    rc = 0;
out:
    fclose(f);
    cfs_secret_wipe(chunk, sizeof chunk);
    cfs_secret_buf_free(&b);
    return rc;
}

static int b64url_json(cfs_buf *out, cJSON *obj)
{
    char *s = cJSON_PrintUnformatted(obj);
    if (!s)
        return -1;
    int rc = cfs_base64_encode(out, s, strlen(s), 1);
    cJSON_free(s);
    return rc;
}

int cfs_gcs_jwt(cfs_buf *out, const cfs_gcs_credentials *c, const char *scope, int64_t now,
                char *err, size_t errlen)
{
    if (c->kind != CFS_GCS_CRED_SERVICE_ACCOUNT || !c->pkey) {
        snprintf(err, errlen, "not a service account");
        return -1;
    }
    cJSON *header = cJSON_CreateObject(), *claims = cJSON_CreateObject();
    EVP_MD_CTX *md = NULL;
    unsigned char *sig = NULL;
    size_t sig_len = 0;
    int rc = -1;
    if (!header || !claims || !cJSON_AddStringToObject(header, "alg", "RS256") ||
        !cJSON_AddStringToObject(header, "typ", "JWT") ||
        (c->private_key_id && !cJSON_AddStringToObject(header, "kid", c->private_key_id)) ||
        !cJSON_AddStringToObject(claims, "iss", c->client_email) ||
        !cJSON_AddStringToObject(claims, "scope", scope) ||
        !cJSON_AddStringToObject(claims, "aud", c->token_uri) ||
        !cJSON_AddNumberToObject(claims, "iat", (double)now) ||
        !cJSON_AddNumberToObject(claims, "exp", (double)(now + 3600)))
        goto nomem;
    size_t start = out->len;
    if (b64url_json(out, header) < 0 || cfs_buf_append(out, ".", 1) < 0 ||
        b64url_json(out, claims) < 0)
        goto nomem;
    size_t signed_len = out->len - start;
    if (!(md = EVP_MD_CTX_new()))
        goto nomem;
    if (EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, c->pkey) != 1 ||
        EVP_DigestSign(md, NULL, &sig_len, (const unsigned char *)out->data + start, signed_len) !=
            1)
        goto sign_failed;
    if (!(sig = malloc(sig_len)))
        goto nomem;
    if (EVP_DigestSign(md, sig, &sig_len, (const unsigned char *)out->data + start, signed_len) != 1)
        goto sign_failed;
    if (cfs_buf_append(out, ".", 1) < 0 || cfs_base64_encode(out, sig, sig_len, 1) < 0)
        goto nomem;
    rc = 0;
    goto done;
sign_failed:
    snprintf(err, errlen, "signing the JWT with the service account key failed");
    goto done;
nomem:
    snprintf(err, errlen, "out of memory");
done:
    EVP_MD_CTX_free(md);
    free(sig);
    cJSON_Delete(header);
    cJSON_Delete(claims);
    return rc;
}

static int form_pair(cfs_buf *out, const char *name, const char *value)
{
    if (out->len && cfs_buf_append(out, "&", 1) < 0)
        return -1;
    if (cfs_buf_append_str(out, name) < 0 || cfs_buf_append(out, "=", 1) < 0)
        return -1;
    return cfs_url_encode(out, value, strlen(value), 0);
}

int cfs_gcs_token_request_body(cfs_buf *out, const cfs_gcs_credentials *c, const char *scope,
                               int64_t now, char *err, size_t errlen)
{
    if (c->kind == CFS_GCS_CRED_SERVICE_ACCOUNT) {
        cfs_buf jwt = { 0 };
        if (cfs_gcs_jwt(&jwt, c, scope, now, err, errlen) < 0 || cfs_buf_terminate(&jwt) < 0) {
            cfs_secret_buf_free(&jwt);
            return -1;
        }
        int rc = form_pair(out, "grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer") < 0 ||
                         form_pair(out, "assertion", jwt.data) < 0
                     ? -1
                     : 0;
        cfs_secret_buf_free(&jwt); /* a bearer assertion for the next hour */
        if (rc < 0)
            snprintf(err, errlen, "out of memory");
        return rc;
    }
    if (c->kind == CFS_GCS_CRED_AUTHORIZED_USER) {
        if (form_pair(out, "grant_type", "refresh_token") < 0 ||
            form_pair(out, "client_id", c->client_id) < 0 ||
            form_pair(out, "client_secret", c->client_secret) < 0 ||
            form_pair(out, "refresh_token", c->refresh_token) < 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        return 0;
    }
    snprintf(err, errlen, "these credentials have no token request");
    return -1;
}

int cfs_gcs_parse_token(const char *body, size_t len, char **token, int64_t *expires_in, char *err,
                        size_t errlen)
{
    *token = NULL;
    *expires_in = 3600;
    cJSON *root = cJSON_ParseWithLength(body ? body : "", len);
    int rc = -1;
    if (!cJSON_IsObject(root)) {
        snprintf(err, errlen, "token response is not a JSON object");
        goto out;
    }
    const cJSON *tok = cJSON_GetObjectItemCaseSensitive(root, "access_token");
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(root, "expires_in");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "token_type");
    if (!cJSON_IsString(tok) || !tok->valuestring[0]) {
        snprintf(err, errlen, "token response has no access_token");
        goto out;
    }
    if (cJSON_IsString(type) && strcasecmp(type->valuestring, "Bearer") != 0) {
        snprintf(err, errlen, "token response has token_type %.40s, not Bearer", type->valuestring);
        goto out;
    }
    for (const char *p = tok->valuestring; *p; p++) {
        if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7E) {
            snprintf(err, errlen, "access_token has characters a header cannot carry");
            goto out;
        }
    }
    if (cJSON_IsNumber(exp) && exp->valuedouble >= 1 && exp->valuedouble < 1e9)
        *expires_in = (int64_t)exp->valuedouble;
    else if (cJSON_IsString(exp) && atoll(exp->valuestring) > 0)
        *expires_in = atoll(exp->valuestring);
    if (!(*token = strdup(tok->valuestring))) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    rc = 0;
out:
    cfs_secret_json_delete(root); /* do not leave the token in freed memory */
    return rc;
}
