"""The auth service: accounts, logins, tokens, keys, the first admin, limits.

One auth process serves most tests (module fixture); tests that need their own
configuration or a restart start their own.
"""
import hashlib
import hmac
import http.client
import json
import os

import pytest
from cryptography.exceptions import InvalidSignature

from conftest import Service
from services_fixtures import (ADMIN_PASS, ADMIN_USER, AUDIENCE, ISSUER, auth_signing_key, bearer, claims,
                               file_mode, jwk_public_key, jwt_decode, login, register_and_login, sign_eddsa,
                               start_auth, unique_name)

JSON = {"Content-Type": "application/json"}
UNAUTHORIZED = {"error": {"code": "unauthorized", "message": "invalid username or password"}}


@pytest.fixture(scope="module")
def auth():
    with start_auth() as a:
        yield a


def register(auth, username, password="correct-horse", **extra):
    return auth.json("POST", "/auth/register", {"username": username, "password": password, **extra})


def assert_error(status, doc, expected_status, code=None):
    assert status == expected_status, (status, doc)
    assert set(doc) == {"error"} and isinstance(doc["error"]["message"], str), doc
    if code:
        assert doc["error"]["code"] == code, doc


def argon2id(svc):
    """Argon2id computations so far: {"hash": n, "verify": n} from /metrics."""
    status, _, body = svc.request("GET", "/metrics")
    assert status == 200
    counts = {"hash": 0, "verify": 0}
    for line in body.decode().splitlines():
        for op in counts:
            if line.startswith(f'auth_password_hashes_total{{op="{op}"}} '):
                counts[op] = int(float(line.rsplit(" ", 1)[1]))
    return counts


def work_of(svc, fn):
    """(fn's result, the Argon2id computations it caused)."""
    before = argon2id(svc)
    out = fn()
    after = argon2id(svc)
    return out, {op: after[op] - before[op] for op in after}


def request_from(svc, source, method, path, body=None, headers=None):
    """One request from another loopback address (127.x.y.z): how a test gets
    many client addresses, each the service's svc_req_peer."""
    c = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=10, source_address=(source, 0))
    try:
        if isinstance(body, dict):
            body = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


# ---- register -----------------------------------------------------------------

def test_register_creates_a_user(auth):
    name = unique_name()
    status, doc = register(auth, name)
    assert status == 201
    assert set(doc) == {"id", "username", "role"}
    assert isinstance(doc["id"], int) and doc["id"] > 0
    assert doc["username"] == name and doc["role"] == "user"


def test_register_taken_is_409(auth):
    name = unique_name()
    assert register(auth, name)[0] == 201
    status, doc = register(auth, name, "another-password")
    assert_error(status, doc, 409, "conflict")
    # The admin's name is taken too.
    assert register(auth, ADMIN_USER)[0] == 409


@pytest.mark.parametrize("username", [
    "ab",                   # too short
    "a" * 33,               # too long
    "Alice",                # upper case
    "al ice",               # space
    "ålice",                # not ASCII
    "bob\u200b",            # zero-width space
    "bob/../x",             # slash
    "",
    "...",                  # only dots
    "....",
    "alice.",               # ends in a dot
    "a.b.",
    "..a.",
])
def test_register_rejects_bad_usernames(auth, username):
    status, doc = register(auth, username)
    assert_error(status, doc, 400, "bad_request")
    assert "username" in doc["error"]["message"]


@pytest.mark.parametrize("username", ["abc", "z" * 32, "x.y_z-0", ".ab", "a..b"])
def test_register_accepts_username_bounds(auth, username):
    assert register(auth, username)[0] == 201
    assert login(auth, username, "correct-horse")


@pytest.mark.parametrize("password", ["a" * 7, "é" * 3 + "a", "a" * 129, ""])
def test_register_rejects_bad_passwords(auth, password):
    status, doc = register(auth, unique_name(), password)
    assert_error(status, doc, 400, "bad_request")
    assert "password" in doc["error"]["message"]


@pytest.mark.parametrize("password", ["a" * 8, "é" * 4, "a" * 128])
def test_register_accepts_password_bounds_in_bytes(auth, password):
    name = unique_name()
    assert register(auth, name, password)[0] == 201
    assert login(auth, name, password)


