"""linux.netDevices: host network interfaces moved into the container's network namespace
and, at delete, back out again (as runc 1.3 does), over rtnetlink.

    "netDevices": {"<host name>": {"name": "<name inside>"}}

Moving a link is one RTM_NEWLINK for its index with IFLA_NET_NS_FD (and IFLA_IFNAME
to rename it on the way). A netlink socket belongs to the namespace it was made in,
so the container's side (is the name free, the addresses put back, the link set up,
the way back out) is spoken over a socket made inside the container's namespace.
The kernel drops a link's addresses when it changes namespace: its permanent global
ones are read before the move and added again after it, as runc 1.3 does.
"""
import os
import socket
import struct

from .errors import ConfigError, PyrunError

NETLINK_ROUTE = 0
RTM_NEWLINK, RTM_GETLINK, RTM_NEWADDR, RTM_GETADDR = 16, 18, 20, 22
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE, NLM_F_DUMP = 0x1, 0x4, 0x200, 0x400, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
IFLA_IFNAME = 3
IFLA_NET_NS_FD = 28
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST, IFA_FLAGS = 1, 2, 4, 8
IFA_F_PERMANENT = 0x80
RT_SCOPE_UNIVERSE = 0
IFF_UP = 0x1
IFNAMSIZ = 16


def check(net_devices: dict | None, own_netns: bool) -> None:
    """Refused before anything is made: no network namespace of the container's own, a
    name the kernel would not take, a device the host does not have, two of one name."""
    if not net_devices:
        return
    if not own_netns:
        raise ConfigError("config.json: linux.netDevices needs a network namespace of the container's own")
    inside = set()
    for host_name, dev in net_devices.items():
        name = (dev or {}).get("name") or host_name
        for n in (host_name, name):
            if not 0 < len(n.encode()) < IFNAMSIZ or "/" in n or any(c.isspace() for c in n) or n in (".", ".."):
                raise ConfigError(f"config.json: linux.netDevices: {n!r} is not an interface name")
        if name in inside:
            raise ConfigError(f"config.json: linux.netDevices: two devices are named {name!r} inside")
        inside.add(name)
        try:
            socket.if_nametoindex(host_name)
        except OSError:
            raise ConfigError(f"config.json: linux.netDevices: the host has no network device {host_name!r}") from None


def move_in(net_devices: dict | None, pid: int) -> None:
    """Into the network namespace of `pid` (the init, before it runs anything): each
    device under its name there, its permanent global addresses kept, set up."""
    if not net_devices:
        return
    ns = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        inside = _socket_in(ns)
        try:
            for host_name, dev in net_devices.items():
                name = (dev or {}).get("name") or host_name
                _move_one(host_name, name, ns, inside)
        finally:
            inside.close()
    finally:
        os.close(ns)


def _move_one(host_name: str, name: str, ns: int, inside: socket.socket) -> None:
    what = f"linux.netDevices: move {host_name} into the container as {name}"
    # Checked first: the kernel moves the link before it renames it, and a rename
    # that fails inside leaves the device in a namespace that dies with the container.
    if _index(inside, name) is not None:
        raise PyrunError(f"{what}: the container's network namespace already has a device named {name}")
    try:
        index = socket.if_nametoindex(host_name)
        with _socket() as host:
            addresses = _permanent_addresses(host, index)
        _move(index, ns, name)
    except OSError as e:
        raise PyrunError(f"{what}: {e.strerror}") from None
    try:
        index = _index(inside, name)
        if index is None:
            raise OSError(19, os.strerror(19))  # ENODEV: gone between the move and now
        for family, prefixlen, scope, attrs in addresses:
            body = struct.pack("=BBBBI", family, prefixlen, 0, scope, index) + attrs
            _request(inside, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body)
        _request(inside, RTM_NEWLINK, 0, struct.pack("=BxHiII", socket.AF_UNSPEC, 0, index, IFF_UP, IFF_UP))
    except OSError as e:
        raise PyrunError(f"{what}: set it up inside: {e.strerror}") from None


def move_out(net_devices: dict | None, pid: int) -> None:
    """Back to our network namespace, with their host names, while the container's still
    exists (delete calls this before it kills the init). A device already gone is skipped."""
    if not net_devices:
        return
    try:
        theirs = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return  # the namespace is gone, and the kernel dealt with its devices
    ours = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    from . import _shim as k
    try:
        k.setns(theirs, k.CLONE_NEWNET)  # pyrun is single-threaded: the whole process moves
        try:
            for host_name, dev in net_devices.items():
                name = (dev or {}).get("name") or host_name
                try:
                    _move(socket.if_nametoindex(name), ours, host_name)
                except OSError:
                    continue
        finally:
            k.setns(ours, k.CLONE_NEWNET)
    finally:
        os.close(theirs)
        os.close(ours)


