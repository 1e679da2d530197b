"""Registry client: the distribution API's manifests, blobs, uploads, tags and referrers
endpoints, with auth.

Two transports under one small interface (transport.py holds what they share):
- `PlainHTTPTransport` (plainhttp.py, a socket): localhost/127.0.0.0/8, in plain HTTP or
  TLS, or any host with --plain-http. Importing requests/oras costs ~120-190 ms here and
  http.client ~25 ms, against ~50 ms for a whole pull of a small image from a local
  registry; a loopback registry needs no proxies or connection pooling.
- `RequestsTransport` (transport.py): requests, the plumbing oras-py is built on, for HTTPS
  to registries off this host (proxy settings from the environment).
TLS for both is tls.TLSConfig's (certs.d, --cert-dir, --tls-verify).

Measured gaps in oras-py 0.2.43 are filled here: manifests keep their raw bytes and media type and
are verified; blobs are verified while streaming, land under a temporary name and are renamed only
after their digest matches; tokens are per repository scope; a 401 after auth is final; retries
only for what can heal, bounded in time.
"""
from __future__ import annotations

import os
import threading
import time

from .transport import (Final as _Final, Heal as _Heal, RequestsTransport, Response,
                        net_error as _net_error)
from specs.image import (DOCKER_MANIFEST, DOCKER_MANIFEST_LIST as DOCKER_LIST, INDEX_TYPES,
                         MANIFEST_TYPES, OCI_INDEX, OCI_MANIFEST)

# Registry 2.8 answers 404 for OCI content unless OCI types are in Accept.
ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST))
MAX_MANIFEST = 4 * 1024 * 1024
CHUNK = 1 << 20
USER_AGENT = "imagetool/0.1"


class RegistryError(Exception):
    """A one-line, user-facing failure that retrying will not heal."""


class AuthError(RegistryError):
    pass


class TransientError(RegistryError):
    """A failure that might heal (network, 5xx) and outlived its retry budget."""


# -- the client -----------------------------------------------------------------

class RetryPolicy:
    def __init__(self, budget: float = 20.0, attempts: int = 5, base_delay: float = 0.25):
        self.budget = budget            # seconds one request may spend retrying
        self.attempts = attempts
        self.base_delay = base_delay