@pytest.mark.parametrize("body", [
    {"username": "NAME", "password": "correct-horse", "role": "admin"},
    {"username": "NAME", "password": "correct-horse", "id": 1},
    {"username": 123, "password": "correct-horse"},
    {"username": "NAME", "password": 12345678},
    {"username": "NAME", "password": None},
    {"username": ["NAME"], "password": "correct-horse"},
    {"username": "NAME"},
    {"password": "correct-horse"},
    {"username": "NAME", "password": "correct\u0000horse"},
    {"username": "NAME\u0000x", "password": "correct-horse"},
    [],
    "NAME",
    None,
])
def test_register_rejects_bad_bodies(auth, body):
    name = unique_name()
    raw = json.dumps(body).replace("NAME", name).encode()
    status, _, data = auth.request("POST", "/auth/register", raw, JSON)
    assert_error(status, json.loads(data), 400)
    # Nothing was created: the name is still free.
    assert register(auth, name)[0] == 201


def test_role_field_never_makes_an_admin(auth):
    name = unique_name()
    assert register(auth, name, role="admin")[0] == 400
    status, doc = register(auth, name)
    assert status == 201 and doc["role"] == "user"
    token = login(auth, name, "correct-horse")
    assert auth.json("GET", "/auth/me", headers=bearer(token))[1]["role"] == "user"


def test_malformed_json_is_400_with_position(auth):
    status, _, data = auth.request("POST", "/auth/register", b'{"username": "abc",\n "password": }', JSON)
    doc = json.loads(data)
    assert_error(status, doc, 400)
    assert "line 2" in doc["error"]["message"] and "column" in doc["error"]["message"], doc


@pytest.mark.parametrize("headers", [{"Content-Type": "text/plain"},
                                     {"Content-Type": "application/x-www-form-urlencoded"},
                                     {"Content-Type": "multipart/form-data; boundary=x"}])
def test_body_without_json_content_type_is_415(auth, headers):
    body = json.dumps({"username": unique_name(), "password": "correct-horse"}).encode()
    for path in ("/auth/register", "/auth/login"):
        status, _, data = auth.request("POST", path, body, headers)
        assert_error(status, json.loads(data), 415)


# ---- login --------------------------------------------------------------------

def test_login_returns_token_and_cookie(auth):
    name = unique_name()
    register(auth, name)
    status, hdrs, data = auth.request("POST", "/auth/login", {"username": name, "password": "correct-horse"})
    assert status == 200
    doc = json.loads(data)
    assert set(doc) == {"access_token", "token_type", "expires_in"}
    assert doc["token_type"] == "Bearer" and doc["expires_in"] == 3600
    token = doc["access_token"]
    assert token.count(".") == 2
    cookie = [p.strip() for p in hdrs["set-cookie"].split(";")]
    assert cookie[0] == f"token={token}"
    for attr in ("HttpOnly", "SameSite=Strict", "Path=/"):
        assert attr in cookie, hdrs["set-cookie"]
    assert "no-store" in hdrs.get("cache-control", "")


def test_login_failures_look_the_same(auth):
    name = unique_name()
    register(auth, name)
    answers = []
    for user, pw in [(name, "wrong-password"), ("nobody-" + name, "correct-horse"),
                     ("No Such User!", "correct-horse"), (name, "short")]:
        status, hdrs, data = auth.request("POST", "/auth/login", {"username": user, "password": pw})
        assert status == 401, (user, pw, status, data)
        assert "set-cookie" not in hdrs
        assert hdrs.get("www-authenticate", "").startswith("Bearer")
        answers.append(data)
    assert json.loads(answers[0]) == UNAUTHORIZED
    assert len(set(answers)) == 1, answers


def test_login_failures_cost_one_argon2id_computation(auth):
    """An unknown user costs exactly what a wrong password costs: one Argon2id
    verification (against a dummy hash for the unknown user), counted rather
    than timed; the stopwatch comparison is in bench/ (group auth-timing)."""
    name = unique_name()
    _, work = work_of(auth, lambda: register(auth, name))
    assert work == {"hash": 1, "verify": 0}
    for user, pw in [("ghost-" + name, "correct-horse"),   # unknown user
                     ("No Such User!", "correct-horse"),     # could never have registered
                     (name, "wrong-password"),               # wrong password
                     (name, "correct-horse")]:               # right password
        (status, doc), work = work_of(auth, lambda: auth.json("POST", "/auth/login",
                                                              {"username": user, "password": pw}))
        assert status == (200 if pw == "correct-horse" and user == name else 401), doc
        assert work == {"hash": 0, "verify": 1}, (user, pw, work)
    # Refused before any hashing: a body that is no login costs nothing.
    (status, _), work = work_of(auth, lambda: auth.json("POST", "/auth/login", {"username": name}))
    assert status == 400 and work == {"hash": 0, "verify": 0}


