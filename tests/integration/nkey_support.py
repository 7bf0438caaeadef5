"""NATS NKEYs and JWTs for the tests, generated fresh every run (no key is
ever committed): python3-cryptography's Ed25519 and the encoding of the nkeys
library (base32 of prefix, key and CRC-16/XMODEM), written from its
description, independently of src/net/nkey.c, so that each checks the other
against a real nats-server.

No tests here; test_msg_nkey.py and test_msg_cluster.py import it.
"""
import base64
import hashlib
import json
import os
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

PREFIX = {"operator": 14 << 3, "account": 0, "user": 20 << 3}
SEED = 18 << 3


def crc16(data):
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def encode(raw):
    return base64.b32encode(raw + crc16(raw).to_bytes(2, "little")).decode().rstrip("=")


class NKey:
    """A key pair of one kind: .seed ("S..."), .public ("U...", "A...", "O...")."""

    def __init__(self, kind, raw_seed=None):
        self.kind = kind
        self.raw = raw_seed or os.urandom(32)
        self.sk = Ed25519PrivateKey.from_private_bytes(self.raw)
        pk = self.sk.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        t = PREFIX[kind]
        self.seed = encode(bytes([SEED | t >> 5, (t & 31) << 3]) + self.raw)
        self.public = encode(bytes([t]) + pk)

    def sign(self, data):
        return self.sk.sign(data)


def b64url(data):
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def jwt(issuer, subject, nats, name="test", exp=None):
    """A NATS JWT (alg ed25519-nkey) for subject's public key, signed by issuer."""
    claims = {"iat": int(time.time()), "iss": issuer.public, "name": name, "sub": subject.public,
              "nats": dict(nats, version=2)}
    if exp is not None:
        claims["exp"] = exp
    claims["jti"] = base64.b32encode(hashlib.sha256(json.dumps(claims, sort_keys=True).encode()).digest()).decode().rstrip("=")
    head = b64url(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    body = b64url(json.dumps(claims).encode())
    sig = issuer.sign(f"{head}.{body}".encode())
    return f"{head}.{body}.{b64url(sig)}"


UNLIMITED = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": True,
             "conn": -1, "leaf": -1}


class Operator:
    """An operator, one account and a way to make its users: the pieces of a
    nats-server in operator mode (conf()) and of .creds files (creds())."""

    def __init__(self):
        self.op = NKey("operator")
        self.acc = NKey("account")
        self.op_jwt = jwt(self.op, self.op, {"type": "operator"}, name="op")
        self.acc_jwt = jwt(self.op, self.acc, {"type": "account", "limits": UNLIMITED}, name="acc")

    def conf(self):
        return (f'operator: "{self.op_jwt}"\n'
                f'resolver: MEMORY\n'
                f'resolver_preload: {{ {self.acc.public}: "{self.acc_jwt}" }}\n')

    def user_jwt(self, user, exp=None):
        return jwt(self.acc, user, {"type": "user", "pub": {}, "sub": {}, "subs": -1, "data": -1,
                                    "payload": -1}, name="svc", exp=exp)

    def creds(self, user, jwt_text=None):
        return ("-----BEGIN NATS USER JWT-----\n"
                f"{jwt_text or self.user_jwt(user)}\n"
                "------END NATS USER JWT------\n\n"
                "************************* IMPORTANT *************************\n"
                "NKEY Seed printed below can be used to sign and prove identity.\n\n"
                "-----BEGIN USER NKEY SEED-----\n"
                f"{user.seed}\n"
                "------END USER NKEY SEED------\n\n"
                "*************************************************************\n")


def secret_file(tmp_path, name, text, mode=0o600):
    p = os.path.join(str(tmp_path), name)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(p, mode)
    return p


class ShopUsers:
    """One NKEY user per name, as scripts/run.sh makes them for
    deploy/nats-users.conf: .keys {name: NKey}, .seed_file(name) its seed in
    tmp (mode 600, what NATS_NKEY_SEED_FILE takes), .server_env() the public
    keys nats-server reads (<NAME>_NKEY), .connect(name) CONNECT fields of
    the test's own client signed in as name."""

    def __init__(self, tmp, names):
        self.tmp = str(tmp)
        self.keys = {n: NKey("user") for n in names}
        for n, k in self.keys.items():
            secret_file(self.tmp, f"{n}.nk", k.seed + "\n")

    def seed_file(self, name):
        return os.path.join(self.tmp, f"{name}.nk")

    def server_env(self):
        return {f"{n.upper()}_NKEY": k.public for n, k in self.keys.items()}

    def connect(self, name):
        key = self.keys[name]
        return lambda info: {"nkey": key.public, "sig": b64url(key.sign(info["nonce"].encode()))}
