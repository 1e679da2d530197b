"""`pyrun events`: runc's event stream. One JSON object a line:

    {"type":"stats","id":ID,"data":{…}}   every --interval (or once, with --stats)
    {"type":"oom","id":ID}                 as soon as the kernel OOM-kills in the container

The stream ends when the container stops.
"""
import sys

from .errors import PyrunError

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(s: str) -> float:
    """Go's time.ParseDuration, in seconds: "5s", "500ms", "1m30s"."""
    import re
    parts = re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)", s)
    if not s or "".join(n + u for n, u in parts) != s:
        raise PyrunError(f"invalid value {s!r} for flag -interval: parse error")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def _emit(kind: str, cid: str, data=None) -> None:
    from specs import fastjson
    event = {"type": kind, "id": cid}
    if data is not None:
        event["data"] = data
    sys.stdout.write(fastjson.dumps(event, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def run(container, interval: float, stats_only: bool) -> None:
    if stats_only:
        _emit("stats", container.id, container.stats())
        return
    if interval <= 0:
        raise PyrunError("duration interval must be greater than 0")
    import select
    import time
    container.stats()  # refuses a stopped container before anything is printed
    watch = container.cgroup().oom_watch()
    poller = select.poll()
    if watch.fd >= 0:
        poller.register(watch.fd, watch.events)
    try:
        next_stats = time.monotonic()
        while container.status() not in ("stopped", "creating"):
            now = time.monotonic()
            if now >= next_stats:
                _emit("stats", container.id, container.cgroup().stats())
                next_stats = now + interval
            # wake at least once a second to notice that the container stopped
            timeout = min(next_stats - time.monotonic(), 1.0)
            if poller.poll(max(0, int(timeout * 1000))) and watch.fired():
                _emit("oom", container.id)
    finally:
        watch.close()