class Client:
    """One registry host (where the API answers, e.g. 127.0.0.1:5000);
    credentials are (user, password) or None.

    plain_http: True speaks HTTP, False HTTPS; None (loopback's default, and what
    --tls-verify=false allows anywhere, as Docker and skopeo do) HTTPS first, and
    plain HTTP only when the server does not speak TLS (tls.probe asks it once).
    tls: a tls.TLSConfig (verification, --cert-dir, certs.d)."""

    def __init__(self, host: str, plain_http: bool | None = False,
                 creds: tuple[str, str] | None = None, transport=None,
                 retry: RetryPolicy | None = None, tls=None):
        from .reference import is_local_host
        self.host = host
        self.scheme = {True: "http", False: "https", None: None}[plain_http]
        self.creds = creds
        if tls is None:
            from .tls import TLSConfig
            tls = TLSConfig()
        self.tls = tls
        if transport is None:
            if plain_http or is_local_host(host):
                from .plainhttp import PlainHTTPTransport
                transport = PlainHTTPTransport(tls=tls)
            else:
                transport = RequestsTransport(tls=tls)
        self.transport = transport
        self.retry = retry or RetryPolicy()
        self._auth: dict = {}           # scope → Authorization header value
        self._lock = threading.Lock()
        self._fallback = ""             # why plain HTTP, when the probe chose it

    @property
    def plain_http(self) -> bool:
        return self.base.startswith("http:")

    @property
    def base(self) -> str:
        if self.scheme is None:
            self.scheme = self._probe_scheme()
        return f"{self.scheme}://{self.host}"

    def _probe_scheme(self) -> str:
        """https, unless the server answers a TLS hello in plain HTTP (Docker's rule for
        its insecure registries). Anything else is named: it is neither."""
        from .transport import connect, split_host
        from .tls import PROBE_TIMEOUT, probe
        host, port = split_host(self.host, 443)
        try:
            kind, first = probe(connect(host, port, PROBE_TIMEOUT))
        except OSError as e:
            raise _net_error(e) from None
        if kind == "http":
            # Said with any failure of plain HTTP, so that neither goes unnamed.
            self._fallback = f"it does not speak TLS either (it answered {first[:16]!r} to a TLS hello)"
            return "http"
        return "https"  # a TLS server, or a silent one: TLS's own error will say why

    # -- requests with auth, retries and redirects ----------------------------

    def send(self, method: str, path: str, what: str, scope: str | None,
             headers: dict | None = None, ok=(200,), read_limit: int | None = None,
             body: "bytes | Payload | None" = None):
        """A request that ends in one of `ok`, or a one-line RegistryError naming `what`.
        With read_limit: (response, up to read_limit bytes of its body), the body read
        inside the retries, so a body broken off is asked for again. `path` may be a
        whole URL (an upload's Location). `body` is sent again whole on a retry."""
        deadline = time.monotonic() + self.retry.budget
        attempt = 0
        while True:
            try:
                url = path if "://" in path else self.base + path
                if "://" in path and _origin(path) != _origin(self.base):
                    # A Location or Link to another host (upload storage): never our credentials.
                    resp = self._follow(method, url, headers or {}, body)
                else:
                    resp = self._send_authed(method, url, what, scope, headers or {}, body)
                if resp.status not in ok:
                    self._fail(resp, what)
                if read_limit is None:
                    return resp
                try:
                    return resp, resp.read(read_limit)
                except OSError as e:
                    raise _net_error(e) from None
                finally:
                    resp.release()
            except _Final as e:
                why = f"; {self._fallback}" if self._fallback and "malformed response" in str(e) else ""
                raise RegistryError(f"{what}: {e}{why}") from None
            except _Heal as heal:
                attempt += 1
                delay = heal.wait if heal.wait is not None else self.retry.base_delay * 2 ** (attempt - 1)
                if attempt >= self.retry.attempts or time.monotonic() + delay > deadline:
                    raise TransientError(f"{what}: {heal} (gave up after {attempt} attempts)") from None
                time.sleep(delay)

    def _send_authed(self, method, url, what, scope, headers, body=None) -> Response:
        sent_auth = self._auth.get(scope) or self._auth.get("basic")
        resp = self._follow(method, url, {**headers, **_authz(sent_auth)}, body)
        if resp.status != 401:
            return resp
        challenge = resp.headers.get("WWW-Authenticate") or ""
        _drain(resp)
        if sent_auth and not sent_auth.startswith("Bearer "):
            raise AuthError(f"{what}: {self._refused()}")
        # No auth yet, or a token that may have expired mid-pull: one fresh token decides.
        value = self._authenticate(challenge, scope, what)
        resp = self._follow(method, url, {**headers, **_authz(value)}, body)
        if resp.status == 401:
            _drain(resp)
            with self._lock:
                self._auth.pop(scope, None)
            raise AuthError(f"{what}: {self._not_authorized(value, scope)}")
        return resp

    def _refused(self) -> str:
        if self.creds:
            return f"credentials for {self.creds[0]!r} refused by {self.host}"
        return f"authentication required by {self.host} (use --creds, --authfile or imagetool login)"

    def _not_authorized(self, value: str, scope: str | None) -> str:
        """The registry refused what it was given right after asking for it."""
        if not self.creds or not value.startswith("Bearer "):
            return self._refused()
        # The token service took the credentials but granted less than the scope asked.
        first = (scope or "").split()[0] if scope else ""
        target = first.split(":")[1] if first.count(":") == 2 else "this registry"
        action = "push to" if first.endswith("push") else "pull"
        return f"{self.creds[0]!r} is not authorized to {action} {target} on {self.host}"

    def _follow(self, method, url, headers, body=None) -> Response:
        from .transport import join_url, split_url
        origin = split_url(url)[1]
        for _ in range(6):
            if isinstance(body, Payload):
                body.rewind()
            if body is None:
                resp = self.transport.request(method, url, {"User-Agent": USER_AGENT, **headers})
            else:
                resp = self.transport.request(method, url, {"User-Agent": USER_AGENT, **headers}, body)
            if resp.status not in (301, 302, 303, 307, 308):
                return _check_heal(resp)
            location = resp.headers.get("Location")
            _drain(resp)
            if not location:
                raise RegistryError(f"{url}: redirect without Location")
            url = join_url(url, location)
            if split_url(url)[1] != origin:
                # Blob storage (S3, CDN) gets signed URLs, never our credentials.
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        raise RegistryError(f"{url}: too many redirects")

    def _authenticate(self, challenge: str, scope: str | None, what: str) -> str:
        scheme, params = parse_challenge(challenge)
        if scheme == "basic":
            if not self.creds:
                raise AuthError(f"{what}: {self._refused()}")
            value = "Basic " + _b64(f"{self.creds[0]}:{self.creds[1]}")
            with self._lock:
                self._auth["basic"] = value
            return value
        if scheme != "bearer" or "realm" not in params:
            raise AuthError(f"{what}: unsupported authentication challenge {challenge!r}")
        value = "Bearer " + self._token(params, scope, what)
        with self._lock:
            self._auth[scope] = value
        return value

    def _token(self, params: dict, scope: str | None, what: str) -> str:
        import json
        import urllib.parse
        query = [("service", params.get("service"))]
        # Our own scope: a challenge may carry another repository's (a cached token reused
        # across repositories answers 401; that is oras-py's bug we avoid). A mount asks
        # for two, space-separated here, one `scope` parameter each (as Docker sends them).
        query += [("scope", one) for one in (scope or params.get("scope") or "").split()]
        headers = {"Accept": "application/json"}
        if self.creds:
            headers["Authorization"] = "Basic " + _b64(f"{self.creds[0]}:{self.creds[1]}")
        realm = params["realm"]
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(
            [(k, v) for k, v in query if v])
        try:
            resp = self.transport.request("GET", url, {"User-Agent": USER_AGENT, **headers})
        except _Heal as e:
            raise TransientError(f"{what}: token service {realm}: {e}") from None
        except _Final as e:
            raise RegistryError(f"{what}: token service {realm}: {e}") from None
        body = resp.read(MAX_MANIFEST)
        resp.release()
        if resp.status in (401, 403):
            raise AuthError(f"{what}: {self._refused()}")
        if resp.status != 200:
            raise RegistryError(f"{what}: token service {realm} answered HTTP {resp.status}")
        try:
            doc = json.loads(body)
            return doc.get("token") or doc["access_token"]
        except (ValueError, KeyError, AttributeError):
            raise RegistryError(f"{what}: token service {realm} sent no token") from None

    def _fail(self, resp: Response, what: str):
        try:
            body = resp.read(64 * 1024)
        except OSError:
            body = b""  # an error body cut short: the status still says what happened
        resp.release()
        code, message = _registry_error(body)
        if resp.status == 404:
            if code == "NAME_UNKNOWN":
                raise RegistryError(f"{what}: repository not found")
            if code == "MANIFEST_UNKNOWN":
                raise RegistryError(f"{what}: manifest unknown (no such tag or digest)")
            if code == "BLOB_UNKNOWN":
                raise RegistryError(f"{what}: blob unknown to registry")
            raise RegistryError(f"{what}: not found{': ' + message if message else ''}")
        if resp.status == 403:
            raise AuthError(f"{what}: access denied{': ' + message if message else ''}")
        raise RegistryError(f"{what}: registry answered HTTP {resp.status}"
                            f"{': ' + message if message else ''}")

    # -- API ----------------------------------------------------------------------

    def ping(self) -> None:
        """GET /v2/ with authentication: checks that the credentials are accepted."""
        resp = self.send("GET", "/v2/", self.host, scope=None)
        _drain(resp)

    def get_manifest(self, repository: str, ref: str, what: str,
                     size: int | None = None) -> "Manifest":
        """The manifest `ref` (tag or digest) names, raw bytes verified against its digest;
        with the `size` a descriptor declares, no more than that is read, and no other
        size is taken."""
        limit = MAX_MANIFEST if size is None else min(size, MAX_MANIFEST)
        resp, data = self.send("GET", f"/v2/{repository}/manifests/{ref}", what, _scope(repository),
                               {"Accept": ACCEPT}, read_limit=limit + 1)
        if size is not None and len(data) != size:
            how = "longer than" if len(data) > size else f"{len(data)} bytes, not"
            raise RegistryError(f"{what}: {ref}: manifest is {how} the {size} bytes its "
                                "descriptor declares")
        if len(data) > MAX_MANIFEST:
            raise RegistryError(f"{what}: manifest larger than {MAX_MANIFEST} bytes")
        from .layout import _hasher
        h = _hasher("sha256")
        h.update(data)
        digest = "sha256:" + h.hexdigest()
        if ref.startswith("sha256:") and digest != ref:
            raise RegistryError(f"{what}: manifest digest mismatch: got {digest}")
        if ref.startswith("sha512:"):
            h = _hasher("sha512")
            h.update(data)
            digest = "sha512:" + h.hexdigest()
            if digest != ref:
                raise RegistryError(f"{what}: manifest digest mismatch: got {digest}")
        served = resp.headers.get("Docker-Content-Digest")
        if served and served.startswith("sha256:") and served != digest:
            raise RegistryError(f"{what}: manifest digest mismatch: registry says {served}, content is {digest}")
        content_type = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
        return parse_manifest(data, content_type, digest, what)

    def fetch_blob(self, repository: str, desc: dict, partial: str, progress=None,
                   cancel: threading.Event | None = None) -> int:
        """Download the blob `desc` names into `partial`, resuming what is there.

        Returns the bytes fetched. On return the file holds exactly the verified blob;
        on a digest mismatch the file is removed and RegistryError names the digest.
        """
        digest, size = desc["digest"], desc["size"]
        fetched = [0]  # bytes received, also by attempts that broke off
        fresh_retry = False
        deadline = time.monotonic() + self.retry.budget
        failures = 0
        while True:
            hasher, have = _hash_existing(partial, digest, size)
            try:
                hasher = self._stream_blob(repository, digest, size, partial, hasher, have,
                                           progress, cancel, fetched)
            except _Heal as heal:  # the stream broke: resume from what we have, within budget
                failures += 1
                if failures >= self.retry.attempts or time.monotonic() > deadline:
                    raise TransientError(f"{digest}: {heal} (gave up after {failures} attempts)") from None
                time.sleep(self.retry.base_delay * 2 ** (failures - 1))
                continue
            if hasher.hexdigest() == digest.split(":", 1)[1]:
                return fetched[0]
            os.unlink(partial)
            if have and not fresh_retry:
                # The kept prefix may be what was wrong; one clean download decides.
                fresh_retry = True
                continue
            raise RegistryError(f"{digest}: digest mismatch: content from the registry does not match")

    def read_blob(self, repository: str, desc: dict, what: str) -> bytes:
        """A small blob (an image config) in memory, its size and digest checked."""
        from .layout import _hasher, split_digest
        digest, size = desc["digest"], desc["size"]
        if size > MAX_MANIFEST:
            raise RegistryError(f"{what}: {digest}: {size} bytes, more than a config may have")
        resp, data = self.send("GET", f"/v2/{repository}/blobs/{digest}", digest, _scope(repository),
                               {"Accept-Encoding": "identity"}, read_limit=size + 1)
        alg, hexpart = split_digest(digest)
        h = _hasher(alg, size)
        h.update(data)
        if len(data) != size or h.hexdigest() != hexpart:
            raise RegistryError(f"{digest}: digest mismatch: content from the registry does not match")
        return data

    # -- writing: blobs, mounts, manifests; tags ----------------------------------------

    def blob_exists(self, repository: str, digest: str, scope: str | None = None) -> bool:
        resp = self.send("HEAD", f"/v2/{repository}/blobs/{digest}", digest,
                         scope or _scope(repository), ok=(200, 404))
        _drain(resp)
        return resp.status == 200

    def mount_blob(self, repository: str, digest: str, source: str) -> str | None:
        """Ask the registry to link `digest` from repository `source` (no bytes sent).
        None: mounted; else the Location of the upload session it opened instead."""
        resp = self.send("POST", f"/v2/{repository}/blobs/uploads/?mount={digest}&from={source}",
                         digest, push_scope(repository, source), ok=(201, 202))
        _drain(resp)
        if resp.status == 201:
            return None
        return self._location(resp, digest)

    def upload_blob(self, repository: str, desc: dict, payload: "Payload",
                    chunk_size: int = 0, location: str | None = None) -> None:
        """Upload one blob: monolithic (POST, then one PUT with the bytes) or, with
        chunk_size, chunked (PATCH per chunk with its Content-Range, then an empty PUT).
        `location`: an upload session already open (from mount_blob)."""
        digest, size = desc["digest"], desc["size"]
        scope = push_scope(repository)
        if location is None:
            resp = self.send("POST", f"/v2/{repository}/blobs/uploads/", digest, scope, ok=(202,),
                             headers={"Content-Length": "0"})
            _drain(resp)
            location = self._location(resp, digest)
        octets = {"Content-Type": "application/octet-stream"}
        if chunk_size and size:
            done = 0
            while done < size:
                n = min(chunk_size, size - done)
                chunk = payload.chunk(done, n)
                resp = self.send("PATCH", location, digest, scope, ok=(202,), body=chunk,
                                 headers={**octets, "Content-Length": str(n),
                                          "Content-Range": f"{done}-{done + n - 1}"})
                _drain(resp)
                location = self._location(resp, digest)
                done += n
            body, length = b"", 0
        else:
            body, length = payload, size
        sep = "&" if "?" in location else "?"
        resp = self.send("PUT", f"{location}{sep}digest={digest}", digest, scope, ok=(201,),
                         body=body, headers={**octets, "Content-Length": str(length)})
        _drain(resp)
        served = resp.headers.get("Docker-Content-Digest")
        if served and served != digest:
            raise RegistryError(f"{digest}: registry stored the blob as {served}")

    def _location(self, resp: Response, what: str) -> str:
        from .transport import join_url
        location = resp.headers.get("Location")
        if not location:
            raise RegistryError(f"{what}: registry opened an upload without a Location")
        return join_url(self.base + "/", location)

    def put_manifest(self, repository: str, ref: str, data: bytes, media_type: str,
                     digest: str) -> None:
        """PUT the manifest bytes under `ref` (a tag or its digest), with its media type;
        the registry must store it under `digest`, the one the bytes have."""
        resp = self.send("PUT", f"/v2/{repository}/manifests/{ref}", f"{repository}:{ref}",
                         push_scope(repository), ok=(201,), body=data,
                         headers={"Content-Type": media_type, "Content-Length": str(len(data))})
        _drain(resp)
        served = resp.headers.get("Docker-Content-Digest")
        if served and served != digest:
            raise RegistryError(f"{repository}:{ref}: registry stored the manifest as {served}, "
                                f"not {digest}")

    def list_tags(self, repository: str, what: str) -> list[str]:
        """Every tag of `repository`, following the Link header's pages."""
        from specs import fastjson
        tags: list[str] = []
        path = f"/v2/{repository}/tags/list?n=1000"
        for _ in range(10000):  # a bound on pages, however the registry links them
            resp, data = self.send("GET", path, what, _scope(repository), read_limit=MAX_MANIFEST + 1)
            if len(data) > MAX_MANIFEST:
                raise RegistryError(f"{what}: tag list page larger than {MAX_MANIFEST} bytes")
            try:
                page = fastjson.loads(data).get("tags") or []
            except (ValueError, AttributeError):
                raise RegistryError(f"{what}: malformed tag list") from None
            if not isinstance(page, list) or not all(isinstance(t, str) for t in page):
                raise RegistryError(f"{what}: malformed tag list")
            tags += page
            link = resp.headers.get("Link") or ""
            if 'rel="next"' not in link or "<" not in link:
                return tags
            path = link[link.index("<") + 1:link.index(">")]
        raise RegistryError(f"{what}: too many pages of tags")

    def get_referrers(self, repository: str, digest: str, what: str) -> list[dict] | None:
        """The referrers API's list for `digest`; None when the registry has no such API."""
        from specs import fastjson
        resp, data = self.send("GET", f"/v2/{repository}/referrers/{digest}", what,
                               _scope(repository), {"Accept": OCI_INDEX}, ok=(200, 404),
                               read_limit=MAX_MANIFEST + 1)
        if resp.status == 404:
            return None
        try:
            manifests = fastjson.loads(data).get("manifests")
        except (ValueError, AttributeError):
            manifests = None
        if not isinstance(manifests, list):
            raise RegistryError(f"{what}: malformed referrers list")
        return manifests

    def has_referrers_api(self, repository: str, digest: str) -> bool:
        return self.get_referrers(repository, digest, digest) is not None

    @staticmethod
    def _wrong_blob(resp: Response, digest: str, size: int, total: int, partial: str):
        """A digest mismatch, named with the digest of what the registry has (read when it
        is no bigger than the blob should be) and both sizes."""
        got = ""
        try:
            if total < size and resp.status == 200:
                h = _new_hasher(digest, total)
                while chunk := _read_chunk(resp):
                    h.update(chunk)
                got = f" ({digest.split(':', 1)[0]}:{h.hexdigest()})"
        except _Heal:
            pass
        finally:
            resp.release()
        try:
            os.unlink(partial)
        except FileNotFoundError:
            pass
        raise RegistryError(f"{digest}: digest mismatch: the registry has a blob of {total} bytes"
                            f"{got} under this digest, the manifest declares {size}")

    def _stream_blob(self, repository, digest, size, partial, hasher, have, progress, cancel,
                     fetched: list) -> object:
        """Append the rest of the blob to `partial`; returns the hasher fed with all of it."""
        headers = {"Accept-Encoding": "identity"}
        if have:
            headers["Range"] = f"bytes={have}-"
        if have >= size:
            return hasher
        resp = self.send("GET", f"/v2/{repository}/blobs/{digest}", digest, _scope(repository),
                         headers, ok=(200, 206, 416))
        if resp.status == 416:  # the registry has less than our partial download: start over
            _drain(resp)
            os.unlink(partial)
            raise _Heal("registry's blob is shorter than the partial download")
        mode = "ab"
        if resp.status == 200 and have:  # the registry ignored Range: start over
            have, mode, hasher = 0, "wb", _new_hasher(digest, size)
        elif resp.status == 206 and not (resp.headers.get("Content-Range") or "").startswith(f"bytes {have}-"):
            resp.release()
            raise RegistryError(f"{digest}: registry answered a range request with the wrong range")
        total = _served_size(resp)
        if total is not None and total != size:
            # Not a stream cut short, which a Range request resumes: the registry holds
            # another blob under this digest, and says so in its headers.
            self._wrong_blob(resp, digest, size, total, partial)
        if progress:
            progress.start(digest, size, have)
        got = 0
        try:
            with open(partial, mode) as f:
                while True:
                    if cancel is not None and cancel.is_set():
                        raise RegistryError(f"{digest}: cancelled")
                    chunk = _read_chunk(resp)
                    if not chunk:
                        break
                    got += len(chunk)
                    if have + got > size:
                        os.unlink(partial)
                        raise RegistryError(f"{digest}: registry sent more than the {size} bytes the manifest declares")
                    f.write(chunk)
                    fetched[0] += len(chunk)
                    hasher.update(chunk)
                    if progress:
                        progress.advance(digest, len(chunk))
        finally:
            resp.release()
        if have + got < size:
            raise _Heal(f"stream ended after {have + got} of {size} bytes")
        return hasher


