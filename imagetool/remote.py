"""Look-ups in a registry without a pull: inspect docker://REF and list-tags REPO,
answering with skopeo's (1.9) keys and values."""
from __future__ import annotations

from .reference import parse


def _client(reference, *, creds=None, authfile=None, plain_http=False, tls_verify=True,
            cert_dir=None, transport=None):
    from .puller import _credentials
    from .registry import client_for
    return client_for(reference.registry, plain_http=plain_http, tls_verify=tls_verify,
                      cert_dir=cert_dir, creds=_credentials(reference, creds, authfile),
                      transport=transport)


def inspect(ref: str, *, raw: bool = False, config: bool = False, platform: str | None = None,
            **opts) -> bytes | dict:
    """skopeo inspect's answer for `ref`: with raw, the manifest bytes as the registry
    serves them for the reference (an index stays an index); with config, the image
    config (raw too: its bytes); else the dict of skopeo's keys. An index is looked
    through to this host's image (or `platform`'s), as skopeo does."""
    from .puller import host_platform, parse_platform, pick_platform
    from specs import fastjson
    reference = parse(ref)
    client = _client(reference, **opts)
    what = str(reference)
    top = client.get_manifest(reference.repository, reference.ref, what)
    if raw and not config:
        return top.data
    manifest = top
    if top.is_index:
        want = parse_platform(platform) if platform else host_platform()
        chosen = pick_platform(top.doc, want, what)
        manifest = client.get_manifest(reference.repository, chosen["digest"], what,
                                       size=chosen["size"])
    cfg_desc = manifest.doc["config"]
    blob = client.read_blob(reference.repository, cfg_desc, what)
    if config:
        return blob if raw else fastjson.loads(blob)
    image = fastjson.loads(blob)
    if not isinstance(image, dict):
        from .registry import RegistryError
        raise RegistryError(f"{what}: image config is not a JSON object")
    cfg = image.get("config") or {}
    out = {
        "Name": reference.name,
        "Digest": top.digest,
        "RepoTags": client.list_tags(reference.repository, what),
        "Created": image.get("created"),
        "DockerVersion": image.get("docker_version", ""),
        "Labels": cfg.get("Labels"),
        "Architecture": image.get("architecture"),
    }
    if image.get("variant"):
        out["Variant"] = image["variant"]
    out.update({
        "Os": image.get("os"),
        "Layers": [d["digest"] for d in manifest.doc["layers"]],
        "Env": cfg.get("Env"),
    })
    return out


def list_tags(repo: str, **opts) -> dict:
    """skopeo list-tags: {"Repository": NAME, "Tags": [...]} for a repository (a tag
    or digest in `repo` is refused, as skopeo refuses it)."""
    text = repo[len("docker://"):] if repo.startswith("docker://") else repo
    reference = parse(text)
    last = text.rpartition("/")[2]
    if reference.digest or ":" in last:
        from .registry import RegistryError
        raise RegistryError(f"{repo}: a repository name, without a tag or digest, is expected")
    client = _client(reference, **opts)
    return {"Repository": reference.name, "Tags": client.list_tags(reference.repository, reference.name)}
