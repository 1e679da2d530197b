"""The imagetool CLI as tests drive it, and its one-line error contract."""
import subprocess
import sys


def run_cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "imagetool.cli", *args],
                          capture_output=True, text=True, **kw)


def assert_one_line_error(proc, *needles):
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("imagetool: "), proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]
