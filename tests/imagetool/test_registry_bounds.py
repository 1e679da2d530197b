"""A registry that serves more than a descriptor declares: read to the declared size
and no further, and named as a size mismatch (issue 15)."""
import http.server
import json

from tests.support import images
from tests.support.httpd import LocalHTTPServer

from .clitools import assert_one_line_error, run_cli


class _Padded(LocalHTTPServer):
    """An index whose one manifest is served with `extra` bytes after it."""

    def __init__(self, extra: bytes):
        super().__init__()
        image = images.build_image([images.tar_layer([images.Entry("a", data=b"a")])],
                                   arch="amd64")
        image.platform = {"os": "linux", "architecture": "amd64"}
        self.image = image
        self.index = images.build_index([image])
        self.extra = extra
        self.served = 0

    def handler(self):
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path.endswith("/manifests/latest"):
                    body, ctype = server.index.manifest.data, images.OCI_INDEX
                elif self.path.endswith(f"/manifests/{server.image.manifest.digest}"):
                    body, ctype = server.image.manifest.data + server.extra, images.OCI_MANIFEST
                else:
                    body, ctype = json.dumps({"errors": [{"code": "BLOB_UNKNOWN"}]}).encode(), "application/json"
                    self.send_response(404)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                    server.served += len(body)
                except OSError:
                    pass

            def log_message(self, *args):
                pass
        return Handler


def test_manifest_longer_than_the_index_declares(tmp_path):
    with _Padded(b" " * 100) as registry:
        p = run_cli("pull", "--platform", "linux/amd64",
                    f"127.0.0.1:{registry.port}/demo/x:latest", str(tmp_path / "layout"))
    size = len(registry.image.manifest.data)
    assert_one_line_error(p, f"{registry.image.manifest.digest}: manifest is longer than the "
                             f"{size} bytes its descriptor declares")
    assert not (tmp_path / "layout").exists()
