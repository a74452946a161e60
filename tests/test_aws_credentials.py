"""AWS credentials: discovery in Python (cloudfiles_store/_aws.py: options, environment,
shared credentials and config files, credential_process, and where the container endpoint,
IMDSv2 and web identity are), and the fetches in C on first use: the container endpoint,
IMDSv2 and STS AssumeRoleWithWebIdentity (stood in for by servers on 127.0.0.1, and moto's
own STS), refreshed before expiry, against moto with signature checking on."""
import http.server
import json
import os
import stat
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid

import pytest

from cloudfiles_store import CloudFilesStore, engine_stats, errors
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

class _LocalServer(http.server.ThreadingHTTPServer):
    """A stand-in server on 127.0.0.1, serving from a thread of its own."""
    daemon_threads = True

    def __init__(self, handler):
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, status, body, content_type=None):
        body = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Metadata(_LocalServer):
    """A local stand-in for the ECS container endpoint and the EC2 IMDSv2 service."""

    def __init__(self):
        self.requests = []
        self.creds = {"AccessKeyId": "ASIAMETA", "SecretAccessKey": "metasecret", "Token": "metatoken",
                      "Expiration": "2099-01-01T00:00:00Z"}
        self.answers = []  # (status, creds dict) to give before self.creds, oldest first
        self.delay = 0.0   # seconds before each credentials answer
        super().__init__(_MetadataHandler)


class _MetadataHandler(_Handler):

    def _next_creds(self):
        time.sleep(self.server.delay)
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


def _cred_gets(metadata):
    """The requests for credentials (not for the role's name)."""
    return [r for r in metadata.requests if r[0] == "GET" and not r[1].endswith("/")]


def _headers(h):
    return {k.lower(): v for k, v in h.items()}


def _container_env(clean_env, metadata):
    clean_env.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", metadata.url + "/ecs/creds")
    clean_env.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "container-secret")


def test_container_endpoint_fetched_in_c(clean_env, metadata, moto_server, tmp_path):
    """Python only says where; C fetches on first use, with the token file's token."""
    token_file = write(tmp_path / "token", "container-secret\n")
    clean_env.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", metadata.url + "/ecs/creds")
    clean_env.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", token_file)
    url = moto_server.url(uuid.uuid4().hex)
    opts = s3_backend_options(url, {"endpoint_url": moto_server.endpoint})
    assert opts == {"endpoint_url": moto_server.endpoint, "credential_source": "container",
                    "credential_url": metadata.url + "/ecs/creds", "credential_token_file": token_file}
    assert metadata.requests == []
    s = CloudFilesStore(url, **opts)
    assert metadata.requests == [], "nothing fetched before the first operation"
    s["k"] = b"v"
    assert s["k"] == b"v"
    gets = _cred_gets(metadata)
    assert len(gets) == 1 and _headers(gets[0][2])["authorization"] == "container-secret"
    # a wrong token: the first operation fails, naming the endpoint, never the token
    clean_env.delenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
    clean_env.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "wrong-token")
    s = CloudFilesStore(url, **s3_backend_options(url, {"endpoint_url": moto_server.endpoint}))
    with pytest.raises(errors.AuthenticationError) as ei:
        s["k"]
    assert ei.value.url == metadata.url + "/ecs/creds" and ei.value.key == "k"
    assert "HTTP 401" in str(ei.value) and "ecs/creds" in str(ei.value)
    assert "wrong-token" not in str(ei.value) and "wrong-token" not in repr(s)


