// Unit tests of the AWS temporary-credential document parser (csrc/backends/s3/credentials.c).
// sources: csrc/backends/s3/credentials.c csrc/util/secret.c csrc/core/buf.c
// pkg: libcjson libcrypto
#include <stdio.h>
#include <string.h>

#include "backends/s3/credentials.h"

#include "check.h"

#define STREQ(a, b) ((a) && (b) && strcmp((a), (b)) == 0)

int main(void)
{
    int64_t t;
    CHECK(cfs_aws_parse_time("2015-08-30T12:36:00Z", &t) == 0 && t == 1440938160, "basic %lld", (long long)t);
    CHECK(cfs_aws_parse_time("2015-08-30T12:36:00.123Z", &t) == 0 && t == 1440938160, "fraction");
    CHECK(cfs_aws_parse_time("2015-08-30T14:36:00+02:00", &t) == 0 && t == 1440938160, "offset +");
    CHECK(cfs_aws_parse_time("2015-08-30T10:36:00-02:00", &t) == 0 && t == 1440938160, "offset -");
    CHECK(cfs_aws_parse_time("2015-08-30T12:36:00", &t) == 0 && t == 1440938160, "no zone: UTC");
    const char *bad_times[] = {"", "2015-08-30", "2015-13-30T12:36:00Z", "2015-08-30T12:36:00Q",
                               "2015-08-30T12:36:00Z trailing", "20150830T123600Z", "2015-08-30T25:00:00Z"};
    for (size_t i = 0; i < sizeof bad_times / sizeof bad_times[0]; i++)
        CHECK(cfs_aws_parse_time(bad_times[i], &t) == -1, "bad time %zu accepted", i);

    cfs_aws_creds c;
    char err[200] = "";
    const char *imds = "{\"Code\": \"Success\", \"LastUpdated\": \"2026-11-25T12:00:00Z\", \"Type\": \"AWS-HMAC\","
                       " \"AccessKeyId\": \"ASIAEXAMPLE\", \"SecretAccessKey\": \"sec/ret+\","
                       " \"Token\": \"tok==\", \"Expiration\": \"2015-08-30T12:36:00Z\"}";
    CHECK(cfs_aws_creds_parse(imds, strlen(imds), &c, err, sizeof err) == 0, "imds: %s", err);
    CHECK(STREQ(c.access_key_id, "ASIAEXAMPLE") && STREQ(c.secret_access_key, "sec/ret+") &&
              STREQ(c.session_token, "tok==") && c.expiration == 1440938160,
          "imds fields");
    cfs_aws_creds_clear(&c);
    CHECK(c.access_key_id == NULL && c.secret_access_key == NULL, "cleared");

    const char *ecs = "{\"AccessKeyId\":\"AKID\",\"SecretAccessKey\":\"s\",\"Token\":\"t\",\"RoleArn\":\"x\"}";
    CHECK(cfs_aws_creds_parse(ecs, strlen(ecs), &c, err, sizeof err) == 0 && c.expiration == 0, "no expiration");
    cfs_aws_creds_clear(&c);
    const char *process = "{\"Version\":1,\"AccessKeyId\":\"AKID\",\"SecretAccessKey\":\"s\",\"SessionToken\":\"st\"}";
    CHECK(cfs_aws_creds_parse(process, strlen(process), &c, err, sizeof err) == 0 && STREQ(c.session_token, "st"),
          "SessionToken");
    cfs_aws_creds_clear(&c);

    const char *bad[] = {
        "", "[]", "not json", "{\"AccessKeyId\":\"A\"}",
        "{\"Code\":\"Failure\",\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"s\"}",
        "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"s\",\"Expiration\":\"tomorrow\"}",
        "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"s\\r\\nX-Injected: 1\"}",
        "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"s\",\"Token\":\"\\n\"}",
        "{\"AccessKeyId\":5,\"SecretAccessKey\":\"s\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        CHECK(cfs_aws_creds_parse(bad[i], strlen(bad[i]), &c, err, sizeof err) == -1, "bad %zu accepted", i);
        CHECK(err[0] && !strstr(err, "s\r\n"), "bad %zu: message", i);
        CHECK(c.access_key_id == NULL && c.secret_access_key == NULL, "bad %zu: not cleared", i);
    }
    printf("aws_creds: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
