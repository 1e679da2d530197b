"""OCI artifacts and referrers against a real docker-registry (2.8: no referrers API, so
the distribution spec's fallback tag), with oras-py as the other implementation
(issue 19)."""
from __future__ import annotations

import json
import os

import pytest

from imagetool.artifacts import ArtifactError, fallback_tag, pull_artifact, push_artifact, referrers
from imagetool.registry import RegistryError, client_for
from tests.support import images

from .clitools import assert_one_line_error, run_cli

SBOM = "application/spdx+json"
SIG = "application/vnd.example.signature"


@pytest.fixture
def subject(registry, request):
    """A fresh image in its own repository: (repository reference, image)."""
    repo = f"{registry.address}/art/{request.node.name.replace('_', '-')[:40].lower()}"
    image = images.build_image([images.tar_layer([images.Entry("f", data=repo.encode())])])
    images.push(registry.address, repo.split("/", 1)[1], "latest", image)
    return repo, image


def _file(tmp_path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_attach_and_list_referrers(subject, tmp_path):
    repo, image = subject
    sbom = _file(tmp_path, "sbom.json", b'{"spdxVersion": "SPDX-2.3"}')
    sig = _file(tmp_path, "sig.bin", os.urandom(64))
    p = run_cli("artifact", "push", "--artifact-type", SBOM, "--subject", "latest", "-a", "made=test",
                f"{repo}:sbom", f"{sbom}:{SBOM}")
    assert p.returncode == 0, p.stderr
    sbom_digest = p.stdout.strip()
    sig_digest = push_artifact(repo, [(sig, None)], artifact_type=SIG, subject=image.manifest.digest)
    listed = json.loads(run_cli("referrers", f"{repo}:latest").stdout)
    assert [(d["digest"], d["artifactType"]) for d in listed] == [(sbom_digest, SBOM), (sig_digest, SIG)]
    assert listed[0]["annotations"] == {"made": "test"}
    assert [d["digest"] for d in referrers(f"{repo}@{image.manifest.digest}", artifact_type=SIG)] == [sig_digest]
    # the image's tag stayed the image's (an untagged artifact goes by digest alone)
    host, path = repo.split("/", 1)
    client = client_for(host)
    assert client.get_manifest(path, "latest", "x").digest == image.manifest.digest
    # the fallback the spec describes, for registries without the referrers API
    assert client.get_referrers(path, image.manifest.digest, "x") is None
    index = client.get_manifest(path, fallback_tag(image.manifest.digest), "x")
    assert index.is_index and len(index.doc["manifests"]) == 2
    # and the artifact itself
    art = json.loads(run_cli("inspect", "--raw", f"docker://{repo}:sbom").stdout)
    assert art["artifactType"] == SBOM and art["subject"]["digest"] == image.manifest.digest


def test_pull_artifact_files(subject, tmp_path):
    repo, _ = subject
    a = _file(tmp_path, "a.txt", b"first\n")
    b = _file(tmp_path, "b.bin", os.urandom(100_000))
    push_artifact(f"{repo}:files", [(a, "text/plain"), (b, None)], artifact_type="application/vnd.example.files")
    out = tmp_path / "out"
    p = run_cli("artifact", "pull", f"{repo}:files", str(out))
    assert p.returncode == 0, p.stderr
    assert sorted(os.listdir(out)) == ["a.txt", "b.bin"]
    assert (out / "b.bin").read_bytes() == open(b, "rb").read()
    p = run_cli("artifact", "pull", f"{repo}:files", str(out))
    assert_one_line_error(p, "a.txt", "exists (not replaced)")
    assert (out / "a.txt").read_bytes() == b"first\n"


def _hostile_artifact(registry, repo: str, titles: list[str], data: bytes = b"x") -> str:
    """An artifact pushed by hand, with layer titles of our choosing."""
    blob = images.Blob("application/octet-stream", data)
    config = images.Blob("application/vnd.oci.empty.v1+json", b"{}")
    doc = {"schemaVersion": 2, "mediaType": images.OCI_MANIFEST, "artifactType": "application/x-test",
           "config": config.descriptor(),
           "layers": [blob.descriptor(annotations={"org.opencontainers.image.title": t}) for t in titles]}
    manifest = images.Blob(images.OCI_MANIFEST, json.dumps(doc).encode())
    images.push(registry.address, repo, "hostile", images.Image(manifest, config, [blob]))
    return f"{registry.address}/{repo}:hostile"


@pytest.mark.parametrize("titles,why", [
    (["../escape"], "not a file name"),
    (["a/b"], "not a file name"),
    ([".."], "not a file name"),
    (["/etc/passwd"], "not a file name"),
    (["n" * 256], "NAME_MAX"),
    (["same", "same"], "two layers named 'same'"),
])
def test_pull_artifact_refuses_hostile_titles(registry, tmp_path, titles, why):
    ref = _hostile_artifact(registry, "art/hostile", titles)
    out = tmp_path / "out"
    p = run_cli("artifact", "pull", ref, str(out))
    assert_one_line_error(p, why)
    assert not out.exists()
    assert sorted(os.listdir(tmp_path)) == []


def test_pull_artifact_checks_digests_and_leaves_nothing(registry, tmp_path):
    ref = _hostile_artifact(registry, "art/corrupt", ["good"], data=os.urandom(5000))
    digest = json.loads(run_cli("inspect", "--raw", f"docker://{ref}").stdout)["layers"][0]["digest"]
    path = registry.blob_data_path(digest)
    with open(path, "r+b") as f:
        f.seek(10)
        f.write(b"!")
    with pytest.raises(RegistryError, match="digest mismatch"):
        pull_artifact(ref, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_push_artifact_refusals(subject, tmp_path):
    repo, _ = subject
    with pytest.raises(ArtifactError, match="not a regular file"):
        push_artifact(f"{repo}:x", [(str(tmp_path), None)], artifact_type=SIG)
    f = _file(tmp_path, "f", b"f")
    assert_one_line_error(run_cli("artifact", "push", "--artifact-type", SIG, "--subject", "nope",
                                  f"{repo}:x", f), "manifest unknown")


# -- oras-py, the other implementation -----------------------------------------------------------

def _oras(repo: str):
    """oras-py's client for the registry of `repo` (plain HTTP, as it is on loopback)."""
    provider = pytest.importorskip("oras.provider")
    return provider.Registry(repo.split("/", 1)[0], insecure=True)


def test_oras_pulls_what_we_push(subject, tmp_path):
    repo, _ = subject
    data = os.urandom(3000)
    src = _file(tmp_path, "payload.bin", data)
    push_artifact(f"{repo}:for-oras", [(src, None)], artifact_type="application/vnd.example.x")
    client = _oras(repo)
    files = client.pull(target=f"{repo}:for-oras", outdir=str(tmp_path / "oras-out"))
    assert [os.path.basename(f) for f in files] == ["payload.bin"]
    assert open(files[0], "rb").read() == data


def test_we_pull_what_oras_pushes(subject, tmp_path):
    repo, _ = subject
    data = os.urandom(3000)
    src = _file(tmp_path, "from-oras.bin", data)
    client = _oras(repo)
    client.push(target=f"{repo}:by-oras", files=[src], disable_path_validation=True, quiet=True)
    written = pull_artifact(f"{repo}:by-oras", str(tmp_path / "ours"))
    assert [os.path.basename(w) for w in written] == ["from-oras.bin"]
    assert open(written[0], "rb").read() == data


def test_why_not_oras_for_subjects(subject):
    """The measured gap behind artifacts.py's own client: oras-py 0.2.43 derives a
    subject's digest from a re-serialised manifest, so it names no manifest the
    registry has. (If this fails, oras-py fixed it: reconsider using it.)"""
    from oras.oci import Subject
    repo, image = subject
    client = _oras(repo)
    manifest = client.get_manifest(f"{repo}:latest")
    assert Subject.from_manifest(manifest).digest != image.manifest.digest
