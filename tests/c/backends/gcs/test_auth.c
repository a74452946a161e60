// Unit tests of Google OAuth pieces (csrc/backends/gcs/auth.c): credential files, the RS256 JWT of a
// service account (verified here with the public half of a key made by the test), token
// request bodies and token responses.
// sources: csrc/backends/gcs/auth.c csrc/util/base64.c csrc/util/keys.c csrc/core/buf.c csrc/util/secret.c
// pkg: libcjson libcrypto
#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/base64.h"
#include "backends/gcs/auth.h"

#include "check.h"

static int streq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

/* PEM (PKCS#8) of a fresh RSA key; *key keeps the key for verification. */
static char *make_key(EVP_PKEY **key)
{
    *key = EVP_RSA_gen(2048);
    if (!*key)
        return NULL;
    BIO *bio = BIO_new(BIO_s_mem());
    char *pem = NULL;
    if (bio && PEM_write_bio_PrivateKey(bio, *key, NULL, NULL, 0, NULL, NULL) == 1) {
        char *p;
        long n = BIO_get_mem_data(bio, &p);
        pem = n >= 0 ? malloc((size_t)n + 1) : NULL;
        if (pem) {
            memcpy(pem, p, (size_t)n);
            pem[n] = '\0';
        }
    }
    BIO_free(bio);
    return pem;
}

static char *sa_json(const char *pem, const char *token_uri)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "service_account");
    cJSON_AddStringToObject(o, "private_key_id", "kid-9");
    cJSON_AddStringToObject(o, "private_key", pem);
    cJSON_AddStringToObject(o, "client_email", "sa@p.iam.gserviceaccount.com");
    if (token_uri)
        cJSON_AddStringToObject(o, "token_uri", token_uri);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static cJSON *decode_part(const char *s, size_t len)
{
    unsigned char buf[2048];
    long n = cfs_base64_decode(s, len, buf, sizeof buf - 1);
    if (n < 0)
        return NULL;
    buf[n] = '\0';
    return cJSON_Parse((char *)buf);
}

