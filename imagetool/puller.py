"""pull: registry → OCI image layout.

Order of writes, so that a reader never sees a tag pointing at missing content:
blobs (each verified, then renamed into blobs/), then the manifest, then index.json.
A failure that retrying cannot heal removes what this pull added; a transient one
(network gone) keeps finished blobs and partial downloads so the next pull resumes.
"""
from __future__ import annotations

import os
import threading
from collections import namedtuple

from .layout import Layout, LayoutError
from .reference import Reference, parse
from .registry import Client, RegistryError, TransientError, client_for
from specs import image as mt
from specs.image import CONFIG_TYPES, DOCKER_MANIFEST, LAYER_TYPES, OCI_MANIFEST

DEFAULT_JOBS = 4
FORMATS = ("oci", "keep")  # the first is the default
# Docker v2s2 → OCI media types, as skopeo's conversion maps them (blobs unchanged).
_TO_OCI = {
    mt.DOCKER_CONFIG: mt.OCI_CONFIG,
    mt.DOCKER_LAYER_GZIP: mt.OCI_LAYER_GZIP,
    mt.DOCKER_FOREIGN_LAYER_GZIP: mt.OCI_LAYER_NONDISTRIBUTABLE_GZIP,
}
_ARCH = {"x86_64": ("amd64", None), "aarch64": ("arm64", "v8"), "armv7l": ("arm", "v7"),
         "armv6l": ("arm", "v6"), "i686": ("386", None), "i386": ("386", None),
         "ppc64le": ("ppc64le", None), "s390x": ("s390x", None), "riscv64": ("riscv64", None)}


class PullError(Exception):
    """One line naming the thing and the reason."""


class PullResult:
    def __init__(self, reference: str, descriptor: dict):
        self.reference = reference
        self.descriptor = descriptor          # what index.json now lists for the tag
        self.fetched: list[str] = []          # blob digests downloaded
        self.bytes_fetched = 0

    def __repr__(self) -> str:
        return f"PullResult({self.reference}, {self.descriptor.get('digest')}, fetched={self.fetched})"


class Platform(namedtuple("Platform", "os architecture variant", defaults=(None,))):
    __slots__ = ()

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def parse_platform(text: str) -> Platform:
    parts = text.split("/")
    if not 2 <= len(parts) <= 3 or not all(parts):
        raise PullError(f"{text}: invalid platform (expected OS/ARCH[/VARIANT])")
    return Platform(parts[0], parts[1], parts[2] if len(parts) == 3 else None)


def host_platform() -> Platform:
    machine = os.uname().machine
    arch, variant = _ARCH.get(machine, (machine, None))
    return Platform("linux", arch, variant)


def pick_platform(index: dict, want: Platform, what: str) -> dict:
    """The descriptor in `index` for `want`; a missing variant matches the default one."""
    def variant_of(p: dict) -> str | None:
        v = p.get("variant")
        return v or ("v8" if p.get("architecture") == "arm64" else None)

    want_variant = want.variant or ("v8" if want.architecture == "arm64" else None)
    candidates = []
    for d in index.get("manifests", []):
        p = d.get("platform") or {}
        if p.get("os") != want.os or p.get("architecture") != want.architecture:
            continue
        if want.variant and variant_of(p) != want_variant:
            continue
        candidates.append(d)
    if not candidates:
        have = sorted({str(Platform(p.get("os", "?"), p.get("architecture", "?"), p.get("variant")))
                       for p in (d.get("platform") or {} for d in index.get("manifests", []))})
        raise PullError(f"{what}: no image for platform {want} (index has: {', '.join(have) or 'none'})")
    # Without a requested variant, the host's default one first (arm64 → v8).
    candidates.sort(key=lambda d: variant_of(d.get("platform") or {}) != want_variant)
    return candidates[0]


