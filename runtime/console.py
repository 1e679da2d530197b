"""Terminals: a pty made inside the container, its master handed out over a unix socket.

As runc does it: the pty pair comes from the container's own devpts (after
pivot_root / after joining the mount namespace), the slave becomes the process's
controlling terminal and stdio (and /dev/console for the init), and the master
travels over --console-socket with SCM_RIGHTS, the pty's path as the payload.
conmon and containerd's shim receive it there; `pyrun run` without a console
socket receives it itself and proxies the user's terminal (see proxy()).
"""
import os

TIOCSPTLCK = 0x40045431
TIOCGPTN = 0x80045430
TIOCGPTPEER = 0x5441
TIOCSCTTY = 0x540E
TIOCSWINSZ = 0x5414
TIOCGWINSZ = 0x5413


def connect(path: str, what: str = "console socket"):
    """Connect to a unix socket the caller named (--console-socket, --pidfd-socket) while
    its host path is still reachable."""
    import socket
    from .errors import PyrunError
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    s.settimeout(30)  # a listener whose backlog is full must not hang us for ever
    try:
        s.connect(path)
    except OSError as e:
        s.close()
        raise PyrunError(f"connect to {what} {path}: {e.strerror or 'timed out'}") from None
    s.settimeout(None)
    return s


def tty_size(fd: int = 0) -> dict | None:
    """The size of the user's terminal as an OCI consoleSize, or None if `fd` is no tty."""
    import fcntl
    import struct
    try:
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, TIOCGWINSZ, b"\0" * 8))
    except OSError:
        return None
    return {"height": rows, "width": cols}


def preload() -> None:
    import fcntl  # noqa: F401
    import socket  # noqa: F401
    import struct  # noqa: F401
    import termios  # noqa: F401


def open_pty() -> tuple[int, int, str]:
    """(master, slave, slave path) from the devpts this process sees at /dev/ptmx."""
    import fcntl
    import struct
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
    n = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0" * 4))[0]
    slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY)
    return master, slave, f"/dev/pts/{n}"


def set_size(fd: int, size: dict | None) -> None:
    if not size:
        return
    import fcntl
    import struct
    fcntl.ioctl(fd, TIOCSWINSZ, struct.pack("HHHH", size.get("height", 0), size.get("width", 0), 0, 0))


def clear_onlcr(slave: int) -> None:
    """No \n → \r\n on output, as runc sets the pty up (callers copy bytes as they are)."""
    import termios
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.ONLCR
    termios.tcsetattr(slave, termios.TCSANOW, attrs)


def _bind_console(slave: int) -> None:
    """/dev/console is our pty itself, bound from its fd: never a path the rootfs could
    redirect (a /dev/pts or /dev/console planted by the image)."""
    from . import paths, rootfs
    root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _, target = paths.make_at(root, paths.resolve(root, "/dev/console"), is_dir=False)
    finally:
        os.close(root)
    try:
        os.close(rootfs.bind(slave, target, recursive=False))
    finally:
        os.close(target)


def become_controlling(slave: int) -> None:
    """The slave as stdin/stdout/stderr and controlling terminal of a new session."""
    import fcntl
    os.setsid()
    fcntl.ioctl(slave, TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)


def send_master(sock, master: int, name: str) -> None:
    import socket
    socket.send_fds(sock, [name.encode()], [master])
    sock.close()
    os.close(master)


def setup(sock, size: dict | None, bind_console: bool) -> None:
    """In the container: make the pty, hand out the master, take the slave."""
    master, slave, name = open_pty()
    set_size(master, size)
    clear_onlcr(slave)
    if bind_console:
        _bind_console(slave)
    send_master(sock, master, name)
    become_controlling(slave)
    if slave > 2:
        os.close(slave)


def receive_master(conn) -> int:
    """The master fd from a connected socket (the `run` side of a socketpair)."""
    import socket
    with conn:
        _, fds, _, _ = socket.recv_fds(conn, 4096, 1)
    if not fds:
        from .errors import PyrunError
        raise PyrunError("console socket: no pty master received")
    return fds[0]


def proxy(master: int, pid: int) -> None:
    """Foreground `run`/`exec` with a terminal: the user's tty in raw mode ↔ the pty master,
    window size copied, the tty restored on the way out."""
    import select
    import termios
    import tty
    stdin_tty = os.isatty(0)
    saved = termios.tcgetattr(0) if stdin_tty else None
    if stdin_tty:
        import _signal
        import fcntl

        def copy_size(*_):
            try:
                fcntl.ioctl(master, TIOCSWINSZ, fcntl.ioctl(0, TIOCGWINSZ, b"\0" * 8))
            except OSError:
                pass
        # A resized terminal resizes the pty (the kernel then signals the container's
        # foreground process group itself), instead of SIGWINCH being forwarded.
        # Handler first, then the copy: a resize in between is not lost.
        _signal.signal(_signal.SIGWINCH, copy_size)
        copy_size()
        tty.setraw(0)
    try:
        fds = [master, 0]
        while True:
            try:
                ready, _, _ = select.select(fds, [], [])
            except InterruptedError:
                continue
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every slave is closed
                    data = b""
                if not data:
                    return
                os.write(1, data)
            if 0 in ready:
                data = os.read(0, 65536)
                if data:
                    os.write(master, data)
                else:
                    fds.remove(0)
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