def test_imds_v2_fetched_in_c(clean_env, metadata, moto_server):
    clean_env.setenv("AWS_EC2_METADATA_DISABLED", "false")
    clean_env.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", metadata.url)
    url = moto_server.url(uuid.uuid4().hex)
    opts = s3_backend_options(url, {"endpoint_url": moto_server.endpoint})
    assert (opts["credential_source"], opts["credential_url"]) == ("imds", metadata.url)
    assert "access_key_id" not in opts and metadata.requests == []
    s = CloudFilesStore(url, **opts)
    s["k"] = b"v"
    assert s["k"] == b"v"
    assert [(m, p) for m, p, _ in metadata.requests] == [
        ("PUT", "/latest/api/token"), ("GET", "/latest/meta-data/iam/security-credentials/"),
        ("GET", "/latest/meta-data/iam/security-credentials/the-role")]
    assert _headers(metadata.requests[0][2])["x-aws-ec2-metadata-token-ttl-seconds"] == "21600"
    assert all(_headers(h)["x-aws-ec2-metadata-token"] == "imds-token" for _, _, h in metadata.requests[1:])
    # disabled: not asked, nothing found
    metadata.requests.clear()
    clean_env.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert find_credentials({}) is None
    assert metadata.requests == []


def test_ops_waiting_for_the_fetch_are_woken(clean_env, metadata, moto_server):
    """A cold batch: one op fetches (the endpoint takes 1.2 s) and the others are parked until
    the credentials come, then woken at once: one request, each op parked once (asking again
    every 5 ms, each would be parked 240 times), done long before the engine's 5 s safety
    net would have built them again."""
    metadata.delay = 1.2
    _container_env(clean_env, metadata)
    url = moto_server.url(uuid.uuid4().hex)
    opts = s3_backend_options(url, {"endpoint_url": moto_server.endpoint})
    s = CloudFilesStore(url, concurrency=16, **opts)
    before = engine_stats()["parked"]
    t0 = time.monotonic()
    s.setitems({f"k{i}": b"v" for i in range(40)})
    elapsed = time.monotonic() - t0
    parked = engine_stats()["parked"] - before
    assert len(_cred_gets(metadata)) == 1
    assert 1 <= parked <= 15, parked
    assert elapsed < 3.5, elapsed
    assert len(s) == 40


@pytest.mark.parametrize("concurrency", [8, 2])
def test_unreachable_endpoint_fails_a_batch_with_one_fetch(clean_env, fault_server, concurrency):
    """The endpoint resets every connection: the fetching op spends its retries on the wire
    (the engine completes it without a word to the backend), and its failure then answers
    for the other ops of the batch: one op's retries in all, not one per key. The batch is
    larger than the concurrency: the ops admitted as the failed ones free their slots fail
    at once too (a slot freed during a lane's turn used to wait for its idle timeout, a
    second, by which time the failure was forgotten and fetched again)."""
    path = f"/creds-{uuid.uuid4().hex}"
    fault_server.put(path, b"{}")
    fault_server.add_faults(path, ["reset"] * 100)
    s = CloudFilesStore("s3://bucket/p", endpoint_url=fault_server.url, credential_source="container",
                        credential_url=fault_server.url + path, concurrency=concurrency, retries=3,
                        retry_base=0.01)
    with pytest.raises(errors.BatchError) as ei:
        s.getitems([f"k{i}" for i in range(30)])
    assert len(ei.value.errors) == 30
    assert all(isinstance(e, errors.TransientError) and e.url == fault_server.url + path
               for e in ei.value.errors), ei.value.errors[:3]
    assert len(fault_server.requests(path)) == 3
    assert fault_server.requests("/bucket/p/k0") == []


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
    bucket = f"refresh-{uuid.uuid4().hex[:16]}"
    srv.client().create_bucket(Bucket=bucket)
    return f"s3://{bucket}"


