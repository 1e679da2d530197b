"""runc's logging convention, which conmon and containerd read.

Without --log: errors go to stderr as logrus text lines. With --log FILE: the
entry goes to FILE (text, or JSON lines with --log-format json) and stderr gets
the bare message.
"""
import os
import sys

path: str | None = None
fmt: str = "text"
debug_on: bool = False


def _time() -> str:
    import time
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _entry(level: str, msg: str) -> str:
    if fmt == "json":
        from specs import fastjson
        return fastjson.dumps({"level": level, "msg": msg, "time": _time()}) + "\n"
    quoted = one_line(msg.replace("\\", "\\\\").replace('"', '\\"'))
    return f'time="{_time()}" level={level} msg="{quoted}"\n'


_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7f) if c != 0x09} | {0x0a: "\\n", 0x0d: "\\r"}


def one_line(msg: str) -> str:
    """A message is one line whatever it quotes (a mount source, a path from the config):
    control characters are escaped, as logrus' quoting does for runc."""
    return msg.translate(_CONTROL)


def open_log() -> None:
    """Make the --log file now; a failure to is one error line on stderr, as runc's."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644))
    except OSError as e:
        sys.stderr.write(one_line(f"open log file {path}: {e.strerror}") + "\n")


def _emit(level: str, msg: str, to_stderr: bool) -> None:
    line = _entry(level, msg)
    if path:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        except OSError:
            pass
        if to_stderr:
            sys.stderr.write(one_line(msg) + "\n")
    elif to_stderr:
        sys.stderr.write(line)
    sys.stderr.flush()


def error(msg: str) -> None:
    _emit("error", msg, True)


def warning(msg: str) -> None:
    _emit("warning", msg, True)


def debug(msg: str) -> None:
    if debug_on:
        _emit("debug", msg, not path)
