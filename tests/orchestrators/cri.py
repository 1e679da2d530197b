"""A CRI client for the tests (Debian has no crictl): the subset of k8s.io/cri-api's
published v1 API (package runtime.v1) that the kubelet's pod lifecycle uses, encoded as
protobuf by hand, over grpcio.

Each message below lists its fields as the published api.proto numbers them (only the ones
the tests use; a decoder skips the rest). Proto3: a field left out is its zero value."""
from __future__ import annotations

# criu's RPC is protobuf too: one varint encoder serves both (negatives: ten bytes, two's complement)
from runtime.criu import _varint

# field name → (number, kind, repeated). kind: a scalar ("string", "bytes", "bool",
# "int64", "int32", "uint32", "enum") or the name of a message; "map" is map<string,string>.
MESSAGES: dict[str, dict[str, tuple[int, str, bool]]] = {
    "VersionRequest": {"version": (1, "string", False)},
    "VersionResponse": {"version": (1, "string", False), "runtime_name": (2, "string", False),
                        "runtime_version": (3, "string", False),
                        "runtime_api_version": (4, "string", False)},
    "PodSandboxMetadata": {"name": (1, "string", False), "uid": (2, "string", False),
                           "namespace": (3, "string", False), "attempt": (4, "uint32", False)},
    "NamespaceOption": {"network": (1, "enum", False), "pid": (2, "enum", False),
                        "ipc": (3, "enum", False), "target_id": (4, "string", False)},
    "LinuxSandboxSecurityContext": {"namespace_options": (1, "NamespaceOption", False),
                                    "privileged": (6, "bool", False)},
    "LinuxPodSandboxConfig": {"cgroup_parent": (1, "string", False),
                              "security_context": (2, "LinuxSandboxSecurityContext", False)},
    "PodSandboxConfig": {"metadata": (1, "PodSandboxMetadata", False), "hostname": (2, "string", False),
                         "log_directory": (3, "string", False), "labels": (6, "map", False),
                         "annotations": (7, "map", False), "linux": (8, "LinuxPodSandboxConfig", False)},
    "RunPodSandboxRequest": {"config": (1, "PodSandboxConfig", False),
                             "runtime_handler": (2, "string", False)},
    "RunPodSandboxResponse": {"pod_sandbox_id": (1, "string", False)},
    "StopPodSandboxRequest": {"pod_sandbox_id": (1, "string", False)},
    "StopPodSandboxResponse": {},
    "RemovePodSandboxRequest": {"pod_sandbox_id": (1, "string", False)},
    "RemovePodSandboxResponse": {},
    "PodSandboxStatusRequest": {"pod_sandbox_id": (1, "string", False), "verbose": (2, "bool", False)},
    "PodSandboxStatus": {"id": (1, "string", False), "metadata": (2, "PodSandboxMetadata", False),
                         "state": (3, "enum", False), "created_at": (4, "int64", False),
                         "runtime_handler": (9, "string", False)},
    "PodSandboxStatusResponse": {"status": (1, "PodSandboxStatus", False), "info": (2, "map", False)},
    "ContainerMetadata": {"name": (1, "string", False), "attempt": (2, "uint32", False)},
    "ImageSpec": {"image": (1, "string", False)},
    "KeyValue": {"key": (1, "string", False), "value": (2, "string", False)},
    "LinuxContainerResources": {"cpu_period": (1, "int64", False), "cpu_quota": (2, "int64", False),
                                "cpu_shares": (3, "int64", False),
                                "memory_limit_in_bytes": (4, "int64", False),
                                "oom_score_adj": (5, "int64", False)},
    "LinuxContainerSecurityContext": {"privileged": (2, "bool", False),
                                      "namespace_options": (3, "NamespaceOption", False)},
    "LinuxContainerConfig": {"resources": (1, "LinuxContainerResources", False),
                             "security_context": (2, "LinuxContainerSecurityContext", False)},
    "ContainerConfig": {"metadata": (1, "ContainerMetadata", False), "image": (2, "ImageSpec", False),
                        "command": (3, "string", True), "args": (4, "string", True),
                        "working_dir": (5, "string", False), "envs": (6, "KeyValue", True),
                        "labels": (9, "map", False), "annotations": (10, "map", False),
                        "log_path": (11, "string", False), "linux": (15, "LinuxContainerConfig", False)},
    "CreateContainerRequest": {"pod_sandbox_id": (1, "string", False),
                               "config": (2, "ContainerConfig", False),
                               "sandbox_config": (3, "PodSandboxConfig", False)},
    "CreateContainerResponse": {"container_id": (1, "string", False)},
    "StartContainerRequest": {"container_id": (1, "string", False)},
    "StartContainerResponse": {},
    "StopContainerRequest": {"container_id": (1, "string", False), "timeout": (2, "int64", False)},
    "StopContainerResponse": {},
    "RemoveContainerRequest": {"container_id": (1, "string", False)},
    "RemoveContainerResponse": {},
    "ContainerStatusRequest": {"container_id": (1, "string", False), "verbose": (2, "bool", False)},
    "ContainerStatus": {"id": (1, "string", False), "metadata": (2, "ContainerMetadata", False),
                        "state": (3, "enum", False), "created_at": (4, "int64", False),
                        "started_at": (5, "int64", False), "finished_at": (6, "int64", False),
                        "exit_code": (7, "int32", False), "reason": (10, "string", False),
                        "message": (11, "string", False), "log_path": (15, "string", False)},
    "ContainerStatusResponse": {"status": (1, "ContainerStatus", False), "info": (2, "map", False)},
    "ExecSyncRequest": {"container_id": (1, "string", False), "cmd": (2, "string", True),
                        "timeout": (3, "int64", False)},
    "ExecSyncResponse": {"stdout": (1, "bytes", False), "stderr": (2, "bytes", False),
                         "exit_code": (3, "int32", False)},
}

