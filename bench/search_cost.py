#!/usr/bin/python3
"""bench/search_cost.py: what a search costs at 100,000 products, before and after the full-text index.

Starts build/bin/products once (WORKERS=1, NATS_URL=none, HS256) so that it
makes and migrates its database, stops it, and fills the catalog to --products
products with generated titles (10 adjectives x 10 nouns x a number, as the
seed, so "aviators" finds a tenth of them and "ultra aviators" a hundredth)
through SQLite, whose triggers fill the full-text index as they would on a
write of the service.

Then, in the same run, on the same file, for each query:

  before  the statements products ran until issue 13 (count, then the first
          page of 30, in id order, sorted as catalog.c sorts): LIKE '%q%' on four columns, a scan of every row;
  after   the statements products runs now (catalog.c): the words of q
          against the FTS5 index (search_words: "ultra"* "aviators"*);

each run --reps times on one connection (Python's sqlite3, the same SQLite
library), median milliseconds per search; and the service itself, restarted on
that catalog, answering GET /products/search?q=... (a new query string each
time, so the response cache never answers): median milliseconds per request
seen by the client on one keep-alive connection.

Prints a Markdown table. Time on a shared machine wanders; the ratio of
before to after, measured back to back on the same file, is the result.

usage: bench/search_cost.py [--products 100000] [--reps 20] [--bin build/bin]
"""
import argparse
import base64
import hashlib
import hmac
import http.client
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "integration"))
from ports import free_port  # noqa: E402

SECRET = "bench-search-cost-secret-0123456789abcdef"
READY_TIMEOUT_S = 30
ADJECTIVES = ["Classic", "Essential", "Premium", "Compact", "Deluxe", "Everyday", "Vintage", "Modern", "Ultra", "Eco"]
NOUNS = ["Lipstick", "Perfume", "Chair", "Honey", "Vase", "Knife Set", "Notebook", "Phone", "Football", "Aviators"]
CATEGORIES = ["beauty", "fragrances", "furniture", "groceries", "home-decoration", "kitchen-accessories", "laptops",
              "smartphones", "sports-accessories", "sunglasses"]
# (query, what it shows)
QUERIES = [("zzz", "no match"), ("ultra aviators", "1% of the catalog"), ("aviators", "10%"),
           ("ultra-aviators 77", "a handful"), ("notebook", "10%")]

COLUMNS = "id, title, description, category, brand, price, stock, rating, created_at, updated_at, version"
LIKE = (" WHERE lower(title) LIKE lower(?1) ESCAPE '\\' OR lower(description) LIKE lower(?1) ESCAPE '\\'"
        " OR lower(brand) LIKE lower(?1) ESCAPE '\\' OR lower(category) LIKE lower(?1) ESCAPE '\\'")
# catalog.c's ORDER_LIMIT, bound to sortBy=id, order=asc, limit=30, skip=0.
TEXT_KEY = ("CASE 0 WHEN 1 THEN title WHEN 2 THEN description WHEN 3 THEN category WHEN 4 THEN brand"
            " WHEN 8 THEN created_at WHEN 9 THEN updated_at END")
NUMBER_KEY = ("CASE WHEN 0 IN (1, 2, 3, 4, 8, 9) THEN NULL WHEN 0 = 5 THEN price WHEN 0 = 6 THEN stock"
              " WHEN 0 = 7 THEN rating ELSE id END")
ORDER = (f" ORDER BY CASE WHEN 0 = 0 THEN {TEXT_KEY} END ASC, CASE WHEN 0 = 0 THEN {NUMBER_KEY} END ASC,"
         f" CASE WHEN 0 = 1 THEN {TEXT_KEY} END DESC, CASE WHEN 0 = 1 THEN {NUMBER_KEY} END DESC, id ASC LIMIT 30")