def pull(ref: str, layout_dir: str, *, platform: str | None = None,
         creds: str | tuple[str, str] | None = None, authfile: str | None = None,
         plain_http: bool = False, jobs: int | None = None, progress: bool | None = None,
         transport: object = None, format: str = FORMATS[0], tls_verify: bool = True,
         cert_dir: str | None = None, tag: str | None = None) -> PullResult:
    """Pull `ref` into the OCI layout at `layout_dir` (made if missing), tagged with ref's tag.

    format "oci" (the default, as skopeo's oci: destination) stores OCI media types: a
    Docker v2s2 manifest is rewritten (a new manifest and digest, the same config and
    layer blobs), since the OCI tools (skopeo 1.9's oci: transport, umoci 0.4.7) read
    nothing else from a layout. "keep" stores the manifest the registry sent, byte for
    byte (its digest stays the registry's), and for a Docker image those tools then
    cannot read the tag.
    """
    if format not in FORMATS:
        raise PullError(f"--format {format}: must be one of {', '.join(FORMATS)}")
    reference = parse(ref)
    want = parse_platform(platform) if platform else host_platform()
    if jobs is not None and jobs < 1:
        raise PullError(f"--jobs {jobs}: must be at least 1")
    user_pass = _credentials(reference, creds, authfile)
    client = client_for(reference.registry, plain_http=plain_http, tls_verify=tls_verify,
                        cert_dir=cert_dir, creds=user_pass, transport=transport)
    created = not os.path.exists(layout_dir)
    layout = Layout.create(layout_dir)
    state = _PullState(layout)
    try:
        result = _pull_into(client, reference, layout, want, jobs or DEFAULT_JOBS,
                            _progress(progress), state, format, tag or reference.tag)
    except TransientError:
        # Keep finished blobs and partials: the next pull resumes. With nothing to
        # resume from, a layout this pull made is taken back like any other failure.
        if created and not state.added and not state.partials:
            state.rollback(remove_layout=True)
        raise
    except BaseException as e:
        state.rollback(remove_layout=created)
        if isinstance(e, KeyboardInterrupt):
            raise
        raise
    layout.cleanup_partials()
    return result


def _credentials(reference: Reference, creds, authfile) -> tuple[str, str] | None:
    from . import auth
    if isinstance(creds, tuple):
        return creds
    if creds:
        return auth.parse_creds(creds)
    return auth.lookup(reference.registry, authfile)


class _PullState:
    """What this pull added, to take back on failure."""

    def __init__(self, layout: Layout):
        self.layout = layout
        self.added: list[str] = []
        self.partials: list[str] = []
        self.lock = threading.Lock()

    def rollback(self, remove_layout: bool) -> None:
        if remove_layout:
            import shutil
            shutil.rmtree(self.layout.path, ignore_errors=True)
            return
        for digest in self.added:
            self.layout.remove_blob(digest)
        for path in self.partials:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        self.layout.cleanup_partials()


def _pull_into(client: Client, reference: Reference, layout: Layout, want: Platform,
               jobs: int, progress, state: _PullState, format: str = FORMATS[0],
               tag: str | None = None) -> PullResult:
    what = str(reference)
    if tag is None:
        tag = reference.tag
    top = client.get_manifest(reference.repository, reference.ref, what)
    manifests = [top]
    platform = None
    if top.is_index:
        chosen = pick_platform(top.doc, want, what)
        platform = chosen.get("platform")
        manifest = client.get_manifest(reference.repository, chosen["digest"], what,
                                       size=chosen["size"])
        if manifest.is_index:
            raise PullError(f"{what}: {chosen['digest']}: nested index is not supported")
        manifests = [manifest]
    else:
        manifest = top
    blobs = _blobs_of(manifest, what)
    result = PullResult(what, {})
    _fetch_all(client, reference.repository, layout, blobs, jobs, progress, state, result)
    if format == "oci" and manifest.media_type == DOCKER_MANIFEST:
        manifest = to_oci(manifest)
        manifests = [manifest]
    for m in manifests:
        if layout.write_blob(m.digest, m.data):
            state.added.append(m.digest)
    desc = manifest.descriptor(**({"platform": platform} if platform else {}))
    layout.set_tag(tag, desc)
    result.descriptor = layout.resolve(tag) if tag else desc
    return result


