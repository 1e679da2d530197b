"""Foreground `run` and `exec`: forward signals, proxy a terminal, pass the exit status through."""
import os


def run(c, detach: bool, keep: bool, console_conn=None) -> int:
    if detach:
        c.start()
        return 0
    forward_signals(c.pid)
    try:
        c.start()
        code = wait_foreground(c.pid, console_conn)
    except BaseException:
        c.delete(force=True)
        raise
    if not keep:
        c.delete(force=True)
    return code


def forward_signals(pid: int) -> None:
    """Every signal we can catch goes on to `pid`, as runc's signal proxy does."""
    import _signal

    def forward(signum, frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass
    for sig in range(1, _signal.NSIG):
        if sig in (_signal.SIGKILL, _signal.SIGSTOP, _signal.SIGCHLD):
            continue
        try:
            _signal.signal(sig, forward)
        except (OSError, ValueError):
            pass


def wait_foreground(pid: int, console_conn=None) -> int:
    """Proxy the pty if there is one, reap `pid`, and turn its status into ours."""
    if console_conn is not None:
        from . import console
        console.proxy(console.receive_master(console_conn), pid)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    return os.WTERMSIG(status) + 128 if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
