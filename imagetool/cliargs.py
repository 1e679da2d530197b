"""What both command-line paths (cli.py's fast path and commands.py's click group) share,
with no import of click: argument forms, the one error line, and the unpack command."""
from __future__ import annotations

import os


def error_line(e: BaseException) -> str:
    """The one line a user sees for any failure (both the click and the fast path)."""
    message = " ".join(str(e).split()) or type(e).__name__
    if isinstance(e, OSError) and e.filename and str(e.filename) not in message:
        message = f"{e.filename}: {e.strerror}"
    # What a registry or a layer says reaches the terminal: no escape sequences, no NULs.
    return "imagetool: " + "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in message)


def split_layout_ref(text: str) -> tuple[str, str | None]:
    """LAYOUT_DIR[:TAG] → (dir, tag); a path that exists as given has no tag."""
    if os.path.isdir(text) or ":" not in text:
        return text, None
    path, _, tag = text.rpartition(":")
    if "/" in tag:
        return text, None
    return path, tag or None


def parse_map(text: str, flag: str) -> dict:
    parts = text.split(":")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise RuntimeError(f"{flag} {text}: expected CONTAINER:HOST:SIZE")
    return {"containerID": int(parts[0]), "hostID": int(parts[1]), "size": int(parts[2])}


def run_unpack(image: str, bundle_dir: str, rootless: bool, uid_maps, gid_maps) -> None:
    """`imagetool unpack IMAGE BUNDLE_DIR`, its flags parsed, in the command's own process."""
    layout_dir, tag = split_layout_ref(image)
    uids = [parse_map(m, "--uid-map") for m in uid_maps] or None
    gids = [parse_map(m, "--gid-map") for m in gid_maps] or None
    from . import unpacker
    unpacker.OWN_PROCESS = True  # see unpacker._roomy_heap
    unpacker.unpack(layout_dir, tag, bundle_dir, rootless=rootless, uid_map=uids, gid_map=gids)