def _move(index: int, netns_fd: int, name: str) -> None:
    attrs = _attr(IFLA_NET_NS_FD, struct.pack("=I", netns_fd)) + _attr(IFLA_IFNAME, name.encode() + b"\0")
    with _socket() as s:
        _request(s, RTM_NEWLINK, 0, struct.pack("=BxHiII", socket.AF_UNSPEC, 0, index, 0, 0) + attrs)


def _socket() -> socket.socket:
    return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)


def _socket_in(netns_fd: int) -> socket.socket:
    """A netlink socket of the namespace `netns_fd`: made there, used from here."""
    from . import _shim as k
    ours = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        k.setns(netns_fd, k.CLONE_NEWNET)  # pyrun is single-threaded: the whole process moves
        try:
            return _socket()
        finally:
            k.setns(ours, k.CLONE_NEWNET)
    finally:
        os.close(ours)


def _request(s: socket.socket, kind: int, flags: int, body: bytes) -> None:
    """One request and its acknowledgement; the kernel's error as OSError."""
    _send(s, kind, NLM_F_ACK | flags, 1, body)
    for msg_kind, payload in _replies(s):
        if msg_kind == NLMSG_ERROR:
            _raise_if_error(payload)
            return


def _send(s: socket.socket, kind: int, flags: int, seq: int, body: bytes) -> None:
    s.send(struct.pack("=IHHII", 16 + len(body), kind, NLM_F_REQUEST | flags, seq, 0) + body)


def _raise_if_error(error: bytes) -> None:
    """An NLMSG_ERROR's payload: the kernel's error as OSError (0 is an acknowledgement)."""
    (err,) = struct.unpack_from("=i", error)
    if err:
        raise OSError(-err, os.strerror(-err))


def _replies(s: socket.socket):
    """(type, payload) of each message until an error/ack or the end of a dump."""
    while True:
        for kind, payload in _records(s.recv(65536), "=IH", 16):
            yield kind, payload
            if kind in (NLMSG_ERROR, NLMSG_DONE):
                return


def _records(data: bytes, header: str, size: int):
    """(type, payload) of each length-type record: netlink messages (16-byte headers) and
    their attributes (4-byte ones) are laid out alike, each aligned to 4 bytes."""
    offset = 0
    while offset + size <= len(data):
        length, kind = struct.unpack_from(header, data, offset)
        if length < size:
            return
        yield kind, data[offset + size:offset + length]
        offset += (length + 3) & ~3


def _index(s: socket.socket, name: str) -> int | None:
    """The index of the link called `name` in the socket's namespace, None if there is none."""
    body = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, 0, 0, 0) + _attr(IFLA_IFNAME, name.encode() + b"\0")
    _send(s, RTM_GETLINK, 0, 2, body)
    reply = s.recv(65536)  # one message: the link, or an error
    _, kind = struct.unpack_from("=IH", reply)
    if kind == RTM_NEWLINK:
        return struct.unpack_from("=i", reply, 16 + 4)[0]
    (err,) = struct.unpack_from("=i", reply, 16) if kind == NLMSG_ERROR else (-71,)  # EPROTO
    if err == -19:  # ENODEV: no such link
        return None
    raise OSError(-err, os.strerror(-err))


def _permanent_addresses(s: socket.socket, index: int) -> list[tuple[int, int, int, bytes]]:
    """(family, prefixlen, scope, attributes to add it again) of each permanent address of
    global scope on link `index`: what a user set, not what the kernel or DHCP made."""
    body = struct.pack("=BBBBI", socket.AF_UNSPEC, 0, 0, 0, 0)
    _send(s, RTM_GETADDR, NLM_F_DUMP, 3, body)
    out = []
    for kind, payload in _replies(s):
        if kind == NLMSG_ERROR:
            _raise_if_error(payload)
            break
        if kind != RTM_NEWADDR:
            continue
        family, prefixlen, flags, scope, ifindex = struct.unpack_from("=BBBBI", payload)
        attrs = dict(_records(payload[8:], "=HH", 4))
        if IFA_FLAGS in attrs:
            flags = struct.unpack_from("=I", attrs[IFA_FLAGS])[0]
        if ifindex != index or scope != RT_SCOPE_UNIVERSE or not flags & IFA_F_PERMANENT:
            continue
        keep = b"".join(_attr(t, attrs[t]) for t in (IFA_LOCAL, IFA_ADDRESS, IFA_BROADCAST) if t in attrs)
        out.append((family, prefixlen, scope, keep))
    return out


def _attr(kind: int, data: bytes) -> bytes:
    length = 4 + len(data)
    return struct.pack("=HH", length, kind) + data + b"\0" * (-length % 4)
