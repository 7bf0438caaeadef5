"""Helpers shared by the auth, products, system and Postman tests.

Starts the reference system's services through conftest.Service, logs users
in, and makes and reads JWTs by hand (with the `cryptography` package) so
that tests can forge tokens the services must refuse.
"""
import base64
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from conftest import Service

ADMIN_USER = "admin"
ADMIN_PASS = "admin-pass-0123"
ISSUER = "svckit-auth"
AUDIENCE = "svckit"
# High enough that no test but the rate-limit one ever meets the limiter
# (every request comes from 127.0.0.1, so they all share one bucket).
NO_RATE_LIMIT = "1000000"


def unique_name(prefix="user"):
    return f"{prefix}-{secrets.token_hex(4)}"


def start_auth(env=None, **kw):
    """auth without its per-address limits (tests send everything from
    127.0.0.1); the tests of a limit set it in env."""
    e = {"ADMIN_PASSWORD": ADMIN_PASS, "LOGIN_RATE_PER_MIN": NO_RATE_LIMIT, "REGISTER_RATE_PER_MIN": NO_RATE_LIMIT}
    e.update(env or {})
    return Service("auth", env=e, **kw)


def jwks_url(auth):
    return f"http://127.0.0.1:{auth.port}/.well-known/jwks.json"


def start_products(auth, env=None, **kw):
    e = {"AUTH_JWKS_URL": jwks_url(auth)}
    e.update(env or {})
    return Service("products", env=e, **kw)


@contextlib.contextmanager
def running_system(auth_env=None, products_env=None):
    """auth, then products verifying its tokens through its JWKS."""
    with start_auth(auth_env) as auth:
        with start_products(auth, products_env) as products:
            yield auth, products


def login(auth, username, password):
    status, doc = auth.json("POST", "/auth/login", {"username": username, "password": password})
    assert status == 200, (status, doc)
    return doc["access_token"]


def register_and_login(auth, username=None, password="correct-horse"):
    username = username or unique_name()
    status, doc = auth.json("POST", "/auth/register", {"username": username, "password": password})
    assert status == 201, (status, doc)
    return login(auth, username, password)


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


# ---- JWTs by hand ------------------------------------------------------------

def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwt_decode(token):
    """(header, payload, signature bytes, signing input bytes), unverified."""
    h, p, s = token.split(".")
    return json.loads(b64u_decode(h)), json.loads(b64u_decode(p)), b64u_decode(s), f"{h}.{p}".encode()


def claims(**over):
    now = int(time.time())
    c = {"iss": ISSUER, "sub": "1", "aud": AUDIENCE, "iat": now, "exp": now + 600,
         "jti": secrets.token_hex(8), "name": ADMIN_USER, "role": "admin"}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def _encode(header, payload):
    return (b64u(json.dumps(header, separators=(",", ":")).encode()) + "." +
            b64u(json.dumps(payload, separators=(",", ":")).encode()))


def sign_eddsa(private_key, kid, payload, header_extra=None):
    header = {"alg": "EdDSA", "typ": "JWT", "kid": kid}
    header.update(header_extra or {})
    signing_input = _encode(header, payload)
    return signing_input + "." + b64u(private_key.sign(signing_input.encode()))


def sign_hs256(secret, payload, kid="hs256"):
    header = {"alg": "HS256", "typ": "JWT"}
    if kid:
        header["kid"] = kid
    signing_input = _encode(header, payload)
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64u(mac)


def unsigned_token(payload, kid=None):
    header = {"alg": "none", "typ": "JWT"}
    if kid:
        header["kid"] = kid
    return _encode(header, payload) + "."


def auth_signing_key(auth):
    """(kid, Ed25519PrivateKey) read from auth's key file in its DATA_DIR."""
    with open(os.path.join(auth.data_dir, "auth-signing-key.json")) as f:
        jwk = json.load(f)
    return jwk["kid"], Ed25519PrivateKey.from_private_bytes(b64u_decode(jwk["d"]))


def jwk_public_key(jwk):
    return Ed25519PublicKey.from_public_bytes(b64u_decode(jwk["x"]))


def raw_public_key(private_key):
    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def new_ed25519_key():
    return Ed25519PrivateKey.generate()


def file_mode(path):
    return os.stat(path).st_mode & 0o777
