"""Image documents: our fast validator, jsonschema with our schema, and jsonschema
with the official image-spec schema must agree on every corpus entry.

The official schemas come from Debian's golang-github-opencontainers-image-spec-dev,
which holds image-spec 1.1.0-rc2 (test_official_version pins it). Entries where
that schema departs from the spec's prose say so (`official=`, `why=`); ours
follows the prose of image-spec 1.1. Docker v2s2 documents have no official
JSON schema; they are checked two ways.
"""

import copy

import pytest

from specs import SpecError
from specs import image

from .schemas import OFFICIAL_IMAGE, official, ours, version_of

D1 = "sha256:" + "a" * 64
D2 = "sha256:" + "b" * 64
D3 = "sha256:" + "c" * 64

MANIFEST = {
    "schemaVersion": 2,
    "mediaType": image.OCI_MANIFEST,
    "config": {"mediaType": image.OCI_CONFIG, "digest": D1, "size": 1469},
    "layers": [
        {"mediaType": image.OCI_LAYER_GZIP, "digest": D2, "size": 3370706},
        {"mediaType": image.OCI_LAYER_ZSTD, "digest": D3, "size": 42,
         "urls": ["https://example.com/layer"], "annotations": {"org.example": "x"}},
    ],
    "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
}
INDEX = {
    "schemaVersion": 2,
    "mediaType": image.OCI_INDEX,
    "manifests": [
        {"mediaType": image.OCI_MANIFEST, "digest": D1, "size": 7143,
         "platform": {"architecture": "amd64", "os": "linux"}},
        {"mediaType": image.OCI_MANIFEST, "digest": D2, "size": 7682,
         "platform": {"architecture": "arm64", "os": "linux", "variant": "v8",
                      "os.features": ["x"]},
         "annotations": {"org.opencontainers.image.ref.name": "latest"}},
    ],
}
CONFIG = {
    "created": "2024-01-01T00:00:00Z",
    "architecture": "amd64",
    "os": "linux",
    "config": {"User": "1000", "ExposedPorts": {"80/tcp": {}}, "Env": ["PATH=/bin"],
               "Entrypoint": ["/bin/sh"], "Cmd": None, "Volumes": {"/data": {}},
               "WorkingDir": "/", "Labels": {"a": "b"}, "StopSignal": "SIGTERM",
               "ArgsEscaped": True},
    "rootfs": {"type": "layers", "diff_ids": [D1, D2]},
    "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "ADD rootfs /",
                 "empty_layer": False}],
}
DESCRIPTOR = {"mediaType": image.OCI_MANIFEST, "digest": D1, "size": 7143}
LAYOUT = {"imageLayoutVersion": "1.0.0"}

BASES = {
    "manifest": (MANIFEST, image.OCI_MANIFEST, "image-manifest-schema.json"),
    "index": (INDEX, image.OCI_INDEX, "image-index-schema.json"),
    "config": (CONFIG, image.OCI_CONFIG, "config-schema.json"),
    "descriptor": (DESCRIPTOR, image.OCI_DESCRIPTOR, "content-descriptor.json"),
    "layout": (LAYOUT, None, "image-layout-schema.json"),
}
OUR_FILES = {"manifest": "image-manifest.json", "index": "image-index.json",
             "config": "image-config.json", "descriptor": "content-descriptor.json",
             "layout": "oci-layout.json"}

CASES = []


def case(kind, name, change, valid, official=None, why=None):
    doc = copy.deepcopy(BASES[kind][0])
    change(doc)
    assert (official is None) == (why is None), name
    CASES.append(pytest.param(kind, doc, valid, valid if official is None else official,
                              id=f"{kind}-{name}"))


def put(path, value):
    def change(doc):
        node = doc
        for p in path[:-1]:
            node = node[p]
        node[path[-1]] = value
    return change


def drop(*path):
    def change(doc):
        node = doc
        for p in path[:-1]:
            node = node[p]
        del node[path[-1]]
    return change


same = lambda d: None  # noqa: E731

# manifest
case("manifest", "typical", same, True)
case("manifest", "no-mediaType", drop("mediaType"), True)
case("manifest", "sha512-and-unregistered-digests", lambda d: (
    d["layers"][0].update(digest="sha512:" + "0" * 128),
    d["layers"][1].update(digest="multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8")), True)
case("manifest", "artifact-subject", lambda d: d.update(
    artifactType="application/vnd.example+type", subject=dict(DESCRIPTOR)), True)
