"""Reading and writing cgroup interface files, with errors that name the config field."""
import os

from ..errors import PyrunError


def write(d: str, name: str, value, field: str) -> None:
    """Write one value; the kernel checks it. Never creates a file (a missing one is a
    controller or feature this kernel lacks)."""
    data = str(value).encode()
    try:
        fd = os.open(os.path.join(d, name), os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise PyrunError(f"linux.resources.{field}: {name} does not exist in {d} "
                         "(this kernel or host lacks it)") from None
    except OSError as e:
        raise PyrunError(f"linux.resources.{field}: open {name}: {e.strerror}") from None
    try:
        os.write(fd, data)
    except OSError as e:
        raise PyrunError(f"linux.resources.{field}: write {data.decode()!r} to {name}: {e.strerror}") from None
    finally:
        os.close(fd)


def read(d: str, name: str) -> str:
    with open(os.path.join(d, name)) as f:
        return f.read()


def read_int(d: str, name: str) -> int:
    """A file holding one number ("max" counts as the largest)."""
    s = read(d, name).strip()
    return 2 ** 64 - 1 if s == "max" else int(s)


def exists(d: str, name: str) -> bool:
    return os.path.exists(os.path.join(d, name))


def keyed(d: str, name: str) -> dict[str, int]:
    """A flat keyed file ("key value" lines: memory.stat, cpu.stat, memory.events…)."""
    out = {}
    try:
        text = read(d, name)
    except OSError:
        return out
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        try:
            out[k] = int(v)
        except ValueError:
            continue
    return out
