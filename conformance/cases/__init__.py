"""Every case module; importing this package registers the cases, in this order."""
from conformance.cases import lifecycle  # noqa: F401
from conformance.cases import hooks  # noqa: F401
from conformance.cases import filesystem  # noqa: F401
from conformance.cases import process  # noqa: F401
from conformance.cases import namespaces  # noqa: F401
from conformance.cases import seccomp  # noqa: F401
from conformance.cases import cgroups  # noqa: F401
from conformance.cases import config  # noqa: F401
