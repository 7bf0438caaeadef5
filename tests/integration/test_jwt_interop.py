"""JWT interop: svckit against PyJWT (Debian's python3-jwt) and node's jose.

Tokens signed by svckit (through build/tests/bin/jwt_tool) must verify with
both libraries, tokens they sign must verify with svckit, for EdDSA and HS256;
and svckit must refuse their tokens when a claim or the algorithm is wrong.
jose is installed into tests/interop/node_modules with `npm ci` on first use.
"""
import base64
import json
import os
import subprocess
import time
from pathlib import Path

import jwt
import pytest
from jwt.algorithms import OKPAlgorithm

from conftest import npm_ci

ROOT = Path(__file__).resolve().parents[2]
INTEROP = ROOT / "tests" / "interop"
SECRET = "interop-shared-secret-0123456789abcdef"
ISS, AUD = "svckit-auth", "svckit"


def tool_path():
    p = Path(os.environ.get("SVCKIT_BUILD", "build")) / "tests" / "bin" / "jwt_tool"
    return p if p.is_absolute() else ROOT / p


def tool(*args):
    return subprocess.run([str(tool_path()), *args], capture_output=True, text=True, timeout=30)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**over):
    now = int(time.time())
    c = {"iss": ISS, "sub": "42", "aud": AUD, "iat": now, "exp": now + 600,
         "jti": "jti-1", "name": "Ann Lee", "role": "admin"}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


@pytest.fixture(scope="module")
def jose():
    node = npm_ci(INTEROP, "jose/package.json")

    def run(*args):
        return subprocess.run([node, str(INTEROP / "jwt_jose.mjs"), *args],
                              capture_output=True, text=True, timeout=60)
    return run


@pytest.fixture
def keys(tmp_path):
    """An Ed25519 key made by svckit (private JWK, JWKS) and an HS256 oct JWK."""
    assert tool_path().exists(), f"{tool_path()} is not built"
    r = tool("gen", "interop-1")
    assert r.returncode == 0, r.stderr
    priv = tmp_path / "ed.json"
    priv.write_text(r.stdout)
    r = tool("pub", str(priv))
    assert r.returncode == 0, r.stderr
    jwks = tmp_path / "jwks.json"
    jwks.write_text(r.stdout)
    oct_ = tmp_path / "hs.json"
    oct_.write_text(json.dumps({"kty": "oct", "k": b64url(SECRET.encode()), "kid": "hs256",
                                "alg": "HS256"}))
    jwk = json.loads(priv.read_text())
    return {"priv": priv, "jwks": jwks, "oct": oct_, "jwk": jwk,
            "ed_private": OKPAlgorithm.from_jwk(priv.read_text()),
            "ed_public": OKPAlgorithm.from_jwk(json.dumps(json.loads(jwks.read_text())["keys"][0]))}


def svckit_sign(keys, alg, payload=None):
    key = ["--jwk", str(keys["priv"])] if alg == "EdDSA" else ["--secret", SECRET]
    body = ["--claims", json.dumps(payload)] if payload else ["--sub", "42", "--name", "Ann Lee",
                                                              "--role", "admin"]
    r = tool("sign", *key, *body)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def svckit_verify(keys, alg, token, *extra):
    key = ["--jwks", str(keys["jwks"])] if alg == "EdDSA" else ["--secret", SECRET]
    return tool("verify", *key, *extra, token)


def header(token):
    h = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(h + "=" * (-len(h) % 4)))


# ---- svckit signs ----------------------------------------------------------

@pytest.mark.parametrize("alg", ["EdDSA", "HS256"])
def test_svckit_token_verifies_with_pyjwt(keys, alg):
    token = svckit_sign(keys, alg)
    h = header(token)
    assert h["alg"] == alg and h["typ"] == "JWT"
    assert h["kid"] == ("interop-1" if alg == "EdDSA" else "hs256")
    key = keys["ed_public"] if alg == "EdDSA" else SECRET
    c = jwt.decode(token, key, algorithms=[alg], audience=AUD, issuer=ISS)
    assert c["sub"] == "42" and c["name"] == "Ann Lee" and c["role"] == "admin"
    assert c["exp"] - c["iat"] == 3600 and len(c["jti"]) == 22
    # The check is real: another key or audience fails.
    with pytest.raises(jwt.InvalidTokenError):
        jwt.decode(token, key, algorithms=[alg], audience="other", issuer=ISS)
    other = OKPAlgorithm.from_jwk(tool("gen").stdout).public_key() if alg == "EdDSA" else SECRET + "x"
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, other, algorithms=[alg], audience=AUD, issuer=ISS)


@pytest.mark.parametrize("alg", ["EdDSA", "HS256"])
def test_svckit_token_verifies_with_jose(keys, jose, alg):
    token = svckit_sign(keys, alg)
    keyfile = keys["jwks"] if alg == "EdDSA" else keys["oct"]
    r = jose("verify", str(keyfile), token)
    assert r.returncode == 0, r.stderr
    c = json.loads(r.stdout)
    assert c["sub"] == "42" and c["aud"] == AUD and c["iss"] == ISS and c["role"] == "admin"
    r = jose("verify", str(keyfile), token, ISS, "other")
    assert r.returncode == 1 and "aud" in r.stderr


