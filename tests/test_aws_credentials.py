"""AWS configuration discovery (cloudfiles_store/_aws.py): options, environment, shared
credentials and config files, credential_process, the container endpoint and IMDSv2 (both
stood in for by servers on 127.0.0.1), and the resolved options opening a store against
moto with signature checking on."""
import http.server
import json
import os
import stat
import sys
import threading

import pytest

from cloudfiles_store import CloudFilesStore, errors
from cloudfiles_store._aws import find_credentials, s3_backend_options
from s3server import MotoServer

URL = "s3://bucket/prefix"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No AWS_* variable from the machine, a HOME without ~/.aws, IMDS off."""
    for var in list(os.environ):
        if var.startswith("AWS_"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return monkeypatch


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


# ------------------------------------------------------------------ options, env

def test_explicit_options_win(clean_env):
    clean_env.setenv("AWS_ACCESS_KEY_ID", "ENVKEY")
    clean_env.setenv("AWS_SECRET_ACCESS_KEY", "envsecret")
    given = {"access_key_id": "OPTKEY", "secret_access_key": "optsecret", "concurrency": 8}
    out = s3_backend_options(URL, given)
    assert out["access_key_id"] == "OPTKEY" and out["secret_access_key"] == "optsecret"
    assert out["concurrency"] == 8
    assert given == {"access_key_id": "OPTKEY", "secret_access_key": "optsecret", "concurrency": 8}


def test_half_a_key_is_an_error():
    with pytest.raises(errors.OptionError):
        s3_backend_options(URL, {"access_key_id": "K"})
    with pytest.raises(errors.OptionError):
        s3_backend_options(URL, {"session_token": "T"})


def test_environment(clean_env):
    clean_env.setenv("AWS_ACCESS_KEY_ID", "ENVKEY")
    clean_env.setenv("AWS_SECRET_ACCESS_KEY", "envsecret")
    clean_env.setenv("AWS_SESSION_TOKEN", "envtoken")
    out = s3_backend_options(URL, {})
    assert (out["access_key_id"], out["secret_access_key"], out["session_token"]) == \
        ("ENVKEY", "envsecret", "envtoken")
    assert find_credentials({}).source == "environment"


def test_anon_takes_no_credentials(clean_env):
    clean_env.setenv("AWS_ACCESS_KEY_ID", "ENVKEY")
    clean_env.setenv("AWS_SECRET_ACCESS_KEY", "envsecret")
    out = s3_backend_options(URL, {"anon": True})
    assert "access_key_id" not in out and out["anon"] is True


def test_nothing_found():
    assert find_credentials({}) is None
    assert "access_key_id" not in s3_backend_options(URL, {})


# ---------------------------------------------------------------------- files

def test_profiles_in_credentials_and_config_files(clean_env, tmp_path):
    creds = write(tmp_path / "creds", "[default]\naws_access_key_id = DEFKEY\naws_secret_access_key = defsecret\n"
                                       "[dev]\naws_access_key_id = DEVKEY\naws_secret_access_key = devsecret\n"
                                       "aws_session_token = devtoken\n")
    conf = write(tmp_path / "conf", "[default]\nregion = eu-west-1\n"
                                    "[profile dev]\nregion = ap-south-1\n"
                                    "s3 =\n  endpoint_url = http://127.0.0.1:9000\n  addressing_style = virtual\n"
                                    "[profile conf-only]\naws_access_key_id = CONFKEY\n"
                                    "aws_secret_access_key = confsecret\nendpoint_url = http://127.0.0.1:9001\n")
    clean_env.setenv("AWS_SHARED_CREDENTIALS_FILE", creds)
    clean_env.setenv("AWS_CONFIG_FILE", conf)

    out = s3_backend_options(URL, {})
    assert (out["access_key_id"], out["region"]) == ("DEFKEY", "eu-west-1")
    assert "endpoint_url" not in out

    clean_env.setenv("AWS_PROFILE", "dev")
    out = s3_backend_options(URL, {})
    assert (out["access_key_id"], out["session_token"], out["region"]) == ("DEVKEY", "devtoken", "ap-south-1")
    assert out["endpoint_url"] == "http://127.0.0.1:9000"
    assert out["addressing_style"] == "virtual"

    out = s3_backend_options(URL, {"profile": "conf-only"})
    assert out["access_key_id"] == "CONFKEY" and out["endpoint_url"] == "http://127.0.0.1:9001"
    assert "profile" not in out

    # a named profile beats the environment's keys
    clean_env.setenv("AWS_ACCESS_KEY_ID", "ENVKEY")
    clean_env.setenv("AWS_SECRET_ACCESS_KEY", "envsecret")
    assert s3_backend_options(URL, {"profile": "dev"})["access_key_id"] == "DEVKEY"
    assert s3_backend_options(URL, {})["access_key_id"] == "ENVKEY"

    with pytest.raises(errors.OptionError):
        s3_backend_options(URL, {"profile": "missing"})


def test_default_files_under_home(tmp_path):
    write(tmp_path / "home" / ".aws" / "credentials",
          "[default]\naws_access_key_id = HOMEKEY\naws_secret_access_key = homesecret\n")
    assert s3_backend_options(URL, {})["access_key_id"] == "HOMEKEY"


def test_region_and_endpoint_precedence(clean_env, tmp_path):
    conf = write(tmp_path / "conf", "[default]\nregion = eu-west-1\nendpoint_url = http://conf:1\n")
    clean_env.setenv("AWS_CONFIG_FILE", conf)
    assert s3_backend_options(URL, {"anon": True})["region"] == "eu-west-1"
    clean_env.setenv("AWS_DEFAULT_REGION", "us-west-1")
    assert s3_backend_options(URL, {"anon": True})["region"] == "us-west-1"
    clean_env.setenv("AWS_REGION", "us-west-2")
    assert s3_backend_options(URL, {"anon": True})["region"] == "us-west-2"
    assert s3_backend_options(URL, {"anon": True, "region": "sa-east-1"})["region"] == "sa-east-1"

    assert s3_backend_options(URL, {"anon": True})["endpoint_url"] == "http://conf:1"
    clean_env.setenv("AWS_ENDPOINT_URL", "http://all:2")
    assert s3_backend_options(URL, {"anon": True})["endpoint_url"] == "http://all:2"
    clean_env.setenv("AWS_ENDPOINT_URL_S3", "http://s3only:3")
    assert s3_backend_options(URL, {"anon": True})["endpoint_url"] == "http://s3only:3"
    assert s3_backend_options(URL, {"anon": True, "endpoint_url": "http://opt:4"})["endpoint_url"] == "http://opt:4"
    clean_env.setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true")
    assert "endpoint_url" not in s3_backend_options(URL, {"anon": True})


def test_credential_process(clean_env, tmp_path):
    script = write(tmp_path / "helper.py", "import json\nprint(json.dumps({'Version': 1, "
                   "'AccessKeyId': 'PROCKEY', 'SecretAccessKey': 'procsecret', 'SessionToken': 'proctoken', "
                   "'Expiration': '2099-01-01T00:00:00Z'}))\n")
    conf = write(tmp_path / "conf", f"[profile proc]\ncredential_process = {sys.executable} {script}\n")
    clean_env.setenv("AWS_CONFIG_FILE", conf)
    out = s3_backend_options(URL, {"profile": "proc"})
    assert (out["access_key_id"], out["secret_access_key"], out["session_token"]) == \
        ("PROCKEY", "procsecret", "proctoken")
    bad = write(tmp_path / "conf2", f"[profile proc]\ncredential_process = {sys.executable} -c 'print(42)'\n")
    clean_env.setenv("AWS_CONFIG_FILE", bad)
    with pytest.raises(errors.OptionError):
        s3_backend_options(URL, {"profile": "proc"})


# ----------------------------------------------- container endpoint and IMDSv2 stand-ins

class _Metadata(http.server.ThreadingHTTPServer):
    """A local stand-in for the ECS container endpoint and the EC2 IMDSv2 service."""
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _MetadataHandler)
        self.requests = []
        self.creds = {"AccessKeyId": "ASIAMETA", "SecretAccessKey": "metasecret", "Token": "metatoken",
                      "Expiration": "2099-01-01T00:00:00Z"}
        self.answers = []  # (status, creds dict) to give before self.creds, oldest first
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"


class _MetadataHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, status, body):
        body = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _next_creds(self):
        with self.server.lock:
            if self.server.answers:
                status, creds = self.server.answers.pop(0)
            else:
                status, creds = 200, self.server.creds
        return status, json.dumps(creds) if creds is not None else ""

    def do_PUT(self):
        self.server.requests.append(("PUT", self.path, dict(self.headers)))
        if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            return self._send(200, "imds-token")
        return self._send(400, "")

    def do_GET(self):
        self.server.requests.append(("GET", self.path, dict(self.headers)))
        if self.path == "/ecs/creds":
            if self.headers.get("Authorization") != "container-secret":
                return self._send(401, "")
            return self._send(*self._next_creds())
        if self.path.startswith("/latest/meta-data/iam/security-credentials/"):
            if self.headers.get("X-aws-ec2-metadata-token") != "imds-token":
                return self._send(401, "")
            role = self.path.rsplit("/", 1)[1]
            if not role:
                return self._send(200, "the-role\n")
            if role == "the-role":
                status, body = self._next_creds()
                if status == 200:
                    body = json.dumps({"Code": "Success", **json.loads(body)})
                return self._send(status, body)
        return self._send(404, "")


@pytest.fixture
def metadata():
    srv = _Metadata()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_container_endpoint(clean_env, metadata, tmp_path):
    clean_env.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", metadata.url + "/ecs/creds")
    token_file = write(tmp_path / "token", "container-secret\n")
    clean_env.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", token_file)
    out = s3_backend_options(URL, {})
    assert (out["access_key_id"], out["secret_access_key"], out["session_token"]) == \
        ("ASIAMETA", "metasecret", "metatoken")
    clean_env.delenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
    clean_env.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "wrong")
    with pytest.raises(errors.OptionError):
        s3_backend_options(URL, {})


def test_imds_v2(clean_env, metadata):
    clean_env.setenv("AWS_EC2_METADATA_DISABLED", "false")
    clean_env.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", metadata.url)
    out = s3_backend_options(URL, {})
    assert (out["access_key_id"], out["session_token"]) == ("ASIAMETA", "metatoken")
    methods = [(m, p) for m, p, _ in metadata.requests]
    assert methods[0] == ("PUT", "/latest/api/token")
    assert ("GET", "/latest/meta-data/iam/security-credentials/the-role") in methods
    # disabled: not asked
    metadata.requests.clear()
    clean_env.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert find_credentials({}) is None
    assert metadata.requests == []


def test_no_secret_in_files_is_copied_into_errors(clean_env, tmp_path):
    creds = write(tmp_path / "creds", "[x]\naws_access_key_id = ONLYKEY\n")
    clean_env.setenv("AWS_SHARED_CREDENTIALS_FILE", creds)
    with pytest.raises(errors.OptionError) as ei:
        s3_backend_options(URL, {"profile": "x"})
    assert "ONLYKEY" not in str(ei.value)


# --------------------------------------------------------------------- end to end

def test_resolved_options_open_a_signed_store(clean_env, tmp_path):
    with MotoServer(auth=True) as srv:
        creds = write(tmp_path / "creds", f"[moto]\naws_access_key_id = {srv.access_key_id}\n"
                                          f"aws_secret_access_key = {srv.secret_access_key}\n")
        os.chmod(creds, stat.S_IRUSR | stat.S_IWUSR)
        clean_env.setenv("AWS_SHARED_CREDENTIALS_FILE", creds)
        clean_env.setenv("AWS_PROFILE", "moto")
        clean_env.setenv("AWS_ENDPOINT_URL_S3", srv.endpoint)
        url = f"s3://{srv.bucket}"
        opts = s3_backend_options(url, {})
        s = CloudFilesStore(url, **opts)
        s["k"] = b"found my own way"
        assert s["k"] == b"found my own way"
        wrong = dict(opts, secret_access_key="wrong")
        with pytest.raises(errors.AuthenticationError):
            CloudFilesStore(url, **wrong)["k"]


# ------------------------------------------------------ refresh before expiry (in C)

def _iso(t):
    import datetime
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _second_key(srv):
    """The access key of a new moto IAM user allowed s3:*, and an IAM client."""
    import uuid

    import botocore.session
    iam = botocore.session.get_session().create_client(
        "iam", region_name=srv.region, endpoint_url=srv.endpoint,
        aws_access_key_id=srv.access_key_id, aws_secret_access_key=srv.secret_access_key)
    user = f"u-{uuid.uuid4().hex[:12]}"
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="s3", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    return iam, key


def _fresh_bucket(srv):
    import uuid
    bucket = f"refresh-{uuid.uuid4().hex[:16]}"
    srv.client().create_bucket(Bucket=bucket)
    return f"s3://{bucket}"


@pytest.mark.parametrize("source", ["container", "imds"])
def test_credentials_refreshed_before_expiry(clean_env, metadata, moto_auth, tmp_path, source):
    import time
    iam, k1 = _second_key(moto_auth)
    _, k2 = _second_key(moto_auth)
    now = time.time()
    # K1 expires in 2 minutes (inside the early-refresh window), K2 in an hour.
    metadata.answers = [(200, {"AccessKeyId": k1["AccessKeyId"], "SecretAccessKey": k1["SecretAccessKey"],
                               "Expiration": _iso(now + 120)})]
    metadata.creds = {"AccessKeyId": k2["AccessKeyId"], "SecretAccessKey": k2["SecretAccessKey"],
                      "Expiration": _iso(now + 3600)}
    if source == "container":
        clean_env.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", metadata.url + "/ecs/creds")
        clean_env.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "container-secret")
    else:
        clean_env.setenv("AWS_EC2_METADATA_DISABLED", "false")
        clean_env.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", metadata.url)
    url = _fresh_bucket(moto_auth)
    opts = s3_backend_options(url, {"endpoint_url": moto_auth.endpoint})
    assert opts["access_key_id"] == k1["AccessKeyId"]
    assert opts["credential_source"] == source
    assert abs(int(opts["credential_expiration"]) - (now + 120)) <= 2
    fetches = len([r for r in metadata.requests if r[0] == "GET" and not r[1].endswith("/")])
    assert fetches == 1
    # K1 stops working now: only a refreshed key can succeed.
    iam.delete_access_key(UserName=k1["UserName"], AccessKeyId=k1["AccessKeyId"])
    s = CloudFilesStore(url, **opts)
    s["k"] = b"signed with the refreshed key"
    s.setitems({f"more/{i}": b"x" for i in range(50)})
    assert s["k"] == b"signed with the refreshed key"
    assert len(s) == 51
    fetches = len([r for r in metadata.requests if r[0] == "GET" and not r[1].endswith("/")])
    assert fetches == 2, "one refresh, by one op, while K2 is far from expiry"
    if source == "imds":
        gets = [{k.lower(): v for k, v in h.items()} for m, p, h in metadata.requests if m == "GET"]
        assert all(h.get("x-aws-ec2-metadata-token") == "imds-token" for h in gets), gets
        assert [m for m, _, _ in metadata.requests].count("PUT") == 2


def test_failed_early_refresh_keeps_the_current_key(clean_env, metadata, moto_auth):
    import time
    _, k1 = _second_key(moto_auth)
    now = time.time()
    metadata.answers = [(200, {"AccessKeyId": k1["AccessKeyId"], "SecretAccessKey": k1["SecretAccessKey"],
                               "Expiration": _iso(now + 300)}),
                        (500, None)]
    clean_env.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", metadata.url + "/ecs/creds")
    clean_env.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "container-secret")
    url = _fresh_bucket(moto_auth)
    s = CloudFilesStore(url, **s3_backend_options(url, {"endpoint_url": moto_auth.endpoint}))
    s["a"] = b"still signed with K1"
    s["b"] = b"no second refresh within the back-off"
    assert s["a"] == b"still signed with K1"
    gets = [r for r in metadata.requests if r[0] == "GET"]
    assert len(gets) == 2  # the resolve, and one failed early refresh


def test_expired_credentials_and_a_refusing_endpoint(clean_env, metadata, moto_auth):
    import time
    _, k1 = _second_key(moto_auth)
    metadata.answers = [(200, {"AccessKeyId": k1["AccessKeyId"], "SecretAccessKey": k1["SecretAccessKey"],
                               "Expiration": _iso(time.time() + 30)})]
    metadata.creds = None  # then: 200 with an empty body
    clean_env.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", metadata.url + "/ecs/creds")
    clean_env.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "container-secret")
    url = _fresh_bucket(moto_auth)
    s = CloudFilesStore(url, **s3_backend_options(url, {"endpoint_url": moto_auth.endpoint}))
    with pytest.raises(errors.AuthenticationError) as ei:
        s["a"] = b"x"
    assert "ecs/creds" in str(ei.value)
    assert k1["SecretAccessKey"] not in str(ei.value)