def client_for(registry: str, *, plain_http: bool = False, tls_verify: bool = True,
               cert_dir: str | None = None, creds: tuple[str, str] | None = None,
               transport=None) -> Client:
    """The Client for a registry as a reference names it (docker.io, 127.0.0.1:5000),
    with the command line's TLS choices: --plain-http forces HTTP; loopback, and any
    host with --tls-verify=false, try HTTPS first and fall back to HTTP when the server
    does not speak TLS; everywhere else it is HTTPS."""
    from .reference import DOCKER_HUB, DOCKER_HUB_API, is_local_host
    from .tls import TLSConfig
    host = DOCKER_HUB_API if registry == DOCKER_HUB else registry
    mode = True if plain_http else (None if is_local_host(registry) or not tls_verify else False)
    return Client(host, plain_http=mode, creds=creds, transport=transport,
                  tls=TLSConfig(verify=tls_verify, cert_dir=cert_dir))


def _origin(url: str) -> tuple[str, str]:
    from .transport import split_url
    scheme, netloc, _ = split_url(url)
    return scheme, netloc.rpartition("@")[2]


def _served_size(resp: Response) -> int | None:
    """The whole blob's size as the response announces it (Content-Length of a 200,
    the total of a 206's Content-Range), None if it does not."""
    if resp.status == 200:
        length = (resp.headers.get("Content-Length") or "").strip()
        return int(length) if length.isdigit() else None
    total = (resp.headers.get("Content-Range") or "").rpartition("/")[2].strip()
    return int(total) if total.isdigit() else None