def test_jose_refuses_svckit_token_under_another_key(keys, jose, tmp_path):
    token = svckit_sign(keys, "EdDSA")
    other = tmp_path / "other.json"
    other.write_text(tool("gen", "interop-1").stdout)  # same kid, different key
    jwks = tmp_path / "other-jwks.json"
    jwks.write_text(tool("pub", str(other)).stdout)
    r = jose("verify", str(jwks), token)
    assert r.returncode == 1 and "signature" in r.stderr


# ---- PyJWT and jose sign ---------------------------------------------------

@pytest.mark.parametrize("alg", ["EdDSA", "HS256"])
@pytest.mark.parametrize("with_kid", [True, False])
def test_pyjwt_token_verifies_with_svckit(keys, alg, with_kid):
    key = keys["ed_private"] if alg == "EdDSA" else SECRET
    headers = {"kid": "interop-1" if alg == "EdDSA" else "hs256"} if with_kid else None
    token = jwt.encode(claims(), key, algorithm=alg, headers=headers)
    r = svckit_verify(keys, alg, token)
    assert r.returncode == 0, r.stderr
    c = json.loads(r.stdout)
    assert c["sub"] == "42" and c["name"] == "Ann Lee" and c["role"] == "admin"
    assert c["jti"] == "jti-1" and c["iss"] == ISS


@pytest.mark.parametrize("alg", ["EdDSA", "HS256"])
def test_jose_token_verifies_with_svckit(keys, jose, alg):
    keyfile = keys["priv"] if alg == "EdDSA" else keys["oct"]
    r = jose("sign", str(keyfile), json.dumps(claims(aud=["other", AUD], nbf=int(time.time()))))
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    assert header(token)["alg"] == alg
    r = svckit_verify(keys, alg, token)
    assert r.returncode == 0, r.stderr
    c = json.loads(r.stdout)
    assert c["sub"] == "42" and c["role"] == "admin" and "nbf" in c


# ---- svckit refuses --------------------------------------------------------

@pytest.mark.parametrize("alg", ["EdDSA", "HS256"])
def test_svckit_refuses_pyjwt_token_for_another_audience(keys, alg):
    key = keys["ed_private"] if alg == "EdDSA" else SECRET
    token = jwt.encode(claims(aud="billing"), key, algorithm=alg)
    r = svckit_verify(keys, alg, token)
    assert r.returncode == 1
    assert "wrong audience" in r.stderr
    # ...and accepts it when that audience is what the verifier wants.
    r = svckit_verify(keys, alg, token, "--aud", "billing")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("change,reason", [
    ({"iss": "someone-else"}, "wrong issuer"),
    ({"exp": int(time.time()) - 3600}, "token expired"),
    ({"nbf": int(time.time()) + 3600}, "token not yet valid"),
    ({"exp": None}, "token has no exp"),
    ({"exp": str(int(time.time()) + 600)}, "exp is not a number"),
    # Validly signed, but for ever: the lifetime bound (24 h by default).
    ({"exp": 1e300}, "exp is too far in the future"),
    ({"exp": int(time.time()) + 2 * 86400, "iat": None}, "exp is too far in the future"),
    ({"exp": int(time.time()) + 3600, "iat": int(time.time()) - 86400}, "token lifetime too long"),
    ({"aud": ["a", "b"]}, "wrong audience"),
    ({"sub": None}, "bad sub"),
])
def test_svckit_refuses_pyjwt_tokens_with_bad_claims(keys, change, reason):
    payload = claims(**change)
    token = jwt.encode(payload, keys["ed_private"], algorithm="EdDSA",
                       headers={"kid": "interop-1"})
    r = svckit_verify(keys, "EdDSA", token)
    assert r.returncode == 1, r.stdout
    assert reason in r.stderr


def test_svckit_refuses_algorithm_confusion_from_pyjwt(keys):
    # alg "none", which PyJWT will still produce on request.
    token = jwt.encode(claims(), None, algorithm="none")
    r = svckit_verify(keys, "EdDSA", token)
    assert r.returncode == 1 and "algorithm not allowed" in r.stderr
    # HS256 keyed with the Ed25519 public key, as raw bytes and as its x string.
    raw = base64.urlsafe_b64decode(keys["jwk"]["x"] + "=")
    for secret in (raw, keys["jwk"]["x"].encode()):
        for headers in ({"kid": "interop-1"}, None):
            token = jwt.encode(claims(), secret, algorithm="HS256", headers=headers)
            r = svckit_verify(keys, "EdDSA", token)
            assert r.returncode == 1, token
            assert "algorithm not allowed for this key" in r.stderr


def test_svckit_unknown_kid_is_its_own_outcome(keys):
    token = jwt.encode(claims(), keys["ed_private"], algorithm="EdDSA",
                       headers={"kid": "rotated-away"})
    r = svckit_verify(keys, "EdDSA", token)
    assert r.returncode == 3 and "unknown key id" in r.stderr
