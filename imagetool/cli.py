"""The `imagetool` console entry.

`pull` of a small image from a local registry takes ~50 ms of work; click's import is ~40 ms.
So main() runs plain `pull` invocations without click and hands everything else to the
click group in commands.py. Every failure ends as one line `imagetool: <thing>: <reason>`
on stderr and exit 1 (IMAGETOOL_DEBUG=1 shows the traceback instead).
"""
from __future__ import annotations

import os
import sys

_PULL_VALUE_FLAGS = {"--platform": "platform", "--creds": "creds", "--authfile": "authfile",
                     "--jobs": "jobs", "-j": "jobs"}
_PULL_BOOL_FLAGS = {"--plain-http": "plain_http", "--quiet": "quiet", "-q": "quiet"}


def _fast_pull(argv: list[str]) -> bool:
    """`pull` without click: click's import (~40 ms) is a third of a small local pull.

    Handles only the exact flags `pull` declares; anything else (--help, --flag=value,
    mistakes) returns False and click parses it, so behaviour and messages stay click's.
    """
    opts = {"platform": None, "creds": None, "authfile": None, "plain_http": False,
            "jobs": None, "quiet": False}
    args, i = [], 0
    while i < len(argv):
        a = argv[i]
        if a in _PULL_VALUE_FLAGS and i + 1 < len(argv):
            opts[_PULL_VALUE_FLAGS[a]] = argv[i + 1]
            i += 2
        elif a in _PULL_BOOL_FLAGS:
            opts[_PULL_BOOL_FLAGS[a]] = True
            i += 1
        elif a.startswith("-"):
            return False
        else:
            args.append(a)
            i += 1
    if len(args) != 2 or (opts["jobs"] is not None and not opts["jobs"].isdigit()):
        return False
    if opts["jobs"] is not None:
        opts["jobs"] = int(opts["jobs"])
    _run_pull(args, opts)
    return True


def _run_pull(args: list[str], opts: dict) -> None:
    try:
        from .puller import pull as do_pull
        result = do_pull(args[0], args[1], platform=opts["platform"], creds=opts["creds"],
                         authfile=opts["authfile"], plain_http=opts["plain_http"],
                         jobs=opts["jobs"], progress=False if opts["quiet"] else None)
    except KeyboardInterrupt:
        sys.stderr.write("imagetool: interrupted\n")
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - same one-line contract as _one_line_errors
        if os.environ.get("IMAGETOOL_DEBUG"):
            raise
        sys.stderr.write(f"imagetool: {' '.join(str(e).split()) or type(e).__name__}\n")
        sys.exit(1)
    sys.stdout.write(result.descriptor["digest"] + "\n")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "pull" and _fast_pull(sys.argv[2:]):
        return
    from .commands import cli
    cli(prog_name="imagetool")


def __getattr__(name: str):
    if name == "cli":  # imagetool.cli.cli, for click's test runner and docs
        from .commands import cli
        return cli
    raise AttributeError(name)


if __name__ == "__main__":
    main()
