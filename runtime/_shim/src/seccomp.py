"""libseccomp: OCI seccomp profiles compiled and loaded (filled in by the seccomp work)."""

LIBRARIES = ["seccomp"]

INCLUDES = """
#include <seccomp.h>
"""

TYPES = """
struct scmp_version { unsigned int major; unsigned int minor; unsigned int micro; };
"""

FUNCTIONS = """
const struct scmp_version *seccomp_version(void);
"""

CUSTOMIZATIONS = ""
