"""AWS configuration discovery for s3:// stores: credentials, region and endpoint, found
the way the AWS SDKs and CLI find them, and handed to the C backend as options. Nothing
here goes over the network: where credentials are fetched (a container endpoint, the
instance metadata service, STS), this module only tells the C backend where, and C fetches
them on first use and refreshes them before they expire.

    s3_backend_options(url, options) -> dict

takes the options the user gave and returns the options for the C backend: the user's
(minus ``profile``, which only this module understands) plus what was discovered. The
caller keeps the user's options for repr, equality and pickling, so discovered secrets
never land in a pickle: an unpickled store discovers again, in its own environment.

Order (the first source that has an access key wins, as in botocore):

1. options: ``access_key_id`` + ``secret_access_key`` (+ ``session_token``); ``anon=True``
   skips credentials altogether;
2. environment: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``
   (skipped when a profile is named by the ``profile`` option);
3. web identity (EKS, GitHub Actions...): ``AWS_WEB_IDENTITY_TOKEN_FILE`` and
   ``AWS_ROLE_ARN`` (+ ``AWS_ROLE_SESSION_NAME``), also skipped when a profile is named,
   else the profile's ``web_identity_token_file`` and ``role_arn`` (+ ``role_session_name``):
   C calls STS AssumeRoleWithWebIdentity with the token the file holds at each fetch (at
   ``AWS_ENDPOINT_URL_STS``, ``AWS_ENDPOINT_URL``, the profile's ``sts = endpoint_url`` or
   ``endpoint_url``, else https://sts.REGION.amazonaws.com);
4. the profile (option ``profile``, else ``AWS_PROFILE``, ``AWS_DEFAULT_PROFILE``,
   ``default``) in the shared credentials file (``AWS_SHARED_CREDENTIALS_FILE``, default
   ``~/.aws/credentials``), then in the config file (``AWS_CONFIG_FILE``, default
   ``~/.aws/config``, section ``[profile NAME]`` or ``[default]``), including its
   ``credential_process``, which runs here: it is the user's own command, run once when
   the store opens (its keys are not refreshed);
5. the container credentials endpoint (``AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`` on
   169.254.170.2, or ``AWS_CONTAINER_CREDENTIALS_FULL_URI``, with
   ``AWS_CONTAINER_AUTHORIZATION_TOKEN`` or ``AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE``, the
   file read by C at each fetch);
6. the EC2 instance metadata service with the IMDSv2 token flow
   (``AWS_EC2_METADATA_SERVICE_ENDPOINT``, default http://169.254.169.254; off with
   ``AWS_EC2_METADATA_DISABLED=true``). Not probed here: a store made off EC2 with no other
   credentials fails on its first request, naming the metadata service.

For 3, 5 and 6 the C backend gets options saying where (``credential_source`` =
``web_identity``, ``container`` or ``imds``; ``credential_url``; ``credential_token``,
``credential_token_file``; ``credential_role_arn``, ``credential_role_session_name``) and
fetches the credentials itself on first use: a failure is an ``AuthenticationError`` (or
``TransientError``) of that operation naming the URL it went to, never a secret. Options
that already say where (``credential_source``) are left as they are.

Region: option ``region``, ``AWS_REGION``, ``AWS_DEFAULT_REGION``, the profile's
``region``, else us-east-1 (the C default). Endpoint: option ``endpoint_url``,
``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``, the profile's ``s3 = endpoint_url`` or
``endpoint_url`` (all but the option are ignored with
``AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true``). The profile's ``s3 = addressing_style``
applies when the option is not given.
"""
from __future__ import annotations

import configparser
import json
import os
import shlex
import subprocess

from .errors import OptionError

_CONTAINER_HOST = "http://169.254.170.2"
_IMDS_DEFAULT = "http://169.254.169.254"

__all__ = ["s3_backend_options", "find_credentials", "Credentials"]


class Credentials(dict):
    """access_key_id, secret_access_key, session_token (optional), or ``_fetch``: the options
    telling C where to fetch them; and where they came from (``source``, for messages; never
    the secret)."""

    @property
    def source(self):
        return self.get("_source", "")


def _truthy(value) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def _env(name, environ):
    v = environ.get(name)
    return v if v else None


# --------------------------------------------------------------------------- files

def _read_ini(path):
    parser = configparser.RawConfigParser(strict=False, default_section="\x00none")
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except FileNotFoundError:
        return None
    except (OSError, configparser.Error, UnicodeDecodeError) as exc:
        raise OptionError(f"cannot read AWS configuration file {path}: {exc}") from None
    return parser