static void test_service_account(void)
{
    EVP_PKEY *key = NULL;
    char *pem = make_key(&key);
    CHECK(pem != NULL, "key generation");
    if (!pem)
        return;
    char *json = sa_json(pem, "http://127.0.0.1:1/token");
    cfs_gcs_credentials c;
    char err[256] = "";
    CHECK(cfs_gcs_credentials_parse(json, strlen(json), NULL, &c, err, sizeof err) == 0, "%s", err);
    CHECK(c.kind == CFS_GCS_CRED_SERVICE_ACCOUNT && streq(c.token_uri, "http://127.0.0.1:1/token") &&
              streq(c.client_email, "sa@p.iam.gserviceaccount.com") &&
              streq(c.private_key_id, "kid-9"),
          "fields");

    cfs_buf jwt = { 0 };
    CHECK(cfs_gcs_jwt(&jwt, &c, CFS_GCS_SCOPE_READ_WRITE, 1700000000, err, sizeof err) == 0, "%s",
          err);
    CHECK(cfs_buf_terminate(&jwt) == 0, "terminate");
    char *dot1 = jwt.data ? strchr(jwt.data, '.') : NULL;
    char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
    CHECK(dot1 && dot2 && !strchr(dot2 + 1, '.') && !strpbrk(jwt.data, "=+/"),
          "three base64url parts");
    if (dot1 && dot2) {
        cJSON *h = decode_part(jwt.data, (size_t)(dot1 - jwt.data));
        cJSON *cl = decode_part(dot1 + 1, (size_t)(dot2 - dot1 - 1));
        CHECK(h && streq(cJSON_GetStringValue(cJSON_GetObjectItem(h, "alg")), "RS256") &&
                  streq(cJSON_GetStringValue(cJSON_GetObjectItem(h, "typ")), "JWT") &&
                  streq(cJSON_GetStringValue(cJSON_GetObjectItem(h, "kid")), "kid-9"),
              "header");
        CHECK(cl &&
                  streq(cJSON_GetStringValue(cJSON_GetObjectItem(cl, "iss")),
                        "sa@p.iam.gserviceaccount.com") &&
                  streq(cJSON_GetStringValue(cJSON_GetObjectItem(cl, "aud")),
                        "http://127.0.0.1:1/token") &&
                  streq(cJSON_GetStringValue(cJSON_GetObjectItem(cl, "scope")),
                        CFS_GCS_SCOPE_READ_WRITE) &&
                  cJSON_GetNumberValue(cJSON_GetObjectItem(cl, "iat")) == 1700000000.0 &&
                  cJSON_GetNumberValue(cJSON_GetObjectItem(cl, "exp")) == 1700003600.0,
              "claims");
        cJSON_Delete(h);
        cJSON_Delete(cl);

        /* the signature verifies with the public key over "header.claims", and not over
         * anything else */
        unsigned char sig[512];
        long sig_len = cfs_base64_decode(dot2 + 1, strlen(dot2 + 1), sig, sizeof sig);
        CHECK(sig_len == 256, "signature length %ld", sig_len);
        for (int tamper = 0; tamper < 2 && sig_len > 0; tamper++) {
            EVP_MD_CTX *md = EVP_MD_CTX_new();
            if (tamper)
                jwt.data[5] ^= 1;
            int ok = md && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key) == 1 &&
                     EVP_DigestVerify(md, sig, (size_t)sig_len, (unsigned char *)jwt.data,
                                      (size_t)(dot2 - jwt.data)) == 1;
            CHECK(ok == !tamper, "verify (tampered=%d) -> %d", tamper, ok);
            if (tamper)
                jwt.data[5] ^= 1;
            EVP_MD_CTX_free(md);
        }
    }
    cfs_buf_free(&jwt);

    cfs_buf body = { 0 };
    CHECK(cfs_gcs_token_request_body(&body, &c, "s", 1700000000, err, sizeof err) == 0, "%s", err);
    static const char grant[] =
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=";
    CHECK(cfs_buf_terminate(&body) == 0 && strncmp(body.data, grant, sizeof grant - 1) == 0 &&
              strlen(body.data) > sizeof grant + 300,
          "body %s", body.data);
    cfs_buf_free(&body);
    cfs_gcs_credentials_clear(&c);

    /* override of token_uri; default when absent */
    char *json2 = sa_json(pem, NULL);
    CHECK(cfs_gcs_credentials_parse(json2, strlen(json2), NULL, &c, err, sizeof err) == 0 &&
              streq(c.token_uri, CFS_GCS_DEFAULT_TOKEN_URI),
          "default token uri");
    cfs_gcs_credentials_clear(&c);
    CHECK(cfs_gcs_credentials_parse(json2, strlen(json2), "http://x/t", &c, err, sizeof err) == 0 &&
              streq(c.token_uri, "http://x/t"),
          "override");
    cfs_gcs_credentials_clear(&c);

    /* the same through a file */
    char path[] = "/tmp/cfs-test-sa-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    if (fd >= 0) {
        CHECK(write(fd, json, strlen(json)) == (ssize_t)strlen(json), "write");
        close(fd);
        CHECK(cfs_gcs_credentials_load(path, NULL, &c, err, sizeof err) == 0 &&
                  c.kind == CFS_GCS_CRED_SERVICE_ACCOUNT,
              "load %s", err);
        cfs_gcs_credentials_clear(&c);
        unlink(path);
        CHECK(cfs_gcs_credentials_load(path, NULL, &c, err, sizeof err) == -1 &&
                  strstr(err, "cannot read"),
              "missing file: %s", err);
    }
    cJSON_free(json);
    cJSON_free(json2);
    free(pem);
    EVP_PKEY_free(key);
}

