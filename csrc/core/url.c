/* Store URLs made canonical (see url.h). */
#include "core/url.h"

#include <ctype.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void cfs_url_redact(const char *url, char *out, size_t outlen)
{
    const char *auth = strstr(url, "://");
    const char *at = NULL, *colon = NULL;
    if (auth) {
        auth += 3;
        size_t host_end = strcspn(auth, "/?#");
        for (const char *p = auth; p < auth + host_end; p++)
            if (*p == '@')
                at = p; /* the last '@' ends the userinfo */
        if (at)
            colon = memchr(auth, ':', (size_t)(at - auth));
    }
    if (!colon)
        snprintf(out, outlen, "%s", url);
    else
        snprintf(out, outlen, "%.*s***%s", (int)(colon + 1 - url), url, at);
}

/* The length of a "scheme:" prefix (without the ':'), 0 if `s` does not start with one. */
static size_t scheme_length(const char *s)
{
    if (!isalpha((unsigned char)s[0]))
        return 0;
    size_t i = 1;
    while (isalnum((unsigned char)s[i]) || s[i] == '+' || s[i] == '-' || s[i] == '.')
        i++;
    return s[i] == ':' ? i : 0;
}

static char *concat(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    char *out = malloc(na + nb + 1);
    if (out) {
        memcpy(out, a, na);
        memcpy(out + na, b, nb + 1);
    }
    return out;
}

/* "~" or "~user" at the start of a path, as os.path.expanduser: $HOME for "~" (else the
 * password database), the user's home for "~user"; unchanged when it cannot be found. */
static char *expand_user(const char *path)
{
    size_t name_len = strcspn(path + 1, "/");
    char name[256];
    const char *home = NULL;
    struct passwd pw, *found = NULL;
    char pwbuf[4096];
    if (name_len == 0) {
        home = getenv("HOME");
        if ((!home || !*home) && getpwuid_r(getuid(), &pw, pwbuf, sizeof pwbuf, &found) == 0 &&
            found)
            home = found->pw_dir;
    } else if (name_len < sizeof name) {
        memcpy(name, path + 1, name_len);
        name[name_len] = '\0';
        if (getpwnam_r(name, &pw, pwbuf, sizeof pwbuf, &found) == 0 && found)
            home = found->pw_dir;
    }
    if (!home)
        return strdup(path);
    size_t n = strlen(home);
    while (n > 1 && home[n - 1] == '/')
        n--; /* "$HOME/" + "/x" would give "//x" */
    char *trimmed = strndup(home, n);
    char *out = trimmed ? concat(trimmed, path + 1 + name_len) : NULL;
    free(trimmed);
    return out;
}

/* file:///p, file:/p and file://localhost/p as "file:///p". */
static char *normalize_file(const char *url, const char *rest, char *err, size_t errlen)
{
    const char *path = NULL;
    if (strncmp(rest, "///", 3) == 0)
        path = rest + 2;
    else if (strncmp(rest, "//localhost/", 12) == 0)
        path = rest + 11;
    else if (rest[0] == '/' && rest[1] != '/')
        path = rest;
    if (!path) {
        char shown[512];
        cfs_url_redact(url, shown, sizeof shown);
        snprintf(err, errlen,
                 "malformed file URL %s: expected file:///absolute/path, file:/absolute/path "
                 "or a plain path",
                 shown);
        return NULL;
    }
    return concat("file://", path);
}

char *cfs_url_normalize(const char *url, cfs_scheme_known_fn known, char *err, size_t errlen)
{
    char shown[512];
    if (!url[0]) {
        snprintf(err, errlen, "empty URL");
        return NULL;
    }
    size_t n = scheme_length(url);
    if (n == 0)
        return url[0] == '~' ? expand_user(url) : strdup(url);
    char scheme[32];
    cfs_url_redact(url, shown, sizeof shown);
    if (n >= sizeof scheme) {
        snprintf(err, errlen, "unsupported URL scheme in %s", shown);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        scheme[i] = (char)tolower((unsigned char)url[i]);
    scheme[n] = '\0';
    const char *rest = url + n + 1;
    if (!known(scheme)) {
        snprintf(err, errlen, "unsupported URL scheme %s: in %s", scheme, shown);
        return NULL;
    }
    if (strcmp(scheme, "file") == 0)
        return normalize_file(url, rest, err, errlen);
    if (strncmp(rest, "//", 2) != 0) {
        snprintf(err, errlen, "malformed URL %s: expected %s://...", shown, scheme);
        return NULL;
    }
    char *out = strdup(url);
    if (out)
        memcpy(out, scheme, n); /* the scheme in lower case, the rest as given */
    return out;
}
