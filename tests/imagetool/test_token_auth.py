"""Bearer-token auth against a real docker-registry (`auth: token:`) and a test token server."""
from __future__ import annotations

import os
import subprocess
import time

import pytest

import imagetool
from imagetool.registry import AuthError, Client
from tests.imagetool.tokenserver import TokenServer, TokenServerUnavailable
from tests.support import images
from tests.support.registry import Registry, RegistryUnavailable
from tests.imagetool.clitools import assert_one_line_error, run_cli

USER, PASSWORD = "alice", "wonderland"




def _only(repository: str):
    """Grants for a user allowed exactly one repository (besides public/*)."""
    def grants(user, name):
        if name.startswith("public/"):
            return {"pull"}
        return {"pull", "push"} if user and name == repository else set()
    return grants


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory, busybox):
    workdir = str(tmp_path_factory.mktemp("token-registry"))
    try:
        tokens = TokenServer(workdir, users={USER: PASSWORD}).start()
    except TokenServerUnavailable as e:
        pytest.skip(str(e))
    try:
        reg = Registry(workdir, auth_config=tokens.registry_config()).start()
    except RegistryUnavailable as e:
        tokens.stop()
        pytest.skip(str(e))
    pushed = {}
    for repo in ("public/busybox", "private/a", "private/b"):
        image = busybox if repo == "public/busybox" else images.build_image(
            [images.tar_layer([images.Entry("name", data=repo.encode())])], cmd=["cat", "/name"])
        images.push(reg.address, repo, "latest", image, bearer=tokens.push_token(repo))
        pushed[repo] = image
    yield reg, tokens, pushed
    reg.stop()
    tokens.stop()


def test_registry_really_wants_tokens(token_registry, tmp_path):
    """Guard: the registry refuses a request without a token and names our token server."""
    import http.client
    reg, tokens, _ = token_registry
    conn = http.client.HTTPConnection(reg.address, timeout=5)
    conn.request("GET", "/v2/public/busybox/manifests/latest")
    resp = conn.getresponse()
    resp.read()
    conn.close()
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith(f'Bearer realm="{tokens.realm}"')


def test_anonymous_pull_with_an_anonymous_token(token_registry, tmp_path):
    reg, tokens, pushed = token_registry
    tokens.requests.clear()
    dest = str(tmp_path / "layout")
    proc = run_cli("pull", f"{reg.address}/public/busybox", dest)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == pushed["public/busybox"].manifest.digest
    # One anonymous token for the repository, reused for the manifest and both blobs.
    assert tokens.requests == [(None, ["repository:public/busybox:pull"], 200)]


def test_pull_with_credentials(token_registry, tmp_path):
    reg, tokens, pushed = token_registry
    tokens.requests.clear()
    dest = str(tmp_path / "layout")
    proc = run_cli("pull", "--creds", f"{USER}:{PASSWORD}", f"{reg.address}/private/a", dest)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == pushed["private/a"].manifest.digest
    assert tokens.requests == [(USER, ["repository:private/a:pull"], 200)]


@pytest.mark.parametrize("creds,needles", [
    (None, ["private/a", "authentication required"]),
    (f"{USER}:wrong", ["private/a", f"credentials for '{USER}' refused"]),
    ("mallory:x", ["private/a", "credentials for 'mallory' refused"]),
])
def test_refused_is_one_line_fast_and_leaves_nothing(token_registry, tmp_path, creds, needles):
    reg, _, _ = token_registry
    dest = str(tmp_path / "layout")
    start = time.monotonic()
    proc = run_cli("pull", *(["--creds", creds] if creds else []), f"{reg.address}/private/a", dest)
    elapsed = time.monotonic() - start
    assert_one_line_error(proc, *needles)
    assert elapsed < 2.0, elapsed
    assert not os.path.exists(dest)


def test_token_without_the_repository_is_refused_by_name(tmp_path_factory, token_registry, tmp_path):
    """Good credentials, no grant for this repository: the registry's second 401 is final."""
    reg, tokens, _ = token_registry
    tokens.grants, saved = _only("private/a"), tokens.grants
    try:
        dest = str(tmp_path / "layout")
        start = time.monotonic()
        proc = run_cli("pull", "--creds", f"{USER}:{PASSWORD}", f"{reg.address}/private/b", dest)
        assert_one_line_error(proc, "private/b", "not authorized to pull", USER)
        assert time.monotonic() - start < 2.0
        assert not os.path.exists(dest)
    finally:
        tokens.grants = saved


