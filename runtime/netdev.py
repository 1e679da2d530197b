"""linux.netDevices: host network interfaces moved into the container's network namespace
and, at delete, back out again (as runc 1.3 does), over rtnetlink.

    "netDevices": {"<host name>": {"name": "<name inside>"}}

Moving a link is one RTM_NEWLINK for its index with IFLA_NET_NS_FD (and IFLA_IFNAME
to rename it on the way); the socket belongs to the namespace it was made in, so
the way back opens its socket inside the container's namespace.
"""
import os
import socket
import struct

from .errors import ConfigError, PyrunError

NETLINK_ROUTE = 0
RTM_NEWLINK = 16
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
NLMSG_ERROR = 2
IFLA_IFNAME = 3
IFLA_NET_NS_FD = 28
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
    """Into the network namespace of `pid` (the init, before it runs anything)."""
    if not net_devices:
        return
    ns = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        for host_name, dev in net_devices.items():
            name = (dev or {}).get("name") or host_name
            try:
                _move(socket.if_nametoindex(host_name), ns, name)
            except OSError as e:
                raise PyrunError(f"linux.netDevices: move {host_name} into the container as {name}: {e.strerror}") from None
    finally:
        os.close(ns)


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
    ifinfo = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, index, 0, 0)
    body = ifinfo + attrs
    msg = struct.pack("=IHHII", 16 + len(body), RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, 1, 0) + body
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE) as s:
        s.send(msg)
        reply = s.recv(65536)
    length, kind = struct.unpack_from("=IH", reply)
    if kind == NLMSG_ERROR:
        (err,) = struct.unpack_from("=i", reply, 16)
        if err:
            raise OSError(-err, os.strerror(-err))


def _attr(kind: int, data: bytes) -> bytes:
    length = 4 + len(data)
    return struct.pack("=HH", length, kind) + data + b"\0" * (-length % 4)
