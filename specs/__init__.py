"""The bundle and image format shared by `runtime` and `imagetool`.

This package is imported on pyrun's hot path, so it stays import-cheap: no json,
no re, no jsonschema here. The submodules import what they need lazily.
"""

SPEC_VERSION = "1.2.0"  # the runtime-spec version pyrun implements (features, state, hooks)


class SpecError(Exception):
    """A document does not follow the OCI specs; str() is one human line."""

    def __init__(self, message: str) -> None:
        # Callers print str(e) as the single stderr line; a stray newline
        # from a quoted value must not split it.
        super().__init__(" ".join(str(message).split()))
