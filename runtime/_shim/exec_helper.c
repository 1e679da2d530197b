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

#if defined(__x86_64__)
#define SYS_write 1
#define SYS_rt_sigaction 13
#define SYS_rt_sigprocmask 14
#define SYS_execve 59
#define SYS_exit_group 231
static long sys4(long n, long a, long b, long c, long d)
{
    long ret;
    register long r10 __asm__("r10") = d;
    __asm__ volatile ("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10) : "rcx", "r11", "memory");
    return ret;
}
#elif defined(__aarch64__)
#define SYS_write 64
#define SYS_rt_sigaction 134
#define SYS_rt_sigprocmask 135
#define SYS_execve 221
#define SYS_exit_group 94
static long sys4(long n, long a, long b, long c, long d)
{
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    __asm__ volatile ("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3) : "memory");
    return x0;
}
#else
#error "pyrun-exec: unsupported architecture"
#endif

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

static unsigned long len(const char *s)
{
    unsigned long n = 0;
    while (s[n])
        n++;
    return n;
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

static const char *errname(long e)
{
    switch (-e) {
    case 2: return ": no such file or directory";
    case 8: return ": exec format error";
    case 13: return ": permission denied";
    default: return ": execve failed";
    }
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

#if defined(__x86_64__)
__asm__(".globl _start\n_start:\n mov %rsp, %rdi\n and $-16, %rsp\n call pyrun_exec_main\n hlt\n");
#elif defined(__aarch64__)
__asm__(".globl _start\n_start:\n mov x0, sp\n bl pyrun_exec_main\n");
#endif
