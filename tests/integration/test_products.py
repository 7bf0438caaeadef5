"""The products service with a real auth service issuing its tokens.

One auth + products pair (products with WORKERS=2, so that the per-worker
response cache is exercised across workers) serves the whole module.
"""
import gzip
import http.client
import json
import os
import re
import sqlite3
import tempfile
import threading
import time
from types import SimpleNamespace
from urllib.parse import quote

import pytest

from conftest import Service, db_rows, pg_database_for, pg_psql
from services_fixtures import (ADMIN_PASS, ADMIN_USER, auth_signing_key, b64u, bearer, claims, jwt_decode, login,
                               new_ed25519_key, raw_public_key, register_and_login, running_system, sign_eddsa,
                               sign_hs256, start_products, unsigned_token)

FIELDS = {"id", "title", "description", "category", "brand", "price", "stock", "rating", "created_at",
          "updated_at", "discountPercentage", "sku", "tags", "thumbnail", "images", "availabilityStatus", "meta",
          "weight", "dimensions", "warrantyInformation", "shippingInformation", "returnPolicy",
          "minimumOrderQuantity", "reviews"}
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def shop():
    # The module's one user searches more than the default budget of uncached
    # searches allows; the test of that limit starts its own products.
    with running_system(products_env={"WORKERS": "2", "SEARCH_RATE_PER_MIN": "1000000"}) as (auth, products):
        user_token = register_and_login(auth)
        yield SimpleNamespace(auth=auth, products=products, admin=bearer(login(auth, ADMIN_USER, ADMIN_PASS)),
                              user_token=user_token, user=bearer(user_token))


def get(c, path, headers=None):
    return c.products.json("GET", path, headers=c.user if headers is None else headers)


def all_products(c):
    """Every product, in id order, paging with the largest limit."""
    out, skip = [], 0
    while True:
        status, doc = get(c, f"/products?limit=100&skip={skip}")
        assert status == 200, doc
        out += doc["products"]
        skip += 100
        if skip >= doc["total"]:
            assert len(out) == doc["total"]
            return out


def create(c, **fields):
    body = {"title": "Test item", "category": "testing", "price": 9.99}
    body.update(fields)
    status, doc = c.products.json("POST", "/products", body, c.admin)
    assert status == 201, doc
    return doc


def total(c):
    return get(c, "/products?limit=1")[1]["total"]


def assert_error(status, doc, expected, code=None):
    assert status == expected, (status, doc)
    assert doc["error"]["message"], doc
    # A product's 404 also carries DummyJSON's {"message"}, the same text.
    assert set(doc) == {"error"} or (set(doc) == {"error", "message"} and doc["message"] == doc["error"]["message"])
    if code:
        assert doc["error"]["code"] == code


# ---- who may do what ------------------------------------------------------------

def test_reads_need_a_token(shop):
    status, hdrs, data = shop.products.request("GET", "/products")
    assert_error(status, json.loads(data), 401, "unauthorized")
    assert hdrs["www-authenticate"].startswith("Bearer")
    for path in ("/products/1", "/products/search?q=a", "/products/categories", "/products/category/beauty"):
        assert get(shop, path, headers={})[0] == 401


def test_cookie_token_is_accepted(shop):
    status, doc = get(shop, "/products/1", headers={"Cookie": f"token={shop.user_token}"})
    assert status == 200 and doc["id"] == 1


def forged_tokens(c):
    """Tokens products must refuse, by what is wrong with them."""
    kid, real_key = auth_signing_key(c.auth)
    now = int(time.time())
    user_header, user_claims, user_sig, _ = jwt_decode(c.user_token)
    other = new_ed25519_key()
    return {
        "garbage": "garbage",
        "three garbage parts": "a.b.c",
        "other key, same kid": sign_eddsa(other, kid, claims()),
        "other key, unknown kid": sign_eddsa(other, "not-a-known-kid", claims()),
        "expired (real key)": sign_eddsa(real_key, kid, claims(iat=now - 7200, exp=now - 3600)),
        "not yet valid (real key)": sign_eddsa(real_key, kid, claims(nbf=now + 3600)),
        "wrong audience (real key)": sign_eddsa(real_key, kid, claims(aud="someone-else")),
        "wrong issuer (real key)": sign_eddsa(real_key, kid, claims(iss="evil")),
        "no exp (real key)": sign_eddsa(real_key, kid, claims(exp=None)),
        "jku header (real key)": sign_eddsa(real_key, kid, claims(), {"jku": "http://127.0.0.1:1/jwks"}),
        "HS256 with a random secret": sign_hs256(os.urandom(32), claims()),
        "HS256 keyed with the public key": sign_hs256(raw_public_key(real_key), claims(), kid=kid),
        "alg none": unsigned_token(claims(), kid=kid),
        "user token with role admin swapped in": ".".join([
            c.user_token.split(".")[0], b64u(json.dumps(dict(user_claims, role="admin")).encode()),
            b64u(user_sig)]),
    }


def test_forged_and_expired_tokens_are_401(shop):
    kid, real_key = auth_signing_key(shop.auth)
    # The forging kit works: a well-formed token signed with the real key passes.
    assert get(shop, "/products/1", headers=bearer(sign_eddsa(real_key, kid, claims(role="user"))))[0] == 200
    for what, token in forged_tokens(shop).items():
        for headers in (bearer(token), {"Cookie": f"token={token}"}):
            status, doc = get(shop, "/products/1", headers=headers)
            assert status == 401, (what, status, doc)
        # Nor may it write.
        status, _ = shop.products.json("DELETE", "/products/1", headers=bearer(token))
        assert status == 401, what
    assert get(shop, "/products/1")[0] == 200


def test_users_cannot_write(shop):
    before = get(shop, "/products/1")[1]
    body = {"title": "Hacked", "category": "x", "price": 1}
    for method, path in [("POST", "/products"), ("PUT", "/products/1"), ("PATCH", "/products/1"),
                         ("DELETE", "/products/1")]:
        status, doc = shop.products.json(method, path, body if method != "DELETE" else None, shop.user)
        assert_error(status, doc, 403, "forbidden")
    assert get(shop, "/products/1")[1] == before


# ---- CRUD ------------------------------------------------------------------------

