/* What pyrun-exec (exec_helper.c) and pyrun-launcher (launcher.c) have instead of a libc:
 * raw syscalls of up to five arguments and the numbers of those they make, a string's
 * length, execve's errors in words, and the entry point. Both are static binaries that
 * must run anywhere (see each source for why); setup.py compiles each source alone, and
 * this header, found next to it, is all they share. Everything is static: each binary
 * keeps what it uses.
 */
#if defined(__x86_64__)
#define SYS_write 1
#define SYS_close 3
#define SYS_rt_sigaction 13
#define SYS_rt_sigprocmask 14
#define SYS_execve 59
#define SYS_exit_group 231
#define SYS_execveat 322
static long sys5(long n, long a, long b, long c, long d, long e)
{
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    __asm__ volatile ("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8)
                      : "rcx", "r11", "memory");
    return ret;
}
/* _start: the kernel's stack pointer (argc, argv, envp above it) to main(sp), 16-byte aligned. */
#define ENTRY(main) __asm__(".globl _start\n_start:\n mov %rsp, %rdi\n and $-16, %rsp\n call " #main "\n hlt\n")
#elif defined(__aarch64__)
#define SYS_write 64
#define SYS_close 57
#define SYS_rt_sigaction 134
#define SYS_rt_sigprocmask 135
#define SYS_execve 221
#define SYS_exit_group 94
#define SYS_execveat 281
static long sys5(long n, long a, long b, long c, long d, long e)
{
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    register long x4 __asm__("x4") = e;
    __asm__ volatile ("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4) : "memory");
    return x0;
}
#define ENTRY(main) __asm__(".globl _start\n_start:\n mov x0, sp\n bl " #main "\n")
#else
#error "pyrun-exec, pyrun-launcher: unsupported architecture"
#endif
/* The same numbers on every architecture (asm-generic). */
#define SYS_open_tree 428
#define SYS_mount_setattr 442

static unsigned long len(const char *s)
{
    unsigned long n = 0;
    while (s[n])
        n++;
    return n;
}

/* execve's failure, as the line on stderr ends. */
static const char *errname(long e)
{
    switch (-e) {
    case 2: return ": no such file or directory";
    case 8: return ": exec format error";
    case 13: return ": permission denied";
    default: return ": execve failed";
    }
}
