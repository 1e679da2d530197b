"""The image side of the format: media types and validation of image documents.

imagetool stores Docker images faithfully, so Docker's v2 schema 2 documents
are validated with their own (small) schema rather than coerced to OCI's.
"""


from specs import SpecError

__all__ = ["validate", "validate_layout", "MEDIA_TYPE_SCHEMAS"]

# OCI image-spec media types (media-types.md).
OCI_DESCRIPTOR = "application/vnd.oci.descriptor.v1+json"
OCI_LAYOUT_HEADER = "application/vnd.oci.layout.header.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_NONDISTRIBUTABLE = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_NONDISTRIBUTABLE_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_NONDISTRIBUTABLE_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"

# Docker Image Manifest V2, Schema 2.
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_PLUGIN_CONFIG = "application/vnd.docker.plugin.v1+json"

MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
CONFIG_TYPES = (OCI_CONFIG, DOCKER_CONFIG)
LAYER_TYPES = (
    OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD,
    OCI_LAYER_NONDISTRIBUTABLE, OCI_LAYER_NONDISTRIBUTABLE_GZIP, OCI_LAYER_NONDISTRIBUTABLE_ZSTD,
    DOCKER_LAYER_GZIP, DOCKER_FOREIGN_LAYER_GZIP,
)

# media type -> (schema file, JSON pointer inside it, name used in messages)
MEDIA_TYPE_SCHEMAS = {
    OCI_MANIFEST: ("image-manifest.json", "", "image manifest"),
    OCI_INDEX: ("image-index.json", "", "image index"),
    OCI_CONFIG: ("image-config.json", "", "image config"),
    OCI_DESCRIPTOR: ("content-descriptor.json", "", "descriptor"),
    DOCKER_MANIFEST: ("docker-v2s2.json", "#/definitions/manifest", "Docker manifest"),
    DOCKER_MANIFEST_LIST: ("docker-v2s2.json", "#/definitions/manifestList", "Docker manifest list"),
    DOCKER_CONFIG: ("docker-v2s2.json", "#/definitions/imageConfig", "Docker image config"),
}


def validate(media_type: str, obj, doc: str | None = None) -> None:
    """Raise SpecError (one line, naming the JSON path) if obj is not a valid `media_type` document.

    `doc` names the document in the message (a digest or file name); by
    default the kind of document.
    """
    from specs._validator import validate as _validate

    entry = MEDIA_TYPE_SCHEMAS.get(media_type)
    if entry is None:
        raise SpecError(f"{doc or 'document'}: unsupported media type {media_type!r}")
    name, pointer, kind = entry
    _validate(doc or kind, name, obj, pointer)


def validate_layout(obj, doc: str = "oci-layout") -> None:
    """Validate the contents of an image layout's oci-layout file."""
    from specs._validator import validate as _validate

    _validate(doc, "oci-layout.json", obj)
