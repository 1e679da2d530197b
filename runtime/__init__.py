"""pyrun: an OCI runtime. The library under the `pyrun` command:

    from runtime import Container
    c = Container.create("id", "/path/to/bundle")
    c.start()
"""

VERSION = "0.1.0"  # pyrun's own; the runtime-spec's is specs.SPEC_VERSION


def __getattr__(name):
    # Lazy, so that `import runtime` stays free for the CLI's hot path.
    if name == "Container":
        from .container import Container
        return Container
    if name in ("PyrunError", "ContainerNotFound", "StateError", "ConfigError"):
        from . import errors
        return getattr(errors, name)
    raise AttributeError(name)


__all__ = ["Container", "PyrunError", "ContainerNotFound", "StateError", "ConfigError"]
