"""A small interpreter of the JSON Schema draft-04 keywords, without jsonschema.

Importing jsonschema costs ~90 ms, too much for every `pyrun create`. This
module validates exactly as jsonschema's Draft4Validator does for the keywords
draft-04 defines (format is an annotation there too, unchecked by default),
and tests/specs cross-checks the two on a corpus. It stops at the first error
and reports it as one line: "<doc>: <json path>: <reason>".

`re` (~6 ms to import) is avoided on the hot path: the patterns our runtime
schemas use have hand-written matchers in _NATIVE_PATTERNS, each tested
against re.search; any other pattern falls back to re, imported lazily.
"""


import os

from specs import SpecError
from specs.fastjson import loads

SCHEMA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schema")

_files: dict[str, dict] = {}
_refs: dict[tuple[str, str], tuple[dict, str]] = {}
_patterns: dict[str, object] = {}


def schema_file(name: str) -> dict:
    """One of our schema documents, parsed once per process."""
    doc = _files.get(name)
    if doc is None:
        with open(os.path.join(SCHEMA_DIR, name), encoding="utf-8") as f:
            doc = _files[name] = loads(f.read())
    return doc


def _resolve(ref: str, base: str) -> tuple[dict, str]:
    hit = _refs.get((ref, base))
    if hit is None:
        name, _, fragment = ref.partition("#")
        name = name or base
        node = schema_file(name)
        for part in fragment.split("/")[1:]:
            part = part.replace("~1", "/").replace("~0", "~")
            node = node[int(part)] if isinstance(node, list) else node[part]
        hit = _refs[(ref, base)] = (node, name)
    return hit


# --- patterns -------------------------------------------------------------

def _digits(s: str) -> bool:
    return s != "" and s.isascii() and s.isdigit()


def _numeric_id(s: str) -> bool:
    return _digits(s) and (s == "0" or s[0] != "0")


_ALNUM_HYPHEN = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-")


def _semver(s: str) -> bool:
    core, plus, build = s.partition("+")
    if plus and not all(p and set(p) <= _ALNUM_HYPHEN for p in build.split(".")):
        return False
    core, dash, pre = core.partition("-")
    if dash and not all(p and set(p) <= _ALNUM_HYPHEN and (_numeric_id(p) or not _digits(p))
                        for p in pre.split(".")):
        return False
    nums = core.split(".")
    return len(nums) == 3 and all(_numeric_id(n) for n in nums)


def _rlimit(s: str) -> bool:
    rest = s[7:]
    return s.startswith("RLIMIT_") and rest != "" and rest.isascii() and rest.isalpha() and rest.isupper()


def _page_size(s: str) -> bool:
    num, unit = s[:-2], s[-2:]
    return unit in ("KB", "MB", "GB") and _digits(num) and num[0] != "0"


_NATIVE_PATTERNS = {
    # semver.org's grammar, [0-9] for \d so that only ASCII digits count.
    "^(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)"
    "(-(0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)(\\.(0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*))*)?"
    "(\\+[0-9a-zA-Z-]+(\\.[0-9a-zA-Z-]+)*)?$(?!\\n)": _semver,
    "^RLIMIT_[A-Z]+$(?!\\n)": _rlimit,
    "^[1-9][0-9]*[KMG]B$(?!\\n)": _page_size,
    "^MB:[^\\n]*$(?!\\n)": lambda s: s.startswith("MB:") and "\n" not in s,
    "^/": lambda s: s.startswith("/"),
    "^[\\s\\S]": lambda s: s != "",
}


def _matcher(pattern: str):
    m = _patterns.get(pattern)
    if m is None:
        m = _NATIVE_PATTERNS.get(pattern)
        if m is None:
            import re  # only for patterns off the hot path

            m = re.compile(pattern).search
        _patterns[pattern] = m
    return m


# --- values ---------------------------------------------------------------

def json_type(v) -> str:
    if v is None:
        return "null"
    if v is True or v is False:
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


def _is_type(v, t: str) -> bool:
    vt = json_type(v)
    return vt == t or (t == "number" and vt == "integer")


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _quote(s: str, limit: int = 60) -> str:
    if len(s) > limit:
        s = s[:limit] + "…"
    out = s.replace("\\", "\\\\").replace('"', '\\"')
    if not out.isprintable():
        out = "".join(c if c.isprintable() else _ESCAPES.get(c) or "\\u%04x" % ord(c) for c in out)
    return '"' + out + '"'