def test_login_with_bad_body_is_400(auth):
    for body in ({"username": "abc"}, {"username": "abc", "password": "x" * 129},
                 {"username": "abc", "password": "correct-horse", "remember": True}, ["abc"]):
        status, doc = auth.json("POST", "/auth/login", body)
        assert_error(status, doc, 400)


# ---- tokens, /auth/me, keys -----------------------------------------------------

def test_me_with_bearer_and_with_cookie(auth):
    name = unique_name()
    _, reg = register(auth, name)
    token = login(auth, name, "correct-horse")
    status, me = auth.json("GET", "/auth/me", headers=bearer(token))
    assert status == 200
    assert me["sub"] == str(reg["id"]) and me["name"] == name and me["role"] == "user"
    assert me["iss"] == ISSUER and me["aud"] == AUDIENCE and me["exp"] - me["iat"] == 3600 and me["jti"]
    # Every claim of the token, as the README says, and nothing else.
    assert me == jwt_decode(token)[1]
    assert set(me) == {"iss", "sub", "aud", "iat", "exp", "jti", "name", "role"}
    assert auth.json("GET", "/auth/me", headers={"Cookie": f"other=1; token={token}"}) == (200, me)


@pytest.mark.parametrize("headers,token_sent", [
    ({}, False),
    ({"Authorization": "Bearer"}, False),
    ({"Authorization": "Basic YWRtaW46YWRtaW4="}, False),
    ({"Authorization": "Bearer not.a.token"}, True),
    ({"Cookie": "token=garbage"}, True),
])
def test_me_without_a_valid_token_is_401(auth, headers, token_sent):
    status, hdrs, data = auth.request("GET", "/auth/me", headers=headers)
    assert_error(status, json.loads(data), 401, "unauthorized")
    # RFC 6750 section 3.1: an error code only when credentials were sent.
    expected = 'Bearer realm="svckit"' + (', error="invalid_token"' if token_sent else "")
    assert hdrs["www-authenticate"] == expected


def test_a_token_for_ever_is_refused(auth):
    """Validly signed with auth's own key, but with an exp from far away: no
    longer than AUTH_MAX_TOKEN_LIFETIME (24 h by default) is accepted."""
    kid, key = auth_signing_key(auth)
    now = int(jwt_decode(register_and_login(auth))[1]["iat"])
    for over in ({"exp": 1e300}, {"exp": now + 2 * 86400, "iat": None}, {"exp": now + 86400 + 60},
                 {"iat": now - 86400, "exp": now + 60}):
        status, doc = auth.json("GET", "/auth/me", headers=bearer(sign_eddsa(key, kid, claims(**over))))
        assert_error(status, doc, 401, "unauthorized")
    # Within the bound, the same key's token is fine.
    status, me = auth.json("GET", "/auth/me", headers=bearer(sign_eddsa(key, kid, claims(exp=now + 86400))))
    assert status == 200 and me["exp"] == now + 86400


def test_jwks_publishes_the_signing_key(auth):
    token = register_and_login(auth)
    status, hdrs, data = auth.request("GET", "/.well-known/jwks.json")
    assert status == 200 and hdrs["content-type"].startswith("application/json")
    keys = json.loads(data)["keys"]
    assert len(keys) == 1
    jwk = keys[0]
    assert jwk["kty"] == "OKP" and jwk["crv"] == "Ed25519" and jwk["alg"] == "EdDSA"
    assert "d" not in jwk, "the private key must never be published"
    header, payload, sig, signing_input = jwt_decode(token)
    assert header["alg"] == "EdDSA" and header["kid"] == jwk["kid"]
    jwk_public_key(jwk).verify(sig, signing_input)  # raises if the signature is not the key's
    with pytest.raises(InvalidSignature):
        jwk_public_key(jwk).verify(sig, signing_input + b"x")
    assert payload["iss"] == ISSUER and payload["aud"] in (AUDIENCE, [AUDIENCE])
    assert set(payload) >= {"iss", "sub", "aud", "iat", "exp", "jti", "name", "role"}


