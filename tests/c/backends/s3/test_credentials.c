// Unit tests of the AWS temporary-credential documents (csrc/backends/s3/credentials.c): the
// JSON of the container endpoint and IMDS, STS's XML answer and its request body.
// sources: csrc/backends/s3/credentials.c csrc/util/secret.c csrc/util/keys.c csrc/core/buf.c
// pkg: libcjson libcrypto expat
#include <stdio.h>
#include <string.h>

#include "backends/s3/credentials.h"

#include "check.h"

#define STREQ(a, b) ((a) && (b) && strcmp((a), (b)) == 0)

/* Each document is refused, with a reason that quotes no secret, leaving nothing behind. */
static void refused(int (*parse)(const char *, size_t, cfs_aws_creds *, char *, size_t),
                    const char *const *docs, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++) {
        cfs_aws_creds c;
        char err[200] = "";
        CHECK(parse(docs[i], strlen(docs[i]), &c, err, sizeof err) == -1, "%s %zu accepted", what,
              i);
        CHECK(err[0] && !strstr(err, "s\r\n"), "%s %zu: message", what, i);
        CHECK(c.access_key_id == NULL && c.secret_access_key == NULL, "%s %zu: not cleared", what,
              i);
    }
}

int main(void)
{
    int64_t t;
    CHECK(cfs_aws_parse_time("2015-08-30T12:36:00Z", &t) == 0 && t == 1440938160, "basic %lld",
          (long long)t);
    CHECK(cfs_aws_parse_time("2015-08-30T12:36:00.123Z", &t) == 0 && t == 1440938160, "fraction");
    CHECK(cfs_aws_parse_time("2015-08-30T14:36:00+02:00", &t) == 0 && t == 1440938160, "offset +");
    CHECK(cfs_aws_parse_time("2015-08-30T10:36:00-02:00", &t) == 0 && t == 1440938160, "offset -");
    CHECK(cfs_aws_parse_time("2015-08-30T12:36:00", &t) == 0 && t == 1440938160, "no zone: UTC");
    const char *bad_times[] = { "",
                                "2015-08-30",
                                "2015-13-30T12:36:00Z",
                                "2015-08-30T12:36:00Q",
                                "2015-08-30T12:36:00Z trailing",
                                "20150830T123600Z",
                                "2015-08-30T25:00:00Z" };
    for (size_t i = 0; i < sizeof bad_times / sizeof bad_times[0]; i++)
        CHECK(cfs_aws_parse_time(bad_times[i], &t) == -1, "bad time %zu accepted", i);

    cfs_aws_creds c;
    char err[200] = "";
    const char *imds =
        "{\"Code\": \"Success\", \"LastUpdated\": \"2026-11-25T12:00:00Z\", \"Type\": \"AWS-HMAC\","
        " \"AccessKeyId\": \"ASIAEXAMPLE\", \"SecretAccessKey\": \"sec/ret+\","
        " \"Token\": \"tok==\", \"Expiration\": \"2015-08-30T12:36:00Z\"}";
    CHECK(cfs_aws_creds_parse(imds, strlen(imds), &c, err, sizeof err) == 0, "imds: %s", err);
    CHECK(STREQ(c.access_key_id, "ASIAEXAMPLE") && STREQ(c.secret_access_key, "sec/ret+") &&
              STREQ(c.session_token, "tok==") && c.expiration == 1440938160,
          "imds fields");
    cfs_aws_creds_clear(&c);
    CHECK(c.access_key_id == NULL && c.secret_access_key == NULL, "cleared");

    const char *ecs =
        "{\"AccessKeyId\":\"AKID\",\"SecretAccessKey\":\"s\",\"Token\":\"t\",\"RoleArn\":\"x\"}";
    CHECK(cfs_aws_creds_parse(ecs, strlen(ecs), &c, err, sizeof err) == 0 && c.expiration == 0,
          "no expiration");
    cfs_aws_creds_clear(&c);
    const char *process =
        "{\"Version\":1,\"AccessKeyId\":\"AKID\",\"SecretAccessKey\":\"s\",\"SessionToken\":\"st\"}";
    CHECK(cfs_aws_creds_parse(process, strlen(process), &c, err, sizeof err) == 0 &&
              STREQ(c.session_token, "st"),
          "SessionToken");
    cfs_aws_creds_clear(&c);

    const char *bad[] = {
        "",
        "[]",
        "not json",
        "{\"AccessKeyId\":\"A\"}",
        "{\"Code\":\"Failure\",\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"s\"}",
        "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"s\",\"Expiration\":\"tomorrow\"}",
        "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"s\\r\\nX-Injected: 1\"}",
        "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"s\",\"Token\":\"\\n\"}",
        "{\"AccessKeyId\":5,\"SecretAccessKey\":\"s\"}",
    };
    refused(cfs_aws_creds_parse, bad, sizeof bad / sizeof bad[0], "bad");

    /* STS AssumeRoleWithWebIdentity, as AWS documents the answer */
    const char *sts =
        "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n"
        "  <AssumeRoleWithWebIdentityResult>\n"
        "    <SubjectFromWebIdentityToken>amzn1.account.AF6RHO7KZU5XRVQJGXK6HB56KR2A</SubjectFromWebIdentityToken>\n"
        "    <Audience>client.5498841531868486423.1548@apps.example.com</Audience>\n"
        "    <AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/FederatedWebIdentityRole/app1</Arn>\n"
        "      <AssumedRoleId>AROACLKWSDQRAOEXAMPLE:app1</AssumedRoleId></AssumedRoleUser>\n"
        "    <Credentials>\n"
        "      <SessionToken>AQoDYXdzEE0a8ANXXXXXXXXNO1ewxE5TijQyp+IEXAMPLE</SessionToken>\n"
        "      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>\n"
        "      <Expiration>2015-08-30T12:36:00Z</Expiration>\n"
        "      <AccessKeyId>ASgeIAIOSFODNN7EXAMPLE</AccessKeyId>\n"
        "    </Credentials>\n"
        "    <SourceIdentity>SourceIdentityValue</SourceIdentity>\n"
        "    <Provider>www.amazon.com</Provider>\n"
        "  </AssumeRoleWithWebIdentityResult>\n"
        "  <ResponseMetadata><RequestId>ad4156e9-bce1-11e2-82e6-6b6efEXAMPLE</RequestId></ResponseMetadata>\n"
        "</AssumeRoleWithWebIdentityResponse>\n";
    CHECK(cfs_aws_sts_parse(sts, strlen(sts), &c, err, sizeof err) == 0, "sts: %s", err);
    CHECK(STREQ(c.access_key_id, "ASgeIAIOSFODNN7EXAMPLE") &&
              STREQ(c.secret_access_key, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY") &&
              STREQ(c.session_token, "AQoDYXdzEE0a8ANXXXXXXXXNO1ewxE5TijQyp+IEXAMPLE") &&
              c.expiration == 1440938160,
          "sts fields");
    cfs_aws_creds_clear(&c);

    const char *sts_error =
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>"
        "<Code>InvalidIdentityToken</Code><Message>Couldn't retrieve verification key</Message></Error>"
        "<RequestId>x</RequestId></ErrorResponse>";
    CHECK(cfs_aws_sts_parse(sts_error, strlen(sts_error), &c, err, sizeof err) == -1 &&
              strstr(err, "InvalidIdentityToken") && strstr(err, "verification key"),
          "sts error: %s", err);
    const char *sts_bad[] = {
        "",
        "not xml",
        "<AssumeRoleWithWebIdentityResponse/>",
        "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>"
        "<AccessKeyId>A</AccessKeyId></Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>",
        "<Other><AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>A</AccessKeyId>"
        "<SecretAccessKey>s</SecretAccessKey></Credentials></AssumeRoleWithWebIdentityResult></Other>",
        "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>"
        "<AccessKeyId>A</AccessKeyId><SecretAccessKey>s&#13;&#10;X: 1</SecretAccessKey></Credentials>"
        "</AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>",
        "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>"
        "<AccessKeyId>A</AccessKeyId><SecretAccessKey>s</SecretAccessKey><Expiration>soon</Expiration>"
        "</Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>",
    };
    refused(cfs_aws_sts_parse, sts_bad, sizeof sts_bad / sizeof sts_bad[0], "sts bad");

    cfs_buf body = { 0 };
    CHECK(cfs_aws_web_identity_body(&body, "arn:aws:iam::123456789012:role/r", "my session",
                                    "ey.J+/=") == 0 &&
              STREQ(body.data, "Action=AssumeRoleWithWebIdentity&Version=2011-06-15"
                               "&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fr"
                               "&RoleSessionName=my%20session&WebIdentityToken=ey.J%2B%2F%3D"),
          "web identity body: %s", body.data);
    cfs_buf_free(&body);

    printf("aws_creds: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
