"""Certificates for TLS tests, made with the openssl command line (the test's own CA,
server certificates for chosen names, client certificates)."""
from __future__ import annotations

import os
import shutil
import subprocess


class Unavailable(Exception):
    pass


def _openssl(*args: str, cwd: str) -> None:
    if not shutil.which("openssl"):
        raise Unavailable("openssl not installed")
    p = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"openssl {' '.join(args)}: {p.stderr}")


class CA:
    """A certificate authority in `directory`: ca.crt and ca.key."""

    def __init__(self, directory: str, name: str = "imagetool test CA"):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.cert = os.path.join(directory, "ca.crt")
        self.key = os.path.join(directory, "ca.key")
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.key,
                 "-out", self.cert, "-days", "2", "-subj", f"/CN={name}",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)

    def issue(self, name: str, sans: list[str] | None = None, client: bool = False,
              days: int = 2) -> tuple[str, str]:
        """(cert, key) paths for `name`; sans like ["IP:127.0.0.1", "DNS:localhost"]."""
        key = os.path.join(self.dir, f"{name}.key")
        csr = os.path.join(self.dir, f"{name}.csr")
        cert = os.path.join(self.dir, f"{name}.crt")
        ext = os.path.join(self.dir, f"{name}.ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\n")
            f.write(f"extendedKeyUsage={'clientAuth' if client else 'serverAuth'}\n")
            if sans:
                f.write("subjectAltName=" + ",".join(sans) + "\n")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
                 "-subj", f"/CN={name}", cwd=self.dir)
        _openssl("x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key,
                 "-CAcreateserial", "-out", cert, "-days", str(days), "-extfile", ext,
                 cwd=self.dir)
        return cert, key


def cert_dir(path: str, ca: CA | None = None, client: tuple[str, str] | None = None) -> str:
    """A directory as --cert-dir and certs.d/HOST:PORT/ take it: ca.crt, client.cert/.key."""
    os.makedirs(path, exist_ok=True)
    if ca is not None:
        shutil.copy(ca.cert, os.path.join(path, "ca.crt"))
    if client is not None:
        shutil.copy(client[0], os.path.join(path, "client.cert"))
        shutil.copy(client[1], os.path.join(path, "client.key"))
    return path
