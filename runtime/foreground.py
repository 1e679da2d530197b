"""`pyrun run` in the foreground: start, forward signals, wait, pass the exit status through."""
import os


def run(c, detach: bool, keep: bool, console_conn=None) -> int:
    import _signal
    if detach:
        c.start()
        return 0
    pid = c.pid
    master = -1
    if console_conn is not None:
        from . import console
        master = console.receive_master(console_conn)

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
    try:
        c.start()
        if master >= 0:
            from . import console
            console.proxy(master, pid)
        _, status = _waitpid(pid)
    except BaseException:
        c.delete(force=True)
        raise
    code = os.WTERMSIG(status) + 128 if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    if not keep:
        c.delete(force=True)
    return code


def _waitpid(pid: int):
    while True:
        try:
            return os.waitpid(pid, 0)
        except InterruptedError:
            continue
