"""The fast validator against jsonschema on many generated documents, and its
hand-written pattern matchers against re.search on many generated strings."""

import copy
import json
import os
import random
import re
import subprocess
import sys

import pytest

from specs import _validator
from specs.runtime import default_config
from tests.support.jsontree import paths

from .schemas import ours
from .test_crosscheck_image import CONFIG, INDEX, MANIFEST
from .test_crosscheck_runtime import FULL

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ALPHABET = list("0123456789abcxyzABRLIMTKGB_.-+/:=\n \t") + ["٣", "é", "Ⅳ"]
SEEDS = {
    "semver": ["1.0.0", "1.0.2-dev", "0.0.0", "10.20.30", "1.2.3-rc.1+build.5", "1.0.0-0a",
               "1.0.0-x-y-z.--", "1.0.0+21AF26D3----117B344092BD", "01.0.0", "1.0.0-01", "1.0",
               "1.0.0-", "1.0.0+", "1.0.0-a..b", "1.0.0\n", "1.0.0-α"],
    "rlimit": ["RLIMIT_NOFILE", "RLIMIT_", "RLIMIT_nofile", "RLIMIT_NOFILE\n", "RLIMIT_AS1", "XRLIMIT_AS"],
    "page": ["2MB", "1GB", "64KB", "02MB", "2M", "2MB\n", "2TB", "MB"],
    "mb": ["MB:0=70", "MB:", "MB:0=70\n", "MB:\n0", "mb:0", "L3:0=ff"],
    "abs": ["/", "/usr/bin/x", "x", "", "\n/"],
    "nonempty": ["", "a", "\n", " "],
}


def strings(seed_list, rng, n=3000):
    out = list(seed_list)
    for _ in range(n):
        s = list(rng.choice(seed_list))
        for _ in range(rng.randint(1, 3)):
            op = rng.random()
            i = rng.randint(0, len(s))
            if op < 0.4:
                s.insert(i, rng.choice(ALPHABET))
            elif op < 0.7 and s:
                del s[min(i, len(s) - 1)]
            elif s:
                s[min(i, len(s) - 1)] = rng.choice(ALPHABET)
        out.append("".join(s))
    out += ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 10))) for _ in range(500)]
    return out


@pytest.mark.parametrize("pattern", sorted(_validator._NATIVE_PATTERNS))
def test_native_pattern_matches_re(pattern):
    native = _validator._NATIVE_PATTERNS[pattern]
    search = re.compile(pattern).search
    rng = random.Random(pattern)
    seeds = [s for v in SEEDS.values() for s in v]
    for s in strings(seeds, rng):
        assert bool(native(s)) == bool(search(s)), (pattern, s)


def schema_patterns(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "pattern":
                yield v
            elif k == "patternProperties":
                yield from v
                for sub in v.values():
                    yield from schema_patterns(sub)
            else:
                yield from schema_patterns(v)
    elif isinstance(node, list):
        for v in node:
            yield from schema_patterns(v)


@pytest.mark.parametrize("name", ["runtime-config.json", "runtime-state.json"])
def test_hot_path_patterns_are_all_native(name):
    # Otherwise validating some configs would import re (~6 ms) on pyrun's hot path.
    with open(f"{_validator.SCHEMA_DIR}/{name}") as f:
        patterns = set(schema_patterns(json.load(f)))
    assert patterns <= set(_validator._NATIVE_PATTERNS)
    assert patterns or name != "runtime-config.json"


POOL = [None, True, False, 0, -1, 1, 1.0, 1.5, 2 ** 32, 2 ** 63, 2 ** 64, -2 ** 63 - 1, "", "x",
        "/abs", "1.0.0", "RLIMIT_X", "c", "a", "SCMP_ACT_ALLOW", "SCMP_CMP_EQ", "pid", "time", "2MB",
        "MB:1", [], ["x"], [1], {}, {"": "x"}, {"path": "/x"}, {"type": "pid"}, {"a": 1}]


def mutate(doc, rng):
    doc = copy.deepcopy(doc)
    for _ in range(rng.choice((1, 1, 1, 2))):
        every = list(paths(doc))
        path = rng.choice(every[1:])
        parent = doc
        for p in path[:-1]:
            parent = parent[p]
        r = rng.random()
        if r < 0.15 and isinstance(parent, dict):
            del parent[path[-1]]
        elif r < 0.2 and isinstance(parent, dict):
            parent["x-unknown"] = rng.choice(POOL)
        else:
            parent[path[-1]] = copy.deepcopy(rng.choice(POOL))
    return doc


def error_paths(errors):
    for e in errors:
        yield tuple(e.absolute_path)
        yield from error_paths(e.context)


@pytest.mark.parametrize("name, base, count", [
    ("runtime-config.json", FULL, 800),
    ("runtime-config.json", default_config(rootless=True), 300),
    ("image-manifest.json", MANIFEST, 300),
    ("image-index.json", INDEX, 300),
    ("image-config.json", CONFIG, 300),
])
def test_fast_validator_agrees_with_jsonschema(name, base, count):
    rng = random.Random(name + str(count))
    reference = ours(name)
    invalid = 0
    for _ in range(count):
        doc = mutate(base, rng)
        err = _validator.check(_validator.schema_file(name), doc, (), name)
        errors = list(reference.iter_errors(doc))
        assert (err is None) == (not errors), (doc, err, [e.message for e in errors])
        if err:
            invalid += 1
            # The path we report is one jsonschema reports too.
            assert err[0] in set(error_paths(errors)), (err, [list(e.absolute_path) for e in errors])
    assert count * 0.3 < invalid < count * 0.95  # the mutations exercise both outcomes


def test_runc_spec_output_validates(tmp_path):
    import shutil

    from specs.runtime import load_config

    if shutil.which("runc") is None:
        pytest.skip("runc is not installed")
    for flags, sub in (([], "a"), (["--rootless"], "b")):
        (tmp_path / sub).mkdir()
        subprocess.run(["runc", "spec", "--bundle", str(tmp_path / sub), *flags], check=True)
        load_config(str(tmp_path / sub / "config.json"))


def test_json_loader_equals_json_loads(tmp_path):
    from specs.fastjson import loads

    rng = random.Random(7)
    for _ in range(200):
        doc = mutate(FULL, rng)
        text = json.dumps(doc, indent=rng.choice((None, 1, "\t")), ensure_ascii=rng.random() < 0.5)
        assert loads(text) == json.loads(text)
    big = json.dumps({"n": [2 ** 64, -2 ** 70, 1e308, 5e-324, -0.0, "\u0000\ud83d\ude00"]})
    assert loads(big) == json.loads(big)


def test_validating_imports_nothing_slow():
    # What keeps `pyrun create` fast, checked without timing anything: validating a
    # config in a fresh interpreter imports neither jsonschema nor json nor re.
    code = ("import sys, specs.runtime as r; r.validate_config(r.default_config()); "
            "print(sorted({'jsonschema', 'json', 're'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {ROOT!r}); {code}"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
