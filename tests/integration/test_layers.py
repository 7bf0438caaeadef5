"""The folders of src/ call only downward (tests/check_layers.py): by
includes and by the symbols of the built objects."""
import os
import subprocess
import sys

from conftest import BUILD, ROOT


def test_src_folders_form_layers():
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "check_layers.py")],
                       env=dict(os.environ, SVCKIT_BUILD=BUILD), capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