def show(v) -> str:
    """A value as a short piece of a one-line message."""
    t = json_type(v)
    if t == "string":
        return _quote(v)
    if t in ("integer", "number"):
        return repr(v)
    if t == "boolean":
        return "true" if v else "false"
    if t == "null":
        return "null"
    return "an " + t if t in ("array", "object") else t


def _equal(a, b) -> bool:
    # jsonschema's equality: true/false are not 1/0, 1 equals 1.0.
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (list, dict)) or isinstance(b, (list, dict)):
        return False
    return a == b


def format_path(path: tuple) -> str:
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        elif p.isidentifier():
            out += "." + p if out else p
        else:
            out += "[" + _quote(p, 200) + "]"
    return out


# --- keywords -------------------------------------------------------------
# Each returns None or (path, reason) for the first error found.

def _k_type(types, v, schema, path, base):
    if isinstance(types, str):
        if _is_type(v, types):
            return None
        return path, f"expected {types}, got {show(v)}"
    if any(_is_type(v, t) for t in types):
        return None
    return path, f"expected {' or '.join(types)}, got {show(v)}"


def _k_enum(values, v, schema, path, base):
    if any(_equal(e, v) for e in values):
        return None
    listed = ", ".join(show(e) for e in values[:8]) + (", …" if len(values) > 8 else "")
    return path, f"expected one of {listed}; got {show(v)}"


def _k_minimum(limit, v, schema, path, base):
    if not _is_type(v, "number"):
        return None
    if schema.get("exclusiveMinimum", False):
        return None if v > limit else (path, f"expected more than {limit}, got {show(v)}")
    return None if v >= limit else (path, f"expected at least {limit}, got {show(v)}")


def _k_maximum(limit, v, schema, path, base):
    if not _is_type(v, "number"):
        return None
    if schema.get("exclusiveMaximum", False):
        return None if v < limit else (path, f"expected less than {limit}, got {show(v)}")
    return None if v <= limit else (path, f"expected at most {limit}, got {show(v)}")


def _k_multiple_of(d, v, schema, path, base):
    if not _is_type(v, "number"):
        return None
    if isinstance(d, float):
        q = v / d
        try:
            ok = int(q) == q
        except OverflowError:
            from fractions import Fraction

            ok = (Fraction(v) / Fraction(d)).denominator == 1
    else:
        ok = not v % d
    return None if ok else (path, f"expected a multiple of {d}, got {show(v)}")


def _k_min_length(n, v, schema, path, base):
    if isinstance(v, str) and len(v) < n:
        return path, f"expected at least {n} characters, got {show(v)}"
    return None


def _k_max_length(n, v, schema, path, base):
    if isinstance(v, str) and len(v) > n:
        return path, f"expected at most {n} characters, got {show(v)}"
    return None


def _k_pattern(p, v, schema, path, base):
    if not isinstance(v, str) or _matcher(p)(v):
        return None
    what = schema.get("title") or f"a string matching {p}"
    return path, f"expected {what}, got {show(v)}"


def _k_items(items, v, schema, path, base):
    if not isinstance(v, list):
        return None
    if isinstance(items, dict):
        for i, x in enumerate(v):
            err = check(items, x, path + (i,), base)
            if err:
                return err
        return None
    for i, (sub, x) in enumerate(zip(items, v)):
        err = check(sub, x, path + (i,), base)
        if err:
            return err
    extra = schema.get("additionalItems", True)
    if len(v) > len(items):
        if extra is False:
            return path, f"expected at most {len(items)} items, got {len(v)}"
        if isinstance(extra, dict):
            for i in range(len(items), len(v)):
                err = check(extra, v[i], path + (i,), base)
                if err:
                    return err
    return None


def _k_min_items(n, v, schema, path, base):
    if isinstance(v, list) and len(v) < n:
        return path, f"expected at least {n} item{'s' if n != 1 else ''}, got {len(v)}"
    return None


def _k_max_items(n, v, schema, path, base):
    if isinstance(v, list) and len(v) > n:
        return path, f"expected at most {n} item{'s' if n != 1 else ''}, got {len(v)}"
    return None


def _k_unique_items(flag, v, schema, path, base):
    if not flag or not isinstance(v, list):
        return None
    for j in range(1, len(v)):
        for i in range(j):
            if _equal(v[i], v[j]):
                return path + (j,), f"duplicate of item [{i}]: {show(v[j])}"
    return None


def _k_required(names, v, schema, path, base):
    if isinstance(v, dict):
        for name in names:
            if name not in v:
                return path, f"missing required property {_quote(name)}"
    return None


