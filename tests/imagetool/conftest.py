"""Real registries (Debian's docker-registry on 127.0.0.1), open and with auth, one per test
module: a registry left running for the session is a child of pytest that the runtime's
leak checks (a subreaper's census of processes left) would count as leaked."""
import pytest

from tests.support import images
from tests.support.registry import Registry, RegistryUnavailable

USER, PASSWORD = "tester", "s3cret"


def _start(tmp_path_factory, name, **kw):
    try:
        return Registry(str(tmp_path_factory.mktemp(name)), **kw).start()
    except RegistryUnavailable as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    reg = _start(tmp_path_factory, "registry")
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory):
    reg = _start(tmp_path_factory, "auth-registry", users={USER: PASSWORD})
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def busybox():
    return images.busybox_image()


@pytest.fixture(scope="module")
def seeded(registry, busybox):
    """The open registry with busybox as OCI, as Docker v2s2, and a two-platform index."""
    images.push(registry.address, "demo/busybox", "latest", busybox)
    docker = images.busybox_image(docker=True, cmd=["echo", "docker"])
    images.push(registry.address, "demo/busybox", "v2s2", docker)
    index = images.two_platform_index()
    images.push(registry.address, "demo/multi", "latest", index)
    return {"oci": busybox, "docker": docker, "index": index, "registry": registry}
