"""A Docker token server for tests: http.server in a thread on 127.0.0.1, RS256 JWTs signed
with the `openssl` command line (Python here has no RSA, and the project adds no crypto
dependency).

docker-registry (distribution 2.8) with `auth: token:` sends clients here with
`Bearer realm=…,service=…,scope=repository:NAME:pull`; a token is a JWT whose header carries
the signing certificate (x5c) and whose claims say which actions on which repository the
subject may take. The registry trusts the certificate through `rootcertbundle`.

    with TokenServer(workdir, users={"u": "p"}, grants=...) as ts:
        ts.registry_config()   # the `auth:` section for the registry's config.yml
        ts.requests            # every token request: (user or None, [scopes], status)
"""
from __future__ import annotations

import base64
import http.server
import json
import os
import shutil
import subprocess
import time
import urllib.parse

from tests.support.httpd import LocalHTTPServer

ISSUER = "imagetool-test-issuer"
SERVICE = "imagetool-test-registry"


class TokenServerUnavailable(Exception):
    """openssl is missing or cannot make a key here."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def default_grants(user: str | None, repository: str) -> set[str]:
    """Anonymous users may pull public/*; signed-in users pull anything and push their own."""
    if repository.startswith("public/"):
        return {"pull"} | ({"push"} if user else set())
    return {"pull", "push"} if user else set()


class TokenServer(LocalHTTPServer):
    def __init__(self, workdir: str, users: dict[str, str] | None = None, grants=default_grants):
        self.workdir = workdir
        self.users = users or {}
        self.grants = grants
        self.requests: list[tuple[str | None, list[str], int]] = []
        self.key = os.path.join(workdir, "token-key.pem")
        self.cert = os.path.join(workdir, "token-cert.pem")
        super().__init__()
        self._x5c = ""

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def start(self) -> "TokenServer":
        if not shutil.which("openssl"):
            raise TokenServerUnavailable("openssl not installed (apt-get install openssl)")
        os.makedirs(self.workdir, exist_ok=True)
        proc = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                               "-keyout", self.key, "-out", self.cert, "-days", "2",
                               "-subj", f"/CN={ISSUER}"], capture_output=True, text=True)
        if proc.returncode != 0:
            raise TokenServerUnavailable(f"openssl req failed: {proc.stderr.strip()}")
        der = subprocess.run(["openssl", "x509", "-in", self.cert, "-outform", "DER"],
                             capture_output=True, check=True).stdout
        self._x5c = base64.b64encode(der).decode()
        return super().start()

    def registry_config(self) -> str:
        return ("auth:\n  token:\n"
                f"    realm: {self.realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n"
                f"    rootcertbundle: {self.cert}\n")

    # -- tokens ---------------------------------------------------------------------

    def issue(self, subject: str, access: list[dict], ttl: int = 300) -> str:
        """A signed JWT granting `access` ([{type, name, actions}]) to `subject`."""
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        claims = {"iss": ISSUER, "sub": subject, "aud": SERVICE, "exp": now + ttl,
                  "nbf": now - 30, "iat": now - 30, "jti": _b64url(os.urandom(12)),
                  "access": access}
        signing_input = (_b64url(json.dumps(header).encode()) + "." +
                         _b64url(json.dumps(claims).encode())).encode()
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", self.key],
                             input=signing_input, capture_output=True, check=True).stdout
        return signing_input.decode() + "." + _b64url(sig)

    def push_token(self, repository: str) -> str:
        return self.issue("seeder", [{"type": "repository", "name": repository,
                                      "actions": ["pull", "push"]}])

    def _answer(self, authorization: str | None, query: dict) -> tuple[int, dict]:
        user = None
        if authorization:
            scheme, _, value = authorization.partition(" ")
            try:
                name, _, password = base64.b64decode(value).decode().partition(":")
            except ValueError:
                return 400, {"details": "malformed Authorization"}
            if scheme.lower() != "basic" or self.users.get(name) != password:
                return 401, {"details": "incorrect username or password"}
            user = name
        if query.get("service", [SERVICE])[0] != SERVICE:
            return 400, {"details": "unknown service"}
        access = []
        for scope in query.get("scope", []):
            for item in scope.split(" "):
                kind, _, rest = item.partition(":")
                name, _, actions = rest.rpartition(":")
                if kind != "repository" or not name:
                    continue
                granted = sorted(set(actions.split(",")) & self.grants(user, name))
                # Like Docker Hub: what is not granted is left out, never refused outright.
                if granted:
                    access.append({"type": "repository", "name": name, "actions": granted})
        token = self.issue(user or "", access)
        return 200, {"token": token, "access_token": token, "expires_in": 300,
                     "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    def handler(self):
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 - http.server's naming
                url = urllib.parse.urlsplit(self.path)
                if url.path != "/token":
                    status, body = 404, {"details": "not found"}
                else:
                    query = urllib.parse.parse_qs(url.query)
                    status, body = server._answer(self.headers.get("Authorization"), query)
                    user = None
                    if self.headers.get("Authorization"):
                        try:
                            user = base64.b64decode(self.headers["Authorization"].split(" ", 1)[1]
                                                    ).decode().partition(":")[0]
                        except (ValueError, IndexError):
                            user = "?"
                    server.requests.append((user, query.get("scope", []), status))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):  # quiet: pytest shows failures, not access logs
                pass

        return Handler
