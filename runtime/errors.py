"""One error convention: every failure a user can cause is a PyrunError whose
str() is one line naming the thing and the reason; the CLI prints it and exits 1."""


class PyrunError(Exception):
    pass


class ContainerNotFound(PyrunError):
    pass


class StateError(PyrunError):
    """The command is not allowed in the container's current status."""


class ConfigError(PyrunError):
    pass


class UsageError(PyrunError):
    """A command line runc would not take: a flag, an argument count."""


def describe_oserror(e: OSError, what: str) -> str:
    """`what: strerror (path)` from an OSError, for the child's one-line reports."""
    detail = e.filename if e.filename is not None else ""
    msg = e.strerror or str(e)
    return f"{what}: {msg}" + (f" ({detail})" if detail != "" else "")
