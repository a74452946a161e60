/* AWS temporary credentials as the container credentials endpoint and the EC2 instance
 * metadata service (IMDS) hand them out (a JSON document), and as STS answers
 * AssumeRoleWithWebIdentity (XML); their expiry time. Pure; the requests themselves go
 * through the engine (driver.c). Tested in tests/c/backends/s3/test_credentials.c. */
#ifndef CFS_AWS_CREDS_H
#define CFS_AWS_CREDS_H
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

typedef struct cfs_aws_creds {
    char *access_key_id;
    char *secret_access_key;    /* secret */
    char *session_token;        /* secret, NULL if none */
    int64_t expiration;         /* epoch seconds, 0 if the document gave none */
} cfs_aws_creds;

/* Parse {"AccessKeyId", "SecretAccessKey", "Token", "Expiration", ["Code"]}. A "Code"
 * other than "Success" is a failure. Returns 0, or -1 with a reason in err that never
 * quotes a secret. */
int cfs_aws_creds_parse(const char *json, size_t len, cfs_aws_creds *out, char *err, size_t errlen);
/* Wipe and free the fields, and zero the struct. */
void cfs_aws_creds_clear(cfs_aws_creds *c);

/* "2026-11-25T15:00:00Z" (fractional seconds and a numeric offset allowed) to epoch
 * seconds. Returns 0 or -1. */
int cfs_aws_parse_time(const char *s, int64_t *out);

/* The form body of STS AssumeRoleWithWebIdentity (Version 2011-06-15) for a role, a session
 * name and the web identity token (a secret: wipe the body after use). Returns 0 or -1. */
int cfs_aws_web_identity_body(cfs_buf *out, const char *role_arn, const char *session_name,
                              const char *token);

/* Parse STS's answer: the <Credentials> of an AssumeRoleWithWebIdentityResponse (also of
 * AssumeRoleResponse). An <ErrorResponse> is a failure with its Code and Message in err.
 * Returns 0, or -1 with a reason in err that never quotes a secret. Nothing of the
 * document is left in freed memory. */
int cfs_aws_sts_parse(const char *xml, size_t len, cfs_aws_creds *out, char *err, size_t errlen);

#endif
