/* pyrun-launcher: pyrun's #! interpreter; runs Python from a read-only mount (CVE-2019-5736).
 *
 * The container init, and an `exec` process, are clone3 children of pyrun: the
 * host's Python interpreter until they execve. A process in the container that
 * opens /proc/<pid>/exe of one of them (O_PATH: it needs only ptrace read access)
 * and keeps the fd can reopen it through /proc/self/fd/N for writing once nothing
 * executes that file any more: it writes the host's interpreter. So the
 * interpreter is never exec'd from a writable mount. This launcher clones a
 * detached bind mount of just the interpreter file (open_tree), makes it
 * read-only, nosuid and nodev, and execs the interpreter from it. The mount is in
 * no namespace and its fd is close-on-exec: after execve it is dissolved, and
 * the exe link names a mount nobody can reach to remount (mount_setattr and
 * open_tree refuse a mount outside the caller's namespace). A write open of
 * /proc/<pid>/exe then fails with EROFS, from any process, with any capability.
 *
 * argv (as the kernel builds it from "#!<this> <python> <flags>"):
 *     <this> "<python> <flags>" <script> <args...>
 * The kernel hands everything after the interpreter as one argument, so the
 * interpreter path ends at the first space and the rest is one flag word
 * ("-IS"), as it would be for "#!<python> <flags>". <python> keeps its own path
 * as argv[0]: that is how the interpreter finds its venv (pyvenv.cfg).
 *
 * Where open_tree is refused (no CAP_SYS_ADMIN over our mount namespace: not
 * root, rootless) or missing (kernels before 5.12 lack mount_setattr), the
 * interpreter is exec'd as the #! line alone would have: pyrun keeps working,
 * unsealed. The exec'd interpreter's comm is its file's name ("python3.11");
 * pyrun's script names itself again (see runtime/_bin/pyrun).
 * No libc: a static binary this small costs one tiny exec (~40 us).
 */
#include "nolibc.h"

#define AT_FDCWD -100
#define AT_EMPTY_PATH 0x1000
#define O_CLOEXEC 02000000
#define OPEN_TREE_CLONE 1
#define MOUNT_ATTR_RDONLY 0x1
#define MOUNT_ATTR_NOSUID 0x2
#define MOUNT_ATTR_NODEV 0x4

struct mount_attr {
    unsigned long long attr_set, attr_clr, propagation, userns_fd;
};

static void say(const char *a, const char *b)
{
    sys5(SYS_write, 2, (long)"pyrun-launcher: ", 16, 0, 0);
    sys5(SYS_write, 2, (long)a, (long)len(a), 0, 0);
    sys5(SYS_write, 2, (long)b, (long)len(b), 0, 0);
    sys5(SYS_write, 2, (long)"\n", 1, 0, 0);
}

/* The interpreter on a detached, read-only mount of its own: the tree fd, or -1. */
static long sealed_tree(const char *path)
{
    struct mount_attr attr = {MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, 0, 0, 0};
    long fd = sys5(SYS_open_tree, AT_FDCWD, (long)path, OPEN_TREE_CLONE | O_CLOEXEC, 0, 0);

    if (fd < 0)
        return -1;
    if (sys5(SYS_mount_setattr, fd, (long)"", AT_EMPTY_PATH, (long)&attr, sizeof(attr)) < 0) {
        sys5(SYS_close, fd, 0, 0, 0, 0);  /* a writable clone protects nothing */
        return -1;
    }
    return fd;
}

__attribute__((used)) void pyrun_launcher_main(long *sp)
{
    long argc = sp[0];
    char **argv = (char **)(sp + 1);
    char **envp = argv + argc + 1;
    char **args, *python, *flags = 0, *p;
    long fd, e;

    /* Without "<python>" and a script (a bare "#!<this>" line) argv[1] would be the
     * script itself, which names this launcher again: refuse rather than loop. */
    if (argc < 3 || !argv[1][0]) {
        say("usage: #!pyrun-launcher <python> [flags] (a #! interpreter for pyrun's script)", "");
        sys5(SYS_exit_group, 126, 0, 0, 0, 0);
    }
    python = argv[1];
    for (p = python; *p; p++)
        if (*p == ' ') {
            *p = 0;
            flags = p + 1;
            break;
        }
    /* argv[0..1] become <python> [flags]: the kernel's own #! layout, one slot shorter without flags. */
    if (flags && *flags) {
        argv[0] = python;
        argv[1] = flags;
        args = argv;
    } else {
        args = argv + 1;
    }
    fd = sealed_tree(python);
    if (fd >= 0) {
        sys5(SYS_execveat, fd, (long)"", (long)args, (long)envp, AT_EMPTY_PATH);
        sys5(SYS_close, fd, 0, 0, 0, 0);  /* execve below reports the real error, if any */
    }
    e = sys5(SYS_execve, (long)python, (long)args, (long)envp, 0, 0);
    say(python, errname(e));
    sys5(SYS_exit_group, e == -2 ? 127 : 126, 0, 0, 0, 0);
}

ENTRY(pyrun_launcher_main);