def test_admin_crud(shop):
    c = shop
    n = total(c)
    status, hdrs, data = c.products.request(
        "POST", "/products", {"title": "Desk Lamp", "description": "Bright", "category": "home-decoration",
                              "brand": "Lumen", "price": 24.5, "stock": 7, "rating": 4.5}, c.admin)
    assert status == 201, data
    p = json.loads(data)
    assert set(p) == FIELDS
    assert hdrs["location"] == f"/products/{p['id']}"
    assert (p["title"], p["description"], p["category"], p["brand"], p["price"], p["stock"], p["rating"]) == \
        ("Desk Lamp", "Bright", "home-decoration", "Lumen", 24.5, 7, 4.5)
    assert p["created_at"] == p["updated_at"]
    assert get(c, hdrs["location"]) == (200, p)
    assert total(c) == n + 1

    # PUT merges, as DummyJSON's: the fields it leaves out keep their values.
    time.sleep(0.005)
    status, put = c.products.json("PUT", f"/products/{p['id']}",
                                  {"title": "Desk Lamp 2", "category": "furniture", "price": 30}, c.admin)
    assert status == 200, put
    assert (put["title"], put["category"], put["price"]) == ("Desk Lamp 2", "furniture", 30)
    assert (put["description"], put["brand"], put["stock"], put["rating"]) == ("Bright", "Lumen", 7, 4.5)
    assert put["created_at"] == p["created_at"] and put["updated_at"] > p["updated_at"]
    status, doc = c.products.json("PUT", f"/products/{p['id']}", {}, c.admin)
    assert_error(status, doc, 400)

    # PATCH changes only what it carries.
    status, patched = c.products.json("PATCH", f"/products/{p['id']}", {"stock": 3, "brand": "Acme"}, c.admin)
    assert status == 200
    assert patched == dict(put, stock=3, brand="Acme", updated_at=patched["updated_at"],
                           meta={"createdAt": put["created_at"], "updatedAt": patched["updated_at"]})
    assert get(c, f"/products/{p['id']}") == (200, patched)

    status, deleted = c.products.json("DELETE", f"/products/{p['id']}", headers=c.admin)
    assert status == 200
    assert deleted["isDeleted"] is True and deleted["id"] == p["id"] and deleted["title"] == "Desk Lamp 2"
    assert "deletedOn" in deleted
    assert get(c, f"/products/{p['id']}")[0] == 404
    assert total(c) == n
    for method, body in [("DELETE", None), ("PUT", {"title": "t", "category": "c", "price": 1}),
                         ("PATCH", {"price": 1})]:
        status, doc = c.products.json(method, f"/products/{p['id']}", body, c.admin)
        assert_error(status, doc, 404, "not_found")


def test_post_needs_the_required_fields(shop):
    for missing in ("title", "category", "price"):
        body = {"title": "t", "category": "c", "price": 1}
        del body[missing]
        status, doc = shop.products.json("POST", "/products", body, shop.admin)
        assert_error(status, doc, 400)
        assert missing in doc["error"]["message"]


@pytest.mark.parametrize("path", ["/products/abc", "/products/0", "/products/-1", "/products/1.5",
                                  "/products/99999999999999999999"])
def test_bad_ids_are_400(shop, path):
    assert_error(*get(shop, path), 400)
    for method, body in [("PUT", {"title": "t", "category": "c", "price": 1}), ("PATCH", {"price": 1}),
                         ("DELETE", None)]:
        status, doc = shop.products.json(method, path, body, shop.admin)
        assert_error(status, doc, 400)


def test_unknown_id_is_404(shop):
    assert_error(*get(shop, "/products/987654321"), 404, "not_found")


# ---- lists -----------------------------------------------------------------------

def test_default_list(shop):
    status, doc = get(shop, "/products")
    assert status == 200
    assert set(doc) == {"products", "total", "skip", "limit"}
    assert doc["limit"] == 30 and doc["skip"] == 0 and len(doc["products"]) == 30
    assert doc["total"] >= 100
    assert all(set(p) == FIELDS for p in doc["products"])
    ids = [p["id"] for p in doc["products"]]
    assert ids == sorted(ids)


def test_skip_and_limit(shop):
    everything = all_products(shop)
    status, doc = get(shop, "/products?skip=10&limit=5")
    assert status == 200 and doc["skip"] == 10 and doc["limit"] == 5
    assert doc["products"] == everything[10:15]
    assert doc["total"] == len(everything)
    status, doc = get(shop, f"/products?skip={len(everything) - 2}&limit=10")
    assert doc["products"] == everything[-2:]
    status, doc = get(shop, f"/products?skip={len(everything) + 5}")
    assert status == 200 and doc["products"] == [] and doc["total"] == len(everything)


def test_select(shop):
    status, doc = get(shop, "/products?select=title,price&limit=3")
    assert status == 200
    assert all(set(p) == {"id", "title", "price"} for p in doc["products"])


@pytest.mark.parametrize("field", ["price", "title", "rating", "stock"])
@pytest.mark.parametrize("order", ["asc", "desc"])
def test_sort_orders_for_real(shop, field, order):
    everything = all_products(shop)
    expected = sorted((p[field] for p in everything), reverse=order == "desc")
    got, ids = [], []
    for skip in range(0, len(everything), 100):
        status, doc = get(shop, f"/products?sortBy={field}&order={order}&limit=100&skip={skip}&select={field}")
        assert status == 200, doc
        got += [p[field] for p in doc["products"]]
        ids += [p["id"] for p in doc["products"]]
    assert got == expected
    # Paging over a sort with ties neither repeats nor skips a product.
    assert sorted(ids) == [p["id"] for p in everything]


def test_sort_default_order_is_ascending(shop):
    asc = get(shop, "/products?sortBy=price&limit=10&select=price")[1]["products"]
    assert asc == get(shop, "/products?sortBy=price&order=asc&limit=10&select=price")[1]["products"]


@pytest.mark.parametrize("query", [
    "limit=101", "limit=-1", "limit=abc", "limit=", "limit=1e2", "skip=-1", "skip=x",
    "select=" + "x" * 65, "select=" + "id," * 65, "sortBy=" + "x" * 65, "order=sideways", "order=ASC;", "order=",
])
def test_bad_list_parameters_are_400(shop, query):
    for path in ("/products", "/products/search?q=a&", "/products/category/beauty"):
        sep = "" if path.endswith("&") else "?"
        status, doc = get(shop, f"{path}{sep}{query}")
        assert_error(status, doc, 400, "bad_request")


