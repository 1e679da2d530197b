"""Start and stop Debian's docker-registry on a free 127.0.0.1 port (pytest-independent).

    with Registry(tmpdir) as reg:            # open
        reg.address                          # "127.0.0.1:PORT"
    with Registry(tmpdir, users={"u": "p"}): # htpasswd basic auth (bcrypt)
    with Registry(tmpdir, auth_config=...):  # any other `auth:` section (token auth)
    with Registry(tmpdir, tls=(cert, key)):  # HTTPS; client_cas=[ca.crt] asks for client certs
"""
from __future__ import annotations

import ctypes
import ctypes.util
import http.client
import os
import shutil
import signal
import socket
import subprocess
import time

BINARY = "/usr/bin/docker-registry"


class RegistryUnavailable(Exception):
    """The registry cannot be started here (reason in the message)."""


def bcrypt_hash(password: str, cost: int = 5) -> str:
    """A bcrypt ($2b$) hash via the system's libxcrypt (Debian 12's libcrypt.so.1 has bcrypt).

    The registry's htpasswd accepts bcrypt only; apache2-utils is not installed.
    A low cost keeps the registry's per-request check fast in tests.
    """
    name = ctypes.util.find_library("crypt") or "libcrypt.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError as e:
        raise RegistryUnavailable(f"libcrypt not loadable for bcrypt: {e}") from None
    lib.crypt_gensalt.restype = ctypes.c_char_p
    lib.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    salt = lib.crypt_gensalt(b"$2b$", cost, None, 0)
    hashed = lib.crypt(password.encode(), salt) if salt else None
    if not hashed or not hashed.startswith(b"$2b$"):
        raise RegistryUnavailable("libcrypt here cannot make bcrypt hashes")
    return hashed.decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    def __init__(self, workdir: str, users: dict[str, str] | None = None,
                 auth_config: str = "", tls: tuple[str, str] | None = None,
                 client_cas: list[str] | None = None):
        self.workdir = workdir
        self.users = users or {}
        self.auth_config = auth_config
        self.tls = tls
        self.client_cas = client_cas or []
        self.storage = os.path.join(workdir, "storage")
        self.port = 0
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> "Registry":
        if not os.access(BINARY, os.X_OK):
            raise RegistryUnavailable(f"{BINARY} not installed (apt-get install docker-registry)")
        os.makedirs(self.storage, exist_ok=True)
        config = os.path.join(self.workdir, "config.yml")
        for _ in range(5):  # the port can be taken between free_port() and bind
            self.port = free_port()
            with open(config, "w") as f:
                f.write(self._config())
            log = open(os.path.join(self.workdir, "registry.log"), "ab")
            self.proc = subprocess.Popen([BINARY, "serve", config], stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
            log.close()
            if self._wait(timeout):
                return self
            self.stop()
        raise RegistryUnavailable(f"docker-registry did not answer; see {self.workdir}/registry.log")

    def _config(self) -> str:
        auth = self.auth_config
        if self.users:
            htpasswd = os.path.join(self.workdir, "htpasswd")
            with open(htpasswd, "w") as f:
                for user, password in self.users.items():
                    f.write(f"{user}:{bcrypt_hash(password)}\n")
            auth = f"auth:\n  htpasswd:\n    realm: test-registry\n    path: {htpasswd}\n"
        return (
            "version: 0.1\n"
            "log:\n  level: error\n  accesslog:\n    disabled: true\n"
            "storage:\n"
            f"  filesystem:\n    rootdirectory: {self.storage}\n"
            "  delete:\n    enabled: true\n"
            "  maintenance:\n    uploadpurging:\n      enabled: false\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n"
            + self._tls_config()
            + auth
        )

    def _tls_config(self) -> str:
        if not self.tls:
            return ""
        out = f"  tls:\n    certificate: {self.tls[0]}\n    key: {self.tls[1]}\n"
        if self.client_cas:
            out += "    clientcas:\n" + "".join(f"      - {ca}\n" for ca in self.client_cas)
        return out

    def _wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if self._answers():
                return True
            time.sleep(0.05)
        return False

    def _answers(self) -> bool:
        if self.tls:
            # Up when it accepts a connection: its TLS side is what the tests are about.
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
            conn.request("GET", "/v2/")
            status = conn.getresponse().status
            conn.close()
            return status in (200, 401)
        except OSError:
            return False

    def blob_data_path(self, digest: str) -> str:
        """The file the registry serves `digest` from (tests corrupt it)."""
        hexpart = digest.split(":", 1)[1]
        return os.path.join(self.storage, "docker", "registry", "v2", "blobs", "sha256",
                            hexpart[:2], hexpart, "data")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> "Registry":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def wipe(self) -> None:
        self.stop()
        shutil.rmtree(self.storage, ignore_errors=True)
