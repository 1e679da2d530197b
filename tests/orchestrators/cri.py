"""A CRI client for the tests (Debian has no crictl): the subset of k8s.io/cri-api's
published v1 API (package runtime.v1) that the kubelet's pod lifecycle uses, encoded as
protobuf by hand, over grpcio.

Each message below lists its fields as the published api.proto numbers them (only the ones
the tests use; a decoder skips the rest). Proto3: a field left out is its zero value."""
from __future__ import annotations

import re

# criu's RPC is protobuf too: one varint encoder serves both (negatives: ten bytes, two's complement)
from runtime.criu import _varint

# The messages in api.proto's own words (its field numbers; only the fields the tests use).
PROTO = """
message VersionRequest { string version = 1; }
message VersionResponse { string version = 1; string runtime_name = 2; string runtime_version = 3;
    string runtime_api_version = 4; }
message PodSandboxMetadata { string name = 1; string uid = 2; string namespace = 3; uint32 attempt = 4; }
message NamespaceOption { enum network = 1; enum pid = 2; enum ipc = 3; string target_id = 4; }
message LinuxSandboxSecurityContext { NamespaceOption namespace_options = 1; bool privileged = 6; }
message LinuxPodSandboxConfig { string cgroup_parent = 1; LinuxSandboxSecurityContext security_context = 2; }
message PodSandboxConfig { PodSandboxMetadata metadata = 1; string hostname = 2; string log_directory = 3;
    map<string,string> labels = 6; map<string,string> annotations = 7; LinuxPodSandboxConfig linux = 8; }
message RunPodSandboxRequest { PodSandboxConfig config = 1; string runtime_handler = 2; }
message RunPodSandboxResponse { string pod_sandbox_id = 1; }
message StopPodSandboxRequest { string pod_sandbox_id = 1; }
message StopPodSandboxResponse {}
message RemovePodSandboxRequest { string pod_sandbox_id = 1; }
message RemovePodSandboxResponse {}
message PodSandboxStatusRequest { string pod_sandbox_id = 1; bool verbose = 2; }
message PodSandboxStatus { string id = 1; PodSandboxMetadata metadata = 2; enum state = 3; int64 created_at = 4;
    string runtime_handler = 9; }
message PodSandboxStatusResponse { PodSandboxStatus status = 1; map<string,string> info = 2; }
message ContainerMetadata { string name = 1; uint32 attempt = 2; }
message ImageSpec { string image = 1; }
message KeyValue { string key = 1; string value = 2; }
message LinuxContainerResources { int64 cpu_period = 1; int64 cpu_quota = 2; int64 cpu_shares = 3;
    int64 memory_limit_in_bytes = 4; int64 oom_score_adj = 5; }
message LinuxContainerSecurityContext { bool privileged = 2; NamespaceOption namespace_options = 3; }
message LinuxContainerConfig { LinuxContainerResources resources = 1;
    LinuxContainerSecurityContext security_context = 2; }
message ContainerConfig { ContainerMetadata metadata = 1; ImageSpec image = 2; repeated string command = 3;
    repeated string args = 4; string working_dir = 5; repeated KeyValue envs = 6; map<string,string> labels = 9;
    map<string,string> annotations = 10; string log_path = 11; LinuxContainerConfig linux = 15; }
message CreateContainerRequest { string pod_sandbox_id = 1; ContainerConfig config = 2;
    PodSandboxConfig sandbox_config = 3; }
message CreateContainerResponse { string container_id = 1; }
message StartContainerRequest { string container_id = 1; }
message StartContainerResponse {}
message StopContainerRequest { string container_id = 1; int64 timeout = 2; }
message StopContainerResponse {}
message RemoveContainerRequest { string container_id = 1; }
message RemoveContainerResponse {}
message ContainerStatusRequest { string container_id = 1; bool verbose = 2; }
message ContainerStatus { string id = 1; ContainerMetadata metadata = 2; enum state = 3; int64 created_at = 4;
    int64 started_at = 5; int64 finished_at = 6; int32 exit_code = 7; string reason = 10; string message = 11;
    string log_path = 15; }
message ContainerStatusResponse { ContainerStatus status = 1; map<string,string> info = 2; }
message ExecSyncRequest { string container_id = 1; repeated string cmd = 2; int64 timeout = 3; }
message ExecSyncResponse { bytes stdout = 1; bytes stderr = 2; int32 exit_code = 3; }
"""


def _messages(proto: str) -> dict[str, dict[str, tuple[int, str, bool]]]:
    """message name → {field name: (number, kind, repeated)}. kind: a scalar ("string",
    "bytes", "bool", "int64", "int32", "uint32", "enum": api.proto names the enum's type
    there) or the name of a message; "map" is map<string,string>."""
    return {name: {field: (int(number), "map" if kind.startswith("map<") else kind, bool(repeated))
                   for repeated, kind, field, number in re.findall(r"(repeated )?(\S+) (\w+) = (\d+);", body)}
            for name, body in re.findall(r"message (\w+) \{([^}]*)\}", proto)}


MESSAGES = _messages(PROTO)

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
