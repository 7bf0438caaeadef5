"""products answers DummyJSON's documented products calls
(https://dummyjson.com/docs/products) with their shape and meaning, behind
the token: each call of that page, as a client written for DummyJSON sends it.
What still differs is in services/products/README.md, "DummyJSON"."""
import re

import pytest

from services_fixtures import ADMIN_PASS, ADMIN_USER, bearer, login, register_and_login, running_system

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture(scope="module")
def dj():
    with running_system(products_env={"SEARCH_RATE_PER_MIN": "1000000"}) as (auth, products):
        user = bearer(register_and_login(auth))
        admin = bearer(login(auth, ADMIN_USER, ADMIN_PASS))

        def call(method, path, body=None, headers=None):
            return products.json(method, path, body, user if headers is None else headers)

        call.admin = admin
        call.products = products
        yield call


def page_of(doc):
    assert set(doc) == {"products", "total", "skip", "limit"}, doc
    assert doc["limit"] == len(doc["products"])
    return doc["products"]


def test_every_call_needs_the_token(dj):
    for method, path in [("GET", "/products"), ("GET", "/products/1"), ("GET", "/products/search?q=phone"),
                         ("GET", "/products/categories"), ("GET", "/products/category-list"),
                         ("GET", "/products/category/smartphones"), ("POST", "/products/add"),
                         ("PUT", "/products/1"), ("PATCH", "/products/1"), ("DELETE", "/products/1")]:
        status, doc = dj(method, path, {"title": "x"} if method in ("POST", "PUT", "PATCH") else None, {})
        assert status == 401 and doc["error"]["code"] == "unauthorized", (method, path, doc)


def test_list_with_limit_skip_and_select(dj):
    status, doc = dj("GET", "/products?limit=10&skip=10&select=title,price")
    assert status == 200
    products = page_of(doc)
    assert doc["skip"] == 10 and doc["limit"] == 10 and doc["total"] >= 100
    assert [p["id"] for p in products] == list(range(11, 21))
    assert all(set(p) == {"id", "title", "price"} for p in products)


def test_limit_0_is_the_largest_page(dj):
    # DummyJSON: limit=0 is every product; here the most a page holds (100).
    status, doc = dj("GET", "/products?limit=0")
    assert status == 200 and len(page_of(doc)) == min(100, doc["total"]) == doc["limit"]


def test_repeated_select_adds_up(dj):
    status, doc = dj("GET", "/products?limit=3&select=title&select=price")
    assert status == 200, doc
    assert all(set(p) == {"id", "title", "price"} for p in page_of(doc))
    assert dj("GET", "/products?limit=3&select=title,price") == (status, doc)


def test_unknown_names_are_ignored_and_order_takes_any_case(dj):
    status, doc = dj("GET", "/products?limit=5&select=title,colour,nope")
    assert status == 200 and all(set(p) == {"id", "title"} for p in page_of(doc))
    status, doc = dj("GET", "/products?limit=5&sortBy=nope&select=title")
    assert status == 200 and [p["id"] for p in page_of(doc)] == [1, 2, 3, 4, 5]
    status, desc = dj("GET", "/products?limit=100&sortBy=title&order=DESC&select=title")
    assert status == 200
    titles = [p["title"] for p in page_of(desc)]
    assert titles == sorted(titles, reverse=True)
    assert dj("GET", "/products?limit=100&sortBy=title&order=desc&select=title")[1] == desc
    assert dj("GET", "/products?order=Asc&limit=1")[0] == 200


def test_single_product_with_select(dj):
    status, whole = dj("GET", "/products/1")
    assert status == 200 and whole["id"] == 1 and {"title", "price", "category"} <= set(whole)
    status, doc = dj("GET", "/products/1?select=title,price")
    assert status == 200 and doc == {"id": 1, "title": whole["title"], "price": whole["price"]}


def test_unknown_product_has_dummyjsons_message(dj):
    for method, body in [("GET", None), ("PUT", {"price": 1}), ("PATCH", {"price": 1}), ("DELETE", None)]:
        status, doc = dj(method, "/products/9999", body, None if method == "GET" else dj.admin)
        assert status == 404, (method, doc)
        assert doc["message"] == "Product with id '9999' not found"
        assert doc["error"] == {"code": "not_found", "message": doc["message"]}


