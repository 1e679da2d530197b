"""JSON parsing without importing `json`.

`import json` costs ~7 ms here because json.decoder pulls in `re`; pyrun's hot
path parses one config.json per call, so we drive the same C scanner that
json.loads uses (`_json.make_scanner`) directly. The result is identical to
json.loads except that NaN/Infinity are refused (they are not JSON, and Go
peers refuse them too).
"""


import _json

_WS = " \t\n\r"


class JSONError(ValueError):
    """Not JSON; str() is one line with the line and column."""


def _no_constants(name: str):
    raise JSONError(f"{name} is not valid JSON")


class _Context:
    # The attributes _json.make_scanner reads from a JSONDecoder.
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_no_constants)
    memo: dict = {}


_scan = _json.make_scanner(_Context())


def _where(text: str, pos: int) -> str:
    line = text.count("\n", 0, pos) + 1
    col = pos - text.rfind("\n", 0, pos)
    return f"line {line} column {col}"


def loads(text: str):
    """Parse one JSON document; raise JSONError naming line and column."""
    start = len(text) - len(text.lstrip(_WS))
    try:
        obj, end = _scan(text, start)
    except Exception:
        # The C scanner reports most syntax errors through json.decoder, and
        # only when that module is already imported (otherwise SystemError).
        # Errors are the slow path: let the json module find the reason.
        return _slow_loads(text)
    end = len(text) - len(text[end:].lstrip(_WS))
    if end != len(text):
        raise JSONError(f"extra data after the document at {_where(text, end)}")
    return obj


def _slow_loads(text: str):
    import json

    try:
        return json.loads(text, parse_constant=_no_constants)
    except json.JSONDecodeError as e:
        msg = e.msg.removesuffix(" at")
        msg = msg[:1].lower() + msg[1:]
        raise JSONError(f"{msg} at {_where(text, e.pos)}") from None
    except RecursionError:
        raise JSONError("nested too deeply") from None
