"""What a registry says reaches the user's terminal as one line of printable text."""
import http.server
import json

from tests.support.httpd import LocalHTTPServer

from .clitools import assert_one_line_error, run_cli

# An OSC title change, a bell, a newline and a screen clear: a registry's "message"
# must not be able to rewrite the user's terminal or forge a second line.
HOSTILE = "gone\x1b]0;owned\x07\n\x1b[2Jfake prompt$ "


class _Hostile(http.server.BaseHTTPRequestHandler):
    def _answer(self, with_body: bool) -> None:
        body = json.dumps({"errors": [{"code": "DENIED", "message": HOSTILE}]}).encode()
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def do_GET(self):
        self._answer(True)

    def do_HEAD(self):
        self._answer(False)

    def log_message(self, *args):
        pass


class _HostileRegistry(LocalHTTPServer):
    def handler(self):
        return _Hostile


def test_a_registrys_error_message_cannot_drive_the_terminal(tmp_path):
    with _HostileRegistry() as registry:
        p = run_cli("pull", f"127.0.0.1:{registry.port}/demo/x:latest", str(tmp_path / "layout"))
    assert_one_line_error(p, "gone")
    assert not any(c in p.stderr for c in "\x1b\x07\x00"), repr(p.stderr)
    assert "\\x1b]0;owned\\x07" in p.stderr
    assert not (tmp_path / "layout").exists()
