"""JSON through the C accelerator alone, for both pyrun and imagetool.

`import json` costs ~9 ms here because it pulls in `re` (and `enum`); every pyrun
call and every small imagetool call reads or writes JSON, so they talk to `_json`
directly. Same parser, same strictness, same output as json.loads/json.dumps.
"""
import _json

_WS = " \t\n\r"


class _Ctx:
    # The attributes _json.make_scanner reads from a JSONDecoder.
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: dict = {}

    @staticmethod
    def parse_constant(name):
        raise ValueError(f"{name} is not valid JSON")  # NaN, Infinity: Go peers refuse them too


_scan = _json.make_scanner(_Ctx())


class JSONError(ValueError):
    """Not JSON; str() is one line naming the line and column."""


def _where(s: str, pos: int) -> str:
    line = s.count("\n", 0, pos) + 1
    col = pos - (s.rfind("\n", 0, pos) + 1) + 1
    return f"line {line} column {col}"


def _skip_ws(s: str, i: int) -> int:
    n = len(s)
    while i < n and s[i] in _WS:
        i += 1
    return i


def loads(s) -> object:
    """Parse one JSON document (str or UTF-8 bytes); any fault is a ValueError."""
    if isinstance(s, (bytes, bytearray)):
        s = s.decode("utf-8")
    try:
        obj, end = _scan(s, _skip_ws(s, 0))
    except Exception:  # noqa: BLE001 - see _reason
        raise JSONError(_reason(s)) from None
    end = _skip_ws(s, end)
    if end != len(s):
        raise JSONError(f"extra data after the document at {_where(s, end)}")
    return obj


def loads_head(s, last: str) -> tuple[dict, str, int]:
    """The members of the JSON object `s` that come before its member `last`, without
    parsing `last`'s value: (members, s as str, where that value begins, or -1 if the
    object has no such member). pyrun's state record keeps the whole config as its
    last member; `list` and `state` need everything but that, and loads_tail parses
    it only when asked. Anything unusual (not an object, a fault) goes to loads."""
    if isinstance(s, (bytes, bytearray)):
        s = s.decode("utf-8")
    # The fast way, for documents written as dumps() writes them: cut before the member and
    # let the C scanner take the head whole. The cut is exact: `, "KEY": ` cannot lie inside a
    # string (its quote would be escaped), and a cut inside a nested object leaves a brace
    # open, so the scan fails or ends early and the careful loop below decides.
    cut = s.find(f', "{last}": ')
    if cut > 0:
        try:
            head, end = _scan(s[:cut] + "}", 0)
        except Exception:  # noqa: BLE001 - the loop below names nothing either; it just reads on
            head, end = None, 0
        if end == cut + 1 and isinstance(head, dict) and last not in head:
            return head, s, _skip_ws(s, cut + len(last) + 6)
    out: dict = {}
    try:  # an index past the end is a fault like any other
        i = _skip_ws(s, 0)
        if s[i] != "{":
            raise ValueError
        i = _skip_ws(s, i + 1)
        while s[i] != "}":
            if s[i] != '"':
                raise ValueError
            key, i = _scan(s, i)
            i = _skip_ws(s, i)
            if s[i] != ":":
                raise ValueError
            i = _skip_ws(s, i + 1)
            if key == last:
                return out, s, i
            out[key], i = _scan(s, i)
            i = _skip_ws(s, i)
            if s[i] == ",":
                i = _skip_ws(s, i + 1)
                if s[i] != '"':  # no trailing comma
                    raise ValueError
            elif s[i] != "}":
                raise ValueError
    except Exception:  # noqa: BLE001 - the whole parse says what is wrong, or that nothing is
        obj = loads(s)
        if not isinstance(obj, dict):
            raise JSONError("not a JSON object") from None
        return obj, s, -1
    if _skip_ws(s, i + 1) != len(s):
        raise JSONError(f"extra data after the document at {_where(s, _skip_ws(s, i + 1))}")
    return out, s, -1


def loads_tail(s: str, at: int) -> object:
    """The value loads_head stopped at, which must be the object's last member."""
    try:
        obj, end = _scan(s, at)
    except Exception:  # noqa: BLE001 - see _reason
        raise JSONError(_reason(s)) from None
    end = _skip_ws(s, end)
    if s[end:end + 1] != "}" or _skip_ws(s, end + 1) != len(s):
        loads(s)  # names the fault, if the document has one
        raise JSONError(f"the member at {_where(s, at)} is not the object's last")
    return obj


def _reason(s: str) -> str:
    """Why `s` is not JSON. The C scanner raises its precise errors through
    json.decoder, and only when that module is already imported (otherwise a
    SystemError); deep nesting is a RecursionError. Errors are the slow path:
    the json module, imported only now, finds the reason."""
    import json
    try:
        json.loads(s, parse_constant=_Ctx.parse_constant)
    except json.JSONDecodeError as e:
        msg = e.msg.removesuffix(" at")
        return f"{msg[:1].lower()}{msg[1:]} at {_where(s, e.pos)}"
    except RecursionError:
        return "nested too deeply"
    except ValueError as e:
        return str(e)
    return "not JSON"


def _float_repr(f: float) -> str:
    if f != f or f in (float("inf"), float("-inf")):
        raise ValueError("NaN and Infinity are not JSON")
    return float.__repr__(f)


def _encoder(indent, separators=(", ", ": ")):
    # Arguments of c_make_encoder: markers, default, encoder, indent, key_separator,
    # item_separator, sort_keys, skipkeys, allow_nan.
    item_sep = "," if indent is not None else separators[0]
    return _json.make_encoder({}, _default, _json.encode_basestring_ascii, indent,
                              separators[1], item_sep, False, False, False)


def _default(o):
    raise TypeError(f"{type(o).__name__} is not JSON serializable")


def dumps(obj, indent: str | None = None, separators: tuple[str, str] = (", ", ": ")) -> str:
    """One line as json.dumps(obj, separators=…), or indented like json.dumps(obj, indent=…)."""
    if indent is None:
        return "".join(_encoder(None, separators)(obj, 0))
    out: list[str] = []
    _pretty(obj, indent, "", out)
    return "".join(out)


def _pretty(obj, indent: str, pad: str, out: list) -> None:
    # The C encoder has no indentation; containers are laid out here, leaves go to it.
    inner = pad + indent
    if isinstance(obj, dict) and obj:
        out.append("{")
        for i, (k, v) in enumerate(obj.items()):
            if not isinstance(k, str):
                raise TypeError(f"keys must be str, not {type(k).__name__}")
            out.append(("," if i else "") + "\n" + inner + _json.encode_basestring_ascii(k) + ": ")
            _pretty(v, indent, inner, out)
        out.append("\n" + pad + "}")
    elif isinstance(obj, (list, tuple)) and obj:
        out.append("[")
        for i, v in enumerate(obj):
            out.append(("," if i else "") + "\n" + inner)
            _pretty(v, indent, inner, out)
        out.append("\n" + pad + "]")
    else:
        out.append("".join(_encoder(None)(obj, 0)))


def load_file(path: str) -> object:
    with open(path, "rb") as f:
        return loads(f.read())
