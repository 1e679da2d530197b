"""default_config() must be what the installed runc writes with `runc spec`."""

import json
import shutil
import subprocess
import sys

import pytest

from specs import SpecError
from specs.runtime import default_config

RUNC = shutil.which("runc")


def runc_spec(tmp_path, *flags):
    if RUNC is None:
        pytest.skip("runc is not installed (apt-get install runc)")
    subprocess.run([RUNC, "spec", "--bundle", str(tmp_path), *flags], check=True)
    return json.loads((tmp_path / "config.json").read_text())


def test_default_config_equals_runc_spec(tmp_path):
    assert default_config() == runc_spec(tmp_path)


def test_rootless_default_config_equals_runc_spec_rootless(tmp_path):
    assert default_config(rootless=True) == runc_spec(tmp_path, "--rootless")


def test_default_config_is_fresh_each_call():
    a = default_config()
    a["process"]["capabilities"]["bounding"].append("CAP_SYS_ADMIN")
    a["mounts"][2]["options"].append("x")
    assert default_config() == default_config()
    assert "CAP_SYS_ADMIN" not in default_config()["process"]["capabilities"]["bounding"]


def test_spec_error_is_one_line():
    e = SpecError("config.json: hostname: expected string,\n got 1")
    assert str(e) == "config.json: hostname: expected string, got 1"
    assert isinstance(e, Exception)


def test_specs_package_import_is_cheap():
    # The hot path imports `specs`; json/re/jsonschema would cost it 10-90 ms.
    out = subprocess.run(
        [sys.executable, "-c",
         "import sys; before = set(sys.modules); import specs, specs.runtime; "
         "print(' '.join(m for m in ('json', 're', 'jsonschema') "
         "if m in sys.modules and m not in before))"],
        capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