def test_signing_key_file_is_private_and_survives_a_restart(tmp_path):
    data = str(tmp_path)
    with start_auth(data_dir=data) as a:
        key_file = os.path.join(data, "auth-signing-key.json")
        assert file_mode(key_file) == 0o600
        token = register_and_login(a, "survivor")
        kid = jwt_decode(token)[0]["kid"]
        assert json.load(open(key_file))["kid"] == kid
    with start_auth(data_dir=data) as a:
        status, me = a.json("GET", "/auth/me", headers=bearer(token))
        assert status == 200 and me["name"] == "survivor"
        assert [k["kid"] for k in a.json("GET", "/.well-known/jwks.json")[1]["keys"]] == [kid]
        assert jwt_decode(login(a, "survivor", "correct-horse"))[0]["kid"] == kid
        assert file_mode(key_file) == 0o600


def test_admin_from_environment(tmp_path):
    with start_auth({"ADMIN_USERNAME": "boss", "ADMIN_PASSWORD": "boss-secret-1"}, data_dir=str(tmp_path)) as a:
        token = login(a, "boss", "boss-secret-1")
        assert a.json("GET", "/auth/me", headers=bearer(token))[1]["role"] == "admin"
        assert a.json("POST", "/auth/login", {"username": ADMIN_USER, "password": ADMIN_PASS})[0] == 401
        assert not os.path.exists(os.path.join(str(tmp_path), "admin-password"))


def test_default_admin_of_the_shared_service(auth):
    token = login(auth, ADMIN_USER, ADMIN_PASS)
    assert jwt_decode(token)[1]["role"] == "admin"


def test_generated_admin_password(tmp_path):
    data = str(tmp_path)
    with start_auth({"ADMIN_PASSWORD": ""}, data_dir=data) as a:
        path = os.path.join(data, "admin-password")
        assert file_mode(path) == 0o600
        password = open(path).read().strip()
        assert len(password) >= 16
        token = login(a, ADMIN_USER, password)
        assert a.json("GET", "/auth/me", headers=bearer(token))[1]["role"] == "admin"
    # A restart keeps the admin and its password.
    with start_auth({"ADMIN_PASSWORD": ""}, data_dir=data) as a:
        assert open(path).read().strip() == password
        login(a, ADMIN_USER, password)


def test_generated_admin_password_file_is_private_even_if_it_existed(tmp_path):
    path = tmp_path / "admin-password"
    path.write_text("stale\n")
    os.chmod(path, 0o644)
    with start_auth({"ADMIN_PASSWORD": ""}, data_dir=str(tmp_path)) as a:
        assert file_mode(str(path)) == 0o600
        login(a, ADMIN_USER, path.read_text().strip())


def test_login_rate_limit(tmp_path):
    with start_auth({"LOGIN_RATE_PER_MIN": "3"}, data_dir=str(tmp_path)) as a:
        register(a, "limited")
        for _ in range(3):
            status, _, _ = a.request("POST", "/auth/login", {"username": "limited", "password": "wrong-password"})
            assert status == 401
        # Even the right password is refused now, and without hashing anything.
        (status, hdrs, data), work = work_of(a, lambda: a.request(
            "POST", "/auth/login", {"username": "limited", "password": "correct-horse"}))
        assert status == 429, data
        assert_error(status, json.loads(data), 429)
        assert 1 <= int(hdrs["retry-after"]) <= 60
        assert "set-cookie" not in hdrs
        assert work == {"hash": 0, "verify": 0}
        # Other routes are not limited.
        assert a.json("GET", "/.well-known/jwks.json")[0] == 200
        assert register(a, "limited-2")[0] == 201


def test_one_clients_limit_never_refuses_another(tmp_path):
    """The finding: the limiter hashed addresses into 4,096 shared slots, so
    once many addresses had drained theirs, a fresh address got 429 on its
    very first login. Drain more addresses than the limiter tracks (each
    request is refused as a bad body after taking its token: no Argon2id),
    then fresh addresses must still be let in, and a drained one still not."""
    tracked = 4096  # SVC_RATELIMIT_KEYS
    with start_auth({"LOGIN_RATE_PER_MIN": "1"}, data_dir=str(tmp_path)) as a:
        drained = [f"127.1.{i >> 8}.{i & 255}" for i in range(tracked + 200)]
        for source in drained:
            status, _, _ = request_from(a, source, "POST", "/auth/login", {})
            assert status == 400, f"{source}: {status} on its very first request"
        for i in range(20):
            status, _, data = request_from(a, f"127.2.0.{i + 1}", "POST", "/auth/login",
                                           {"username": "nobody", "password": "correct-horse"})
            assert status == 401, (i, status, data)  # answered, not 429
        for source in drained[-20:]:
            status, hdrs, _ = request_from(a, source, "POST", "/auth/login", {})
            assert status == 429 and "retry-after" in hdrs, source


