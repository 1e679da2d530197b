"""Device access rules: linux.resources.devices, then runc's built-in allowed devices.

The rules are first reduced the way the v1 devices controller reduces them: a
default (allow or deny everything; a type "a" rule resets to it) and exceptions
{(type, major, minor): access}. Both versions enforce that reduction, so a rule
set means the same on both:

- v1: the exceptions are written to devices.allow / devices.deny, after a
  reset to the default only when the default changes (so an update does not
  open a window where /dev/null is denied), and devices.list is read back.
- v2: the exceptions become an eBPF program of type BPF_PROG_TYPE_CGROUP_DEVICE
  (one block per exception, each returning the exception's verdict on a match,
  the default verdict last), loaded and attached through the shim.
"""
import os

from ..errors import ConfigError, PyrunError, describe_oserror

WILDCARD = -1
RWM = "rwm"

# runc's built-in allowed devices, appended after the config's rules: mknod of any
# node (opening one is another matter), the usual character devices, the ptys, tun.
DEFAULT_RULES = (
    (True, "c", WILDCARD, WILDCARD, "m"), (True, "b", WILDCARD, WILDCARD, "m"),
    (True, "c", 1, 3, RWM), (True, "c", 1, 8, RWM), (True, "c", 1, 7, RWM), (True, "c", 5, 0, RWM),
    (True, "c", 1, 5, RWM), (True, "c", 1, 9, RWM), (True, "c", 136, WILDCARD, RWM),
    (True, "c", 5, 2, RWM), (True, "c", 10, 200, RWM),
)


def rules_from_config(devices) -> list[tuple]:
    """linux.resources.devices as (allow, type, major, minor, access), refusing what runc refuses."""
    out = []
    if not isinstance(devices, list):
        raise ConfigError("linux.resources.devices: expected a list")
    for i, d in enumerate(devices):
        where = f"linux.resources.devices[{i}]"
        if not isinstance(d, dict) or not isinstance(d.get("allow"), bool):
            raise ConfigError(f"{where}: expected an object with a boolean \"allow\"")
        kind = d.get("type") or "a"
        if kind not in ("a", "b", "c"):
            raise ConfigError(f"{where}.type: invalid cgroup device type {kind!r}")
        access = d.get("access")
        if not access:
            raise ConfigError(f"{where}.access: device access cannot be empty")
        if not isinstance(access, str) or not set(access) <= set(RWM):
            raise ConfigError(f"{where}.access: invalid device access {access!r}")
        numbers = []
        for name in ("major", "minor"):
            n = d.get(name)
            if n is None or n == WILDCARD:
                numbers.append(WILDCARD)
            elif isinstance(n, bool) or not isinstance(n, int) or not 0 <= n < 2 ** 32:
                raise ConfigError(f"{where}.{name}: expected a device number, got {n!r}")
            else:
                numbers.append(n)
        out.append((d["allow"], kind, numbers[0], numbers[1], access))
    return out


class Rules:
    """The devices controller's state: a default verdict and the exceptions to it."""

    def __init__(self, allow_all: bool = False):
        self.allow_all = allow_all
        self.exceptions: dict[tuple, str] = {}  # (type, major, minor) → access, in "rwm" order

    @classmethod
    def of(cls, rules) -> "Rules":
        """What the kernel would hold after `rules`, starting from deny-all as runc does."""
        state = cls(False)
        for rule in rules:
            state.apply(*rule)
        return state

    def apply(self, allow: bool, kind: str, major: int, minor: int, access: str) -> None:
        if kind == "a":  # resets: major, minor and access are ignored, as by the kernel
            self.allow_all, self.exceptions = allow, {}
            return
        key = (kind, major, minor)
        if allow != self.allow_all:
            self.exceptions[key] = _access(self.exceptions.get(key, "") + access)
            return
        # A rule with the default's verdict takes access away from an exception. The
        # kernel silently ignores one that only covers part of a wildcard exception;
        # refuse it instead of leaving the access the config meant to remove.
        for wider in ((kind, WILDCARD, minor), (kind, major, WILDCARD), (kind, WILDCARD, WILDCARD)):
            if wider != key and set(self.exceptions.get(wider, "")) & set(access):
                raise ConfigError(f"linux.resources.devices: rule {_line(kind, major, minor, access)} "
                                  f"cannot punch a hole in the wider rule "
                                  f"{_line(*wider, self.exceptions[wider])}")
        left = _access("".join(c for c in self.exceptions.get(key, "") if c not in access))
        if left:
            self.exceptions[key] = left
        else:
            self.exceptions.pop(key, None)

    def ordered(self) -> list[tuple[tuple, str]]:
        # by major, minor, then type (wildcards first): the order runc writes them in
        return sorted(self.exceptions.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0]))


def _access(s: str) -> str:
    return "".join(c for c in RWM if c in s)


def _num(n: int) -> str:
    return "*" if n == WILDCARD else str(n)


def _line(kind: str, major: int, minor: int, access: str) -> str:
    return f"{kind} {_num(major)}:{_num(minor)} {access}"


def target(devices) -> Rules:
    return Rules.of(rules_from_config(devices or []) + list(DEFAULT_RULES))


# -- v1: devices.allow / devices.deny ---------------------------------------------------

def parse_list(text: str) -> Rules:
    """devices.list: "a *:* rwm" alone is allow-all (whose deny exceptions the kernel
    does not show); anything else is deny-all plus the listed exceptions."""
    lines = text.split("\n")
    if lines and lines[0].startswith("a "):
        return Rules(True)
    state = Rules(False)
    for line in lines:
        if not line:
            continue
        kind, numbers, access = line.split()
        major, minor = (WILDCARD if n == "*" else int(n) for n in numbers.split(":"))
        state.exceptions[(kind, major, minor)] = _access(access)
    return state