def test_search_with_q(dj):
    status, doc = dj("GET", "/products/search?q=phone")
    assert status == 200
    found = page_of(doc)
    assert found and all("phone" in p["title"].lower() for p in found)
    # Words, as DummyJSON reads them: both must be there, in any order.
    status, doc = dj("GET", "/products/search?q=classic-notebook&select=title")
    assert status == 200 and page_of(doc)
    assert all(set(p) == {"id", "title"} and p["title"].startswith("Classic Notebook") for p in doc["products"])


def test_categories_and_category_list(dj):
    status, categories = dj("GET", "/products/categories")
    assert status == 200 and len(categories) >= 10
    assert all(set(c) == {"slug", "name", "url"} for c in categories)
    beauty = next(c for c in categories if c["slug"] == "beauty")
    assert beauty == {"slug": "beauty", "name": "Beauty", "url": "/products/category/beauty"}
    status, slugs = dj("GET", "/products/category-list")
    assert status == 200 and slugs == [c["slug"] for c in categories]
    assert all(isinstance(s, str) for s in slugs)


def test_products_of_a_category(dj):
    status, doc = dj("GET", "/products/category/smartphones?limit=5&select=category")
    assert status == 200
    assert page_of(doc) and all(p["category"] == "smartphones" for p in doc["products"])
    assert dj("GET", "/products/category/no-such-thing")[1]["total"] == 0


def test_add_update_merge_and_delete(dj):
    assert dj("POST", "/products/add", {"title": "BMW Pencil", "category": "stationery", "price": 2})[0] == 403
    status, added = dj("POST", "/products/add", {"title": "BMW Pencil", "category": "stationery", "price": 2,
                                                 "brand": "BMW"}, dj.admin)
    assert status == 201, added
    assert added["title"] == "BMW Pencil" and added["brand"] == "BMW" and isinstance(added["id"], int)
    pid = added["id"]
    assert dj("GET", f"/products/{pid}") == (200, added)

    # PUT and PATCH both merge: what the body leaves out keeps its value.
    status, put = dj("PUT", f"/products/{pid}", {"title": "iPhone Galaxy +1"}, dj.admin)
    assert status == 200 and put["title"] == "iPhone Galaxy +1"
    assert (put["brand"], put["price"], put["category"]) == ("BMW", 2, "stationery")
    status, patched = dj("PATCH", f"/products/{pid}", {"price": 3.5}, dj.admin)
    assert status == 200 and patched["price"] == 3.5 and patched["title"] == "iPhone Galaxy +1"

    status, deleted = dj("DELETE", f"/products/{pid}", headers=dj.admin)
    assert status == 200
    assert deleted["isDeleted"] is True and RFC3339.match(deleted["deletedOn"])
    assert {k: v for k, v in deleted.items() if k not in ("isDeleted", "deletedOn")} == patched
    assert dj("GET", f"/products/{pid}")[0] == 404