# ---- search, categories -----------------------------------------------------------

def words(text):
    return re.findall(r"[a-z0-9]+", text.lower())


def matches(p, q):
    """The search's rule: every word of q begins a word of the product's
    title, description, brand or category (ASCII here)."""
    own = [w for f in ("title", "description", "brand", "category") for w in words(str(p[f]))]
    return all(any(o.startswith(w) for o in own) for w in words(q))


def search_all(c, q):
    status, doc = get(c, f"/products/search?q={quote(q)}&limit=100")
    assert status == 200, doc
    assert doc["total"] <= 100 or not words(q)   # a q without words finds everything
    return doc


def test_search_is_case_insensitive_with_a_correct_total(shop):
    everything = all_products(shop)
    expected = [p for p in everything if matches(p, "phone")]
    assert expected
    for q in ("phone", "PHONE", "pHoNe"):
        doc = search_all(shop, q)
        assert doc["total"] == len(expected)
        assert doc["products"] == expected
    status, doc = get(shop, "/products/search?q=phone&limit=2&skip=1")
    assert doc["total"] == len(expected) and doc["products"] == expected[1:3]
    assert search_all(shop, "no such thing anywhere")["total"] == 0


def test_search_takes_words_and_punctuation_separates_them(shop):
    made = create(shop, title="100% cotton_x", description="Soft-touch weave", category="apparel")
    everything = all_products(shop)
    # DummyJSON's q=classic-notebook: the words classic and notebook.
    both = search_all(shop, "classic-notebook")
    assert both["products"] == [p for p in everything if matches(p, "classic notebook")] != []
    assert all("Classic Notebook" in p["title"] for p in both["products"])
    assert search_all(shop, "notebook classic") == both
    for q in ("cotton_x", "cott x", "soft-touch", "100", "weave apparel", "SOFT"):
        assert [p["id"] for p in search_all(shop, q)["products"]] == [made["id"]], q
    # Every word is a prefix of a word, never a middle: "otton" is not a word.
    assert search_all(shop, "otton")["total"] == 0
    assert search_all(shop, "cotton zzz")["total"] == 0
    # No word at all (only punctuation) is an empty search: everything.
    for q in ("%", "_", "\\", "%%", '"*', "-", "'"):
        assert search_all(shop, q)["total"] == len(everything), q
    for q in ('"cotton"*', "cotton OR nothing", "NEAR(cotton x)", "cotton:*", "!cotton", "cott*"):
        doc = search_all(shop, q)
        assert doc["products"] == [p for p in everything if matches(p, q)], q
    # A write moves the index with it, in its transaction: the old words go.
    status, doc = shop.products.json("PATCH", f"/products/{made['id']}", {"title": "Linen shirt"}, shop.admin)
    assert status == 200, doc
    assert search_all(shop, "cotton")["total"] == 0
    assert [p["id"] for p in search_all(shop, "linen soft")["products"]] == [made["id"]]
    shop.products.json("DELETE", f"/products/{made['id']}", headers=shop.admin)
    assert search_all(shop, "linen")["total"] == 0


def search_steps(products):
    status, _, body = products.request("GET", "/metrics")
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith("products_search_steps_total "):
            return int(float(line.split()[1]))
    return 0


@pytest.mark.skipif(os.environ.get("SVCKIT_TEST_PG") == "1", reason="SQLite's step counts; PostgreSQL: the next test")
def test_search_cost_follows_the_matches_not_the_catalog(shop):
    """A search visits the products it finds, through the full-text index,
    not every row: its work (SQLite's virtual-machine steps, counted by
    products_search_steps_total) is the same after the catalog grew 40
    times with products it does not find."""
    with start_products(shop.auth, {"SEARCH_RATE_PER_MIN": "1000000"}) as products:
        def cost(q):
            before = search_steps(products)
            status, doc = products.json("GET", f"/products/search?q={q}&limit=100", headers=shop.user)
            assert status == 200, doc
            return search_steps(products) - before, doc["total"]

        small, found = cost("aviators")
        assert small > 0 and found == 12
        # 5,000 more products, none an aviator, written beside the running
        # service (its triggers keep the index in the same transaction).
        con = sqlite3.connect(os.path.join(products.data_dir, "products.db"), timeout=30)
        with con:
            con.executemany("INSERT INTO products (title, description, category, brand, price, created_at,"
                            " updated_at) VALUES (?, 'Filler', 'filler', 'Filler Co', 1, 'x', 'x')",
                            [(f"Filler item {i}",) for i in range(5000)])
        con.close()
        large, found = cost("aviators&skip=0")
        assert found == 12
        assert large < small * 1.5, (small, large)
        print("search steps", small, large)
        # The filler is found, at a cost as large as it is many.
        many, found = cost("filler")
        assert found == 5000 and many > 10 * large, (many, large)


@pytest.mark.skipif(os.environ.get("SVCKIT_TEST_PG") != "1", reason="PostgreSQL's plan")
def test_search_uses_the_text_index_on_postgresql(shop):
    """On PostgreSQL the search's condition is served by the GIN index of the
    generated tsvector: with sequential scans priced out, its plan on a
    catalog of 5,000 more products reads that index (a condition the index
    could not serve would still scan the table). Whether the planner prefers
    the index on a given table is its cost model's call."""
    with start_products(shop.auth) as products:
        url = products.env["DATABASE_URL"]
        pg_psql(url, "SET search_path TO products;"
                "INSERT INTO products (title, description, category, brand, price, created_at, updated_at)"
                " SELECT 'Filler item ' || i, 'Filler', 'filler', 'Filler Co', 1, 'x', 'x'"
                " FROM generate_series(1, 5000) i; ANALYZE products;")
        plan = pg_psql(url, "SET search_path TO products; SET enable_seqscan = off; EXPLAIN SELECT id FROM products"
                       " WHERE search @@ to_tsquery('simple', '''aviators'':*')")
        assert "products_search" in plan and "Seq Scan" not in plan, plan
        status, doc = products.json("GET", "/products/search?q=aviat", headers=shop.user)
        assert status == 200 and doc["total"] == 12, doc