BEFORE = ("SELECT count(*) FROM products" + LIKE, f"SELECT {COLUMNS} FROM products" + LIKE + ORDER)
AFTER = ("SELECT count(*) FROM products_fts WHERE products_fts MATCH ?1",
         f"SELECT {COLUMNS} FROM products WHERE id IN (SELECT rowid FROM products_fts WHERE products_fts MATCH ?1)"
         + ORDER)


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def token():
    now = int(time.time())
    head = b64u(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64u(json.dumps({"iss": "svckit-auth", "aud": "svckit", "sub": "bench", "name": "bench", "role": "user",
                            "iat": now, "exp": now + 3600, "jti": "bench"}).encode())
    sig = hmac.new(SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64u(sig)}"


def start(binary, data, port):
    env = dict(os.environ, PORT=str(port), HOST="127.0.0.1", WORKERS="1", DATA_DIR=data, NATS_URL="none",
               JWT_SECRET=SECRET, SEARCH_RATE_PER_MIN="1000000", LOG_LEVEL="warn", SHUTDOWN_TIMEOUT="2",
               DRAIN_DELAY="0")
    log = open(os.path.join(data, "products.log"), "ab")
    proc = subprocess.Popen([binary], env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"search_cost: products exited with {proc.returncode} (see {data}/products.log)")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/healthz")
            if c.getresponse().status == 200:
                return proc
        except OSError:
            pass
        time.sleep(0.05)
    proc.kill()
    sys.exit("search_cost: products did not start")


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)


def fill(path, n):
    con = sqlite3.connect(path)
    have = con.execute("SELECT count(*) FROM products").fetchone()[0]
    rows = []
    for i in range(have, n):
        c, a = i % 10, (i // 10) % 10
        rows.append((f"{ADJECTIVES[a]} {NOUNS[c]} {i // 100 + 1}",
                     f"The {ADJECTIVES[a]} {NOUNS[c]}: a well-made item of the {CATEGORIES[c]} category.",
                     CATEGORIES[c], "Bench Brand", round(2.99 + (i * 37) % 200 * 4.5, 2), (i * 53) % 150))
    with con:
        con.executemany("INSERT INTO products (title, description, category, brand, price, stock, created_at,"
                        " updated_at) VALUES (?, ?, ?, ?, ?, ?, '2026-01-01T00:00:00.000Z',"
                        " '2026-01-01T00:00:00.000Z')", rows)
    con.close()


def median_ms(fn, reps):
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def sql_search(con, statements, value):
    count, page = statements
    total = con.execute(count, (value,)).fetchone()[0]
    con.execute(page, (value,)).fetchall()
    return total


def fts_words(q):
    out, word = [], ""
    for ch in q:
        if ch.isascii() and not ch.isalnum():
            if word:
                out.append(word)
            word = ""
        else:
            word += ch
    if word:
        out.append(word)
    return " ".join(f'"{w}"*' for w in out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--products", type=int, default=100000)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--bin", default="build/bin")
    a = ap.parse_args()
    binary = os.path.realpath(os.path.join(a.bin, "products"))
    with tempfile.TemporaryDirectory(prefix="svckit-search-cost.") as data:
        port = free_port()
        stop(start(binary, data, port))
        path = os.path.join(data, "products.db")
        fill(path, a.products)
        con = sqlite3.connect(path)
        rows = []
        for q, what in QUERIES:
            like = "%" + q + "%"
            match = fts_words(q)
            before_total = sql_search(con, BEFORE, like)
            after_total = sql_search(con, AFTER, match)
            before = median_ms(lambda: sql_search(con, BEFORE, like), a.reps)
            after = median_ms(lambda: sql_search(con, AFTER, match), a.reps)
            rows.append([q, what, before_total, after_total, before, after])
        con.close()

        proc = start(binary, data, port)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            headers = {"Authorization": f"Bearer {token()}"}
            serial = iter(range(10 ** 9))

            def request(q):
                conn.request("GET", f"/products/search?q={q.replace(' ', '+')}&n={next(serial)}", headers=headers)
                r = conn.getresponse()
                body = r.read()
                assert r.status == 200, body
                return json.loads(body)["total"]

            for row in rows:
                assert request(row[0]) == row[3], row
                row.append(median_ms(lambda: request(row[0]), a.reps))
        finally:
            stop(proc)

    print(f"search at {a.products:,} products: median ms per search over {a.reps} runs (count + first page of 30)")
    print()
    print("| q | finds | total before (LIKE) | total after (words) | before: LIKE scan, ms | after: FTS5, ms |"
          " before/after | service, GET /products/search, ms |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for q, what, bt, at, before, after, service in rows:
        print(f"| `{q}` | {what} | {bt:,} | {at:,} | {before:.2f} | {after:.3f} | {before / after:.0f}x |"
              f" {service:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
