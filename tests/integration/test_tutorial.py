"""docs/tutorial.md, run: every command and file of it in order, every answer
it shows compared with the real one (tests/tutorial_runner.py says how),
except the container steps, which tests/images/test_tutorial.py runs.

Release build only, and only when it is up to date (the tutorial's first
step is `make` and `make install` in this checkout: they must only check and
copy, so that the test writes nothing into the tree)."""
import os
import subprocess
import sys

import pytest

from conftest import BUILD, ROOT

sys.path.insert(0, os.path.join(ROOT, "tests"))
import tutorial_runner  # noqa: E402

pytestmark = pytest.mark.skipif(os.path.realpath(BUILD) != os.path.realpath(os.path.join(ROOT, "build")),
                                reason="the tutorial installs the release build only")


def test_the_tutorials_directives_are_read_and_every_block_is_checked():
    steps = tutorial_runner.parse()
    kinds = [s.kind for s in steps]
    assert kinds.count("file") == 3 and "output" in kinds and "stop" in kinds
    # Each background process is stopped again.
    started = {s.name for s in steps if s.kind == "background"}
    stopped = {n for s in steps if s.kind == "stop" for n in s.names}
    assert started == stopped


def test_a_block_without_a_directive_is_refused(tmp_path):
    doc = tmp_path / "t.md"
    doc.write_text("text\n\n```c\nint x;\n```\n")
    with pytest.raises(tutorial_runner.TutorialError, match="no test runs or checks"):
        tutorial_runner.parse(str(doc))


def test_the_tutorial_runs_as_written(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    r = subprocess.run(["make", "-q", "all"], cwd=ROOT, env=env, capture_output=True)
    if r.returncode != 0:
        pytest.skip("the release build is not up to date (run `make` first): the tutorial would build into the tree")
    home = tmp_path / "home"
    home.mkdir()
    error = None
    try:
        n = tutorial_runner.run_tutorial(str(home), images=False)
    except tutorial_runner.TutorialError as e:
        error = str(e)
    if error:
        pytest.fail(error, pytrace=False)
    assert n > 20
