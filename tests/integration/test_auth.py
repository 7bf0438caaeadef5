"""The auth service: accounts, logins, tokens, keys, the first admin, limits.

One auth process serves most tests (module fixture); tests that need their own
configuration or a restart start their own.
"""
import hashlib
import hmac
import json
import os
import statistics

import pytest
from cryptography.exceptions import InvalidSignature

from conftest import Service
from services_fixtures import (ADMIN_PASS, ADMIN_USER, AUDIENCE, ISSUER, bearer, file_mode,
                               jwk_public_key, jwt_decode, login, register_and_login, start_auth, timed,
                               unique_name)

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
])
def test_register_rejects_bad_usernames(auth, username):
    status, doc = register(auth, username)
    assert_error(status, doc, 400, "bad_request")
    assert "username" in doc["error"]["message"]


@pytest.mark.parametrize("username", ["abc", "z" * 32, "x.y_z-0"])
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


def test_login_time_does_not_reveal_unknown_users(auth):
    """Both failures do one Argon2id computation, so their medians are close.
    The machine is shared: a round may be disturbed, but an unknown user that
    skipped the hashing would answer many times faster in every round."""
    name = unique_name()
    register(auth, name)
    rounds = []
    for _ in range(3):
        unknown, wrong = [], []
        for i in range(5):
            unknown.append(timed(auth.request, "POST", "/auth/login",
                                 {"username": f"ghost-{i}-{name}", "password": "correct-horse"})[0])
            wrong.append(timed(auth.request, "POST", "/auth/login",
                               {"username": name, "password": f"wrong-password-{i}"})[0])
        mu, mw = statistics.median(unknown), statistics.median(wrong)
        print(f"login medians: unknown user {mu * 1000:.1f} ms, wrong password {mw * 1000:.1f} ms")
        rounds.append((mu, mw))
        if 0.5 <= mu / mw <= 2.0:
            return
    raise AssertionError(f"median login times (unknown user, wrong password) differ over 2x: {rounds}")


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
    assert me["iss"] == ISSUER and me["exp"] - me["iat"] == 3600 and me["jti"]
    assert auth.json("GET", "/auth/me", headers={"Cookie": f"other=1; token={token}"}) == (200, me)


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer not.a.token"},
    {"Authorization": "Basic YWRtaW46YWRtaW4="},
    {"Cookie": "token=garbage"},
])
def test_me_without_a_valid_token_is_401(auth, headers):
    status, hdrs, data = auth.request("GET", "/auth/me", headers=headers)
    assert_error(status, json.loads(data), 401, "unauthorized")
    assert hdrs["www-authenticate"].startswith("Bearer")


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
        slow = []
        for _ in range(3):
            t, (status, _, _) = timed(a.request, "POST", "/auth/login",
                                      {"username": "limited", "password": "wrong-password"})
            assert status == 401
            slow.append(t)
        # Even the right password is refused now, and without hashing anything.
        t, (status, hdrs, data) = timed(a.request, "POST", "/auth/login",
                                        {"username": "limited", "password": "correct-horse"})
        assert status == 429, data
        assert_error(status, json.loads(data), 429)
        assert 1 <= int(hdrs["retry-after"]) <= 60
        assert "set-cookie" not in hdrs
        print(f"login: 401 median {statistics.median(slow) * 1000:.1f} ms, 429 {t * 1000:.1f} ms")
        assert t < min(slow) / 3, (t, slow)
        # Other routes are not limited.
        assert a.json("GET", "/.well-known/jwks.json")[0] == 200
        assert register(a, "limited-2")[0] == 201


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
        slow = []
        for name in ("early-one", "early-two"):
            t, (status, _, data) = timed(a.request, "POST", "/auth/register",
                                         {"username": name, "password": "correct-horse"})
            assert status == 201, data
            slow.append(t)
        # The third within the minute is refused, without hashing anything.
        t, (status, hdrs, data) = timed(a.request, "POST", "/auth/register",
                                        {"username": "third-one", "password": "correct-horse"})
        assert status == 429, data
        doc = json.loads(data)
        assert_error(status, doc, 429, "too_many_requests")
        assert doc["error"]["message"].startswith("too many registrations; retry in "), doc
        # A bucket of 2 refilled over a minute: the next token is 30 s away.
        assert 1 <= int(hdrs["retry-after"]) <= 30, hdrs
        print(f"register: 201 median {statistics.median(slow) * 1000:.1f} ms, 429 {t * 1000:.1f} ms")
        assert t < min(slow) / 3, (t, slow)
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