def test_hs256_mode(tmp_path):
    secret = b"s" * 16 + os.urandom(8).hex().encode()
    assert len(secret) == 32
    with start_auth({"JWT_SECRET": secret.decode()}, data_dir=str(tmp_path)) as a:
        token = register_and_login(a)
        header, payload, sig, signing_input = jwt_decode(token)
        assert header["alg"] == "HS256"
        assert hmac.compare_digest(sig, hmac.new(secret, signing_input, hashlib.sha256).digest())
        assert a.json("GET", "/auth/me", headers=bearer(token))[0] == 200
        assert a.json("GET", "/.well-known/jwks.json") == (200, {"keys": []})


def test_register_rate_limit(tmp_path):
    with start_auth({"REGISTER_RATE_PER_MIN": "2"}, data_dir=str(tmp_path)) as a:
        for name in ("early-one", "early-two"):
            status, _, data = a.request("POST", "/auth/register", {"username": name, "password": "correct-horse"})
            assert status == 201, data
        # The third within the minute is refused, without hashing anything.
        (status, hdrs, data), work = work_of(a, lambda: a.request(
            "POST", "/auth/register", {"username": "third-one", "password": "correct-horse"}))
        assert status == 429, data
        assert work == {"hash": 0, "verify": 0}
        doc = json.loads(data)
        assert_error(status, doc, 429, "too_many_requests")
        assert doc["error"]["message"].startswith("too many registrations; retry in "), doc
        # A bucket of 2 refilled over a minute: the next token is 30 s away.
        assert 1 <= int(hdrs["retry-after"]) <= 30, hdrs
        # The limit comes before the body is even read.
        status, hdrs, data = a.request("POST", "/auth/register", b'{"username": ', headers=JSON)
        assert status == 429 and "retry-after" in hdrs, data
        # No account was made: its login fails like an unknown user's.
        assert a.json("POST", "/auth/login", {"username": "third-one", "password": "correct-horse"}) == \
            (401, UNAUTHORIZED)
        # Login has its own bucket; other routes are not limited.
        login(a, "early-one", "correct-horse")
        login(a, "early-two", "correct-horse")
        assert a.json("GET", "/.well-known/jwks.json")[0] == 200
        assert register(a, "fourth-one")[0] == 429, "still refused"
    # The buckets live in memory: on the same data after a restart, the
    # refused name is free, and the earlier ones are really taken.
    with start_auth({"REGISTER_RATE_PER_MIN": "2"}, data_dir=str(tmp_path)) as a:
        assert register(a, "third-one")[0] == 201
        assert_error(*register(a, "early-one"), 409, "conflict")


def test_register_rate_limit_default_is_5(tmp_path):
    # REGISTER_RATE_PER_MIN unset: the default applies.
    with Service("auth", env={"ADMIN_PASSWORD": ADMIN_PASS}, data_dir=str(tmp_path)) as a:
        for i in range(5):
            assert register(a, f"default-{i}")[0] == 201
        status, doc = register(a, "default-5")
        assert_error(status, doc, 429, "too_many_requests")


@pytest.mark.parametrize("value", ["0", "-1", "1000001", "five", "5x"])
def test_bad_register_rate_stops_the_service(value):
    with Service("auth", env={"REGISTER_RATE_PER_MIN": value}, wait_ready=False, check_exit=False) as s:
        assert s.proc.wait(10) == 2
        errors = [d["msg"] for d in map(json.loads, s.read_log().splitlines()) if d["level"] == "error"]
        assert errors == [f'invalid configuration: REGISTER_RATE_PER_MIN="{value}": expected 1 to 1000000'], errors
        assert not os.path.exists(os.path.join(s.data_dir, "auth.db")), "stopped before opening the database"


@pytest.mark.parametrize("service", ["auth", "products"])
def test_short_jwt_secret_stops_the_service(service):
    with Service(service, env={"JWT_SECRET": "x" * 31}, wait_ready=False, check_exit=False) as s:
        assert s.proc.wait(10) == 2
        lines = [ln for ln in s.read_log().splitlines() if ln.strip()]
        assert len(lines) == 1 and "JWT_SECRET" in lines[0], lines


# ---- the login cookie's Secure attribute ----------------------------------------

def cookie_attributes(svc, source="127.0.0.1", headers=None):
    name = unique_name()
    assert request_from(svc, source, "POST", "/auth/register", {"username": name, "password": "correct-horse"})[0] \
        == 201
    status, hdrs, _ = request_from(svc, source, "POST", "/auth/login",
                                   {"username": name, "password": "correct-horse"}, headers)
    assert status == 200
    return [p.strip() for p in hdrs["set-cookie"].split(";")][1:]


