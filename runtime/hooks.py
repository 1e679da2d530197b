"""The six hook kinds: each hook runs with the container's state JSON on stdin.

Who runs which, and where (runtime-spec "Lifecycle"):
  prestart, createRuntime   the create process, runtime namespaces, before pivot_root
  createContainer           the container init, container namespaces, before pivot_root
  startContainer            the container init, in `start` (which waits for them), before execve
  poststart                 the start process, after the user process started
  poststop                  the delete process, after the container is gone
A failing createRuntime/createContainer/startContainer (or prestart) hook aborts
the container; a failing poststart/poststop hook is only reported.
"""
import os

from .errors import PyrunError

KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")


class HookError(PyrunError):
    pass


def preload() -> None:
    """startContainer hooks run after pivot_root, where the host's modules are gone."""
    import subprocess  # noqa: F401
    from specs import fastjson  # noqa: F401


def check(hooks: dict | None) -> None:
    for kind, entries in (hooks or {}).items():
        if kind not in KINDS:
            raise PyrunError(f"config.json: unknown hook kind hooks.{kind}: refused, its hooks would never run")
        for h in entries or ():
            if not os.path.isabs(h.get("path", "")):
                raise PyrunError(f"{kind} hook path {h.get('path')!r} is not absolute")


def run(entries: list[dict] | None, state: dict, kind: str, on_error=None) -> None:
    """Each hook in order. A failure raises HookError; with `on_error`, it is handed
    to on_error instead and the remaining hooks still run (poststart, poststop)."""
    if not entries:
        return
    from specs import fastjson
    payload = fastjson.dumps(state).encode()
    for i, h in enumerate(entries):
        try:
            _run_one(h, payload, f"{kind} hook #{i} ({h['path']})")
        except HookError as e:
            if on_error is None:
                raise
            on_error(str(e))


def _unblock_all() -> None:
    import _signal
    _signal.pthread_sigmask(_signal.SIG_SETMASK, ())


def _run_one(h: dict, payload: bytes, what: str) -> None:
    import _signal
    import subprocess
    argv = h.get("args") or [h["path"]]
    env = dict(e.split("=", 1) for e in h.get("env") or () if "=" in e)
    # A hook starts with no signal blocked, whatever its runner holds: the init blocks every
    # signal once `start` begins (they are the program's), and a mask survives execve.
    blocked = _signal.pthread_sigmask(_signal.SIG_BLOCK, ())
    try:
        p = subprocess.run(argv, executable=h["path"], input=payload, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           timeout=h.get("timeout"), close_fds=True,
                           preexec_fn=_unblock_all if blocked else None)
    except subprocess.TimeoutExpired:
        raise HookError(f"{what}: timed out after {h['timeout']}s") from None
    except OSError as e:
        raise HookError(f"{what}: {e.strerror}") from None
    if p.returncode != 0:
        err = p.stderr.decode(errors="replace").strip().splitlines()
        raise HookError(f"{what}: exit status {p.returncode}" + (f": {err[-1]}" if err else ""))


def run_logged(entries: list[dict] | None, state: dict, kind: str, log) -> None:
    """poststart/poststop: a failure is reported (the spec: log a warning) and the
    remaining hooks still run; nothing is undone."""
    run(entries, state, kind, on_error=log)
