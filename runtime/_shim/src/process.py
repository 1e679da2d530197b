"""clone3 with the interpreter kept fork-safe; credentials, limits, scheduling, keyrings."""

INCLUDES = """
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sched.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/sched.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/personality.h>
"""

TYPES = ""

FUNCTIONS = """
long pyrun_clone3(uint64_t flags, int cgroup_fd, int *pidfd_out);
int pyrun_capset(uint64_t effective, uint64_t permitted, uint64_t inheritable);
int prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4,
          unsigned long arg5);
int pyrun_sched_setattr(uint32_t policy, uint64_t flags, int32_t nice, uint32_t priority,
                        uint64_t runtime, uint64_t deadline, uint64_t period);
int pyrun_ioprio_set(int ioclass, int level);
int pyrun_ioprio_get(int pid);
long pyrun_join_session_keyring(const char *name);
int pyrun_setrlimit(int resource, uint64_t soft, uint64_t hard);
int personality(unsigned long persona);
int pyrun_set_mempolicy(int mode, const unsigned long *nodemask, unsigned long maxnode);
"""

CUSTOMIZATIONS = r"""
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

struct pyrun_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls,
             set_tid, set_tid_size, cgroup;
};

/* clone3() with the interpreter's fork hooks around it, exactly as os.fork()
 * does (PyOS_BeforeFork / AfterFork_Child / AfterFork_Parent), so the child is a
 * sound Python process that starts life already inside its new namespaces.
 * CFFI released the GIL before calling us; the hooks need it held. */
long pyrun_clone3(uint64_t flags, int cgroup_fd, int *pidfd_out)
{
    struct pyrun_clone_args args;
    long pid;
    int saved;

    memset(&args, 0, sizeof(args));
    args.flags = flags;
    args.exit_signal = SIGCHLD;
    if (pidfd_out != NULL) {
        args.flags |= CLONE_PIDFD;
        args.pidfd = (uint64_t)(uintptr_t)pidfd_out;
    }
    if (cgroup_fd >= 0) {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = (uint64_t)cgroup_fd;
    }
    PyGILState_STATE gil = PyGILState_Ensure();
    PyOS_BeforeFork();
    pid = syscall(SYS_clone3, &args, sizeof(args));
    saved = errno;
    if (pid == 0)
        PyOS_AfterFork_Child();
    else
        PyOS_AfterFork_Parent();
    PyGILState_Release(gil);
    errno = saved;
    return pid;
}

/* capset(2) with the 64-bit (version 3) layout: all three sets in one call. */
int pyrun_capset(uint64_t effective, uint64_t permitted, uint64_t inheritable)
{
    struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2];
    data[0].effective = (uint32_t)effective;
    data[1].effective = (uint32_t)(effective >> 32);
    data[0].permitted = (uint32_t)permitted;
    data[1].permitted = (uint32_t)(permitted >> 32);
    data[0].inheritable = (uint32_t)inheritable;
    data[1].inheritable = (uint32_t)(inheritable >> 32);
    return (int)syscall(SYS_capset, &hdr, data);
}

/* sched_setattr(2): the only call that takes SCHED_DEADLINE's three times. */
struct pyrun_sched_attr {
    uint32_t size, sched_policy;
    uint64_t sched_flags;
    int32_t sched_nice;
    uint32_t sched_priority;
    uint64_t sched_runtime, sched_deadline, sched_period;
    uint32_t sched_util_min, sched_util_max;
};

int pyrun_sched_setattr(uint32_t policy, uint64_t flags, int32_t nice, uint32_t priority,
                        uint64_t runtime, uint64_t deadline, uint64_t period)
{
    struct pyrun_sched_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.size = sizeof(attr);
    attr.sched_policy = policy;
    attr.sched_flags = flags;
    attr.sched_nice = nice;
    attr.sched_priority = priority;
    attr.sched_runtime = runtime;
    attr.sched_deadline = deadline;
    attr.sched_period = period;
    return (int)syscall(SYS_sched_setattr, 0, &attr, 0);
}

/* ioprio_set(2)/ioprio_get(2) for this process: class in the top 3 of 16 bits. */
int pyrun_ioprio_set(int ioclass, int level)
{
    return (int)syscall(SYS_ioprio_set, 1 /* IOPRIO_WHO_PROCESS */, 0, (ioclass << 13) | level);
}

int pyrun_ioprio_get(int pid)
{
    return (int)syscall(SYS_ioprio_get, 1, pid);
}

/* keyctl(KEYCTL_JOIN_SESSION_KEYRING): a fresh session keyring for the container. */
long pyrun_join_session_keyring(const char *name)
{
    return syscall(SYS_keyctl, 1 /* KEYCTL_JOIN_SESSION_KEYRING */, name, 0, 0, 0);
}

/* prlimit64 on ourselves: OCI limits are u64, RLIM_INFINITY included. */
int pyrun_setrlimit(int resource, uint64_t soft, uint64_t hard)
{
    struct rlimit64 lim = { soft, hard };
    return (int)syscall(SYS_prlimit64, 0, resource, &lim, NULL);
}

/* set_mempolicy(2): glibc has no wrapper (libnuma has). */
int pyrun_set_mempolicy(int mode, const unsigned long *nodemask, unsigned long maxnode)
{
    return (int)syscall(SYS_set_mempolicy, mode, nodemask, maxnode);
}
"""