class Payload:
    """`length` bytes of a file from `offset`, as a request body that can be sent again
    whole (a retry, a 401 then the token, a redirect): rewind() starts it over. Reads
    never pass the length, whatever the file holds after it."""

    def __init__(self, f, offset: int, length: int):
        self.f, self.offset, self.length = f, offset, length
        self.pos = 0

    def rewind(self) -> None:
        self.seek(0)

    def seek(self, pos: int) -> None:
        self.pos = pos
        self.f.seek(self.offset + pos)

    def tell(self) -> int:
        return self.pos

    def __len__(self) -> int:
        return self.length

    def read(self, n: int = -1) -> bytes:
        left = self.length - self.pos
        n = left if n < 0 or n > left else n
        data = self.f.read(n) if n else b""
        self.pos += len(data)
        return data

    def __iter__(self):  # requests streams an iterable body in these pieces
        self.rewind()
        while chunk := self.read(1 << 20):
            yield chunk

    def chunk(self, start: int, n: int) -> bytes:
        self.seek(start)
        data = self.read(n)
        if len(data) != n:
            raise RegistryError(f"blob file ends at {start + len(data)} bytes, before its size")
        return data


class Manifest:
    def __init__(self, data: bytes, media_type: str, digest: str, doc: dict):
        self.data, self.media_type, self.digest, self.doc = data, media_type, digest, doc

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    def descriptor(self, **extra) -> dict:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data), **extra}