case("manifest", "descriptor-data", put(["config", "data"], "e30="), True)
case("manifest", "schemaVersion-1", put(["schemaVersion"], 1), False)
case("manifest", "schemaVersion-string", put(["schemaVersion"], "2"), False)
case("manifest", "no-config", drop("config"), False)
case("manifest", "no-layers", drop("layers"), False)
case("manifest", "config-without-digest", drop("config", "digest"), False)
case("manifest", "layer-without-size", drop("layers", 0, "size"), False)
case("manifest", "layer-size-string", put(["layers", 0, "size"], "1"), False)
case("manifest", "digest-without-algorithm", put(["layers", 0, "digest"], "a" * 64), False)
case("manifest", "digest-uppercase-algorithm", put(["layers", 0, "digest"], "SHA256:" + "a" * 64), False)
case("manifest", "mediaType-no-subtype", put(["layers", 0, "mediaType"], "text"), False)
case("manifest", "annotation-number", put(["annotations"], {"a": 1}), False)
case("manifest", "urls-string", put(["layers", 1, "urls"], "https://example.com"), False)
case("manifest", "empty-layers", put(["layers"], []), True, official=False,
     why="image-spec 1.1 lets layers be empty (artifacts); the 1.1.0-rc2 schema still has minItems 1")
case("manifest", "sha256-63-hex", put(["layers", 0, "digest"], "sha256:" + "a" * 63), False, official=True,
     why="descriptor.md: sha256 encoded MUST match [a-f0-9]{64}; official checks only the general grammar")
case("manifest", "sha256-uppercase-hex", put(["layers", 0, "digest"], "sha256:" + "A" * 64), False,
     official=True, why="descriptor.md: [A-F] MUST NOT be used in sha256 digests")
case("manifest", "mediaType-two-slashes", put(["layers", 0, "mediaType"], "application/vnd.x/y"), False,
     official=True, why="descriptor.md: mediaType MUST comply with RFC 6838; official's [&-^] is a character "
     "range that lets '/' (and more) through")
case("manifest", "mediaType-of-an-index", put(["mediaType"], image.OCI_INDEX), False, official=True,
     why="manifest.md: when used, mediaType MUST be application/vnd.oci.image.manifest.v1+json")
case("manifest", "data-not-base64", put(["config", "data"], "not base64!"), False, official=True,
     why="descriptor.md: data MUST conform to RFC 4648 base64; the rc2 schema predates the field")

# index
case("index", "typical", same, True)
case("index", "empty-manifests", put(["manifests"], []), True)
case("index", "no-manifests", drop("manifests"), False)
case("index", "manifests-object", put(["manifests"], {}), False)
case("index", "platform-without-os", drop("manifests", 0, "platform", "os"), False)
case("index", "platform-architecture-number", put(["manifests", 0, "platform", "architecture"], 64), False)
case("index", "schemaVersion-3", put(["schemaVersion"], 3), False)
case("index", "entry-without-digest", drop("manifests", 1, "digest"), False)
case("index", "mediaType-of-a-manifest", put(["mediaType"], image.OCI_MANIFEST), False, official=True,
     why="image-index.md: when used, mediaType MUST be application/vnd.oci.image.index.v1+json")

# config
case("config", "typical", same, True)
case("config", "minimal", lambda d: [d.pop(k) for k in ("created", "config", "history")], True)
case("config", "null-entrypoint-labels-volumes", lambda d: d["config"].update(
    Entrypoint=None, Labels=None, Volumes=None), True)
case("config", "no-rootfs", drop("rootfs"), False)
case("config", "no-os", drop("os"), False)
case("config", "architecture-number", put(["architecture"], 64), False)
case("config", "rootfs-type-layer", put(["rootfs", "type"], "layer"), False)
case("config", "rootfs-without-diff_ids", drop("rootfs", "diff_ids"), False)
case("config", "env-string", put(["config", "Env"], "PATH=/bin"), False)
case("config", "cmd-string", put(["config", "Cmd"], "sh"), False)
case("config", "history-object", put(["history"], {}), False)
case("config", "empty_layer-string", put(["history", 0, "empty_layer"], "false"), False)
case("config", "labels-number-value", put(["config", "Labels"], {"a": 1}), False)
case("config", "diff_id-not-a-digest", put(["rootfs", "diff_ids", 0], "layer0"), False, official=True,
     why="config.md: diff_ids are layer content hashes, i.e. digests; official checks only the type")

# descriptor and layout
case("descriptor", "typical", same, True)
case("descriptor", "negative-size", put(["size"], -1), True)
case("descriptor", "no-mediaType", drop("mediaType"), False)
case("descriptor", "size-float", put(["size"], 1.5), False)
case("layout", "typical", same, True)
case("layout", "version-1.0.1", put(["imageLayoutVersion"], "1.0.1"), False)
case("layout", "missing-version", drop("imageLayoutVersion"), False)


def fast_valid(kind, doc):
    try:
        if kind == "layout":
            image.validate_layout(doc)
        else:
            image.validate(BASES[kind][1], doc)
    except SpecError:
        return False
    return True


@pytest.mark.parametrize("kind, doc, valid, official_valid", CASES)
def test_image_corpus(kind, doc, valid, official_valid):
    assert ours(OUR_FILES[kind]).is_valid(doc) is valid
    assert fast_valid(kind, doc) is valid
    assert official(OFFICIAL_IMAGE, BASES[kind][2]).is_valid(doc) is official_valid


