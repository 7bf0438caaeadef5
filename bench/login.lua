-- wrk script of the auth-login scenario: every request is POST /auth/login with
-- valid credentials (BENCH_LOGIN_USER / BENCH_LOGIN_PASSWORD, set by bench/run.sh,
-- which registers that user first). The result line comes from latency.lua.
local dir = debug.getinfo(1, "S").source:match("^@(.*)/") or "."
dofile(dir .. "/latency.lua")

local user = os.getenv("BENCH_LOGIN_USER") or error("BENCH_LOGIN_USER is not set")
local password = os.getenv("BENCH_LOGIN_PASSWORD") or error("BENCH_LOGIN_PASSWORD is not set")

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
-- run.sh's names and passwords need no JSON escaping (letters, digits, '-').
wrk.body = string.format('{"username":"%s","password":"%s"}', user, password)
