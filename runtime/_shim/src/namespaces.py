"""unshare, setns and the UTS names."""

INCLUDES = """
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <sched.h>
#include <unistd.h>
"""

TYPES = ""

FUNCTIONS = """
int unshare(int flags);
int setns(int fd, int nstype);
int sethostname(const char *name, size_t len);
int setdomainname(const char *name, size_t len);
"""

CUSTOMIZATIONS = ""