def test_search_query_limit(shop):
    assert get(shop, "/products/search?q=" + "a" * 100)[0] == 200
    assert_error(*get(shop, "/products/search?q=" + "a" * 101), 400)


def requests_counted(products, route, code):
    status, _, body = products.request("GET", "/metrics")
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith("http_requests_total{") and f'route="{route}"' in line and f'code="{code}"' in line:
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


def test_one_users_searches_are_bounded_and_others_keep_their_answers():
    """The finding: one user's varied searches (each a miss of the cache and
    a scan of the catalog) raised everyone's latency. Uncached searches are
    limited per user: a flood of distinct ones gets 429s after the budget,
    while another user's searches and reads, and the flooder's own cached
    searches, keep being answered."""
    rate = 5
    with running_system(products_env={"SEARCH_RATE_PER_MIN": str(rate)}) as (auth, products):
        flooder, other = bearer(register_and_login(auth)), bearer(register_and_login(auth))
        ok = refused = 0
        last_ok = None
        for i in range(200):
            path = f"/products/search?q=flood{i}"
            status, hdrs, data = products.request("GET", path, headers=flooder)
            if status == 200:
                ok += 1
                last_ok = path
            else:
                assert_error(status, json.loads(data), 429, "too_many_requests")
                assert 1 <= int(hdrs["retry-after"]) <= 60 // rate
                refused += 1
                if refused == 1:
                    # A search answered from the cache costs nothing: the
                    # last one let through still is (a refusal stores nothing).
                    assert products.json("GET", last_ok, headers=flooder)[0] == 200
            # Meanwhile the other user is served: reads, and (within its own
            # budget) searches.
            if i % 10 == 0:
                assert products.json("GET", f"/products/{i // 10 + 1}", headers=other)[0] == 200
            if i % 50 == 0:
                assert products.json("GET", f"/products/search?q=other{i}", headers=other)[0] == 200
        # The budget, plus what refilled meanwhile (a search per 12 s).
        assert ok <= rate + 2 and refused >= 200 - rate - 2, (ok, refused)
        assert requests_counted(products, "/products/search", 429) == refused
        # Over the gateway every user has the same address: a budget per user
        # (not per address) keeps one from using up the others'.
        assert products.json("GET", "/products/search?q=late", headers=bearer(register_and_login(auth)))[0] == 200


@pytest.mark.parametrize("value", ["0", "-1", "1000001", "x"])
def test_bad_search_rate_stops_the_service(value):
    # A secret to verify with: the library has no default JWKS URL, and a
    # service without one stops before it reads its own variables.
    env = {"SEARCH_RATE_PER_MIN": value, "JWT_SECRET": "s" * 40}
    with Service("products", env=env, wait_ready=False, check_exit=False) as s:
        assert s.proc.wait(10) == 2
        errors = [d["msg"] for d in s.log_lines() if d["level"] == "error"]
        assert errors == [f'invalid configuration: SEARCH_RATE_PER_MIN="{value}": expected 1 to 1000000'], errors


def test_categories(shop):
    status, cats = get(shop, "/products/categories")
    assert status == 200 and isinstance(cats, list) and len(cats) >= 5
    slugs = [x["slug"] for x in cats]
    assert slugs == sorted(set(slugs))
    everything = all_products(shop)
    assert set(slugs) == {p["category"] for p in everything}
    home = next(x for x in cats if x["slug"] == "home-decoration")
    assert home == {"slug": "home-decoration", "name": "Home Decoration",
                    "url": "/products/category/home-decoration"}
    for slug in slugs[:3]:
        status, doc = get(shop, f"/products/category/{slug}?limit=100")
        expected = [p for p in everything if p["category"] == slug]
        assert status == 200 and doc["total"] == len(expected) and doc["products"] == expected
    status, doc = get(shop, "/products/category/no-such-category")
    assert status == 200 and doc["total"] == 0 and doc["products"] == []


# ---- caching ------------------------------------------------------------------------

def etag_of(c, path):
    status, hdrs, data = c.products.request("GET", path, headers=c.user)
    assert status == 200, data
    return hdrs["etag"], json.loads(data)


def test_etag_and_304(shop):
    for path in ("/products/2", "/products?limit=5", "/products/categories", "/products/search?q=vase"):
        etag, _ = etag_of(shop, path)
        assert etag.startswith('"') and etag.endswith('"')
        status, hdrs, data = shop.products.request("GET", path, headers=dict(shop.user, **{"If-None-Match": etag}))
        assert status == 304 and data == b"" and hdrs["etag"] == etag
        status, _, _ = shop.products.request("GET", path, headers=dict(shop.user, **{"If-None-Match": '"x"'}))
        assert status == 200


def test_writes_invalidate_cached_reads_on_every_worker(shop):
    c = shop
    p = create(c, title="Cache probe", price=1)
    paths = [f"/products/{p['id']}", "/products?sortBy=id&order=desc&limit=3", "/products/search?q=cache+probe"]
    # Fill the cache of both workers: each request is a new connection, and
    # SO_REUSEPORT spreads connections over the workers.
    old = {path: {etag_of(c, path)[0] for _ in range(8)} for path in paths}
    assert all(len(tags) == 1 for tags in old.values()), old
    status, _ = c.products.json("PATCH", f"/products/{p['id']}", {"price": 2.5}, c.admin)
    assert status == 200
    for path in paths:
        (was,) = old[path]
        for _ in range(8):
            tag, doc = etag_of(c, path)
            assert tag != was, path
            found = doc if "id" in doc else next(x for x in doc["products"] if x["id"] == p["id"])
            assert found["price"] == 2.5, path
            status, _, _ = c.products.request("GET", path, headers=dict(c.user, **{"If-None-Match": was}))
            assert status == 200
    c.products.json("DELETE", f"/products/{p['id']}", headers=c.admin)
    for _ in range(8):
        assert get(c, f"/products/{p['id']}")[0] == 404


# ---- conditional requests (RFC 9110 13) -------------------------------------------------

def etag_and_date(c, pid):
    status, hdrs, data = c.products.request("GET", f"/products/{pid}", headers=c.user)
    assert status == 200, data
    return hdrs["etag"], hdrs["last-modified"], json.loads(data)


def write(c, method, pid, body=None, **conds):
    """A write with preconditions (keyword names: if_match -> If-Match)."""
    h = dict(c.admin, **{k.replace("_", "-").title(): v for k, v in conds.items()})
    status, hdrs, data = c.products.request(method, f"/products/{pid}", body, h)
    return status, hdrs, json.loads(data) if data else None


