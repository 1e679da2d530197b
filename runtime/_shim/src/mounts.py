"""mount(2), the new mount API, pivot_root and openat2 (RESOLVE_IN_ROOT)."""

INCLUDES = """
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <sys/mount.h>
#include <sys/vfs.h>
#include <sys/syscall.h>
#include <linux/openat2.h>
"""

TYPES = """
struct mount_attr {
    uint64_t attr_set;
    uint64_t attr_clr;
    uint64_t propagation;
    uint64_t userns_fd;
};
"""

FUNCTIONS = """
int mount(const char *source, const char *target, const char *fstype,
          unsigned long flags, const void *data);
int umount2(const char *target, int flags);
int pyrun_pivot_root(const char *new_root, const char *put_old);
int pyrun_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode,
                  uint64_t resolve);
int pyrun_open_tree(int dirfd, const char *path, unsigned int flags);
int pyrun_move_mount(int from_dirfd, const char *from_path, int to_dirfd,
                     const char *to_path, unsigned int flags);
int pyrun_mount_setattr(int dirfd, const char *path, unsigned int flags,
                        struct mount_attr *attr);
long pyrun_fstatfs_type(int fd);
int pyrun_fresh_fs(const char *fstype, unsigned int attr_flags);
int pyrun_rename_noreplace(const char *from, const char *to);
"""

CUSTOMIZATIONS = r"""
int pyrun_pivot_root(const char *new_root, const char *put_old)
{
    return (int)syscall(SYS_pivot_root, new_root, put_old);
}

int pyrun_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode,
                  uint64_t resolve)
{
    struct open_how how;
    memset(&how, 0, sizeof(how));
    how.flags = flags;
    how.mode = mode;
    how.resolve = resolve;
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}

int pyrun_open_tree(int dirfd, const char *path, unsigned int flags)
{
    return (int)syscall(SYS_open_tree, dirfd, path, flags);
}

int pyrun_move_mount(int from_dirfd, const char *from_path, int to_dirfd,
                     const char *to_path, unsigned int flags)
{
    return (int)syscall(SYS_move_mount, from_dirfd, from_path, to_dirfd, to_path, flags);
}

int pyrun_mount_setattr(int dirfd, const char *path, unsigned int flags,
                        struct mount_attr *attr)
{
    return (int)syscall(SYS_mount_setattr, dirfd, path, flags, attr, sizeof(*attr));
}

/* The filesystem type (f_type magic) under an fd: procfs, sysfs, tmpfs, ... */
long pyrun_fstatfs_type(int fd)
{
    struct statfs st;
    if (fstatfs(fd, &st) < 0)
        return -1;
    return (long)st.f_type;
}

/* A new instance of a filesystem (fsopen, create, fsmount) as a detached mount:
 * an fd of its root that no path leads to. Returns the fd, or -1 with errno set. */
int pyrun_fresh_fs(const char *fstype, unsigned int attr_flags)
{
    int fs, mnt, saved;
    fs = (int)syscall(SYS_fsopen, fstype, FSOPEN_CLOEXEC);
    if (fs < 0)
        return -1;
    if (syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) {
        saved = errno;
        close(fs);
        errno = saved;
        return -1;
    }
    mnt = (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, attr_flags);
    saved = errno;
    close(fs);
    errno = saved;
    return mnt;
}

/* rename(2) that fails with EEXIST rather than replace what is at `to` (an empty
 * directory included, which plain rename would replace). */
int pyrun_rename_noreplace(const char *from, const char *to)
{
    return (int)syscall(SYS_renameat2, AT_FDCWD, from, AT_FDCWD, to, 1 /* RENAME_NOREPLACE */);
}
"""