def test_dummyjsons_fields(dj):
    body = {"title": "Red Lipstick", "category": "beauty", "price": 12.99, "stock": 5, "discountPercentage": 99.5,
            "sku": "BEA-RED-001", "tags": ["beauty", "lipstick"], "thumbnail": "https://cdn.example/red.webp",
            "images": ["https://cdn.example/red-1.webp", "https://cdn.example/red-2.webp"]}
    status, p = dj("POST", "/products/add", body, dj.admin)
    assert status == 201, p
    assert {k: p[k] for k in body} == body
    # Derived, as DummyJSON's data reads: from stock and from the times.
    assert p["availabilityStatus"] == "Low Stock"
    assert p["meta"] == {"createdAt": p["created_at"], "updatedAt": p["updated_at"]}
    status, doc = dj("GET", f"/products/{p['id']}?select=tags,images,meta,availabilityStatus")
    assert status == 200 and set(doc) == {"id", "tags", "images", "meta", "availabilityStatus"}
    # PATCH replaces an array; stock moves the status.
    status, q = dj("PATCH", f"/products/{p['id']}", {"tags": ["sale"], "stock": 0}, dj.admin)
    assert status == 200 and q["tags"] == ["sale"] and q["images"] == body["images"]
    assert q["availabilityStatus"] == "Out of Stock" and q["meta"]["updatedAt"] == q["updated_at"]
    assert dj("PATCH", f"/products/{p['id']}", {"stock": 10}, dj.admin)[1]["availabilityStatus"] == "In Stock"
    status, doc = dj("GET", "/products?sortBy=discountPercentage&order=desc&limit=1&select=discountPercentage")
    assert status == 200 and doc["products"] == [{"id": p["id"], "discountPercentage": 99.5}]
    more = {"weight": 2.5, "dimensions": {"width": 10.5, "height": 2, "depth": 3.25},
            "warrantyInformation": "1 year warranty", "shippingInformation": "Ships in 2 days",
            "returnPolicy": "30 days return policy", "minimumOrderQuantity": 2,
            "reviews": [{"rating": 5, "comment": "Great!", "date": "2024-05-23T08:56:21.618Z",
                         "reviewerName": "Eleanor Collins", "reviewerEmail": "eleanor.collins@x.com"},
                        {"rating": 2, "comment": "Meh"}]}
    status, r = dj("PUT", f"/products/{p['id']}", more, dj.admin)
    assert status == 200 and {k: r[k] for k in more} == more, r
    assert dj("GET", f"/products/{p['id']}?select=reviews,dimensions")[1] == \
        {"id": p["id"], "reviews": more["reviews"], "dimensions": more["dimensions"]}
    status, doc = dj("GET", "/products?sortBy=minimumOrderQuantity&order=desc&limit=1&select=minimumOrderQuantity")
    assert status == 200 and doc["products"] == [{"id": p["id"], "minimumOrderQuantity": 2}]
    # A product made without them: the defaults.
    status, plain = dj("POST", "/products", {"title": "Plain", "category": "beauty", "price": 1}, dj.admin)
    assert (plain["discountPercentage"], plain["sku"], plain["tags"], plain["thumbnail"], plain["images"]) == \
        (0, "", [], "", [])
    assert (plain["weight"], plain["dimensions"], plain["warrantyInformation"], plain["shippingInformation"],
            plain["returnPolicy"], plain["minimumOrderQuantity"], plain["reviews"]) == \
        (0, {"width": 0, "height": 0, "depth": 0}, "", "", "", 1, [])
    for pid in (p["id"], plain["id"]):
        assert dj("DELETE", f"/products/{pid}", headers=dj.admin)[0] == 200


@pytest.mark.parametrize("bad", [
    {"tags": "beauty"}, {"tags": [1]}, {"tags": [""]}, {"tags": ["t"] * 21}, {"tags": ["x" * 51]},
    {"images": ["u"] * 11}, {"images": ["x" * 501]}, {"discountPercentage": 101}, {"discountPercentage": -1},
    {"sku": "x" * 51}, {"thumbnail": "a\u009bb"}, {"availabilityStatus": "In Stock"},
    {"meta": {"createdAt": "2020-01-01T00:00:00.000Z"}},
    {"weight": -1}, {"weight": 1e7}, {"dimensions": {"width": 1, "height": 1}},
    {"dimensions": {"width": 1, "height": 1, "depth": 1, "colour": 1}}, {"warrantyInformation": "x" * 201},
    {"minimumOrderQuantity": 0}, {"minimumOrderQuantity": 1.5}, {"reviews": [{"rating": 6, "comment": "x"}]},
    {"reviews": [{"comment": "no rating"}]}, {"reviews": [{"rating": 1, "comment": "x" * 501}]},
    {"reviews": [{"rating": 1, "comment": "x"}] * 11}, {"reviews": {"rating": 1}},
])
def test_dummyjsons_fields_are_checked(dj, bad):
    status, doc = dj("PATCH", "/products/1", bad, dj.admin)
    assert status == 400 and doc["error"]["code"] == "bad_request" and doc["error"]["details"], (bad, doc)