def test_writes_answer_with_the_etag_a_get_gives(shop):
    c = shop
    status, hdrs, data = c.products.request("POST", "/products", {"title": "Tagged", "category": "c", "price": 1},
                                            c.admin)
    assert status == 201, data
    p = json.loads(data)
    etag, date, doc = etag_and_date(c, p["id"])
    assert etag == hdrs["etag"] == f'"p{p["id"]}-v1"' and doc == p
    assert date == hdrs["last-modified"] and date.endswith(" GMT")
    status, hdrs, patched = write(c, "PATCH", p["id"], {"price": 2}, if_match=etag)
    assert status == 200, patched
    assert hdrs["etag"] == f'"p{p["id"]}-v2"' != etag
    # The same state, the same validators, from GET: a client can go round again.
    assert etag_and_date(c, p["id"])[::2] == (hdrs["etag"], patched)
    status, put_hdrs, put = write(c, "PUT", p["id"], {"title": "Tagged", "category": "c", "price": 3},
                                  if_match=hdrs["etag"])
    assert status == 200 and put_hdrs["etag"] == f'"p{p["id"]}-v3"' and put["price"] == 3
    status, _, _ = c.products.request("GET", f"/products/{p['id']}",
                                      headers=dict(c.user, **{"If-None-Match": put_hdrs["etag"]}))
    assert status == 304
    status, _, deleted = write(c, "DELETE", p["id"], if_match=put_hdrs["etag"])
    assert status == 200 and deleted["isDeleted"] is True


def test_a_stale_if_match_is_412_and_changes_nothing(shop):
    c = shop
    p = create(c, title="Stale", price=5)
    etag, _, before = etag_and_date(c, p["id"])
    assert write(c, "PATCH", p["id"], {"price": 6}, if_match=etag)[0] == 200
    now, _, current = etag_and_date(c, p["id"])
    n = total(c)
    for method, body in [("PATCH", {"price": 7}), ("PUT", {"title": "t", "category": "c", "price": 8}),
                         ("DELETE", None)]:
        for stale in (etag, f'"p{p["id"]}-v9"', "W/" + now, now.strip('"'), '"*"'):
            status, hdrs, doc = write(c, method, p["id"], body, if_match=stale)
            assert_error(status, doc, 412, "precondition_failed")
            assert "etag" not in hdrs
    assert etag_and_date(c, p["id"])[::2] == (now, current) and total(c) == n
    assert current["price"] == 6 and before["price"] == 5
    c.products.json("DELETE", f"/products/{p['id']}", headers=c.admin)


def test_if_match_star_and_lists(shop):
    c = shop
    p = create(c, title="Star")
    etag = etag_and_date(c, p["id"])[0]
    status, hdrs, _ = write(c, "PATCH", p["id"], {"price": 2}, if_match="*")
    assert status == 200
    status, hdrs, _ = write(c, "PATCH", p["id"], {"price": 3}, if_match=f'"nope", {hdrs["etag"]}')
    assert status == 200
    # The gzip form of the tag names the same state (a client that fetched it
    # compressed writes it back).
    gz = hdrs["etag"][:-1] + '-gzip"'
    status, _, _ = write(c, "PATCH", p["id"], {"price": 4}, if_match=gz)
    assert status == 200
    assert write(c, "PATCH", p["id"], {"price": 5}, if_match=etag)[0] == 412
    # No such product: a 404 stays a 404, whatever the conditions (RFC 9110 13.2.1).
    assert write(c, "PATCH", 987654321, {"price": 1}, if_match="*")[0] == 404
    assert write(c, "DELETE", 987654321, if_match='"x"')[0] == 404
    # If-None-Match: * on an existing product: it exists, so 412.
    assert write(c, "PUT", p["id"], {"title": "t", "category": "c", "price": 1}, if_none_match="*")[0] == 412
    c.products.json("DELETE", f"/products/{p['id']}", headers=c.admin)


def test_if_unmodified_since(shop):
    c = shop
    p = create(c, title="Dated")
    etag, date, _ = etag_and_date(c, p["id"])
    old = "Sun, 06 Nov 1994 08:49:37 GMT"
    status, _, doc = write(c, "PATCH", p["id"], {"price": 2}, if_unmodified_since=old)
    assert_error(status, doc, 412, "precondition_failed")
    assert etag_and_date(c, p["id"])[0] == etag
    # Ignored when If-Match is present, and when it is not a date.
    status, hdrs, _ = write(c, "PATCH", p["id"], {"price": 3}, if_match=etag, if_unmodified_since=old)
    assert status == 200
    assert write(c, "PATCH", p["id"], {"price": 4}, if_unmodified_since="yesterday")[0] == 200
    # Last-Modified itself holds (seconds: a write in the same second passes,
    # which is why If-Match is the one to use).
    date = etag_and_date(c, p["id"])[1]
    assert write(c, "PATCH", p["id"], {"price": 5}, if_unmodified_since=date)[0] == 200
    assert write(c, "DELETE", p["id"], if_unmodified_since=old)[0] == 412
    assert write(c, "DELETE", p["id"], if_unmodified_since="Fri, 31 Dec 9999 23:59:59 GMT")[0] == 200