def parse_manifest(data: bytes, content_type: str, digest: str, what: str) -> Manifest:
    doc = json_object(data, f"{what}: malformed manifest")
    declared = doc.get("mediaType")
    known = MANIFEST_TYPES + INDEX_TYPES
    if content_type in known:
        media_type = content_type
        if declared and declared != content_type:
            raise RegistryError(f"{what}: malformed manifest: mediaType {declared} but served as {content_type}")
    elif declared in known:
        media_type = declared
    elif declared is None and content_type in ("", "application/json", "application/octet-stream"):
        # OCI allows manifests without mediaType: tell them apart by shape.
        media_type = OCI_INDEX if "manifests" in doc else OCI_MANIFEST
    else:
        raise RegistryError(f"{what}: unsupported manifest media type {declared or content_type!r}")
    if doc.get("schemaVersion") != 2:
        raise RegistryError(f"{what}: unsupported manifest schemaVersion {doc.get('schemaVersion')!r}")
    if media_type in INDEX_TYPES:
        items = doc.get("manifests")
        if not isinstance(items, list):
            raise RegistryError(f"{what}: malformed index: no manifests list")
        for d in items:
            _check_descriptor(d, what)
    else:
        _check_descriptor(doc.get("config"), what)
        layers = doc.get("layers")
        if not isinstance(layers, list):
            raise RegistryError(f"{what}: malformed manifest: no layers list")
        for d in layers:
            _check_descriptor(d, what)
    return Manifest(data, media_type, digest, doc)