def _nested(value):
    """The sub-settings of a nested value such as ``s3 =\\n  endpoint_url = ...``."""
    out = {}
    for line in (value or "").splitlines():
        if "=" in line:
            k, _, v = line.partition("=")
            out[k.strip().lower()] = v.strip()
    return out


def _profile_sections(profile, environ):
    """(credentials-file section, config-file section) for a profile, each a dict or None."""
    home = os.path.expanduser("~")
    cred_path = _env("AWS_SHARED_CREDENTIALS_FILE", environ) or os.path.join(home, ".aws", "credentials")
    conf_path = _env("AWS_CONFIG_FILE", environ) or os.path.join(home, ".aws", "config")
    cred_path = os.path.expanduser(cred_path)
    conf_path = os.path.expanduser(conf_path)
    creds = conf = None
    p = _read_ini(cred_path)
    if p is not None and p.has_section(profile):
        creds = {k.lower(): v for k, v in p.items(profile)}
    p = _read_ini(conf_path)
    if p is not None:
        for name in ((f"profile {profile}", profile) if profile == "default" else (f"profile {profile}",)):
            if p.has_section(name):
                conf = {k.lower(): v for k, v in p.items(name)}
                break
    return creds, conf


# --------------------------------------------------------------------- credentials

def _from_mapping(section, source):
    if not section:
        return None
    key, secret = section.get("aws_access_key_id"), section.get("aws_secret_access_key")
    if key and secret:
        c = Credentials(access_key_id=key.strip(), secret_access_key=secret.strip(), _source=source)
        token = section.get("aws_session_token") or section.get("aws_security_token")
        if token:
            c["session_token"] = token.strip()
        return c
    if key or secret:
        raise OptionError(f"{source}: aws_access_key_id and aws_secret_access_key go together")
    return None


def _credential_process(command, source):
    try:
        proc = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise OptionError(f"{source}: credential_process failed to run: {exc}") from None
    if proc.returncode != 0:
        raise OptionError(f"{source}: credential_process exited with {proc.returncode}")
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        raise OptionError(f"{source}: credential_process did not print JSON") from None
    if not isinstance(data, dict) or data.get("Version") != 1:
        raise OptionError(f"{source}: credential_process output must be a JSON object with Version 1")
    return _from_json(data, source)


def _from_json(data, source):
    key, secret = data.get("AccessKeyId"), data.get("SecretAccessKey")
    if not key or not secret:
        raise OptionError(f"{source}: no AccessKeyId/SecretAccessKey in the answer")
    c = Credentials(access_key_id=key, secret_access_key=secret, _source=source)
    token = data.get("Token") or data.get("SessionToken")
    if token:
        c["session_token"] = token
    return c


def _fetched_by_c(source, **where):
    """Credentials C fetches: the options saying where."""
    return Credentials(_fetch={"credential_source": source, **{k: v for k, v in where.items() if v}},
                       _source=source)


def _web_identity(sections, environ, use_env):
    """Web identity from the environment, else from the profile's settings (``sections``:
    the profile's config-file and credentials-file sections)."""
    def setting(key, env_name):
        if use_env and _env(env_name, environ):
            return _env(env_name, environ)
        return next((s[key] for s in sections if s and s.get(key)), None)

    token_file = setting("web_identity_token_file", "AWS_WEB_IDENTITY_TOKEN_FILE")
    role_arn = setting("role_arn", "AWS_ROLE_ARN")
    session = setting("role_session_name", "AWS_ROLE_SESSION_NAME")
    if not token_file:
        return None
    if not role_arn:
        raise OptionError("web identity: a token file is configured but no role ARN "
                          "(AWS_ROLE_ARN or the profile's role_arn)")
    endpoint = None
    if not _truthy(environ.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "")):
        conf = next((s for s in sections if s), {})
        endpoint = (_env("AWS_ENDPOINT_URL_STS", environ) or _env("AWS_ENDPOINT_URL", environ)
                    or _nested(conf.get("sts")).get("endpoint_url") or conf.get("endpoint_url"))
    return _fetched_by_c("web_identity", credential_token_file=os.path.expanduser(token_file.strip()),
                         credential_role_arn=role_arn.strip(),
                         credential_role_session_name=session.strip() if session else None,
                         credential_url=endpoint.strip() if endpoint else None)


def _container(environ):
    rel = _env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", environ)
    full = _env("AWS_CONTAINER_CREDENTIALS_FULL_URI", environ)
    if not rel and not full:
        return None
    token = _env("AWS_CONTAINER_AUTHORIZATION_TOKEN", environ)
    token_file = _env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", environ)
    if token and not token_file and ("\r" in token or "\n" in token):
        raise OptionError("the container authorization token holds a line break")
    return _fetched_by_c("container", credential_url=(_CONTAINER_HOST + rel) if rel else full,
                         credential_token_file=token_file, credential_token=None if token_file else token)