def test_tokens_are_per_repository(token_registry):
    """One client, two repositories: A's token is never sent for B (oras-py 0.2.43's bug).

    The token server grants each token exactly one repository, so a reused token
    would get a 401 from the registry, which this client treats as final."""
    reg, tokens, pushed = token_registry
    tokens.grants, saved = (lambda user, name: {"pull"} if user == USER else set()), tokens.grants
    tokens.requests.clear()
    try:
        client = Client(reg.address, plain_http=True, creds=(USER, PASSWORD))
        for repo in ("private/a", "private/b", "private/a", "private/b"):
            manifest = client.get_manifest(repo, "latest", repo)
            assert manifest.digest == pushed[repo].manifest.digest
        # One token per repository, each asked for with that repository's scope only.
        assert tokens.requests == [(USER, ["repository:private/a:pull"], 200),
                                   (USER, ["repository:private/b:pull"], 200)]
    finally:
        tokens.grants = saved


def test_login_checks_credentials_through_the_token_server(token_registry, tmp_path):
    reg, _, pushed = token_registry
    authfile = str(tmp_path / "auth.json")
    proc = run_cli("login", "--authfile", authfile, "-u", USER, "--password-stdin", reg.address,
                   input="wrong\n")
    assert_one_line_error(proc, "refused")
    assert not os.path.exists(authfile)
    proc = run_cli("login", "--authfile", authfile, "-u", USER, "--password-stdin", reg.address,
                   input=PASSWORD + "\n")
    assert proc.returncode == 0, proc.stderr
    result = imagetool.pull(f"{reg.address}/private/b", str(tmp_path / "l"), authfile=authfile)
    assert result.descriptor["digest"] == pushed["private/b"].manifest.digest


def test_skopeo_agrees_on_the_setup(token_registry, tmp_path):
    """The peer pulls through the same registry and token server: the setup is a real one."""
    import shutil
    if not shutil.which("skopeo"):
        pytest.skip("skopeo not installed")
    reg, _, pushed = token_registry
    out = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--creds", f"{USER}:{PASSWORD}",
                          f"docker://{reg.address}/private/a"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    import json
    assert json.loads(out.stdout)["Digest"] == pushed["private/a"].manifest.digest
    out = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--creds", f"{USER}:nope",
                          f"docker://{reg.address}/private/a"], capture_output=True, text=True)
    assert out.returncode != 0


def test_api_raises_auth_error(token_registry, tmp_path):
    reg, _, _ = token_registry
    with pytest.raises(AuthError):
        imagetool.pull(f"{reg.address}/private/a", str(tmp_path / "l"), creds=f"{USER}:bad")


def test_a_cached_token_the_registry_stops_accepting_is_renewed_once(token_registry):
    """A long pull can outlive its token: the 401 on a cached token fetches one fresh token;
    only a 401 on that fresh one is final."""
    reg, tokens, pushed = token_registry
    client = Client(reg.address, plain_http=True, creds=(USER, PASSWORD))
    scope = "repository:private/a:pull"
    # Stands in for an expired token: signed by the issuer, but granting nothing now.
    client._auth[scope] = "Bearer " + tokens.issue(USER, [])
    tokens.requests.clear()
    manifest = client.get_manifest("private/a", "latest", "private/a")
    assert manifest.digest == pushed["private/a"].manifest.digest
    assert tokens.requests == [(USER, [scope], 200)]


def test_push_asks_for_pull_and_push(token_registry, tmp_path):
    """A push's token has pull,push on the target; a mount's also pull on the source
    (two scope parameters, as Docker asks)."""
    from imagetool.pusher import push
    reg, tokens, pushed = token_registry
    lay = str(tmp_path / "layout")
    image = pushed["private/a"]
    images.write_layout(lay, {"v1": image})
    tokens.requests.clear()
    result = push(lay, "v1", f"{reg.address}/private/pushed:v1", creds=(USER, PASSWORD))
    assert result.digest == image.manifest.digest
    assert tokens.requests == [(USER, ["repository:private/pushed:pull,push"], 200)]
    tokens.requests.clear()
    result = push(lay, "v1", f"{reg.address}/private/mounted:v1", creds=(USER, PASSWORD),
                  mount_from="private/a")
    assert sorted(result.mounted) == sorted(b.digest for b in image.blobs())
    assert (USER, ["repository:private/mounted:pull,push", "repository:private/a:pull"], 200) \
        in tokens.requests


def test_push_without_the_grant_is_refused_by_name(token_registry, tmp_path):
    reg, tokens, pushed = token_registry
    lay = str(tmp_path / "layout")
    images.write_layout(lay, {"v1": pushed["private/a"]})
    tokens.grants, saved = _only("private/a"), tokens.grants
    try:
        proc = run_cli("push", "--creds", f"{USER}:{PASSWORD}", f"{lay}:v1", f"{reg.address}/private/b:v1")
        assert_one_line_error(proc, "private/b", "not authorized to push to", USER)
        proc = run_cli("push", f"{lay}:v1", f"{reg.address}/private/a:v1")
        assert_one_line_error(proc, "authentication required")
    finally:
        tokens.grants = saved
