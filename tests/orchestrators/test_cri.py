"""The Kubernetes path: containerd 1.6's CRI plugin with pyrun as a runtime handler,
spoken to over gRPC as the kubelet does (tests/orchestrators/cri.py: a hand-written subset
of k8s.io/cri-api v1), on the `pyrun` handler and on `runc` for comparison.

A pod as the kubelet makes one: a sandbox (host network, its own IPC namespace, the pause
image made from busybox-static), a container in it sharing its IPC and network namespaces
with kubelet-style resources, ExecSync into it, then StopContainer, RemoveContainer,
StopPodSandbox and RemovePodSandbox."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import PYRUN
from tests.orchestrators import containerd as cd
from tests.orchestrators import cri

RUNC = shutil.which("runc")
# The shim's --root for the runtime: /run/containerd/runc/<namespace>
RUNTIME_ROOT = f"/run/containerd/runc/{cd.CRI_NAMESPACE}"
CGROUP_V1 = "/sys/fs/cgroup"
HANDLERS = {"pyrun": PYRUN, "runc": RUNC}


def _grpc_or_skip():
    """grpcio is a test-only tool (the product never speaks gRPC): installed into this
    interpreter from PyPI when missing."""
    try:
        import grpc  # noqa: F401
        return
    except ImportError:
        pass
    p = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "grpcio"], capture_output=True,
                       text=True, timeout=300)
    if p.returncode != 0:
        pytest.skip(f"grpcio is not installed and `pip install grpcio` failed: {p.stderr.strip()[-300:]}")
    import importlib
    importlib.invalidate_caches()


@pytest.fixture(scope="module")
def containerd(tmp_path_factory):
    why = cd.missing()
    if why:
        pytest.skip(why)
    _grpc_or_skip()
    c = cd.Containerd(str(tmp_path_factory.mktemp("cri")), PYRUN, RUNC)
    try:
        c.import_images(cd.CRI_NAMESPACE)
        yield c
    finally:
        c.teardown()


@pytest.fixture(scope="module")
def runtime_service(containerd):
    client = cri.RuntimeService(containerd.socket)
    yield client
    client.close()


# -- the codec, against protobuf's wire format ----------------------------------------

def test_cri_codec_writes_protobuf_wire_format():
    # field 1 string, field 2 repeated string (one record each), field 3 varint 150
    assert cri.encode("ExecSyncRequest", {"container_id": "ab", "cmd": ["a", "bc"], "timeout": 150}) == \
        b"\x0a\x02ab" b"\x12\x01a" b"\x12\x02bc" b"\x18\x96\x01"
    # a nested message is length-delimited; an enum is a varint
    assert cri.encode("LinuxSandboxSecurityContext", {"namespace_options": {"network": cri.NODE}}) == \
        b"\x0a\x02" b"\x08\x02"
    # a map<string,string> is one entry message per pair
    assert cri.encode("PodSandboxConfig", {"labels": {"k": "v"}}) == b"\x32\x06" b"\x0a\x01k" b"\x12\x01v"
    # a negative int64 is ten bytes of two's complement
    assert cri.encode("LinuxContainerResources", {"oom_score_adj": -998}) == \
        b"\x28" + bytes([0x9a, 0xf8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])


def test_cri_codec_reads_what_it_writes_and_skips_unknown_fields():
    data = cri.encode("ContainerStatus", {"id": "c1", "state": cri.CONTAINER_EXITED, "exit_code": -1,
                                          "metadata": {"name": "app", "attempt": 2}})
    unknown = b"\xa0\x01\x07" + b"\xaa\x01\x03xyz" + b"\xad\x01\x00\x00\x00\x00"  # fields 20, 21, 21(i32)
    status = cri.decode("ContainerStatus", unknown + data)
    assert status["id"] == "c1" and status["state"] == cri.CONTAINER_EXITED
    assert status["exit_code"] == -1
    assert status["metadata"] == {"name": "app", "attempt": 2}
    assert status["reason"] == "" and status["finished_at"] == 0  # proto3 zero values
    info = cri.decode("ContainerStatusResponse", cri.encode("ContainerStatusResponse",
                                                            {"info": {"a": "1", "b": "2"}}))
    assert info["info"] == {"a": "1", "b": "2"} and info["status"] is None


def test_docs_runtimeclass_names_the_handler_the_config_defines():
    """The RuntimeClass recipe and the containerd entry of docs/orchestrators.md agree:
    the kubelet sends RuntimeClass.handler, and containerd looks it up in its runtimes."""
    import re
    import tomllib
    from tests.orchestrators import docs
    handler = re.search(r"^handler: (\S+)$", docs.snippet("runtimeclass", PYRUN), re.M).group(1)
    entry = tomllib.loads(docs.snippet("containerd-runtime", PYRUN))
    runtimes = entry["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]
    assert runtimes[handler] == {"runtime_type": cd.SHIM, "options": {"BinaryName": PYRUN}}


# -- against containerd ----------------------------------------------------------

def test_cri_version(runtime_service):
    v = runtime_service.call("Version", version="v1")
    assert v["runtime_name"] == "containerd"
    assert v["runtime_api_version"] == "v1"


def namespaces(network, pid, ipc) -> dict:
    return {"network": network, "pid": pid, "ipc": ipc}


def sandbox_config(handler: str, log_dir: str) -> dict:
    uid = f"or-uid-{handler}"
    return {"metadata": {"name": f"or-pod-{handler}", "uid": uid, "namespace": "default"},
            "log_directory": log_dir,
            "linux": {"cgroup_parent": f"/or-kubepods/pod{uid}",
                      "security_context": {"namespace_options": namespaces(cri.NODE, cri.CONTAINER, cri.POD)}}}


# As the kubelet writes a container: a best-effort pod's cpu shares, a memory limit, the
# oom_score_adj it gives such pods, the pod's IPC and the node's network.
APP_SCRIPT = "trap 'echo got-term; exit 0' TERM; echo hello from cri; while :; do sleep 0.1; done"


def container_config(log_path: str) -> dict:
    return {"metadata": {"name": "or-app"}, "image": {"image": cd.IMAGE},
            "command": ["sh", "-c", APP_SCRIPT], "log_path": log_path,
            "envs": [{"key": "OR_GREETING", "value": "hi"}],
            "linux": {"resources": {"cpu_shares": 2, "memory_limit_in_bytes": 64 << 20,
                                    "oom_score_adj": 1000},
                      "security_context": {"namespace_options": namespaces(cri.NODE, cri.CONTAINER, cri.POD)}}}


def verbose_info(response: dict) -> dict:
    return json.loads(response["info"]["info"])


def runtime_state(binary: str, cid: str) -> dict | None:
    """The runtime's own `state` of `cid` under the shim's root: who really runs it."""
    p = subprocess.run([binary, "--root", RUNTIME_ROOT, "state", cid], capture_output=True, text=True)
    return json.loads(p.stdout) if p.returncode == 0 else None


def exec_sync(runtime_service, cid: str, script: str) -> dict:
    return runtime_service.call("ExecSync", container_id=cid, cmd=["sh", "-c", script], timeout=30)


@pytest.fixture
def pod(runtime_service, tmp_path, request):
    """A running sandbox and container on `request.param`'s handler; torn down whatever the
    test did (Stop and Remove are idempotent in CRI)."""
    handler = request.param
    if not HANDLERS[handler]:
        pytest.skip(f"{handler} is not installed")
    sandbox = sandbox_config(handler, str(tmp_path))
    sid = runtime_service.call("RunPodSandbox", config=sandbox, runtime_handler=handler)["pod_sandbox_id"]
    made = {"handler": handler, "binary": HANDLERS[handler], "sandbox": sandbox, "sid": sid,
            "log": str(tmp_path / "or-app.log")}
    try:
        made["cid"] = runtime_service.call("CreateContainer", pod_sandbox_id=sid, config=container_config("or-app.log"),
                                           sandbox_config=sandbox)["container_id"]
        runtime_service.call("StartContainer", container_id=made["cid"])
        yield made
    finally:
        if "cid" in made:
            _unless_gone(runtime_service, "StopContainer", container_id=made["cid"], timeout=0)
            _unless_gone(runtime_service, "RemoveContainer", container_id=made["cid"])
        _unless_gone(runtime_service, "StopPodSandbox", pod_sandbox_id=sid)
        _unless_gone(runtime_service, "RemovePodSandbox", pod_sandbox_id=sid)


def _unless_gone(runtime_service, method, **values):
    """A teardown call; the test may have removed the object already."""
    import grpc
    try:
        runtime_service.call(method, **values)
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.NOT_FOUND:
            raise


@pytest.mark.parametrize("pod", ["pyrun", "runc"], indirect=True)
def test_cri_pod_sandbox_and_container_run_on_the_handler(runtime_service, pod):
    status = runtime_service.call("PodSandboxStatus", pod_sandbox_id=pod["sid"], verbose=True)
    assert status["status"]["state"] == cri.SANDBOX_READY
    assert status["status"]["runtime_handler"] == pod["handler"]
    sandbox_info = verbose_info(status)
    assert sandbox_info["runtimeOptions"]["binary_name"] == pod["binary"], sandbox_info["runtimeOptions"]
    # the handler's binary itself holds both (the shim called it, not some default runc)
    assert runtime_state(pod["binary"], pod["sid"])["status"] == "running"
    assert runtime_state(pod["binary"], pod["cid"])["status"] == "running"
    c = runtime_service.call("ContainerStatus", container_id=pod["cid"], verbose=True)
    assert c["status"]["state"] == cri.CONTAINER_RUNNING, c["status"]
    assert c["status"]["metadata"]["name"] == "or-app"


@pytest.mark.parametrize("pod", ["pyrun", "runc"], indirect=True)
def test_cri_container_shares_the_sandbox_ipc_and_network(runtime_service, pod):
    sandbox_pid = verbose_info(runtime_service.call("PodSandboxStatus", pod_sandbox_id=pod["sid"],
                                                    verbose=True))["pid"]
    r = exec_sync(runtime_service, pod["cid"],
                  "for ns in ipc net pid; do readlink /proc/self/ns/$ns; done; echo $OR_GREETING; exit 3")
    assert r["exit_code"] == 3, r
    ipc, net, pid, greeting = r["stdout"].decode().split()
    assert ipc == os.readlink(f"/proc/{sandbox_pid}/ns/ipc")  # the pod's IPC namespace
    assert ipc != os.readlink("/proc/self/ns/ipc")
    assert net == os.readlink("/proc/self/ns/net")  # host network: the node's
    assert pid != os.readlink(f"/proc/{sandbox_pid}/ns/pid")  # pid: CONTAINER, its own
    assert greeting == "hi"


@pytest.mark.parametrize("pod", ["pyrun", "runc"], indirect=True)
def test_cri_container_resources_take_effect(runtime_service, pod):
    info = verbose_info(runtime_service.call("ContainerStatus", container_id=pod["cid"], verbose=True))
    cgroup = os.path.join(f"or-kubepods/pod{pod['sandbox']['metadata']['uid']}", pod["cid"])
    with open(os.path.join(CGROUP_V1, "memory", cgroup, "memory.limit_in_bytes")) as f:
        assert f.read().strip() == str(64 << 20)
    with open(os.path.join(CGROUP_V1, "cpu", cgroup, "cpu.shares")) as f:
        assert f.read().strip() == "2"
    with open(f"/proc/{info['pid']}/oom_score_adj") as f:
        assert f.read().strip() == "1000"


@pytest.mark.parametrize("pod", ["pyrun", "runc"], indirect=True)
def test_cri_stop_remove_and_teardown(runtime_service, pod):
    sid, cid, binary = pod["sid"], pod["cid"], pod["binary"]
    runtime_service.call("StopContainer", container_id=cid, timeout=10)  # SIGTERM: the trap exits 0
    status = runtime_service.call("ContainerStatus", container_id=cid)["status"]
    assert status["state"] == cri.CONTAINER_EXITED and status["exit_code"] == 0, status
    with open(pod["log"]) as f:  # CRI log lines: time, stream, tag, text
        assert [line.split(" ", 3)[1:] for line in f.read().splitlines()] == \
            [["stdout", "F", "hello from cri"], ["stdout", "F", "got-term"]]
    runtime_service.call("RemoveContainer", container_id=cid)
    assert runtime_state(binary, cid) is None
    runtime_service.call("StopPodSandbox", pod_sandbox_id=sid)
    status = runtime_service.call("PodSandboxStatus", pod_sandbox_id=sid)["status"]
    assert status["state"] == cri.SANDBOX_NOTREADY
    runtime_service.call("RemovePodSandbox", pod_sandbox_id=sid)
    assert runtime_state(binary, sid) is None
    assert not os.path.exists(os.path.join(CGROUP_V1, "memory", f"or-kubepods/pod{pod['sandbox']['metadata']['uid']}", cid))


@pytest.mark.parametrize("pod", ["pyrun", "runc"], indirect=True)
def test_cri_exec_sync_process_gets_its_oom_score_adj(runtime_service, pod):
    """containerd's exec process is the container's process spec with new args, so it
    carries oomScoreAdj 1000; runc gives the exec'd process that score, as the init's."""
    r = exec_sync(runtime_service, pod["cid"], "cat /proc/self/oom_score_adj /proc/1/oom_score_adj")
    assert r["stdout"].decode().split() == ["1000", "1000"], r
