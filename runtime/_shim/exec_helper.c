/* pyrun-exec: the last hop into the container's process (CVE-2019-5736).
 *
 * The runtime's own process is the host's Python interpreter. If it execve()d the
 * container's program directly, a program whose interpreter is /proc/self/exe
 * (a "#!/proc/self/exe" script, or a symlink to it) would start the host's
 * interpreter inside the container, and root there could reopen that binary
 * for writing once we exit. So the runtime execs this tiny static binary from a
 * sealed memfd instead, and it execs the program: at that moment /proc/self/exe
 * is the sealed memfd, which nothing can write.
 *
 * argv: MAGIC path arg0 arg1 ...   — anything else (being run as an interpreter
 * through /proc/self/exe) is refused, which also ends a loop before it starts.
 * No libc: it must run in any container, whatever its rootfs holds.
 *
 * It also hands the program default signal dispositions and an empty mask:
 * ignored signals and blocked ones survive execve, whoever set them (the
 * runtime's caller, Python, which ignores SIGPIPE and SIGXFSZ), and glibc will
 * not reset its own internal signals (32, 33) for the runtime; raw syscalls will.
 */
#define MAGIC "pyrun-exec\x01"

#include "nolibc.h"

#define sys4(n, a, b, c, d) sys5(n, a, b, c, d, 0)
#define sys3(n, a, b, c) sys4(n, a, b, c, 0)
#define NSIG 64
#define SIGKILL 9
#define SIGSTOP 19
#define SIG_SETMASK 2

static void default_signals(void)
{
    /* The kernel's struct sigaction: handler, flags, restorer, mask; all zero is SIG_DFL. */
    long action[4] = {0, 0, 0, 0};
    unsigned long empty = 0;
    int sig;

    for (sig = 1; sig <= NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            sys4(SYS_rt_sigaction, sig, (long)action, 0, sizeof(empty));
    sys4(SYS_rt_sigprocmask, SIG_SETMASK, (long)&empty, 0, sizeof(empty));
}

static void say(const char *a, const char *b)
{
    sys3(SYS_write, 2, (long)a, (long)len(a));
    sys3(SYS_write, 2, (long)b, (long)len(b));
    sys3(SYS_write, 2, (long)"\n", 1);
}

static int same(const char *a, const char *b)
{
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return *a == *b;
}

__attribute__((used)) void pyrun_exec_main(long *sp)
{
    long argc = sp[0];
    char **argv = (char **)(sp + 1);
    char **envp = argv + argc + 1;
    long e;

    if (argc < 3 || !same(argv[0], MAGIC)) {
        say("pyrun-exec: refusing to run: not started by pyrun", "");
        sys3(SYS_exit_group, 126, 0, 0);
    }
    default_signals();
    e = sys3(SYS_execve, (long)argv[1], (long)(argv + 2), (long)envp);
    say(argv[1], errname(e));
    sys3(SYS_exit_group, e == -2 ? 127 : 126, 0, 0);
}

ENTRY(pyrun_exec_main);