def _imds(environ):
    if _truthy(environ.get("AWS_EC2_METADATA_DISABLED", "")):
        return None
    base = (_env("AWS_EC2_METADATA_SERVICE_ENDPOINT", environ) or _IMDS_DEFAULT).rstrip("/")
    return _fetched_by_c("imds", credential_url=base)


def find_credentials(options=None, environ=None):
    """The credentials the AWS chain finds for these options, or None."""
    options = options or {}
    environ = os.environ if environ is None else environ
    profile_opt = options.get("profile")
    if not profile_opt:
        key, secret = _env("AWS_ACCESS_KEY_ID", environ), _env("AWS_SECRET_ACCESS_KEY", environ)
        if key and secret:
            c = Credentials(access_key_id=key, secret_access_key=secret, _source="environment")
            token = _env("AWS_SESSION_TOKEN", environ) or _env("AWS_SECURITY_TOKEN", environ)
            if token:
                c["session_token"] = token
            return c
    profile = profile_opt or _env("AWS_PROFILE", environ) or _env("AWS_DEFAULT_PROFILE", environ) or "default"
    creds_sec, conf_sec = _profile_sections(profile, environ)
    if (profile_opt or profile != "default") and creds_sec is None and conf_sec is None:
        raise OptionError(f"AWS profile {profile!r} not found in the credentials or config file")
    found = _web_identity((conf_sec, creds_sec), environ, use_env=not profile_opt)
    if found:
        return found
    found = (_from_mapping(creds_sec, f"profile {profile} (credentials file)")
             or _from_mapping(conf_sec, f"profile {profile} (config file)"))
    if found:
        return found
    for sec in (creds_sec, conf_sec):
        if sec and sec.get("credential_process"):
            return _credential_process(sec["credential_process"], f"profile {profile}")
    return _container(environ) or _imds(environ)


# ------------------------------------------------------------------------ options

def _profile_config(options, environ):
    profile = options.get("profile") or _env("AWS_PROFILE", environ) or _env("AWS_DEFAULT_PROFILE", environ) \
        or "default"
    try:
        _, conf = _profile_sections(profile, environ)
    except OptionError:
        return {}
    return conf or {}


def s3_backend_options(url, options):
    """The options for the C s3 backend: the user's (minus ``profile``) plus the
    credentials, region and endpoint discovered. Never modifies ``options``."""
    environ = os.environ
    opts = {k: v for k, v in options.items() if v is not None}
    profile_given = "profile" in opts
    if profile_given and not isinstance(opts["profile"], str):
        raise OptionError("option profile must be a str")
    conf = None

    def config():
        nonlocal conf
        if conf is None:
            conf = _profile_config(opts, environ)
        return conf

    if "region" not in opts:
        region = _env("AWS_REGION", environ) or _env("AWS_DEFAULT_REGION", environ) or config().get("region")
        if region:
            opts["region"] = region.strip()

    if "endpoint_url" not in opts and not _truthy(environ.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "")):
        endpoint = (_env("AWS_ENDPOINT_URL_S3", environ) or _env("AWS_ENDPOINT_URL", environ)
                    or _nested(config().get("s3")).get("endpoint_url") or config().get("endpoint_url"))
        if endpoint:
            opts["endpoint_url"] = endpoint.strip()

    if "addressing_style" not in opts:
        style = _nested(config().get("s3")).get("addressing_style")
        if style:
            opts["addressing_style"] = style

    anon = opts.get("anon")
    if anon is True or (isinstance(anon, str) and _truthy(anon)):
        opts.pop("profile", None)
        return opts
    if "access_key_id" in opts or "secret_access_key" in opts:
        if "access_key_id" not in opts or "secret_access_key" not in opts:
            raise OptionError("access_key_id and secret_access_key go together")
        opts.pop("profile", None)
        return opts
    if "session_token" in opts:
        raise OptionError("session_token needs access_key_id and secret_access_key")
    if opts.get("credential_source"):  # the caller says where C fetches them
        opts.pop("profile", None)
        return opts
    creds = find_credentials(opts, environ)
    opts.pop("profile", None)
    if creds and creds.get("_fetch"):  # C fetches them on first use, and refreshes them
        for k, v in creds["_fetch"].items():
            opts.setdefault(k, v)
    elif creds:
        opts["access_key_id"] = creds["access_key_id"]
        opts["secret_access_key"] = creds["secret_access_key"]
        if creds.get("session_token"):
            opts["session_token"] = creds["session_token"]
    return opts