def test_two_writers_with_the_same_if_match_one_wins(shop):
    """Two admins edit the same product from the same GET: exactly one write
    lands, the other gets 412, whatever the order they reach the thread pool.
    The check is in the write's transaction, so no interleaving can let both
    through (each round starts both requests at once)."""
    c = shop
    p = create(c, title="Contended", price=1)
    for rnd in range(10):
        etag = etag_and_date(c, p["id"])[0]
        gate = threading.Barrier(2)
        results = {}

        def writer(name, method, body):
            h = dict(c.admin, **{"If-Match": etag, "Content-Type": "application/json"})
            conn = http.client.HTTPConnection("127.0.0.1", c.products.port, timeout=30)
            try:
                conn.connect()
                gate.wait(timeout=30)
                conn.request(method, f"/products/{p['id']}", json.dumps(body).encode(), h)
                r = conn.getresponse()
                results[name] = (r.status, r.getheader("ETag"), json.loads(r.read()))
            finally:
                conn.close()

        a = {"price": 100 + rnd}
        b = {"title": f"Contended {rnd}", "category": "testing", "price": 200 + rnd}
        threads = [threading.Thread(target=writer, args=("a", "PATCH", a)),
                   threading.Thread(target=writer, args=("b", "PUT", b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(st for st, _, _ in results.values()) == [200, 412], results
        winner = next(k for k, (st, _, _) in results.items() if st == 200)
        loser = "b" if winner == "a" else "a"
        assert results[loser][2]["error"]["code"] == "precondition_failed"
        now, _, doc = etag_and_date(c, p["id"])
        assert now == results[winner][1] and doc == results[winner][2]
        assert doc["price"] == (a if winner == "a" else b)["price"]
    # A DELETE racing a PATCH: one of them. When the DELETE wins, the PATCH
    # finds no product: 404, which conditions never turn into a 412.
    etag = etag_and_date(c, p["id"])[0]
    out = []
    gate = threading.Barrier(2)

    def racer(method, body):
        h = dict(c.admin, **{"If-Match": etag, "Content-Type": "application/json"})
        conn = http.client.HTTPConnection("127.0.0.1", c.products.port, timeout=30)
        try:
            conn.connect()
            gate.wait(timeout=30)
            conn.request(method, f"/products/{p['id']}", json.dumps(body).encode() if body else None, h)
            out.append((method, conn.getresponse().status))
        finally:
            conn.close()

    threads = [threading.Thread(target=racer, args=("DELETE", None)),
               threading.Thread(target=racer, args=("PATCH", {"price": 1}))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    deleted = dict(out)["DELETE"] == 200
    assert dict(out) == ({"DELETE": 200, "PATCH": 404} if deleted else {"DELETE": 412, "PATCH": 200}), out
    assert get(c, f"/products/{p['id']}")[0] == (404 if deleted else 200)
    if not deleted:
        c.products.json("DELETE", f"/products/{p['id']}", headers=c.admin)


def test_products_of_the_first_schema_get_versions(shop):
    """A catalog made before versions existed (schema 1) is migrated: its
    products start at version 1."""
    with tempfile.TemporaryDirectory(prefix="svckit-products-v1-") as d:
        old_row = ("INSERT INTO products (title, category, price, created_at, updated_at)"
                   " VALUES ('Old', 'legacy', 1, '2020-01-02T03:04:05.678Z', '2020-01-02T03:04:05.678Z');")
        if os.environ.get("SVCKIT_TEST_PG") == "1":
            # Schema 1 in the products schema of this DATA_DIR's database;
            # the library's tables are made at start, as for an old file.
            pg_psql(pg_database_for(d),
                    "CREATE SCHEMA products; SET search_path TO products;"
                    "CREATE TABLE svc_meta (key text PRIMARY KEY, value bigint NOT NULL);"
                    "INSERT INTO svc_meta VALUES ('user_version', 1);"
                    "CREATE TABLE products (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
                    " title text NOT NULL, description text NOT NULL DEFAULT '', category text NOT NULL,"
                    " brand text NOT NULL DEFAULT '', price double precision NOT NULL, stock bigint NOT NULL"
                    " DEFAULT 0, rating double precision NOT NULL DEFAULT 0, created_at text NOT NULL,"
                    " updated_at text NOT NULL);" + old_row)
        else:
            con = sqlite3.connect(os.path.join(d, "products.db"))
            con.executescript(
                "CREATE TABLE products (id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT NOT NULL,"
                " description TEXT NOT NULL DEFAULT '', category TEXT NOT NULL, brand TEXT NOT NULL DEFAULT '',"
                " price REAL NOT NULL CHECK (price >= 0), stock INTEGER NOT NULL DEFAULT 0 CHECK (stock >= 0),"
                " rating REAL NOT NULL DEFAULT 0 CHECK (rating BETWEEN 0 AND 5), created_at TEXT NOT NULL,"
                " updated_at TEXT NOT NULL);"
                "CREATE INDEX products_category ON products(category);" + old_row + "PRAGMA user_version=1;")
            con.close()
        with start_products(shop.auth, data_dir=d) as old:
            status, hdrs, data = old.request("GET", "/products/1", headers=shop.user)
            assert status == 200, data
            assert hdrs["etag"] == '"p1-v1"' and hdrs["last-modified"] == "Thu, 02 Jan 2020 03:04:05 GMT"
            status, hdrs, _ = old.request("PATCH", "/products/1", {"price": 2},
                                          dict(shop.admin, **{"If-Match": '"p1-v1"'}))
            assert status == 200 and hdrs["etag"] == '"p1-v2"'
            # The full-text index of migration 4 holds the rows it found.
            status, doc = old.json("GET", "/products/search?q=old", headers=shop.user)
            assert status == 200 and [p["id"] for p in doc["products"]] == [1], doc


# ---- compression --------------------------------------------------------------------------

LIST = "/products?limit=30"


def fetch(svc, path, headers, method="GET"):
    """(status, [(name, value)] lower-cased names, body) on a fresh connection."""
    conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=10)
    try:
        conn.request(method, path, headers=headers)
        r = conn.getresponse()
        return r.status, [(k.lower(), v) for k, v in r.getheaders()], r.read()
    finally:
        conn.close()


def one(hdrs, name):
    values = [v for k, v in hdrs if k == name]
    assert len(values) <= 1, (name, values)
    return values[0] if values else None


def varies(hdrs):
    return any("accept-encoding" in v.lower() for k, v in hdrs if k == "vary")


def gz(c, extra=None):
    return dict(c.user, **{"Accept-Encoding": "gzip"}, **(extra or {}))


def test_lists_are_gzipped_for_clients_that_ask(shop):
    c = shop
    status, plain_hdrs, plain = fetch(c.products, LIST, dict(c.user, **{"Accept-Encoding": "identity"}))
    assert status == 200 and one(plain_hdrs, "content-encoding") is None and varies(plain_hdrs)
    # Each worker (WORKERS=2; a fresh connection each time) serves the same bytes.
    for _ in range(6):
        status, hdrs, body = fetch(c.products, LIST, gz(c))
        assert status == 200
        assert one(hdrs, "content-encoding") == "gzip" and varies(hdrs)
        assert int(one(hdrs, "content-length")) == len(body)
        assert gzip.decompress(body) == plain
        # About 9 KB to about 1.2 KB for this page.
        assert len(body) * 4 < len(plain), (len(body), len(plain))
        assert one(hdrs, "etag") == one(plain_hdrs, "etag")[:-1] + '-gzip"'
    for ae in ("gzip, deflate, br", "br;q=1.0, gzip;q=0.5", "*", "x-gzip", "deflate, *;q=0.1"):
        status, hdrs, body = fetch(c.products, LIST, dict(c.user, **{"Accept-Encoding": ae}))
        assert one(hdrs, "content-encoding") == "gzip", ae
        assert gzip.decompress(body) == plain


def test_q_zero_and_other_codings_get_plain(shop):
    c = shop
    plain = fetch(c.products, LIST, c.user)[2]
    for ae in ("gzip;q=0", "gzip; q=0.000, deflate", "*;q=0", "deflate, br", "identity", "gzip;q=0, *", ""):
        status, hdrs, body = fetch(c.products, LIST, dict(c.user, **{"Accept-Encoding": ae}))
        assert status == 200 and one(hdrs, "content-encoding") is None, ae
        assert varies(hdrs) and body == plain, ae


def test_small_bodies_stay_plain(shop):
    c = shop
    for path in ("/products/1", "/products?limit=1", "/products/987654321", "/healthz"):
        status, hdrs, body = fetch(c.products, path, gz(c))
        assert one(hdrs, "content-encoding") is None and not varies(hdrs), path
        json.loads(body)


def test_304_for_both_forms(shop):
    c = shop
    _, plain_hdrs, _ = fetch(c.products, LIST, c.user)
    _, gz_hdrs, _ = fetch(c.products, LIST, gz(c))
    plain_tag, gz_tag = one(plain_hdrs, "etag"), one(gz_hdrs, "etag")
    assert plain_tag != gz_tag and gz_tag == plain_tag[:-1] + '-gzip"'
    for headers, tag in ((c.user, plain_tag), (c.user, gz_tag), (gz(c), plain_tag), (gz(c), gz_tag)):
        status, hdrs, body = fetch(c.products, LIST, dict(headers, **{"If-None-Match": tag}))
        assert status == 304 and body == b"", (headers, tag)
        # The 304 names the form the client holds, and varies like the 200.
        assert one(hdrs, "etag") == tag and varies(hdrs)
        assert one(hdrs, "content-encoding") is None
    # A shared cache holding both gets the one it would be sent now.
    status, hdrs, _ = fetch(c.products, LIST, gz(c, {"If-None-Match": f"{plain_tag}, {gz_tag}"}))
    assert status == 304 and one(hdrs, "etag") == gz_tag
    status, _, _ = fetch(c.products, LIST, gz(c, {"If-None-Match": '"x", "x-gzip"'}))
    assert status == 200


def test_head_sends_the_headers_of_the_get(shop):
    c = shop
    _, get_hdrs, get_body = fetch(c.products, LIST, gz(c))
    status, hdrs, body = fetch(c.products, LIST, gz(c), method="HEAD")
    assert status == 200 and body == b""
    for name in ("content-encoding", "content-length", "etag", "content-type"):
        assert one(hdrs, name) == one(get_hdrs, name), name
    assert varies(hdrs) and int(one(hdrs, "content-length")) == len(get_body)


def test_uncached_responses_are_compressed_too(shop):
    """/metrics is rendered for every request: compressed as it is sent."""
    status, hdrs, body = fetch(shop.products, "/metrics", {"Accept-Encoding": "gzip"})
    assert status == 200 and one(hdrs, "content-encoding") == "gzip" and varies(hdrs)
    assert b"http_requests_total" in gzip.decompress(body)
    status, hdrs, body = fetch(shop.products, "/metrics", {})
    assert one(hdrs, "content-encoding") is None and b"http_requests_total" in body


def metric(svc, name):
    """The value of an unlabelled-but-service series of the plain /metrics."""
    for line in svc.request("GET", "/metrics")[2].decode().splitlines():
        if line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name} in /metrics")


def test_compressed_responses_and_saved_bytes_are_counted(shop):
    """Cached (the list) and uncached (/metrics) compressed responses count
    once each, with what they saved; plain ones do not count."""
    c = shop
    # WORKERS=2: a response of either worker counts in the process's series.
    before = (metric(c.products, "http_compressed_responses_total"),
              metric(c.products, "http_compression_saved_bytes_total"))
    _, _, plain = fetch(c.products, LIST, c.user)
    _, hdrs, body = fetch(c.products, LIST, gz(c))
    assert one(hdrs, "content-encoding") == "gzip"
    after = (metric(c.products, "http_compressed_responses_total"),
             metric(c.products, "http_compression_saved_bytes_total"))
    assert after[0] == before[0] + 1, (before, after)
    assert after[1] == before[1] + len(plain) - len(body), (before, after, len(plain), len(body))


def test_http_compress_0_turns_compression_off(shop):
    with start_products(shop.auth, {"HTTP_COMPRESS": "0"}) as products:
        for path in (LIST, "/metrics"):
            status, hdrs, body = fetch(products, path, gz(shop))
            assert status == 200 and one(hdrs, "content-encoding") is None and not varies(hdrs), path
            assert body.startswith(b"{") or b"http_requests_total" in body
        assert metric(products, "http_compressed_responses_total") == 0


def test_http_compress_must_be_0_or_1(shop):
    with start_products(shop.auth, {"HTTP_COMPRESS": "yes"}, wait_ready=False, check_exit=False) as products:
        assert products.proc.wait(10) != 0
        assert "HTTP_COMPRESS" in products.read_log()


# ---- validation -----------------------------------------------------------------------

@pytest.mark.parametrize("body", [
    {"foo": 1},
    {"id": 5},
    {"created_at": "2020-01-01T00:00:00Z"},
    {"updated_at": "2020-01-01T00:00:00Z"},
    {"price": "12"},
    {"price": -1},
    {"price": None},
    {"price": True},
    {"stock": 1.5},
    {"stock": -1},
    {"stock": "3"},
    {"rating": 6},
    {"rating": -0.1},
    {"title": ""},
    {"title": "x" * 201},
    {"title": 5},
    {"title": "tab\tok but bell \u0007 is not"},
    {"title": "nul \u0000 inside"},
    {"category": "Bad Cat"},
    {"category": ""},
    {"category": "a'b"},
    {"category": "c" * 51},
    {"description": "d" * 2001},
    {"brand": "b" * 101},
    {},
])
def test_bad_bodies_are_400_and_change_nothing(shop, body):
    before, n = get(shop, "/products/4")[1], total(shop)
    for method, path in [("PATCH", "/products/4"), ("PUT", "/products/4"), ("POST", "/products")]:
        full = dict({"title": "t", "category": "c", "price": 1}, **body) if method != "PATCH" else body
        if method != "PATCH" and not body:
            continue
        status, doc = shop.products.json(method, path, full, shop.admin)
        assert_error(status, doc, 400)
    assert get(shop, "/products/4")[1] == before and total(shop) == n


@pytest.mark.parametrize("char", ["\u0007", "\u001b", "\u007f", "\u0080", "\u0085", "\u009b", "\u009f"])
@pytest.mark.parametrize("field", ["title", "description", "brand"])
def test_control_characters_are_refused_saying_where(shop, field, char):
    """The README allows no control character but tab and newline: C0, DEL
    and C1 (U+0085 a line break to some, U+009B a terminal's CSI) are 400s
    that name the field, the character and where it is."""
    before = get(shop, "/products/4")[1]
    text = "éb\tc\n" + char + "[31mred"  # the 6th character, the 7th byte
    status, doc = shop.products.json("PATCH", "/products/4", {field: text}, shop.admin)
    assert_error(status, doc, 400, "bad_request")
    msg = doc["error"]["message"]
    assert msg.startswith(field + " ") and f"U+{ord(char):04X} at character 6" in msg, msg
    assert get(shop, "/products/4")[1] == before


def test_printable_neighbours_of_the_controls_are_kept(shop):
    text = "tab\there\nnbsp\u00a0copy\u00a9 tilde~ \u00e9\u4e2d\U0001f600"
    p = create(shop, title=text, description=text, brand=text)
    assert p["title"] == p["description"] == p["brand"] == text
    assert get(shop, f"/products/{p['id']}")[1]["title"] == text
    shop.products.json("DELETE", f"/products/{p['id']}", headers=shop.admin)


@pytest.mark.parametrize("raw", [b"[]", b'"title"', b"42", b"null", b'{"title": "x",}', b"{", b""])
def test_body_not_an_object_is_400(shop, raw):
    for method, path in [("POST", "/products"), ("PATCH", "/products/4")]:
        status, _, data = shop.products.request(method, path, raw, dict(shop.admin, **JSON))
        assert_error(status, json.loads(data), 400)


def test_write_without_json_content_type_is_415(shop):
    body = json.dumps({"price": 3}).encode()
    status, _, data = shop.products.request("PATCH", "/products/4", body,
                                            dict(shop.admin, **{"Content-Type": "text/plain"}))
    assert_error(status, json.loads(data), 415)


def test_limits_are_inclusive(shop):
    p = create(shop, title="é" * 200, category="c" * 50, price=1e9, stock=1000000000, rating=5,
               description="d" * 2000, brand="b" * 100)
    assert p["title"] == "é" * 200 and p["price"] == 1e9 and p["rating"] == 5
    shop.products.json("DELETE", f"/products/{p['id']}", headers=shop.admin)


# ---- SQL metacharacters -----------------------------------------------------------------

def db_count(c):
    return int(db_rows(c.products, "products", "SELECT count(*) FROM products")[0][0])


def test_sql_metacharacters_are_just_text(shop):
    c = shop
    n = total(c)
    assert db_count(c) == n
    nasty = {
        "title": "'; DROP TABLE products; --",
        "description": "Robert'); DELETE FROM products WHERE ('1'='1",
        "brand": "x\" OR \"1\"=\"1' OR '1'='1",
    }
    p = create(c, **nasty)
    assert {k: p[k] for k in nasty} == nasty
    assert {k: v for k, v in get(c, f"/products/{p['id']}")[1].items() if k in nasty} == nasty
    patched = c.products.json("PATCH", f"/products/{p['id']}", {"title": "1 OR 1=1; --", "brand": "\\' ;"},
                              c.admin)[1]
    assert patched["title"] == "1 OR 1=1; --" and patched["brand"] == "\\' ;"

    for q in ("' OR '1'='1", "\" OR 1=1 --", "'; DROP TABLE products; --", "1 OR 1=1; --", "\\' ;"):
        doc = search_all(c, q)
        assert all(matches(x, q) for x in doc["products"]), q
        assert doc["total"] == sum(matches(x, q) for x in all_products(c)), q
    assert [x["id"] for x in search_all(c, "1 OR 1=1; --")["products"]] == [p["id"]]

    for name in ("beauty' OR '1'='1", "beauty\"; DROP TABLE products; --", "beauty%", "%", "_eauty"):
        status, doc = get(c, f"/products/category/{quote(name, safe='')}")
        assert status == 200 and doc["total"] == 0 and doc["products"] == [], name

    # Names that are no field are ignored (as DummyJSON does), never SQL.
    status, doc = get(c, f"/products?{quote('select=title,(SELECT 1)', safe='=')}&limit=2")
    assert status == 200 and all(set(x) == {"id", "title"} for x in doc["products"]), doc
    status, doc = get(c, f"/products?{quote('sortBy=price DESC; DROP TABLE products', safe='=')}&limit=3")
    assert status == 200 and [x["id"] for x in doc["products"]] == [x["id"] for x in all_products(c)[:3]]
    assert get(c, f"/products?{quote('order=desc;--', safe='=')}")[0] == 400

    assert total(c) == n + 1 and db_count(c) == n + 1
    assert c.products.json("DELETE", f"/products/{p['id']}", headers=c.admin)[0] == 200
    assert total(c) == n and db_count(c) == n


def test_cache_keys_do_not_collide(shop):
    # The path is percent-decoded, so "/category/beauty%3Fx" (a category named
    # "beauty?x", with no query) must not share a cache entry with
    # "/category/beauty" and the query "x?".
    for _ in range(8):
        status, doc = get(shop, "/products/category/beauty%3Fx")
        assert status == 200 and doc["total"] == 0
    for _ in range(8):
        status, doc = get(shop, "/products/category/beauty?x?")
        assert status == 200 and doc["total"] > 0
