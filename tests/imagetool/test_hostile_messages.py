"""What a registry says reaches the user's terminal as one line of printable text."""
import http.server
import json
import threading

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


def test_a_registrys_error_message_cannot_drive_the_terminal(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        p = run_cli("pull", f"127.0.0.1:{server.server_address[1]}/demo/x:latest", str(tmp_path / "layout"))
    finally:
        server.shutdown()
        server.server_close()
    assert_one_line_error(p, "gone")
    assert not any(c in p.stderr for c in "\x1b\x07\x00"), repr(p.stderr)
    assert "\\x1b]0;owned\\x07" in p.stderr
    assert not (tmp_path / "layout").exists()