def _k_min_properties(n, v, schema, path, base):
    if isinstance(v, dict) and len(v) < n:
        return path, f"expected at least {n} properties, got {len(v)}"
    return None


def _k_max_properties(n, v, schema, path, base):
    if isinstance(v, dict) and len(v) > n:
        return path, f"expected at most {n} properties, got {len(v)}"
    return None


def _k_properties(props, v, schema, path, base):
    if not isinstance(v, dict):
        return None
    for name, sub in props.items():
        if name in v:
            err = check(sub, v[name], path + (name,), base)
            if err:
                return err
    return None


def _k_pattern_properties(pats, v, schema, path, base):
    if not isinstance(v, dict):
        return None
    for pat, sub in pats.items():
        match = _matcher(pat)
        for k, x in v.items():
            if match(k):
                err = check(sub, x, path + (k,), base)
                if err:
                    return err
    return None


def _k_additional_properties(extra, v, schema, path, base):
    if not isinstance(v, dict) or extra is True:
        return None
    props = schema.get("properties", {})
    pats = [_matcher(p) for p in schema.get("patternProperties", ())]
    for k, x in v.items():
        if k in props or any(m(k) for m in pats):
            continue
        if extra is False:
            return path, f"property name {_quote(k)} is not allowed"
        err = check(extra, x, path + (k,), base)
        if err:
            return err
    return None


def _k_dependencies(deps, v, schema, path, base):
    if not isinstance(v, dict):
        return None
    for name, dep in deps.items():
        if name not in v:
            continue
        if isinstance(dep, dict):
            err = check(dep, v, path, base)
            if err:
                return err
        else:
            for other in dep:
                if other not in v:
                    return path, f"{_quote(name)} requires property {_quote(other)}"
    return None


def _k_all_of(subs, v, schema, path, base):
    for sub in subs:
        err = check(sub, v, path, base)
        if err:
            return err
    return None


def _k_any_of(subs, v, schema, path, base):
    first = None
    for sub in subs:
        err = check(sub, v, path, base)
        if err is None:
            return None
        first = first or err
    return first  # the first alternative is written as the usual case


def _k_one_of(subs, v, schema, path, base):
    first = None
    matched = 0
    for sub in subs:
        err = check(sub, v, path, base)
        if err is None:
            matched += 1
        else:
            first = first or err
    if matched == 1:
        return None
    if matched == 0:
        return first
    return path, f"{show(v)} matches more than one of the allowed forms"


def _k_not(sub, v, schema, path, base):
    if check(sub, v, path, base) is None:
        return path, f"{show(v)} is not allowed here"
    return None


_KEYWORDS = {
    "type": _k_type,
    "enum": _k_enum,
    "minimum": _k_minimum,
    "maximum": _k_maximum,
    "multipleOf": _k_multiple_of,
    "minLength": _k_min_length,
    "maxLength": _k_max_length,
    "pattern": _k_pattern,
    "items": _k_items,
    "minItems": _k_min_items,
    "maxItems": _k_max_items,
    "uniqueItems": _k_unique_items,
    "required": _k_required,
    "minProperties": _k_min_properties,
    "maxProperties": _k_max_properties,
    "properties": _k_properties,
    "patternProperties": _k_pattern_properties,
    "additionalProperties": _k_additional_properties,
    "dependencies": _k_dependencies,
    "allOf": _k_all_of,
    "anyOf": _k_any_of,
    "oneOf": _k_one_of,
    "not": _k_not,
}


def check(schema: dict, v, path: tuple = (), base: str = ""):
    """First error of `v` against `schema` as (path, reason), or None."""
    ref = schema.get("$ref")
    if ref is not None:
        # Draft-04: a $ref replaces every sibling keyword.
        target, base = _resolve(ref, base)
        return check(target, v, path, base)
    for key, arg in schema.items():
        fn = _KEYWORDS.get(key)
        if fn is not None:
            err = fn(arg, v, schema, path, base)
            if err:
                return err
    return None


def validate(doc: str, schema_name: str, obj, pointer: str = "") -> None:
    """Raise SpecError('<doc>: <path>: <reason>') at the first violation."""
    schema = schema_file(schema_name)
    if pointer:
        schema, schema_name = _resolve(pointer, schema_name)
    err = check(schema, obj, (), schema_name)
    if err:
        path, reason = err
        where = format_path(path)
        raise SpecError(f"{doc}: {where}: {reason}" if where else f"{doc}: {reason}")
