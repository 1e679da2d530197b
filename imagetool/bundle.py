"""Image config → runtime config.json, as the image spec's conversion.md says.

Built on `specs.runtime.default_config()` (what `runc spec` writes), then:
Entrypoint+Cmd → process.args, Env merged by name, WorkingDir → cwd,
User resolved against the rootfs' own /etc/passwd and /etc/group (read inside
the root, see inroot.py), labels and the implicit image fields → annotations
(labels win), Volumes → tmpfs mounts (as umoci does).

Choices where the spec leaves room: process.terminal is false (a generated
bundle must run without a tty, e.g. under a script or `runc run` in CI) and
root.readonly is false (images expect a writable root, as umoci sets).
"""
from __future__ import annotations

from imagetool import inroot

_MAX_DB = 16 * 1024 * 1024  # /etc/passwd and /etc/group larger than this are hostile


class BundleError(Exception):
    """The image config cannot become a runtime config; str() is one line."""


def runtime_config(image: dict, root: "inroot.Root | str", *, rootless: bool = False,
                   uid_map: list | None = None, gid_map: list | None = None) -> dict:
    """The runtime config for `image` (its config blob), whose rootfs is `root`."""
    from specs.runtime import default_config
    own_root = isinstance(root, str)
    if own_root:
        root = inroot.Root(root)
    try:
        return _convert(image, root, default_config(rootless=rootless), rootless, uid_map, gid_map)
    finally:
        if own_root:
            root.close()


def _convert(image: dict, root, spec: dict, rootless: bool, uid_map, gid_map) -> dict:
    cfg = image.get("config") or {}
    if not isinstance(cfg, dict):
        raise BundleError("image config: 'config' is not an object")
    proc = spec["process"]
    proc["terminal"] = False
    spec["root"] = {"path": "rootfs", "readonly": False}

    args = list(_strings(cfg, "Entrypoint")) + list(_strings(cfg, "Cmd"))
    if args:
        proc["args"] = args

    env = list(proc.get("env") or [])
    for item in _strings(cfg, "Env"):
        name, eq, _ = item.partition("=")
        if not eq or not name:
            raise BundleError(f"image config: environment entry {item!r} is not NAME=value")
        for i, e in enumerate(env):
            if e.partition("=")[0] == name:
                env[i] = item
                break
        else:
            env.append(item)

    cwd = cfg.get("WorkingDir") or "/"
    if not isinstance(cwd, str):
        raise BundleError("image config: WorkingDir is not a string")
    proc["cwd"] = cwd if cwd.startswith("/") else "/" + cwd

    user = cfg.get("User") or ""
    if not isinstance(user, str):
        raise BundleError("image config: User is not a string")
    uid, gid, extra, home = resolve_user(user, root)
    proc["user"] = {"uid": uid, "gid": gid}
    if extra:
        proc["user"]["additionalGids"] = extra
    if not any(e.startswith("HOME=") for e in env):
        env.append(f"HOME={home or '/'}")
    proc["env"] = env

    spec["annotations"] = _annotations(image, cfg)

    volumes = cfg.get("Volumes") or {}
    if isinstance(volumes, dict):
        for dest in sorted(volumes):
            spec["mounts"].append({"destination": dest, "type": "tmpfs", "source": "none",
                                   "options": ["rw", "nosuid", "nodev", "noexec", "relatime"]})

    linux = spec.setdefault("linux", {})
    if uid_map or gid_map:
        linux["uidMappings"] = [dict(m) for m in (uid_map or [])]
        linux["gidMappings"] = [dict(m) for m in (gid_map or [])]
        ns = linux.setdefault("namespaces", [])
        if not any(n.get("type") == "user" for n in ns):
            ns.append({"type": "user"})
    return spec


def _strings(cfg: dict, key: str) -> list[str]:
    value = cfg.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BundleError(f"image config: {key} is not a list of strings")
    return value


