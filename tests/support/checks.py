"""Checks several test files share: the one-line error convention, fds over a unix socket."""
import socket


def one_line_error(p, *needles, code=None) -> str:
    """A failure as the convention wants it: a non-zero exit (or exactly `code`), one line on
    stderr naming each of `needles`. Returns the line."""
    assert (p.returncode == code) if code is not None else p.returncode != 0, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def fd_listener(path: str) -> socket.socket:
    """A listening unix socket at `path`, as --console-socket and --pidfd-socket callers make."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    srv.settimeout(10)
    return srv


def receive_fd(srv: socket.socket) -> tuple[bytes, int]:
    """The first connection's message and the fd it carries."""
    conn, _ = srv.accept()
    try:
        msg, fds, _, _ = socket.recv_fds(conn, 4096, 1)
    finally:
        conn.close()
    assert len(fds) == 1, msg
    return msg, fds[0]
