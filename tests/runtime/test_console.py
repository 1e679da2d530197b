"""Terminals: the pty master over --console-socket (conmon's way) and `run` proxying a tty."""
import json
import os
import subprocess
import time

from tests.conftest import PYRUN
from tests.support.bundle import write_config
from tests.support.checks import fd_listener, receive_fd


def _terminal_bundle(bundle, args, size=None):
    b = bundle(args)
    cfg = json.load(open(os.path.join(b, "config.json")))
    cfg["process"]["terminal"] = True
    if size:
        cfg["process"]["consoleSize"] = size
    write_config(b, cfg)
    return b


def _read_all(fd, timeout=10.0) -> bytes:
    import select
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO once the container side is gone
                break
            if not chunk:
                break
            out += chunk
    return out


def test_console_socket_receives_pty_master(pyrun, bundle, tmp_path):
    b = _terminal_bundle(bundle, ["sh", "-c", "tty; stty size; echo hi-from-tty; ls -l /dev/console | wc -l"],
                         size={"height": 33, "width": 101})
    path = str(tmp_path / "console.sock")
    srv = fd_listener(path)
    pyrun("create", "-b", b, "--console-socket", path, "t1", check=True)
    msg, master = receive_fd(srv)
    fds = [master]
    assert len(fds) == 1 and msg.startswith(b"/dev/pts/")
    pyrun("start", "t1", check=True)
    out = _read_all(fds[0]).decode().replace("\r", "").split("\n")
    os.close(fds[0])
    assert out[0].startswith("/dev/pts/")
    assert out[1:4] == ["33 101", "hi-from-tty", "1"]


def test_run_without_console_socket_needs_one_when_detached(pyrun, bundle):
    b = _terminal_bundle(bundle, ["true"])
    p = pyrun("create", "-b", b, "t1")
    assert p.returncode == 1 and "console socket" in p.stderr
    assert pyrun.ids() == []


def test_run_in_foreground_proxies_a_tty(pyrun, bundle):
    import pty
    b = _terminal_bundle(bundle, ["sh", "-c", "read line; echo got:$line; tty"])
    master, slave = pty.openpty()
    proc = subprocess.Popen([PYRUN, "--root", pyrun.root, "run", "-b", b, "t1"],
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    time.sleep(0.5)
    os.write(master, b"hello\r")
    out = _read_all(master, timeout=5).decode()
    assert proc.wait(timeout=10) == 0, out
    os.close(master)
    assert "got:hello" in out and "/dev/pts/" in out


def test_foreground_tty_follows_window_resize(pyrun, bundle):
    import fcntl
    import pty
    import signal
    import struct
    import termios
    b = _terminal_bundle(bundle, ["sh", "-c", "stty size; read x; stty size"])
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 20, 70, 0, 0))
    proc = subprocess.Popen([PYRUN, "--root", pyrun.root, "run", "-b", b, "t1"],
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    time.sleep(0.6)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 44, 132, 0, 0))
    proc.send_signal(signal.SIGWINCH)
    time.sleep(0.3)
    os.write(master, b"go\r")
    os.close(slave)
    out = _read_all(master, timeout=5).decode()
    assert proc.wait(timeout=10) == 0, out
    os.close(master)
    assert "20 70" in out and "44 132" in out, out
