"""The `imagetool` console entry.

`pull` of a small image from a local registry takes ~50 ms of work; click's import is ~35 ms.
So main() runs plain `pull` and `unpack` invocations without click and hands everything else to the
click group in commands.py. Every failure ends as one line `imagetool: <thing>: <reason>`
on stderr and exit 1 (IMAGETOOL_DEBUG=1 shows the traceback instead).
"""
from __future__ import annotations

import os
import sys

from .cliargs import error_line, parse_map, run_unpack, split_layout_ref  # noqa: F401 - cli's API too

# The fast path's flags, exactly as commands.py declares them: name → option key.
# Value flags listed in _MULTI may repeat (click's multiple=True).
_FAST = {
    "pull": ({"--platform": "platform", "--creds": "creds", "--authfile": "authfile",
              "--jobs": "jobs", "-j": "jobs", "--format": "format",
              "--tls-verify": "tls_verify", "--cert-dir": "cert_dir"},
             {"--plain-http": "plain_http", "--quiet": "quiet", "-q": "quiet"}),
    "unpack": ({"--uid-map": "uid_map", "--gid-map": "gid_map"}, {"--rootless": "rootless"}),
}
_MULTI = {"uid_map", "gid_map"}
# click.BOOL's words, so that both paths take the same values.
_BOOLS = {"1": True, "true": True, "t": True, "yes": True, "y": True, "on": True,
          "0": False, "false": False, "f": False, "no": False, "n": False, "off": False}


def _fast(command: str, argv: list[str]) -> bool:
    """`pull` and `unpack` without click: click's import (~35 ms) is a third of a small
    local pull and more than half of a small unpack.

    Handles only the exact flags the command declares; anything else (--help,
    --flag=value, mistakes) returns False and click parses it, so behaviour and
    messages stay click's.
    """
    value_flags, bool_flags = _FAST[command]
    opts: dict = {k: ([] if k in _MULTI else None) for k in value_flags.values()}
    opts.update({k: False for k in bool_flags.values()})
    args, i = [], 0
    while i < len(argv):
        a = argv[i]
        flag, eq, value = a.partition("=")
        if eq and flag in value_flags:  # --flag=value, as skopeo's --tls-verify=false
            argv = argv[:i] + [flag, value] + argv[i + 1:]
            a = flag
        if a in value_flags and i + 1 < len(argv):
            key = value_flags[a]
            if key in _MULTI:
                opts[key].append(argv[i + 1])
            else:
                opts[key] = argv[i + 1]
            i += 2
        elif a in bool_flags:
            opts[bool_flags[a]] = True
            i += 1
        elif a.startswith("-"):
            return False
        else:
            args.append(a)
            i += 1
    if len(args) != 2:
        return False
    if command == "pull":
        if opts["jobs"] is not None and not opts["jobs"].isdigit():
            return False
        if opts["jobs"] is not None:
            opts["jobs"] = int(opts["jobs"])
        if opts["format"] not in (None, "keep", "oci"):
            return False  # click's message for a bad choice
        if opts["tls_verify"] is not None:
            if opts["tls_verify"].lower() not in _BOOLS:
                return False
            opts["tls_verify"] = _BOOLS[opts["tls_verify"].lower()]
    _one_line(_RUN[command], args, opts)
    return True


def _one_line(run, args: list[str], opts: dict) -> None:
    """The same one-line contract as commands._one_line_errors, without click."""
    try:
        run(args, opts)
    except KeyboardInterrupt:
        sys.stderr.write("imagetool: interrupted\n")
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - the user gets one line, not a traceback
        if os.environ.get("IMAGETOOL_DEBUG"):
            raise
        sys.stderr.write(error_line(e) + "\n")
        sys.exit(1)


def _run_pull(args: list[str], opts: dict) -> None:
    from .puller import pull as do_pull
    result = do_pull(args[0], args[1], platform=opts["platform"], creds=opts["creds"],
                     authfile=opts["authfile"], plain_http=opts["plain_http"],
                     jobs=opts["jobs"], progress=False if opts["quiet"] else None,
                     format=opts["format"] or "oci",
                     tls_verify=opts["tls_verify"] is not False, cert_dir=opts["cert_dir"])
    sys.stdout.write(result.descriptor["digest"] + "\n")


def _run_unpack(args: list[str], opts: dict) -> None:
    run_unpack(args[0], args[1], opts["rootless"], opts["uid_map"], opts["gid_map"])


_RUN = {"pull": _run_pull, "unpack": _run_unpack}


def _leave() -> None:
    """Exit without the interpreter's teardown (freeing every module and object: ~3 ms,
    a tenth of a small unpack). Nothing needs it: every file the fast path writes is
    closed by then and its threads are joined; only the std streams may hold output."""
    code = 0
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        code = 1
    os._exit(code)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in _FAST and _fast(sys.argv[1], sys.argv[2:]):
        _leave()
    from .commands import cli
    cli(prog_name="imagetool")


def __getattr__(name: str):
    if name == "cli":  # imagetool.cli.cli, for click's test runner and docs
        from .commands import cli
        return cli
    raise AttributeError(name)


if __name__ == "__main__":
    main()
