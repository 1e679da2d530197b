"""Every case module; importing this package registers the cases, in this order."""
from conformance.cases import lifecycle  # noqa: F401
from conformance.cases import hooks  # noqa: F401