def test_cookie_secure_behind_a_trusted_proxy(tmp_path):
    """auto (the default): Secure when a proxy listed in TRUSTED_PROXIES says
    the client came over https; anyone else's X-Forwarded-Proto is ignored,
    either way."""
    with start_auth({"TRUSTED_PROXIES": "127.0.0.2, 127.3.0.0/16"}, data_dir=str(tmp_path)) as a:
        https = {"X-Forwarded-Proto": "https"}
        assert "Secure" not in cookie_attributes(a)
        assert "Secure" not in cookie_attributes(a, "127.0.0.1", https)  # a direct client
        assert "Secure" not in cookie_attributes(a, "127.0.0.3", https)
        assert "Secure" in cookie_attributes(a, "127.0.0.2", https)
        assert "Secure" in cookie_attributes(a, "127.3.9.9", {"X-Forwarded-Proto": "HTTPS"})
        assert "Secure" not in cookie_attributes(a, "127.0.0.2")
        assert "Secure" not in cookie_attributes(a, "127.0.0.2", {"X-Forwarded-Proto": "http"})
        # An appending proxy puts its own view last: "https" before it may be the client's.
        assert "Secure" not in cookie_attributes(a, "127.0.0.2", {"X-Forwarded-Proto": "https, http"})
        assert "Secure" in cookie_attributes(a, "127.0.0.2", {"X-Forwarded-Proto": "http, https"})
        assert "Secure" not in cookie_attributes(a, "127.0.0.2", {"X-Forwarded-Proto": "httpsx"})
        # The rest of the cookie is the same either way.
        for attrs in (cookie_attributes(a), cookie_attributes(a, "127.0.0.2", https)):
            assert attrs[:4] == ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=3600"], attrs


@pytest.mark.parametrize("mode,secure", [("always", True), ("never", False)])
def test_cookie_secure_always_or_never(tmp_path, mode, secure):
    with start_auth({"COOKIE_SECURE": mode, "TRUSTED_PROXIES": "127.0.0.2"}, data_dir=str(tmp_path)) as a:
        for source, proto in (("127.0.0.1", None), ("127.0.0.2", "https"), ("127.0.0.2", "http")):
            attrs = cookie_attributes(a, source, {"X-Forwarded-Proto": proto} if proto else None)
            assert ("Secure" in attrs) == secure, (source, proto, attrs)


@pytest.mark.parametrize("env,var", [
    ({"COOKIE_SECURE": "yes"}, "COOKIE_SECURE"),
    ({"TRUSTED_PROXIES": "10.0.0.1,nonsense"}, "TRUSTED_PROXIES"),
    ({"TRUSTED_PROXIES": "10.0.0.0/33"}, "TRUSTED_PROXIES"),
    ({"TRUSTED_PROXIES": "::1/129"}, "TRUSTED_PROXIES"),
    ({"TRUSTED_PROXIES": "10.0.0.1,,10.0.0.2"}, "TRUSTED_PROXIES"),
    ({"JWT_TTL": "86401"}, "JWT_TTL"),  # longer than AUTH_MAX_TOKEN_LIFETIME
    ({"JWT_TTL": "7200", "AUTH_MAX_TOKEN_LIFETIME": "3600"}, "JWT_TTL"),
    ({"AUTH_MAX_TOKEN_LIFETIME": "59"}, "AUTH_MAX_TOKEN_LIFETIME"),
    ({"ADMIN_USERNAME": "admin."}, "ADMIN_USERNAME"),
])
def test_bad_settings_stop_the_service(env, var):
    with Service("auth", env=env, wait_ready=False, check_exit=False) as s:
        assert s.proc.wait(10) == 2
        lines = [ln for ln in s.read_log().splitlines() if ln.strip()]
        errors = [ln for ln in lines if var in ln]
        assert len(errors) == 1 and "invalid configuration" in errors[0], lines


def test_longer_token_lifetimes_when_configured(tmp_path):
    week = str(7 * 86400)
    with start_auth({"JWT_TTL": week, "AUTH_MAX_TOKEN_LIFETIME": week}, data_dir=str(tmp_path)) as a:
        token = register_and_login(a)
        status, me = a.json("GET", "/auth/me", headers=bearer(token))
        assert status == 200 and me["exp"] - me["iat"] == 7 * 86400