static void test_bad_credentials(void)
{
    static const char *bad[] = {
        "",
        "[]",
        "{}",
        "{\"type\":5}",
        "{\"type\":\"external_account\"}",
        "{\"type\":\"service_account\",\"client_email\":\"a\"}",
        "{\"type\":\"service_account\",\"client_email\":\"a\",\"private_key\":\"-----BEGIN PRIVATE KEY-----\\nSECRETBITS\\n-----END PRIVATE KEY-----\\n\"}",
        "{\"type\":\"authorized_user\",\"client_id\":\"c\",\"client_secret\":\"SECRETBITS\"}",
        "{\"type\":\"authorized_user\",\"client_id\":\"c\",\"client_secret\":7,\"refresh_token\":\"r\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cfs_gcs_credentials c;
        char err[256] = "";
        int rc = cfs_gcs_credentials_parse(bad[i], strlen(bad[i]), NULL, &c, err, sizeof err);
        CHECK(rc == -1 && err[0] && !strstr(err, "SECRETBITS"), "bad %zu: rc %d err %s", i, rc, err);
        CHECK(c.kind == 0 && c.token_uri == NULL && c.pkey == NULL, "cleared %zu", i);
    }
}

static void test_authorized_user(void)
{
    const char *j =
        "{\"type\":\"authorized_user\",\"client_id\":\"id.apps\",\"client_secret\":\"s&c=t\","
        "\"refresh_token\":\"1//r t\"}";
    cfs_gcs_credentials c;
    char err[256] = "";
    CHECK(cfs_gcs_credentials_parse(j, strlen(j), NULL, &c, err, sizeof err) == 0 &&
              c.kind == CFS_GCS_CRED_AUTHORIZED_USER &&
              streq(c.token_uri, CFS_GCS_DEFAULT_TOKEN_URI),
          "%s", err);
    cfs_buf body = { 0 };
    CHECK(cfs_gcs_token_request_body(&body, &c, "s", 0, err, sizeof err) == 0 &&
              cfs_buf_terminate(&body) == 0,
          "body");
    CHECK(streq(body.data, "grant_type=refresh_token&client_id=id.apps&client_secret=s%26c%3Dt"
                           "&refresh_token=1%2F%2Fr%20t"),
          "body %s", body.data);
    cfs_buf_free(&body);
    CHECK(cfs_gcs_jwt(&body, &c, "s", 0, err, sizeof err) == -1, "no JWT for a user");
    cfs_buf_free(&body);
    cfs_gcs_credentials_clear(&c);
}

static void test_token_response(void)
{
    char *tok = NULL, err[128];
    int64_t exp = 0;
    const char *ok = "{\"access_token\":\"ya29.abc\",\"expires_in\":3599,\"token_type\":\"Bearer\"}";
    CHECK(cfs_gcs_parse_token(ok, strlen(ok), &tok, &exp, err, sizeof err) == 0 &&
              streq(tok, "ya29.abc") && exp == 3599,
          "%s", err);
    free(tok);
    const char *noexp = "{\"access_token\":\"t\"}";
    CHECK(cfs_gcs_parse_token(noexp, strlen(noexp), &tok, &exp, err, sizeof err) == 0 && exp == 3600,
          "default expiry");
    free(tok);
    /* less than a second is no lifetime: it was truncated to 0, a token expired on arrival
     * (fuzzing, tests/fuzz/corpus/gcs_token/crash-expires-in-subsecond) */
    static const char *const subsecond[] = {
        "{\"access_token\":\"t\",\"expires_in\":0.5}",
        "{\"access_token\":\"ya2a\",\"expires_in\":00.1100721333,\"te\":\"Beaer\"}",
    };
    for (size_t i = 0; i < 2; i++) {
        CHECK(cfs_gcs_parse_token(subsecond[i], strlen(subsecond[i]), &tok, &exp, err,
                                  sizeof err) == 0 &&
                  exp == 3600,
              "sub-second expiry %zu: %lld", i, (long long)exp);
        free(tok);
    }
    static const char *bad[] = {
        "",
        "{}",
        "{\"access_token\":\"\"}",
        "{\"access_token\":5}",
        "{\"access_token\":\"a\\r\\nX-Evil: 1\"}",
        "{\"access_token\":\"t\",\"token_type\":\"MAC\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(cfs_gcs_parse_token(bad[i], strlen(bad[i]), &tok, &exp, err, sizeof err) == -1 &&
                  tok == NULL,
              "bad token response %zu accepted", i);
    }
}

int main(void)
{
    test_service_account();
    test_bad_credentials();
    test_authorized_user();
    test_token_response();
    printf("gcs_auth: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
