"""A service written outside this repository, as a user would: `make install
PREFIX=<tmp>`, `svckit new hello <tmp2>/hello`, then the skeleton's own
`make test` (in-process, svckit/test.h) and `make` with PKG_CONFIG_PATH
pointing at the installed svckit.pc, and the binary serving GET /hello on a
free port.

Release build only (an installed library carries no sanitizer runtime), and
only when it is up to date: `make install` must then only copy, so that the
test writes nothing outside its temporary directories.
"""
import os
import shutil
import subprocess

import pytest

from conftest import BUILD, ROOT, WAIT, Service

RELEASE = os.path.join(ROOT, "build")
# Building the skeleton is one compiler run per program; generous for a
# loaded machine, reached only when something hangs.
BUILD_WAIT = 300

pytestmark = [
    pytest.mark.skipif(os.path.realpath(BUILD) != os.path.realpath(RELEASE),
                       reason="installs the release build only"),
    pytest.mark.skipif(not all(shutil.which(t) for t in ("make", "pkg-config", "cc")),
                       reason="needs make, pkg-config and cc"),
]


def clean_env(**extra):
    """The environment of a make run of its own: none of the caller's make
    flags (a jobserver of `make test`), none of its pkg-config path."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "PKG_CONFIG_PATH")}
    env.update(extra)
    return env


def run(argv, **kw):
    kw.setdefault("timeout", BUILD_WAIT)
    p = subprocess.run(argv, capture_output=True, text=True, **kw)
    return p.returncode, p.stdout + p.stderr


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    rc, out = run(["make", "-q", "build/lib/libsvckit.a", "build/bin/svckit"], cwd=ROOT, env=clean_env())
    if rc != 0:
        pytest.skip("the release build is not up to date (run `make` first): install would build into the tree")
    d = tmp_path_factory.mktemp("prefix")
    rc, out = run(["make", "--no-print-directory", "install", f"PREFIX={d}"], cwd=ROOT, env=clean_env())
    assert rc == 0, out
    return d


def test_install_lays_out_headers_library_pc_and_cli(prefix):
    for f in ("include/svckit.h", "include/svckit/app.h", "include/svckit/test.h", "lib/libsvckit.a",
              "lib/pkgconfig/svckit.pc", "bin/svckit"):
        assert (prefix / f).is_file(), f
    env = clean_env(PKG_CONFIG_PATH=str(prefix / "lib" / "pkgconfig"))
    rc, out = run(["pkg-config", "--cflags", "--libs", "svckit"], env=env)
    assert rc == 0, out
    assert f"-I{prefix}/include" in out and "-lsvckit" in out and "-lhttp_parser" in out and "-luv" in out


def test_plain_pkg_config_links_a_service(tmp_path, prefix):
    """`cc main.c $(pkg-config --cflags --libs svckit)`, without --static, links."""
    env = clean_env(PKG_CONFIG_PATH=str(prefix / "lib" / "pkgconfig"))
    rc, flags = run(["pkg-config", "--cflags", "--libs", "svckit"], env=env)
    assert rc == 0, flags
    src = tmp_path / "main.c"
    src.write_text('#include <svckit.h>\n'
                   'int main(int argc, char **argv) {\n'
                   '    svc_app *app = svc_app_new("linked", argc, argv);\n'
                   '    return app ? svc_app_run(app) : 1;\n'
                   '}\n')
    rc, out = run(["cc", "-o", str(tmp_path / "linked"), str(src), *flags.split()], env=env)
    assert rc == 0, out
    rc, out = run([str(tmp_path / "linked"), "--version"], env=env)
    assert rc == 0 and "linked" in out, out


def test_uninstall_removes_what_install_wrote(tmp_path, prefix):
    d = tmp_path / "p"
    rc, out = run(["make", "--no-print-directory", "install", f"PREFIX={d}"], cwd=ROOT, env=clean_env())
    assert rc == 0, out
    rc, out = run(["make", "--no-print-directory", "uninstall", f"PREFIX={d}"], cwd=ROOT, env=clean_env())
    assert rc == 0, out
    assert [p for p in d.rglob("*") if p.is_file()] == []


def test_new_refuses_bad_names_and_existing_directories(tmp_path, prefix):
    cli = str(prefix / "bin" / "svckit")
    for bad in ("Hello", "-x", "x-", "a_b", "a" * 41, "", "a/b"):
        rc, out = run([cli, "new", bad, str(tmp_path / "s")])
        assert rc == 2, (bad, out)
        assert "bad NAME" in out
        assert not (tmp_path / "s").exists()
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep").write_text("mine")
    rc, out = run([cli, "new", "hello", str(tmp_path / "taken")])
    assert rc == 1 and "already exists" in out
    assert os.listdir(tmp_path / "taken") == ["keep"]


def test_new_service_builds_tests_and_serves(tmp_path, prefix):
    cli = str(prefix / "bin" / "svckit")
    svc_dir = tmp_path / "hello"
    rc, out = run([cli, "new", "hello", str(svc_dir)])
    assert rc == 0, out
    for f in ("main.c", "test/test_service.c", "Makefile", "Dockerfile", "README.md", ".gitignore"):
        assert (svc_dir / f).is_file(), f
    assert '"hello"' in (svc_dir / "main.c").read_text()
    assert "{{" not in (svc_dir / "Makefile").read_text()

    env = clean_env(PKG_CONFIG_PATH=str(prefix / "lib" / "pkgconfig"), LOG_LEVEL="warn")
    rc, out = run(["make", "--no-print-directory", "-C", str(svc_dir), "test"], env=env)
    assert rc == 0, out
    assert "ok: hello tests passed" in out
    rc, out = run(["make", "--no-print-directory", "-C", str(svc_dir)], env=env)
    assert rc == 0, out
    assert "warning" not in out

    # Without the pkg-config path the Makefile says what is missing.
    rc, out = run(["make", "--no-print-directory", "-C", str(svc_dir)], env=clean_env(PKG_CONFIG_LIBDIR=str(tmp_path)))
    assert rc != 0 and "PKG_CONFIG_PATH" in out

    data = tmp_path / "data"
    data.mkdir()
    with Service("hello", path=str(svc_dir / "build" / "hello"), data_dir=str(data)) as svc:
        status, doc = svc.json("GET", "/hello")
        assert status == 200 and doc == {"message": "hello, world"}
        status, doc = svc.json("GET", "/hello?name=ada")
        assert status == 200 and doc == {"message": "hello, ada"}
        status, doc = svc.json("GET", "/hello?name=" + "x" * 65)
        assert status == 400 and doc["error"]["code"] == "bad_request"
        status, doc = svc.json("GET", "/metrics-not")
        assert status == 404
        assert svc.stop(timeout=WAIT) == 0