def _check_descriptor(d, what: str) -> None:
    from .layout import LayoutError, split_digest
    if not isinstance(d, dict) or not isinstance(d.get("size"), int) or d["size"] < 0 \
            or not isinstance(d.get("digest"), str):
        raise RegistryError(f"{what}: malformed manifest: bad descriptor {d!r:.120}")
    try:
        split_digest(d["digest"])
    except LayoutError as e:
        raise RegistryError(f"{what}: malformed manifest: {e}") from None


# -- helpers ----------------------------------------------------------------------

def json_object(data: bytes, what: str, error: type[Exception] = RegistryError) -> dict:
    """`data` as a JSON object (a manifest, an index): else `error`, "<what>: <the reason>"."""
    from specs import fastjson
    try:
        doc = fastjson.loads(data)
    except ValueError as e:
        raise error(f"{what}: {e}") from None
    if not isinstance(doc, dict):
        raise error(f"{what}: not a JSON object")
    return doc


def parse_challenge(header: str) -> tuple[str, dict]:
    """'Bearer realm="…",service="…"' → ("bearer", {...}); quoted values may hold commas."""
    scheme, _, rest = header.strip().partition(" ")
    params, i = {}, 0
    while i < len(rest):
        eq = rest.find("=", i)
        if eq < 0:
            break
        key = rest[i:eq].strip(" ,").lower()
        i = eq + 1
        if i < len(rest) and rest[i] == '"':
            end = i + 1
            value = []
            while end < len(rest) and rest[end] != '"':
                if rest[end] == "\\" and end + 1 < len(rest):
                    end += 1
                value.append(rest[end])
                end += 1
            params[key] = "".join(value)
            i = end + 1
        else:
            end = rest.find(",", i)
            end = len(rest) if end < 0 else end
            params[key] = rest[i:end].strip()
            i = end + 1
    return scheme.lower(), params


