#!/usr/bin/env python3
"""docs/tutorial.md, run whole, its container steps included: `make image` on
the service the tutorial wrote, the image run as a platform would, answering
through its published port, and stopping with exit code 0 on SIGTERM.

Called by `scripts/images.sh test` after the other image tests, with podman's
environment set (scripts/podman-env.sh) and the base image built. The
tutorial names its container `catalog`, its volume `catalog-data` and its
image `localhost/catalog`: they are removed before and after. The release
build must be up to date (`make` runs before: the tutorial's `make` and
`make install` then only check and copy). Prints "N passed, N failed" last.
"""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import test_images as ti  # noqa: E402
import tutorial_runner  # noqa: E402


def remove_what_the_tutorial_made():
    ti.podman("rm", "-f", "-i", "catalog", check=False)
    ti.podman("volume", "rm", "-f", "catalog-data", check=False)
    ti.podman("rmi", "-f", "-i", "localhost/catalog", check=False)


def main():
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    q = subprocess.run(["make", "-q", "all"], cwd=tutorial_runner.ROOT, env=env, capture_output=True)
    if ti.result("tutorial: the release build is up to date", q.returncode == 0, "run `make` first"):
        remove_what_the_tutorial_made()
        home = tempfile.mkdtemp(prefix="svckit-tutorial-home-")
        error = None
        try:
            steps = tutorial_runner.run_tutorial(home, images=True)
        except tutorial_runner.TutorialError as e:
            error, steps = str(e), 0
        finally:
            remove_what_the_tutorial_made()
            subprocess.run(["rm", "-rf", home])
        ti.result("tutorial: docs/tutorial.md runs as written, containers included (%d steps)" % steps,
                  error is None, error or "")
    print("%d passed, %d failed" % (ti.passed, ti.failed))
    return 1 if ti.failed else 0


if __name__ == "__main__":
    sys.exit(main())
