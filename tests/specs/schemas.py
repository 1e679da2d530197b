"""jsonschema validators over our schemas and the official OCI ones (tests only).

The official schemas reference each other by file name, and the image-spec
ones also set `id` URLs under https://opencontainers.org/schema/; both are
resolved here to the file of the same base name in the schema directory,
which is what the Go loaders of both specs do.
"""

import json
import os
from functools import lru_cache

import pytest

OURS = os.path.join(os.path.dirname(__file__), "..", "..", "specs", "schema")
OFFICIAL_ROOT = "/usr/share/gocode/src/github.com/opencontainers"
OFFICIAL_RUNTIME = os.path.join(OFFICIAL_ROOT, "runtime-spec", "schema")
OFFICIAL_IMAGE = os.path.join(OFFICIAL_ROOT, "image-spec", "schema")


def _registry(directory):
    from referencing import Registry
    from referencing.jsonschema import DRAFT4

    def retrieve(uri):
        name = uri.rstrip("/").rsplit("/", 1)[-1].split("#", 1)[0]
        path = os.path.join(directory, name)
        if not os.path.exists(path) and not name.endswith(".json"):
            path += ".json"
        with open(path) as f:
            return DRAFT4.create_resource(json.load(f))

    return Registry(retrieve=retrieve)


@lru_cache(maxsize=None)
def jsonschema_validator(directory, name, pointer=""):
    """A jsonschema Draft4Validator for schema file `name` (optionally at `pointer`)."""
    import jsonschema

    with open(os.path.join(directory, name)) as f:
        schema = json.load(f)
    if pointer:
        # A wrapper whose $ref names the file, so relative refs keep working.
        schema = {"$ref": name + pointer}
    return jsonschema.Draft4Validator(schema, registry=_registry(directory))


def ours(name, pointer=""):
    return jsonschema_validator(os.path.abspath(OURS), name, pointer)


def official(directory, name):
    if not os.path.isdir(directory):
        pytest.skip(f"{directory} is missing: apt-get install golang-github-opencontainers-specs-dev "
                    "golang-github-opencontainers-image-spec-dev")
    return jsonschema_validator(directory, name)


def version_of(spec):
    """The spec version the Debian package holds, from its specs-go/version.go."""
    path = os.path.join(OFFICIAL_ROOT, spec, "specs-go", "version.go")
    with open(path) as f:
        text = f.read()
    parts = {}
    for key in ("VersionMajor", "VersionMinor", "VersionPatch", "VersionDev"):
        line = next(ln for ln in text.splitlines() if ln.strip().startswith(key))
        parts[key] = line.split("=", 1)[1].strip().strip('"')
    return "{VersionMajor}.{VersionMinor}.{VersionPatch}{VersionDev}".format(**parts)