def _scope(repository: str, actions: str = "pull") -> str:
    return f"repository:{repository}:{actions}"


def push_scope(repository: str, mount_from: str | None = None) -> str:
    """The token scope a push needs (and, for a cross-repository mount, the source's pull)."""
    scope = _scope(repository, "pull,push")
    return f"{scope} {_scope(mount_from)}" if mount_from else scope


def _authz(value: str | None) -> dict:
    return {"Authorization": value} if value else {}


def _b64(text: str) -> str:
    import base64
    return base64.b64encode(text.encode()).decode()


def _drain(resp: Response) -> None:
    try:
        resp.read(64 * 1024)
    except Exception:
        pass
    resp.release()


def _check_heal(resp: Response) -> Response:
    """5xx and 429 may heal: retry them (429 after its Retry-After)."""
    if resp.status == 429 or resp.status in (500, 502, 503, 504):
        wait = None
        retry_after = resp.headers.get("Retry-After")
        if retry_after and retry_after.strip().isdigit():
            wait = float(retry_after)
        _drain(resp)
        raise _Heal(f"registry answered HTTP {resp.status}", wait)
    return resp


def _registry_error(body: bytes) -> tuple[str, str]:
    from specs import fastjson
    try:
        err = fastjson.loads(body)["errors"][0]
        return str(err.get("code", "")), str(err.get("message", ""))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return "", ""


def _read_chunk(resp: Response) -> bytes:
    try:
        # read_some: a reset after 900 KiB of a 1 MiB read would otherwise lose those 900 KiB,
        # and the resumed request could not start where the stream broke.
        return resp.read_some(CHUNK)
    except OSError as e:  # reset, timeout, broken framing
        raise _Heal(f"stream broken: {e or type(e).__name__}") from None


def _new_hasher(digest: str, size: int):
    from .layout import _hasher
    return _hasher(digest.split(":", 1)[0], size)


def _hash_existing(partial: str, digest: str, size: int):
    """(hasher fed with the partial download's bytes, their count); a fresh one if none."""
    h = _new_hasher(digest, size)
    try:
        f = open(partial, "rb")
    except FileNotFoundError:
        return h, 0
    with f:
        have = os.fstat(f.fileno()).st_size
        if have > size:
            f.close()
            os.unlink(partial)
            return h, 0
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h, have
