"""Credentials in a Docker-style config.json ({"auths": {host: {"auth": base64(user:pass)}}}).

Read from --authfile, else $DOCKER_CONFIG/config.json, else ~/.docker/config.json.
credHelpers/credsStore are asked through their docker-credential-<name> helper, as docker does.
"""
from __future__ import annotations

import os

from .reference import DOCKER_HUB, DOCKER_HUB_AUTH_KEY


class AuthConfigError(Exception):
    """An unreadable or malformed auth file, or a failing credential helper."""


def default_authfile() -> str:
    base = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(base, "config.json")


def parse_creds(creds: str) -> tuple[str, str]:
    user, sep, password = creds.partition(":")
    if not sep or not user:
        raise AuthConfigError("--creds: expected USER:PASSWORD")
    return user, password


def config_key(registry: str) -> str:
    return DOCKER_HUB_AUTH_KEY if registry == DOCKER_HUB else registry


def _keys(registry: str) -> list[str]:
    # Older docker and podman also stored URL forms of the host.
    key = config_key(registry)
    return list(dict.fromkeys([key, f"https://{registry}", f"http://{registry}", registry]))


def _read(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            import json  # here: most pulls find no auth file, and json imports re (~3 ms)
            doc = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise AuthConfigError(f"{path}: cannot read auth file: {e}") from None
    if not isinstance(doc, dict):
        raise AuthConfigError(f"{path}: auth file is not a JSON object")
    return doc


def lookup(registry: str, authfile: str | None = None) -> tuple[str, str] | None:
    """(user, password) stored for `registry`, or None."""
    path = authfile or default_authfile()
    if authfile and not os.path.exists(authfile):
        raise AuthConfigError(f"{authfile}: no such auth file")
    doc = _read(path)
    auths = doc.get("auths") or {}
    for key in _keys(registry):
        entry = auths.get(key)
        if isinstance(entry, dict) and entry.get("auth"):
            import base64  # only with credentials on file
            try:
                user, sep, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except ValueError:
                raise AuthConfigError(f"{path}: {key}: malformed auth entry") from None
            if sep:
                return user, password
    helper = (doc.get("credHelpers") or {}).get(config_key(registry)) or doc.get("credsStore")
    return _from_helper(helper, config_key(registry)) if helper else None


def _from_helper(helper: str, key: str) -> tuple[str, str] | None:
    import json
    import subprocess
    binary = f"docker-credential-{helper}"
    try:
        proc = subprocess.run([binary, "get"], input=key.encode(), capture_output=True, timeout=30)
    except FileNotFoundError:
        raise AuthConfigError(f"{binary}: credential helper not found") from None
    if proc.returncode != 0:
        # Helpers answer "credentials not found" with a failure; that is not an error for us.
        if b"not found" in proc.stdout.lower() + proc.stderr.lower():
            return None
        raise AuthConfigError(f"{binary}: {proc.stderr.decode(errors='replace').strip() or 'failed'}")
    try:
        payload = json.loads(proc.stdout)
        return payload["Username"], payload["Secret"]
    except (ValueError, KeyError, TypeError):
        raise AuthConfigError(f"{binary}: malformed answer") from None


def store(registry: str, user: str, password: str, authfile: str | None = None) -> str:
    path = authfile or default_authfile()
    doc = _read(path)
    auths = doc.setdefault("auths", {})
    import base64
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    auths[config_key(registry)] = {"auth": token}
    _write(path, doc)
    return path


def remove(registry: str, authfile: str | None = None) -> bool:
    path = authfile or default_authfile()
    doc = _read(path)
    auths = doc.get("auths") or {}
    found = [k for k in _keys(registry) if k in auths]
    for k in found:
        del auths[k]
    if found:
        _write(path, doc)
    return bool(found)


def _write(path: str, doc: dict) -> None:
    import json
    from .layout import _write_atomic
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    _write_atomic(path, (json.dumps(doc, indent=2) + "\n").encode(), mode=0o600)
