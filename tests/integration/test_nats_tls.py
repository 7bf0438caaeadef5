"""TLS to NATS (src/net/tls.c): a real nats-server with its own tls { } block,
certificates made here for each run (python3-cryptography; no key is
committed), and msgsvc-tls, the test service linked with TLS. What must
hold: request-reply over TLS; a server certificate for another name, from
another CA, or expired is refused; a server that wants a client certificate
gets one when configured and refuses the client without; a server without
TLS never sees a CONNECT from a client configured for TLS; a program built
without TLS refuses tls:// at start, naming the remedy."""
import datetime
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import tempfile

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import BIN, ROOT, WAIT, Service, binary, free_port, wait_until
from nkey_support import ShopUsers
from test_msg_support import JWT_SECRET, Nats, NatsServer

NOW = datetime.datetime.now(datetime.timezone.utc)
DAY = datetime.timedelta(days=1)


class Pki:
    """A CA that signs certificates into files of a temporary directory."""

    def __init__(self, tmp, name):
        self.tmp, self.name = tmp, name
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(NOW - DAY).not_valid_after(NOW + 30 * DAY)
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                                    critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.ca_file = self._write(f"{name}-ca.pem", self.cert.public_bytes(serialization.Encoding.PEM))

    def _write(self, name, data):
        path = os.path.join(self.tmp, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def issue(self, name, dns=(), ips=(), client=False, not_before=None, not_after=None):
        """(cert file, key file) of a leaf certificate."""
        key = ec.generate_private_key(ec.SECP256R1())
        sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        b = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
             .issuer_name(self.cert.subject).public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(not_before or NOW - DAY).not_valid_after(not_after or NOW + 30 * DAY)
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH if client
                                                   else ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = b.sign(self.key, hashes.SHA256())
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        return (self._write(f"{name}.pem", cert.public_bytes(serialization.Encoding.PEM)),
                self._write(f"{name}-key.pem", key_pem))


@pytest.fixture(scope="module")
def pki():
    with tempfile.TemporaryDirectory(prefix="svckit-tls-") as tmp:
        ca, other = Pki(tmp, "ca"), Pki(tmp, "other")
        yield {
            "ca": ca,
            "good": ca.issue("server", dns=["localhost"], ips=["127.0.0.1"]),
            "wrong_name": ca.issue("wrong", dns=["nats.example.org"]),
            "other_ca": other.issue("stranger", ips=["127.0.0.1"]),
            "expired": ca.issue("expired", ips=["127.0.0.1"], not_before=NOW - 60 * DAY,
                                not_after=NOW - DAY),
            "client": ca.issue("client", dns=["msgsvc"], client=True),
        }


def tls_server(pki, cert, verify=False):
    cert_file, key_file = pki[cert]
    return NatsServer(conf=f'tls {{ cert_file: "{cert_file}", key_file: "{key_file}", '
                           f'ca_file: "{pki["ca"].ca_file}", verify: {"true" if verify else "false"} }}\n')


def tls_msgsvc(server, env=None, name="msgsvc-tls", wait_ready=True):
    e = {"NATS_URL": f"tls://127.0.0.1:{server.port}", "WORKERS": "2", "JWT_SECRET": JWT_SECRET}
    e.update(env or {})
    return Service(name, env=e, wait_ready=wait_ready)


def py_client(pki, server, client_cert=False):
    ctx = ssl.create_default_context(cafile=pki["ca"].ca_file)
    if client_cert:
        ctx.load_cert_chain(*pki["client"])
    return Nats(server.port, tls=ctx)


def refused(svc, words):
    """The service logs the refusal and never becomes ready."""
    wait_until(lambda: words in svc.read_log(), what=f"the log line saying {words!r}")
    status, _, body = svc.request("GET", "/readyz")
    assert status == 503 and b"nats" in body, (status, body)


def test_request_reply_over_tls(pki):
    server = tls_server(pki, "good")
    try:
        with tls_msgsvc(server, {"NATS_TLS_CA": pki["ca"].ca_file}) as svc:
            nc = py_client(pki, server)
            try:
                m = nc.svc("msgsvc", "GET", "/hello/tls")
                assert m.svc_status == 200 and m.json()["hello"] == "tls", (m.headers, m.data)
                big = os.urandom(200 * 1024).hex().encode()  # many TLS records each way
                m = nc.svc("msgsvc", "POST", "/raw", body=big)
                assert m.svc_status == 200 and m.json() == {"bytes": len(big)}, m.data
            finally:
                nc.close()
    finally:
        server.close()


def test_reconnects_over_tls(pki):
    """A restarted server gets a new TLS session (the old one is freed with
    its socket), and requests flow again."""
    server = tls_server(pki, "good")
    try:
        with tls_msgsvc(server, {"NATS_TLS_CA": pki["ca"].ca_file}) as svc:
            server.stop()
            wait_until(lambda: svc.request("GET", "/readyz")[0] == 503, what="not ready while NATS is down")
            server.start()
            wait_until(lambda: svc.request("GET", "/readyz")[0] == 200, what="ready again over TLS")
            nc = py_client(pki, server)
            try:
                assert nc.svc("msgsvc", "GET", "/hello/again").svc_status == 200
            finally:
                nc.close()
    finally:
        server.close()


def test_nats_url_with_ca_means_tls(pki):
    """NATS_TLS_CA alone turns TLS on, for a nats:// URL too."""
    server = tls_server(pki, "good")
    try:
        with tls_msgsvc(server, {"NATS_URL": server.url, "NATS_TLS_CA": pki["ca"].ca_file}) as svc:
            status, _, _ = svc.request("GET", "/readyz")
            assert status == 200
    finally:
        server.close()


@pytest.mark.parametrize("cert,words", [
    ("wrong_name", "server certificate refused: IP address mismatch"),
    ("other_ca", "server certificate refused: not issued by a trusted CA"),
    ("expired", "server certificate refused: certificate has expired"),
])
def test_bad_server_certificate_is_refused(pki, cert, words):
    server = tls_server(pki, cert)
    try:
        with tls_msgsvc(server, {"NATS_TLS_CA": pki["ca"].ca_file}, wait_ready=False) as svc:
            refused(svc, words)
    finally:
        server.close()


def test_host_name_is_checked(pki):
    """A DNS name in the URL is matched against the certificate's names
    (mbed TLS's check), not only IP addresses (tls.c's own)."""
    if {a[4][0] for a in socket.getaddrinfo("localhost", 1, type=socket.SOCK_STREAM)} != {"127.0.0.1"}:
        pytest.skip("localhost does not resolve to 127.0.0.1 alone here")
    for cert, ok in (("good", True), ("wrong_name", False)):
        server = tls_server(pki, cert)
        try:
            env = {"NATS_URL": f"tls://localhost:{server.port}", "NATS_TLS_CA": pki["ca"].ca_file}
            with tls_msgsvc(server, env, wait_ready=ok) as svc:
                if not ok:
                    refused(svc, "server certificate refused: hostname mismatch")
        finally:
            server.close()


def test_client_certificate_when_the_server_verifies(pki):
    server = tls_server(pki, "good", verify=True)
    try:
        cert, key = pki["client"]
        env = {"NATS_TLS_CA": pki["ca"].ca_file, "NATS_TLS_CERT": cert, "NATS_TLS_KEY": key}
        with tls_msgsvc(server, env) as svc:
            nc = py_client(pki, server, client_cert=True)
            try:
                assert nc.svc("msgsvc", "GET", "/hello/cert").svc_status == 200
            finally:
                nc.close()
            status, _, _ = svc.request("GET", "/readyz")
            assert status == 200
        with tls_msgsvc(server, {"NATS_TLS_CA": pki["ca"].ca_file}, wait_ready=False) as svc:
            # nats-server (Go) refuses with the alert bad_certificate.
            refused(svc, "TLS handshake failed: the server's alert 42 (bad certificate)")
    finally:
        server.close()


def test_plaintext_server_gets_no_connect(pki):
    """A server whose INFO offers no TLS (a plain nats-server, or someone in
    the middle who stripped tls_required) is refused before anything but the
    TCP handshake: it never sees a CONNECT, with or without credentials."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)
    port = lsock.getsockname()[1]
    fake = type("Fake", (), {"port": port})()
    env = {"NATS_URL": f"tls://user:secret@127.0.0.1:{port}", "NATS_TLS_CA": pki["ca"].ca_file}
    try:
        with tls_msgsvc(fake, env, wait_ready=False) as svc:
            lsock.settimeout(WAIT)
            conn, _ = lsock.accept()
            conn.settimeout(WAIT)
            conn.sendall(b'INFO {"server_id":"fake","version":"2.9.10","max_payload":1048576,"headers":true}\r\n')
            got = b""
            while True:  # the client closes the connection when it refuses
                b = conn.recv(65536)
                if not b:
                    break
                got += b
            conn.close()
            assert b"CONNECT" not in got and b"secret" not in got, got
            refused(svc, "does not offer it")
    finally:
        lsock.close()
    plain = NatsServer()
    try:
        with tls_msgsvc(plain, {"NATS_TLS_CA": pki["ca"].ca_file}, wait_ready=False) as svc:
            refused(svc, "does not offer it")
    finally:
        plain.close()


def test_server_requiring_tls_is_not_answered_in_plaintext(pki):
    server = tls_server(pki, "good")
    try:
        with tls_msgsvc(server, {"NATS_URL": server.url}, wait_ready=False) as svc:
            refused(svc, "the server requires TLS")
    finally:
        server.close()


def start_error(name, env):
    """Runs name with env, expects it to stop at start: (exit code, log)."""
    svc = Service(name, env=env, wait_ready=False, check_exit=False)
    try:
        svc.proc.wait(WAIT)
        return svc.proc.returncode, svc.read_log()
    finally:
        svc.stop()


def test_program_without_tls_refuses_tls_at_start(pki):
    port = free_port()
    for env in ({"NATS_URL": f"tls://127.0.0.1:{port}"}, {"NATS_URL": f"nats://127.0.0.1:{port}",
                                                          "NATS_TLS_CA": pki["ca"].ca_file}):
        code, log = start_error("msgsvc", dict(env, JWT_SECRET=JWT_SECRET))
        assert code != 0 and "TLS is not built into this program" in log and "make TLS=1" in log, log


@pytest.mark.parametrize("env,words", [
    ({"NATS_TLS_CA": "/nonexistent/ca.pem"}, "NATS_TLS_CA"),
    ({"NATS_TLS_CERT": "client"}, "NATS_TLS_CERT and NATS_TLS_KEY go together"),
    ({"NATS_TLS_CERT": "client", "NATS_TLS_KEY": "wrong"}, "cannot load the client key"),
])
def test_bad_tls_configuration_stops_the_start(pki, env, words):
    files = {"client": pki["client"][0], "wrong": pki["good"][1]}
    env = {k: files.get(v, v) for k, v in env.items()}
    code, log = start_error("msgsvc-tls", dict(env, NATS_URL=f"tls://127.0.0.1:{free_port()}",
                                               JWT_SECRET=JWT_SECRET))
    assert code != 0 and words in log, log
    assert binary("msgsvc-tls")


def tls_symbols(path):
    out = subprocess.run(["nm", path], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if " mbedtls_" in line]


def test_default_programs_carry_no_tls_library():
    """Nothing of TLS in a program that did not opt in (the services of a
    default build), all of it in one that did."""
    programs = [os.path.join(BIN, p) for p in sorted(os.listdir(BIN))]
    assert programs
    for p in programs:
        assert not tls_symbols(p), p
    assert tls_symbols(binary("msgsvc-tls"))


def test_products_of_the_tls_build(pki):
    """`make TLS=1` (which `make test` builds) links a service that speaks TLS."""
    path = os.path.join(ROOT, "build", "tls", "bin", "products")
    if not os.path.exists(path):
        pytest.skip("build/tls not built (make TLS=1 bins)")
    server = tls_server(pki, "good")
    try:
        env = {"NATS_URL": f"tls://127.0.0.1:{server.port}", "NATS_TLS_CA": pki["ca"].ca_file,
               "JWT_SECRET": JWT_SECRET, "WORKERS": "1"}
        with Service("products", env=env, path=path) as svc:
            assert svc.request("GET", "/readyz")[0] == 200
    finally:
        server.close()



def svckit_status(path, env):
    return subprocess.run([path, "status", "--json", "--no-ready", "--wait", "2000"], capture_output=True,
                          text=True, timeout=WAIT, env=dict(os.environ, **env))


def test_svckit_status_on_tls_and_nkeys(pki, tmp_path):
    """The tool takes the services' NATS_* environment (net/natsenv.h): the
    TLS build's svckit lists msgsvc through a server that wants TLS and
    NKEY users, signed in with its own seed; without the seed it is
    refused, and a svckit without TLS says how to get it."""
    path = os.path.join(ROOT, "build", "tls", "bin", "svckit")
    if not os.path.exists(path):
        pytest.skip("build/tls not built (make TLS=1 bins)")
    users = ShopUsers(tmp_path, ("msgsvc", "ops"))
    cert_file, key_file = pki["good"]
    server = NatsServer(conf=f'tls {{ cert_file: "{cert_file}", key_file: "{key_file}" }}\n'
                             f'authorization {{ users = [ {{nkey: "{users.keys["msgsvc"].public}"}}, '
                             f'{{nkey: "{users.keys["ops"].public}"}} ] }}\n')
    try:
        tls = {"NATS_URL": f"tls://127.0.0.1:{server.port}", "NATS_TLS_CA": pki["ca"].ca_file}
        with tls_msgsvc(server, dict(tls, NATS_NKEY_SEED_FILE=users.seed_file("msgsvc"))):
            r = svckit_status(path, dict(tls, NATS_NKEY_SEED_FILE=users.seed_file("ops")))
            assert r.returncode == 0, r.stderr
            assert [d["name"] for d in json.loads(r.stdout) if d.get("type", "").endswith("info_response")] \
                == ["msgsvc"], r.stdout
            r = svckit_status(path, tls)
            assert r.returncode == 2 and "cannot connect to NATS" in r.stderr, (r.returncode, r.stderr)
            r = svckit_status(binary("svckit"), dict(tls, NATS_NKEY_SEED_FILE=users.seed_file("ops")))
            assert r.returncode == 2 and "NATS_TLS_CA" in r.stderr and "make TLS=1" in r.stderr, r.stderr
            r = svckit_status(path, dict(tls, NATS_NKEY_SEED_FILE=str(tmp_path / "none.nk")))
            assert r.returncode == 2 and "NATS_NKEY_SEED_FILE" in r.stderr, r.stderr
    finally:
        server.close()
