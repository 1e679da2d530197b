"""`make demo` itself: registry → imagetool pull → unpack → pyrun run prints its greeting."""
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


def test_demo_prints_greeting(root_required):
    if not os.access("/usr/bin/docker-registry", os.X_OK):
        pytest.skip("docker-registry is not installed")
    p = subprocess.run([sys.executable, "-m", "tests.demo"], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[-1] == "Hello from pyrun"
    assert "$ imagetool pull" in p.stdout and "$ pyrun" in p.stdout
