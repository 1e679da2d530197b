"""bpf(2) for cgroup v2 device control: load a BPF_PROG_TYPE_CGROUP_DEVICE program,
attach it to a cgroup, list and detach what is attached there.

The program itself is generated in Python (runtime/cgroups/devices.py) as raw
struct bpf_insn[]; only the syscall and union bpf_attr live here.
"""

INCLUDES = """
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/bpf.h>
"""

TYPES = ""

FUNCTIONS = """
int pyrun_bpf_prog_load_cgroup_device(const void *insns, size_t size, char *log, unsigned int log_size);
int pyrun_bpf_prog_attach(int target_fd, int prog_fd, unsigned int attach_type, unsigned int flags);
int pyrun_bpf_prog_detach(int target_fd, int prog_fd, unsigned int attach_type);
int pyrun_bpf_prog_query(int target_fd, unsigned int attach_type, uint32_t *ids, unsigned int *count);
int pyrun_bpf_prog_get_fd_by_id(uint32_t id);
"""

CUSTOMIZATIONS = r"""
static long pyrun_bpf(int cmd, union bpf_attr *attr)
{
    return syscall(SYS_bpf, cmd, attr, sizeof(*attr));
}

/* Returns the program's fd; on failure -1 with errno, and the verifier's log in
 * `log` (NUL-terminated) when log_size is not 0. */
int pyrun_bpf_prog_load_cgroup_device(const void *insns, size_t size, char *log, unsigned int log_size)
{
    union bpf_attr attr;
    static const char license[] = "Apache";

    if (size == 0 || size % sizeof(struct bpf_insn) != 0) {
        errno = EINVAL;
        return -1;
    }
    memset(&attr, 0, sizeof(attr));
    attr.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
    attr.insns = (uintptr_t)insns;
    attr.insn_cnt = (uint32_t)(size / sizeof(struct bpf_insn));
    attr.license = (uintptr_t)license;
    if (log != NULL && log_size > 0) {
        log[0] = 0;
        attr.log_buf = (uintptr_t)log;
        attr.log_size = log_size;
        attr.log_level = 1;
    }
    return (int)pyrun_bpf(BPF_PROG_LOAD, &attr);
}

int pyrun_bpf_prog_attach(int target_fd, int prog_fd, unsigned int attach_type, unsigned int flags)
{
    union bpf_attr attr;

    memset(&attr, 0, sizeof(attr));
    attr.target_fd = (uint32_t)target_fd;
    attr.attach_bpf_fd = (uint32_t)prog_fd;
    attr.attach_type = attach_type;
    attr.attach_flags = flags;
    return (int)pyrun_bpf(BPF_PROG_ATTACH, &attr);
}

int pyrun_bpf_prog_detach(int target_fd, int prog_fd, unsigned int attach_type)
{
    union bpf_attr attr;

    memset(&attr, 0, sizeof(attr));
    attr.target_fd = (uint32_t)target_fd;
    attr.attach_bpf_fd = (uint32_t)prog_fd;
    attr.attach_type = attach_type;
    return (int)pyrun_bpf(BPF_PROG_DETACH, &attr);
}

/* The ids of the programs attached directly to the cgroup: *count is the room in
 * `ids` on entry and the number attached on return (which may exceed the room). */
int pyrun_bpf_prog_query(int target_fd, unsigned int attach_type, uint32_t *ids, unsigned int *count)
{
    union bpf_attr attr;
    int ret;

    memset(&attr, 0, sizeof(attr));
    attr.query.target_fd = (uint32_t)target_fd;
    attr.query.attach_type = attach_type;
    attr.query.prog_ids = (uintptr_t)ids;
    attr.query.prog_cnt = *count;
    ret = (int)pyrun_bpf(BPF_PROG_QUERY, &attr);
    *count = attr.query.prog_cnt;
    return ret;
}

int pyrun_bpf_prog_get_fd_by_id(uint32_t id)
{
    union bpf_attr attr;

    memset(&attr, 0, sizeof(attr));
    attr.prog_id = id;
    return (int)pyrun_bpf(BPF_PROG_GET_FD_BY_ID, &attr);
}
"""