# enum NamespaceMode
POD, CONTAINER, NODE, TARGET = 0, 1, 2, 3
# enum ContainerState
CONTAINER_CREATED, CONTAINER_RUNNING, CONTAINER_EXITED, CONTAINER_UNKNOWN = 0, 1, 2, 3
# enum PodSandboxState
SANDBOX_READY, SANDBOX_NOTREADY = 0, 1

# service runtime.v1.RuntimeService: method → (request, response)
RUNTIME_SERVICE = "/runtime.v1.RuntimeService/"
METHODS = {name: (f"{name}Request", f"{name}Response") for name in (
    "Version", "RunPodSandbox", "StopPodSandbox", "RemovePodSandbox", "PodSandboxStatus",
    "CreateContainer", "StartContainer", "StopContainer", "RemoveContainer", "ContainerStatus",
    "ExecSync")}

VARINT, I64, LEN, I32 = 0, 1, 2, 5
_VARINT_KINDS = {"bool", "int64", "int32", "uint32", "enum"}


# -- encoding ---------------------------------------------------------------------

def _key(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _len_delimited(number: int, data: bytes) -> bytes:
    return _key(number, LEN) + _varint(len(data)) + data


def encode(message: str, values: dict) -> bytes:
    """`values` (field name → Python value) as the bytes of `message`."""
    fields = MESSAGES[message]
    out = bytearray()
    for name, value in values.items():
        if name not in fields:
            raise KeyError(f"{message} has no field {name!r} in this subset")
        number, kind, repeated = fields[name]
        for item in (value if repeated else [value]):
            out += _encode_field(number, kind, item)
    return bytes(out)


def _encode_field(number: int, kind: str, value) -> bytes:
    if kind == "map":  # map<string,string>: repeated entry {1: key, 2: value}
        return b"".join(_len_delimited(number, _len_delimited(1, k.encode()) + _len_delimited(2, v.encode()))
                        for k, v in value.items())
    if kind in _VARINT_KINDS:
        return _key(number, VARINT) + _varint(int(value))
    if kind == "string":
        return _len_delimited(number, value.encode())
    if kind == "bytes":
        return _len_delimited(number, bytes(value))
    return _len_delimited(number, encode(kind, value))


# -- decoding ---------------------------------------------------------------------

def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        n |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return n, pos


def _fields(data: bytes):
    """(number, wire type, raw value) for each field in `data`."""
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == VARINT:
            value, pos = _read_varint(data, pos)
        elif wire == LEN:
            size, pos = _read_varint(data, pos)
            value, pos = data[pos:pos + size], pos + size
        elif wire == I64:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == I32:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"wire type {wire} (field {number}) is not protobuf's")
        yield number, wire, value


def _zero(kind: str, repeated: bool):
    if repeated:
        return []
    if kind == "map":
        return {}
    if kind in _VARINT_KINDS:
        return False if kind == "bool" else 0
    if kind == "string":
        return ""
    if kind == "bytes":
        return b""
    return None  # an absent message


def decode(message: str, data: bytes) -> dict:
    fields = MESSAGES[message]
    by_number = {number: (name, kind, repeated) for name, (number, kind, repeated) in fields.items()}
    out = {name: _zero(kind, repeated) for name, (_, kind, repeated) in fields.items()}
    for number, _wire, raw in _fields(data):
        if number not in by_number:
            continue  # a field outside this subset
        name, kind, repeated = by_number[number]
        value = _decode_value(kind, raw)
        if kind == "map":
            out[name].update(value)
        elif repeated:
            out[name].append(value)
        else:
            out[name] = value
    return out


def _decode_value(kind: str, raw):
    if kind == "map":
        entry = {n: v for n, _, v in _fields(raw)}
        return {entry.get(1, b"").decode(): entry.get(2, b"").decode()}
    if kind == "bool":
        return bool(raw)
    if kind in ("int64", "int32"):
        return raw - (1 << 64) if raw >= 1 << 63 else raw
    if kind in ("uint32", "enum"):
        return raw
    if kind == "string":
        return raw.decode()
    if kind == "bytes":
        return bytes(raw)
    return decode(kind, raw)


# -- the client ---------------------------------------------------------------------

class RuntimeService:
    """runtime.v1.RuntimeService over a unix socket: `call("Version", version="v1")`.
    `deadline` is gRPC's, in seconds (`timeout` is a field of some requests)."""

    def __init__(self, socket_path: str):
        import grpc
        self.channel = grpc.insecure_channel(f"unix://{socket_path}")
        self._stubs = {}

    def call(self, method: str, deadline: float = 60, **values) -> dict:
        request, response = METHODS[method]
        stub = self._stubs.get(method)
        if stub is None:
            stub = self._stubs[method] = self.channel.unary_unary(
                RUNTIME_SERVICE + method, request_serializer=bytes, response_deserializer=bytes)
        return decode(response, stub(encode(request, values), timeout=deadline))

    def close(self) -> None:
        self.channel.close()