def _annotations(image: dict, cfg: dict) -> dict:
    out: dict[str, str] = {}
    implicit = {"os": "os", "architecture": "architecture", "variant": "variant",
                "os.version": "os.version", "author": "author", "created": "created"}
    for field, suffix in implicit.items():
        v = image.get(field)
        if isinstance(v, str) and v:
            out[f"org.opencontainers.image.{suffix}"] = v
    features = image.get("os.features")
    if isinstance(features, list) and features:
        out["org.opencontainers.image.os.features"] = ",".join(map(str, features))
    if isinstance(cfg.get("StopSignal"), str) and cfg["StopSignal"]:
        out["org.opencontainers.image.stopSignal"] = cfg["StopSignal"]
    ports = cfg.get("ExposedPorts")
    if isinstance(ports, dict) and ports:
        out["org.opencontainers.image.exposedPorts"] = ",".join(sorted(ports))
    labels = cfg.get("Labels") or {}
    if not isinstance(labels, dict):
        raise BundleError("image config: Labels is not an object")
    for k, v in labels.items():
        if not isinstance(v, str):
            raise BundleError(f"image config: label {k!r} is not a string")
        out[k] = v  # labels take precedence (conversion.md, Annotations)
    return out


# -- Config.User -------------------------------------------------------------------

def _id(text: str) -> int | None:
    if text.isdigit() and text.isascii():
        value = int(text)
        if value > 0xFFFFFFFE:
            raise BundleError(f"image config: id {text} is out of range")
        return value
    return None


def _db(root, name: str) -> list[list[str]]:
    data = root.read_file(name, _MAX_DB)
    if data is None:
        return []
    rows = []
    for line in data.decode("utf-8", "replace").splitlines():
        if line and not line.startswith("#"):
            rows.append(line.split(":"))
    return rows


def resolve_user(user: str, root) -> tuple[int, int, list[int], str | None]:
    """(uid, gid, additionalGids, home) for Config.User in the image's rootfs.

    Numeric values are copied verbatim; names are looked up in the rootfs'
    /etc/passwd and /etc/group and must exist. additionalGids come from
    /etc/group membership only when the user is named (or unset, which means
    root, as Docker runs it) and no group is given, as conversion.md says.
    """
    spec_user, sep, spec_group = user.partition(":")
    if sep and not spec_group:
        raise BundleError(f"image config: User {user!r} has an empty group")
    passwd = _db(root, "etc/passwd")
    entry = None
    uid = _id(spec_user or "0")
    if uid is None:
        entry = next((r for r in passwd if len(r) >= 4 and r[0] == spec_user), None)
        if entry is None:
            raise BundleError(f"image config: user {spec_user!r} not found in the image's /etc/passwd")
        uid = _id(entry[2])
        if uid is None:
            raise BundleError(f"/etc/passwd: malformed uid for {spec_user!r}")
    else:
        entry = next((r for r in passwd if len(r) >= 4 and _safe_id(r[2]) == uid), None)
    gid = 0
    home = None
    if entry is not None:
        gid = _safe_id(entry[3]) or 0
        home = entry[5] if len(entry) > 5 and entry[5] else None
    extra: list[int] = []
    if spec_group:
        g = _id(spec_group)
        if g is None:
            grp = next((r for r in _db(root, "etc/group") if len(r) >= 3 and r[0] == spec_group), None)
            if grp is None:
                raise BundleError(f"image config: group {spec_group!r} not found in the image's /etc/group")
            g = _id(grp[2])
            if g is None:
                raise BundleError(f"/etc/group: malformed gid for {spec_group!r}")
        gid = g
    elif entry is not None and (not spec_user or _id(spec_user) is None):
        for r in _db(root, "etc/group"):
            if len(r) >= 4 and entry[0] in r[3].split(","):
                g = _safe_id(r[2])
                if g is not None and g not in extra:
                    extra.append(g)
    return uid, gid, extra, home


def _safe_id(text: str) -> int | None:
    try:
        return _id(text)
    except BundleError:
        return None