def to_oci(manifest):
    """A Docker v2s2 manifest as an OCI image manifest: media types rewritten, the
    config and layer descriptors otherwise as they were (same blobs, digests, sizes)."""
    from specs import fastjson
    from .layout import _hasher
    from .registry import Manifest
    doc = dict(manifest.doc)
    doc["mediaType"] = OCI_MANIFEST

    def convert(d: dict) -> dict:
        return {**d, "mediaType": _TO_OCI.get(d.get("mediaType"), d.get("mediaType"))}

    doc["config"] = convert(doc["config"])
    doc["layers"] = [convert(d) for d in doc["layers"]]
    data = fastjson.dumps(doc, separators=(",", ":")).encode()
    h = _hasher("sha256")
    h.update(data)
    digest = "sha256:" + h.hexdigest()
    return Manifest(data, OCI_MANIFEST, digest, doc)


def _blobs_of(manifest, what: str) -> list[dict]:
    config = manifest.doc["config"]
    if config.get("mediaType") not in CONFIG_TYPES:
        raise PullError(f"{what}: unsupported config media type {config.get('mediaType')!r}")
    for layer in manifest.doc["layers"]:
        if layer.get("mediaType") not in LAYER_TYPES:
            raise PullError(f"{what}: {layer['digest']}: unsupported layer media type "
                            f"{layer.get('mediaType')!r}")
    seen, out = set(), []
    for d in [config, *manifest.doc["layers"]]:
        if d["digest"] not in seen:
            seen.add(d["digest"])
            out.append(d)
    return out


def _fetch_all(client, repository, layout, blobs, jobs, progress, state, result) -> None:
    todo = [d for d in blobs if not layout.has_blob(d["digest"], d["size"])]
    if not todo:
        return
    os.makedirs(os.path.dirname(layout.partial_path(todo[0]["digest"])), exist_ok=True)
    cancel = threading.Event()

    def fetch(desc: dict) -> None:
        partial = layout.partial_path(desc["digest"])
        with state.lock:
            state.partials.append(partial)
        n = client.fetch_blob(repository, desc, partial, progress, cancel)
        layout.commit_partial(desc["digest"])
        with state.lock:
            state.added.append(desc["digest"])
            state.partials.remove(partial)
            result.fetched.append(desc["digest"])
            result.bytes_fetched += n
        if progress:
            progress.done(desc["digest"])

    try:
        if jobs == 1 or len(todo) == 1:
            for d in todo:
                fetch(d)
            return
        _run_workers(fetch, todo, min(jobs, len(todo)), cancel)
    finally:
        if progress:
            progress.close()


def _run_workers(fn, items: list, workers: int, cancel: threading.Event) -> None:
    """fn(item) on `workers` threads; the first failure cancels the rest and is raised.
    Plain threads: concurrent.futures imports logging (~5 ms) for nothing we use."""
    queue = list(reversed(items))
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work() -> None:
        while not cancel.is_set():
            with lock:
                if not queue:
                    return
                item = queue.pop()
            try:
                fn(item)
            except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
                with lock:
                    errors.append(e)
                cancel.set()

    threads = [threading.Thread(target=work, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        # A real failure outranks the "cancelled" ones it caused in other workers.
        errors.sort(key=lambda e: "cancelled" in str(e))
        raise errors[0]


def _progress(enabled: bool | None):
    import sys
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from .progress import Progress
    return Progress(sys.stderr)


__all__ = ["pull", "PullError", "PullResult", "parse_platform", "host_platform", "pick_platform",
           "LayoutError", "RegistryError"]