@pytest.mark.parametrize("source", ["container", "imds"])
def test_credentials_refreshed_before_expiry(clean_env, metadata, moto_auth, source):
    iam, k1 = _second_key(moto_auth)
    _, k2 = _second_key(moto_auth)
    now = time.time()
    # K1 lives 10 s: refreshed (by one op) from half its life; K2 an hour.
    metadata.answers = [(200, {"AccessKeyId": k1["AccessKeyId"], "SecretAccessKey": k1["SecretAccessKey"],
                               "Expiration": _iso(now + 10)})]
    metadata.creds = {"AccessKeyId": k2["AccessKeyId"], "SecretAccessKey": k2["SecretAccessKey"],
                      "Expiration": _iso(now + 3600)}
    if source == "container":
        _container_env(clean_env, metadata)
    else:
        clean_env.setenv("AWS_EC2_METADATA_DISABLED", "false")
        clean_env.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", metadata.url)
    url = _fresh_bucket(moto_auth)
    opts = s3_backend_options(url, {"endpoint_url": moto_auth.endpoint})
    assert opts["credential_source"] == source and "access_key_id" not in opts
    s = CloudFilesStore(url, **opts)
    s["k"] = b"signed with K1"
    assert len(_cred_gets(metadata)) == 1
    time.sleep(max(0.0, now + 5.5 - time.time()))
    # K1 stops working now: only a refreshed key can succeed.
    iam.delete_access_key(UserName=k1["UserName"], AccessKeyId=k1["AccessKeyId"])
    s["k"] = b"signed with the refreshed key"
    s.setitems({f"more/{i}": b"x" for i in range(50)})
    assert s["k"] == b"signed with the refreshed key"
    assert len(s) == 51
    assert len(_cred_gets(metadata)) == 2, "one refresh, by one op, while K2 is far from expiry"
    if source == "imds":
        gets = [_headers(h) for m, p, h in metadata.requests if m == "GET"]
        assert all(h.get("x-aws-ec2-metadata-token") == "imds-token" for h in gets), gets
        assert [m for m, _, _ in metadata.requests].count("PUT") == 2


def test_failed_early_refresh_keeps_the_current_key(clean_env, metadata, moto_auth):
    _, k1 = _second_key(moto_auth)
    now = time.time()
    metadata.answers = [(200, {"AccessKeyId": k1["AccessKeyId"], "SecretAccessKey": k1["SecretAccessKey"],
                               "Expiration": _iso(now + 10)}),
                        (500, None)]
    _container_env(clean_env, metadata)
    url = _fresh_bucket(moto_auth)
    s = CloudFilesStore(url, **s3_backend_options(url, {"endpoint_url": moto_auth.endpoint}))
    s["a"] = b"signed with K1"
    time.sleep(max(0.0, now + 5.5 - time.time()))
    s["b"] = b"its early refresh failed (not retried): still K1"
    s["c"] = b"no second refresh within the back-off"
    assert s["a"] == b"signed with K1"
    assert len(_cred_gets(metadata)) == 2  # the first fetch, and one failed early refresh


def test_expired_credentials_and_a_refusing_endpoint(clean_env, metadata, moto_auth):
    _, k1 = _second_key(moto_auth)
    metadata.answers = [(200, {"AccessKeyId": k1["AccessKeyId"], "SecretAccessKey": k1["SecretAccessKey"],
                               "Expiration": _iso(time.time() + 3)})]
    metadata.creds = None  # then: 200 with an empty body
    _container_env(clean_env, metadata)
    url = _fresh_bucket(moto_auth)
    s = CloudFilesStore(url, **s3_backend_options(url, {"endpoint_url": moto_auth.endpoint}))
    s["a"] = b"x"
    time.sleep(3.1)  # K1 has expired: it must be fetched again, and that fails
    with pytest.raises(errors.AuthenticationError) as ei:
        s["b"] = b"x"
    assert ei.value.url == metadata.url + "/ecs/creds" and "ecs/creds" in str(ei.value)
    assert "not a JSON object" in str(ei.value)
    assert k1["SecretAccessKey"] not in str(ei.value)
    assert len(_cred_gets(metadata)) == 2


# ------------------------------------------------------------------- web identity (STS)

ROLE = "arn:aws:iam::123456789012:role/web"