DOCKER_MANIFEST = {
    "schemaVersion": 2,
    "mediaType": image.DOCKER_MANIFEST,
    "config": {"mediaType": image.DOCKER_CONFIG, "size": 7023, "digest": D1},
    "layers": [{"mediaType": image.DOCKER_LAYER_GZIP, "size": 32654, "digest": D2},
               {"mediaType": image.DOCKER_FOREIGN_LAYER_GZIP, "size": 1, "digest": D3,
                "urls": ["https://mcr.microsoft.com/x"]}],
}
DOCKER_LIST = {
    "schemaVersion": 2,
    "mediaType": image.DOCKER_MANIFEST_LIST,
    "manifests": [{"mediaType": image.DOCKER_MANIFEST, "size": 7143, "digest": D1,
                   "platform": {"architecture": "ppc64le", "os": "linux"}},
                  {"mediaType": image.DOCKER_MANIFEST, "size": 7682, "digest": D2,
                   "platform": {"architecture": "amd64", "os": "linux", "features": ["sse4"]}}],
}
DOCKER_CONFIG = {
    "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
    "config": {"Env": None, "Cmd": ["sh"], "Entrypoint": None, "Labels": None, "OnBuild": None,
               "Volumes": None, "WorkingDir": "", "User": "", "ExposedPorts": None},
    "container_config": {"Cmd": ["/bin/sh", "-c", "#(nop) ADD file"]},
    "rootfs": {"type": "layers", "diff_ids": [D3]},
    "history": [{"created_by": "/bin/sh"}],
}

DOCKER_CASES = []


def docker_case(name, base, media_type, pointer, change, valid):
    doc = copy.deepcopy(base)
    change(doc)
    DOCKER_CASES.append(pytest.param(media_type, pointer, doc, valid, id=name))


docker_case("manifest", DOCKER_MANIFEST, image.DOCKER_MANIFEST, "manifest", same, True)
docker_case("manifest-no-mediaType", DOCKER_MANIFEST, image.DOCKER_MANIFEST, "manifest", drop("mediaType"), False)
docker_case("manifest-oci-mediaType", DOCKER_MANIFEST, image.DOCKER_MANIFEST, "manifest",
            put(["mediaType"], image.OCI_MANIFEST), False)
docker_case("manifest-bad-digest", DOCKER_MANIFEST, image.DOCKER_MANIFEST, "manifest",
            put(["layers", 0, "digest"], "sha256:xyz"), False)
docker_case("list", DOCKER_LIST, image.DOCKER_MANIFEST_LIST, "manifestList", same, True)
docker_case("list-entry-without-platform", DOCKER_LIST, image.DOCKER_MANIFEST_LIST, "manifestList",
            drop("manifests", 0, "platform"), False)
docker_case("list-schemaVersion-1", DOCKER_LIST, image.DOCKER_MANIFEST_LIST, "manifestList",
            put(["schemaVersion"], 1), False)
docker_case("config-nulls", DOCKER_CONFIG, image.DOCKER_CONFIG, "imageConfig", same, True)
docker_case("config-env-string", DOCKER_CONFIG, image.DOCKER_CONFIG, "imageConfig",
            put(["config", "Env"], "A=1"), False)
docker_case("config-no-rootfs", DOCKER_CONFIG, image.DOCKER_CONFIG, "imageConfig", drop("rootfs"), False)


@pytest.mark.parametrize("media_type, pointer, doc, valid", DOCKER_CASES)
def test_docker_corpus(media_type, pointer, doc, valid):
    assert ours("docker-v2s2.json", "#/definitions/" + pointer).is_valid(doc) is valid
    try:
        image.validate(media_type, doc)
        fast = True
    except SpecError:
        fast = False
    assert fast is valid


def test_image_messages_are_one_line_and_name_the_path():
    doc = copy.deepcopy(MANIFEST)
    doc["layers"][1]["digest"] = "sha256:" + "A" * 64
    with pytest.raises(SpecError) as ei:
        image.validate(image.OCI_MANIFEST, doc, doc="sha256:1234")
    msg = str(ei.value)
    assert msg.startswith("sha256:1234: layers[1].digest: expected a digest") and "\n" not in msg
    with pytest.raises(SpecError) as ei:
        image.validate("application/x-unknown", doc)
    assert str(ei.value) == "document: unsupported media type 'application/x-unknown'"
    with pytest.raises(SpecError) as ei:
        image.validate(image.OCI_INDEX, {"schemaVersion": 2, "manifests": [
            {"mediaType": image.OCI_MANIFEST, "digest": D1, "size": 1, "platform": {"os": "linux"}}]})
    assert str(ei.value) == 'image index: manifests[0].platform: missing required property "architecture"'


def test_official_version():
    official(OFFICIAL_IMAGE, "image-manifest-schema.json")
    assert version_of("image-spec") == "1.1.0-rc2"
