"""libseccomp: OCI seccomp profiles compiled to BPF, and the kernel's seccomp(2) to load them.

libseccomp builds and exports the program; loading is ours (pyrun_seccomp_load) because
libseccomp 2.5.4 knows no SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV and because an exported
program can be cached and loaded without rebuilding it, as crun does.
"""

LIBRARIES = ["seccomp"]

INCLUDES = """
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <seccomp.h>
"""

TYPES = """
struct scmp_version { unsigned int major; unsigned int minor; unsigned int micro; };
typedef void *scmp_filter_ctx;
typedef uint64_t scmp_datum_t;
enum scmp_compare { _SCMP_CMP_MIN, SCMP_CMP_NE, SCMP_CMP_LT, SCMP_CMP_LE, SCMP_CMP_EQ,
                    SCMP_CMP_GE, SCMP_CMP_GT, SCMP_CMP_MASKED_EQ, ... };
enum scmp_filter_attr { SCMP_FLTATR_ACT_DEFAULT, SCMP_FLTATR_ACT_BADARCH, SCMP_FLTATR_CTL_NNP,
                        SCMP_FLTATR_CTL_TSYNC, SCMP_FLTATR_API_TSKIP, SCMP_FLTATR_CTL_LOG,
                        SCMP_FLTATR_CTL_SSB, SCMP_FLTATR_CTL_OPTIMIZE, SCMP_FLTATR_API_SYSRAWRC,
                        ... };
struct scmp_arg_cmp { unsigned int arg; enum scmp_compare op; scmp_datum_t datum_a;
                      scmp_datum_t datum_b; };
struct seccomp_data { int nr; uint32_t arch; uint64_t instruction_pointer; uint64_t args[6]; };
struct seccomp_notif { uint64_t id; uint32_t pid; uint32_t flags; struct seccomp_data data; };
struct seccomp_notif_resp { uint64_t id; int64_t val; int32_t error; uint32_t flags; };

#define __NR_SCMP_ERROR ...
#define SECCOMP_USER_NOTIF_FLAG_CONTINUE ...
"""

FUNCTIONS = """
const struct scmp_version *seccomp_version(void);
unsigned int seccomp_api_get(void);
scmp_filter_ctx seccomp_init(uint32_t def_action);
void seccomp_release(scmp_filter_ctx ctx);
int seccomp_attr_set(scmp_filter_ctx ctx, enum scmp_filter_attr attr, uint32_t value);
uint32_t seccomp_arch_resolve_name(const char *arch_name);
uint32_t seccomp_arch_native(void);
int seccomp_arch_add(scmp_filter_ctx ctx, uint32_t arch_token);
int seccomp_syscall_resolve_name(const char *name);
int seccomp_syscall_resolve_name_arch(uint32_t arch_token, const char *name);
int seccomp_rule_add_array(scmp_filter_ctx ctx, uint32_t action, int syscall,
                           unsigned int arg_cnt, const struct scmp_arg_cmp *arg_array);
int seccomp_export_bpf(const scmp_filter_ctx ctx, int fd);

int seccomp_notify_alloc(struct seccomp_notif **req, struct seccomp_notif_resp **resp);
void seccomp_notify_free(struct seccomp_notif *req, struct seccomp_notif_resp *resp);
int seccomp_notify_receive(int fd, struct seccomp_notif *req);
int seccomp_notify_respond(int fd, struct seccomp_notif_resp *resp);
int seccomp_notify_id_valid(int fd, uint64_t id);

int pyrun_seccomp_load(const void *program, size_t size, unsigned int flags);
int pyrun_seccomp_flag_supported(unsigned int flag);
"""

CUSTOMIZATIONS = r"""
/* Install a classic-BPF program (struct sock_filter[], as seccomp_export_bpf
 * writes it) with seccomp(2). Returns the listener fd when flags ask for
 * SECCOMP_FILTER_FLAG_NEW_LISTENER, else 0; -1 with errno on failure. */
int pyrun_seccomp_load(const void *program, size_t size, unsigned int flags)
{
    struct sock_fprog prog;

    if (size == 0 || size % sizeof(struct sock_filter) != 0
        || size / sizeof(struct sock_filter) > 0xffff) {
        errno = EINVAL;
        return -1;
    }
    prog.len = (unsigned short)(size / sizeof(struct sock_filter));
    prog.filter = (struct sock_filter *)program;
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
}

/* The kernel checks the flags before it reads the program, so a NULL program
 * answers EFAULT for a known flag and EINVAL for an unknown one; nothing is
 * installed either way. Returns 1, 0, or -1 with errno for other failures. */
int pyrun_seccomp_flag_supported(unsigned int flag)
{
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flag, NULL) == 0)
        return 1;
    if (errno == EFAULT)
        return 1;
    if (errno == EINVAL)
        return 0;
    return -1;
}
"""
