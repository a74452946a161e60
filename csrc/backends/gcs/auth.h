/* Google OAuth2 for GCS: credential files, the RS256-signed JWT of a service account,
 * token request bodies and token responses. No I/O besides reading a credentials file;
 * the token requests themselves go through the engine (driver.c). */
#ifndef CFS_GCS_AUTH_H
#define CFS_GCS_AUTH_H
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "util/secret.h"

#define CFS_GCS_DEFAULT_TOKEN_URI "https://oauth2.googleapis.com/token"
#define CFS_GCS_SCOPE_READ_WRITE "https://www.googleapis.com/auth/devstorage.read_write"

typedef enum cfs_gcs_cred_kind {
    CFS_GCS_CRED_ANON,             /* no Authorization header */
    CFS_GCS_CRED_STATIC,           /* a bearer token given as an option */
    CFS_GCS_CRED_SERVICE_ACCOUNT,  /* key file: JWT bearer grant */
    CFS_GCS_CRED_AUTHORIZED_USER,  /* ADC of a user: refresh-token grant */
    CFS_GCS_CRED_METADATA,         /* the GCE/GKE metadata server */
} cfs_gcs_cred_kind;

typedef struct cfs_gcs_credentials {
    cfs_gcs_cred_kind kind;
    char *token_uri;        /* SA, user: where to POST; metadata: the token URL */
    char *client_email;     /* SA */
    char *private_key_id;   /* SA, may be NULL */
    void *pkey;             /* SA: the parsed private key (EVP_PKEY *) */
    char *client_id;        /* user */
    char *client_secret;    /* user (secret) */
    char *refresh_token;    /* user (secret) */
    char *static_token;     /* static (secret) */
} cfs_gcs_credentials;

/* Read a credentials JSON document ("type": "service_account" or "authorized_user").
 * token_uri_override (may be NULL) replaces the file's token_uri. Returns 0, or -1 with
 * a reason in err that never quotes a secret. */
int cfs_gcs_credentials_parse(const char *json, size_t len, const char *token_uri_override,
                              cfs_gcs_credentials *out, char *err, size_t errlen);
/* The same from a file. */
int cfs_gcs_credentials_load(const char *path, const char *token_uri_override,
                             cfs_gcs_credentials *out, char *err, size_t errlen);
/* Free (wiping secrets) and zero. */
void cfs_gcs_credentials_clear(cfs_gcs_credentials *c);

/* The signed assertion of a service account: base64url(header).base64url(claims).sig
 * with iss=client_email, scope, aud=token_uri, iat=now, exp=now+3600. Returns 0 or -1. */
int cfs_gcs_jwt(cfs_buf *out, const cfs_gcs_credentials *c, const char *scope, int64_t now,
                char *err, size_t errlen);

/* The application/x-www-form-urlencoded body of the token request of an SA (JWT bearer
 * grant) or a user (refresh-token grant). Returns 0 or -1 (err written). */
int cfs_gcs_token_request_body(cfs_buf *out, const cfs_gcs_credentials *c, const char *scope,
                               int64_t now, char *err, size_t errlen);

/* A token response: {"access_token": "...", "expires_in": N, "token_type": "Bearer"}.
 * *token is a fresh string; *expires_in is seconds (3600 if absent). Returns 0 or -1. */
int cfs_gcs_parse_token(const char *body, size_t len, char **token, int64_t *expires_in, char *err,
                        size_t errlen);

#endif