class _Sts(_LocalServer):
    """A stand-in for STS AssumeRoleWithWebIdentity: answers with the keys it is given."""

    def __init__(self):
        self.calls = []    # (method, path, headers, form)
        self.answers = []  # (status, body) to give before `creds`
        self.creds = None
        super().__init__(_StsHandler)


class _StsHandler(_Handler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        form = dict(urllib.parse.parse_qsl(body))
        srv = self.server
        with srv.lock:
            srv.calls.append((self.command, self.path, dict(self.headers), form))
            status, body = srv.answers.pop(0) if srv.answers else (200, _sts_xml(srv.creds))
        self._send(status, body, "text/xml")


def _sts_xml(c):
    token = f"<SessionToken>{c['SessionToken']}</SessionToken>" if c.get("SessionToken") else ""
    return ('<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
            "<AssumeRoleWithWebIdentityResult><SubjectFromWebIdentityToken>sub</SubjectFromWebIdentityToken>"
            f"<Credentials><AccessKeyId>{c['AccessKeyId']}</AccessKeyId>"
            f"<SecretAccessKey>{c['SecretAccessKey']}</SecretAccessKey>{token}"
            f"<Expiration>{c['Expiration']}</Expiration></Credentials>"
            "</AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>")


def _sts_error(code, message):
    return ('<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
            f"<Code>{code}</Code><Message>{message}</Message></Error>"
            "<RequestId>r</RequestId></ErrorResponse>")


@pytest.fixture
def sts():
    srv = _Sts()
    yield srv
    srv.shutdown()
    srv.server_close()


def _web_identity_env(clean_env, tmp_path, endpoint, token="jwt-1", session="cfs-session"):
    path = write(tmp_path / "web-identity-token", token + "\n")
    clean_env.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", path)
    clean_env.setenv("AWS_ROLE_ARN", ROLE)
    clean_env.setenv("AWS_ROLE_SESSION_NAME", session)
    clean_env.setenv("AWS_ENDPOINT_URL_STS", endpoint)
    return path


def test_web_identity_options(clean_env, tmp_path):
    path = write(tmp_path / "tok", "jwt")
    clean_env.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", path)
    clean_env.setenv("AWS_ROLE_ARN", "arn:aws:iam::1:role/env")
    assert s3_backend_options(URL, {}) == {"credential_source": "web_identity", "credential_token_file": path,
                                           "credential_role_arn": "arn:aws:iam::1:role/env"}
    # before the shared credentials file's keys (the SDKs' order)
    creds = write(tmp_path / "creds", "[default]\naws_access_key_id = K\naws_secret_access_key = S\n")
    clean_env.setenv("AWS_SHARED_CREDENTIALS_FILE", creds)
    assert s3_backend_options(URL, {})["credential_source"] == "web_identity"
    # a profile's settings, with its STS endpoint; a profile named: the environment's are not used
    conf = write(tmp_path / "conf", f"[profile wi]\nweb_identity_token_file = {path}\n"
                                    "role_arn = arn:aws:iam::1:role/prof\nrole_session_name = sess\n"
                                    "sts =\n  endpoint_url = http://127.0.0.1:1\n")
    clean_env.setenv("AWS_CONFIG_FILE", conf)
    out = s3_backend_options(URL, {"profile": "wi"})
    assert (out["credential_role_arn"], out["credential_role_session_name"], out["credential_url"]) == \
        ("arn:aws:iam::1:role/prof", "sess", "http://127.0.0.1:1")
    # a token file without a role
    clean_env.delenv("AWS_ROLE_ARN")
    with pytest.raises(errors.OptionError, match="role"):
        s3_backend_options(URL, {})


def test_web_identity_against_moto_sts(clean_env, tmp_path):
    """moto's own STS: it understands the request C sends, C reads its answer. A moto of its
    own: the session-wide one's /moto-api/data.json answers 500 once other tests have left
    state it cannot dump (seen after the S3 suite)."""
    session = f"cfs-{uuid.uuid4().hex[:12]}"
    with MotoServer() as srv:
        _web_identity_env(clean_env, tmp_path, srv.endpoint, session=session)
        url = srv.url(uuid.uuid4().hex)
        s = CloudFilesStore(url, **s3_backend_options(url, {"endpoint_url": srv.endpoint}))
        s["k"] = b"v"
        assert s["k"] == b"v"
        data = json.loads(urllib.request.urlopen(srv.endpoint + "/moto-api/data.json", timeout=30).read())
    roles = [r for r in data["sts"]["AssumedRole"] if r["session_name"] == session]
    assert len(roles) == 1 and roles[0]["role_arn"] == ROLE


def test_web_identity_refreshed_before_expiry(clean_env, tmp_path, sts, moto_auth):
    """A stand-in STS handing out moto IAM keys: the form C posts (the token read from the
    file at each fetch, unsigned), requests signed with what came back, one refresh."""
    iam, k1 = _second_key(moto_auth)
    _, k2 = _second_key(moto_auth)
    now = time.time()
    sts.answers = [(200, _sts_xml({"AccessKeyId": k1["AccessKeyId"], "SecretAccessKey": k1["SecretAccessKey"],
                                   "Expiration": _iso(now + 10)}))]
    sts.creds = {"AccessKeyId": k2["AccessKeyId"], "SecretAccessKey": k2["SecretAccessKey"],
                 "Expiration": _iso(now + 3600)}
    token_path = _web_identity_env(clean_env, tmp_path, sts.url + "/sts/", token="jwt-1")
    url = _fresh_bucket(moto_auth)
    opts = s3_backend_options(url, {"endpoint_url": moto_auth.endpoint})
    assert opts["credential_source"] == "web_identity" and sts.calls == []
    s = CloudFilesStore(url, **opts)
    s["k"] = b"signed with K1"
    assert len(sts.calls) == 1
    method, path, headers, form = sts.calls[0]
    assert (method, path) == ("POST", "/sts/")
    assert form == {"Action": "AssumeRoleWithWebIdentity", "Version": "2011-06-15", "RoleArn": ROLE,
                    "RoleSessionName": "cfs-session", "WebIdentityToken": "jwt-1"}
    assert "authorization" not in _headers(headers)
    write(tmp_path / "web-identity-token", "jwt-2\n")  # the platform rotates the token
    assert token_path == str(tmp_path / "web-identity-token")
    time.sleep(max(0.0, now + 5.5 - time.time()))
    iam.delete_access_key(UserName=k1["UserName"], AccessKeyId=k1["AccessKeyId"])
    s["k"] = b"signed with K2"
    s.setitems({f"more/{i}": b"x" for i in range(20)})
    assert s["k"] == b"signed with K2"
    assert len(sts.calls) == 2 and sts.calls[1][3]["WebIdentityToken"] == "jwt-2"


def test_web_identity_refused(clean_env, tmp_path, sts, moto_server):
    sts.answers = [(400, _sts_error("InvalidIdentityToken", "Couldn't retrieve verification key"))]
    token_path = _web_identity_env(clean_env, tmp_path, sts.url, token="secret-jwt")
    url = moto_server.url(uuid.uuid4().hex)
    s = CloudFilesStore(url, **s3_backend_options(url, {"endpoint_url": moto_server.endpoint}))
    with pytest.raises(errors.AuthenticationError) as ei:
        s["k"]
    assert ei.value.url == sts.url and ei.value.key == "k"
    assert "InvalidIdentityToken" in str(ei.value) and "verification key" in str(ei.value)
    assert "secret-jwt" not in str(ei.value) and "secret-jwt" not in repr(s)
    # no token file to read: the same error class, naming the file
    os.unlink(token_path)
    s = CloudFilesStore(url, **s3_backend_options(url, {"endpoint_url": moto_server.endpoint}))
    with pytest.raises(errors.AuthenticationError, match="web identity token file"):
        s["k"]
    assert len(sts.calls) == 1
