"""auth and products together: the tutorial flow, start-up order, key rotation,
and durability of acknowledged writes across a SIGKILL."""
import os
import sqlite3
import threading

from conftest import WAIT, Service, free_port, wait_until
from services_fixtures import (ADMIN_PASS, ADMIN_USER, bearer, claims, jwt_decode, login, register_and_login,
                               running_system, sign_hs256, start_auth, start_products)


def test_user_flow_across_services():
    with running_system() as (auth, products):
        token = register_and_login(auth, "shopper")
        # The cookie set by auth's login works on products as it is.
        status, hdrs, _ = auth.request("POST", "/auth/login", {"username": "shopper", "password": "correct-horse"})
        cookie = hdrs["set-cookie"].split(";")[0]
        for headers in (bearer(token), {"Cookie": cookie}):
            status, doc = products.json("GET", "/products?limit=3", headers=headers)
            assert status == 200 and len(doc["products"]) == 3
        assert products.json("POST", "/products", {"title": "x", "category": "x", "price": 1}, bearer(token))[0] == 403
        admin = bearer(login(auth, ADMIN_USER, ADMIN_PASS))
        status, made = products.json("POST", "/products", {"title": "x", "category": "x", "price": 1}, admin)
        assert status == 201
        assert products.json("GET", f"/products/{made['id']}", headers=bearer(token)) == (200, made)


def test_hs256_system():
    secret = "an HS256 secret shared by both services, 0123456789"
    env = {"JWT_SECRET": secret}
    with running_system(auth_env=env, products_env=env) as (auth, products):
        token = register_and_login(auth)
        assert jwt_decode(token)[0]["alg"] == "HS256"
        assert products.json("GET", "/products/1", headers=bearer(token))[0] == 200
        admin = bearer(login(auth, ADMIN_USER, ADMIN_PASS))
        assert products.json("PATCH", "/products/1", {"stock": 5}, admin)[0] == 200
        assert products.json("PATCH", "/products/1", {"stock": 5}, bearer(token))[0] == 403
        forged = sign_hs256(b"another secret of at least 32 bytes!", claims())
        assert products.json("GET", "/products/1", headers=bearer(forged))[0] == 401
        assert products.json("GET", "/products/1", headers=bearer(sign_hs256(secret.encode(), claims())))[0] == 200


def test_products_waits_for_the_auth_keys():
    """products started before auth is not ready (and refuses tokens) until it
    has fetched auth's keys, which it keeps retrying."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/.well-known/jwks.json"
    with Service("products", env={"AUTH_JWKS_URL": url}, wait_ready=False) as products:
        wait_until(lambda: products.request("GET", "/healthz")[0] == 200, what="products /healthz")
        status, doc = products.json("GET", "/readyz")
        assert status == 503, doc
        assert products.json("GET", "/products/1", headers=bearer("a.b.c"))[0] == 401
        with start_auth(port=port) as auth:
            products.wait_ready()
            token = login(auth, ADMIN_USER, ADMIN_PASS)
            assert products.json("GET", "/products/1", headers=bearer(token))[0] == 200


def test_products_follows_an_auth_key_rotation(tmp_path):
    port = free_port()
    first, second = str(tmp_path / "a"), str(tmp_path / "b")
    os.mkdir(first)
    os.mkdir(second)
    with start_auth(port=port, data_dir=first) as auth:
        with start_products(auth) as products:
            old = login(auth, ADMIN_USER, ADMIN_PASS)
            assert products.json("GET", "/products/1", headers=bearer(old))[0] == 200
            auth.stop()
            # A new auth with a new signing key on the same address.
            with start_auth(port=port, data_dir=second) as auth2:
                new = login(auth2, ADMIN_USER, ADMIN_PASS)
                assert jwt_decode(new)[0]["kid"] != jwt_decode(old)[0]["kid"]
                # The first token with the unknown kid makes products refetch the JWKS.
                wait_until(lambda: products.json("GET", "/products/1", headers=bearer(new))[0] == 200,
                           what="products to accept the new key")
                assert products.json("GET", "/products/1", headers=bearer(old))[0] == 401


def test_acknowledged_writes_survive_sigkill(tmp_path):
    data = str(tmp_path)
    with start_auth() as auth:
        admin = bearer(login(auth, ADMIN_USER, ADMIN_PASS))
        products = start_products(auth, data_dir=data)
        try:
            acked, errors = [], []
            stop = threading.Event()

            def writer(n):
                i = 0
                while not stop.is_set():
                    i += 1
                    title = f"durable {n}-{i}"
                    try:
                        status, doc = products.json("POST", "/products",
                                                    {"title": title, "category": "durable", "price": i}, admin)
                    except (OSError, ValueError, AssertionError) as e:  # the kill cut it short
                        errors.append(e)
                        return
                    if status == 201:
                        acked.append((doc["id"], title))

            threads = [threading.Thread(target=writer, args=(n,)) for n in range(2)]
            for t in threads:
                t.start()
            wait_until(lambda: len(acked) >= 10 or errors, what="writes acknowledged before the kill")
            products.proc.kill()
            products.proc.wait(WAIT)
            stop.set()
            for t in threads:
                t.join(WAIT)
            n_acked = len(acked)
            print(f"{n_acked} writes acknowledged before SIGKILL")
            assert n_acked >= 10, (n_acked, errors)
        finally:
            products.stop()

        with start_products(auth, data_dir=data) as products:
            con = sqlite3.connect(os.path.join(data, "products.db"))
            try:
                assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            finally:
                con.close()
            for pid, title in acked:
                status, doc = products.json("GET", f"/products/{pid}", headers=admin)
                assert status == 200 and doc["title"] == title, (pid, status, doc)
            status, doc = products.json("GET", "/products/category/durable?limit=1", headers=admin)
            assert doc["total"] >= n_acked
            # And it takes writes again.
            assert products.json("POST", "/products", {"title": "after", "category": "durable", "price": 1},
                                 admin)[0] == 201