def transition(current: Rules, want: Rules) -> list[tuple[str, str]]:
    """(file, line) writes that turn `current` into `want`."""
    writes = []
    old = current.exceptions
    # An allow-all cgroup may hide deny exceptions: only a reset makes it known.
    if current.allow_all or current.allow_all != want.allow_all:
        writes.append(("devices.allow" if want.allow_all else "devices.deny", "a"))
        old = {}
    take_away = "devices.allow" if want.allow_all else "devices.deny"
    grant = "devices.deny" if want.allow_all else "devices.allow"
    for key, access in sorted(old.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
        dropped = "".join(c for c in access if c not in want.exceptions.get(key, ""))
        if dropped:
            writes.append((take_away, _line(*key, dropped)))
    for key, access in want.ordered():
        gained = "".join(c for c in access if c not in old.get(key, ""))
        if gained:
            writes.append((grant, _line(*key, gained)))
    return writes


def apply_v1(d: str, devices) -> None:
    want = target(devices)
    current = parse_list(_read(d, "devices.list"))
    for name, line in transition(current, want):
        try:
            fd = os.open(os.path.join(d, name), os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        except OSError as e:
            raise PyrunError(describe_oserror(e, f"linux.resources.devices: write {line!r} to {name}")) from None
    got = parse_list(_read(d, "devices.list"))
    if got.allow_all != want.allow_all or (not want.allow_all and got.exceptions != want.exceptions):
        raise PyrunError(f"linux.resources.devices: {d}/devices.list does not hold the rules written "
                         "(the parent cgroup's rules are narrower)")


def _read(d: str, name: str) -> str:
    try:
        with open(os.path.join(d, name)) as f:
            return f.read()
    except OSError as e:
        raise PyrunError(describe_oserror(e, f"linux.resources.devices: read {name}")) from None


# -- v2: an eBPF program ---------------------------------------------------------------
# struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }: the low 16 bits
# of access_type are the node type, the high 16 the access asked for.
_DEV_TYPE = {"b": 1, "c": 2}                  # BPF_DEVCG_DEV_BLOCK, BPF_DEVCG_DEV_CHAR
_ACC = {"m": 1, "r": 2, "w": 4}               # BPF_DEVCG_ACC_MKNOD, _READ, _WRITE
# opcodes: class | op | source
_LDX_W = 0x61                                  # BPF_LDX | BPF_MEM | BPF_W
_AND32_K, _RSH32_K, _MOV32_K, _MOV32_X = 0x54, 0x74, 0xb4, 0xbc  # BPF_ALU ops
_JNE32_K, _JNE32_X = 0x56, 0x5e                # BPF_JMP32 | BPF_JNE | BPF_K / BPF_X
_EXIT = 0x95                                   # BPF_JMP | BPF_EXIT


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> tuple:
    return (code, dst, src, off, imm - 2 ** 32 if imm >= 2 ** 31 else imm)


def program(rules: Rules) -> bytes:
    """The instructions, encoded as the kernel's struct bpf_insn[]."""
    import struct
    insns = [
        _insn(_LDX_W, 2, 1, 0), _insn(_AND32_K, 2, imm=0xFFFF),   # r2 = type
        _insn(_LDX_W, 3, 1, 0), _insn(_RSH32_K, 3, imm=16),       # r3 = access asked for
        _insn(_LDX_W, 4, 1, 4),                                   # r4 = major
        _insn(_LDX_W, 5, 1, 8),                                   # r5 = minor
    ]
    verdict = 0 if rules.allow_all else 1  # what a matching exception answers
    for (kind, major, minor), access in rules.ordered():
        # each test jumps past this block when it does not match; the offset is filled in below
        tests = [(_JNE32_K, 2, 0, _DEV_TYPE[kind])]
        if access != RWM:  # the access asked for must lie within the exception's
            mask = sum(_ACC[c] for c in access)
            tests += [(_MOV32_X, 1, 3, 0), (_AND32_K, 1, 0, mask), (_JNE32_X, 1, 3, 0)]
        if major != WILDCARD:
            tests.append((_JNE32_K, 4, 0, major))
        if minor != WILDCARD:
            tests.append((_JNE32_K, 5, 0, minor))
        size = len(tests) + 2
        for i, (code, dst, src, imm) in enumerate(tests):
            jump = size - (i + 1) if code in (_JNE32_K, _JNE32_X) else 0
            insns.append(_insn(code, dst, src, jump, imm))
        insns += [_insn(_MOV32_K, 0, imm=verdict), _insn(_EXIT)]
    insns += [_insn(_MOV32_K, 0, imm=1 - verdict), _insn(_EXIT)]
    return b"".join(struct.pack("<BBhi", code, (src << 4) | dst, off, imm)
                    for code, dst, src, off, imm in insns)


def apply_v2(d: str, devices) -> None:
    """Load the program and attach it to the cgroup, then detach what was there before
    (an update): the new rules hold before the old ones go."""
    from .._shim import bpf
    insns = program(target(devices))
    try:
        prog = bpf.prog_load_cgroup_device(insns)
    except OSError as e:
        raise PyrunError(describe_oserror(e, "linux.resources.devices: load the eBPF device program")) from None
    try:
        cg = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        os.close(prog)
        raise PyrunError(describe_oserror(e, "linux.resources.devices: open the cgroup")) from None
    try:
        old = bpf.prog_query_device(cg)
        bpf.prog_attach_device(cg, prog)
        for prog_id in old:
            bpf.prog_detach_device_id(cg, prog_id)
    except OSError as e:
        raise PyrunError(describe_oserror(e, "linux.resources.devices: attach the eBPF device program")) from None
    finally:
        os.close(cg)
        os.close(prog)
