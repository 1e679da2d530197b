"""imagetool: pull images from registries into OCI image layouts, unpack them into bundles,
push and copy them.

    imagetool.pull("127.0.0.1:5000/demo/busybox:latest", "/tmp/layout")
    imagetool.unpack("/tmp/layout", "latest", "/tmp/bundle")
    imagetool.push("/tmp/layout", "latest", "127.0.0.1:5000/mine/busybox:v1")

Importing the package costs nothing: the modules behind these load on first call.
"""
from __future__ import annotations


def pull(ref: str, layout: str, **opts):
    """Pull `ref` into the OCI layout `layout`. Options: platform, creds, authfile,
    plain_http, tls_verify, cert_dir, jobs, progress, format ("oci" or "keep"), tag.
    Returns a PullResult (descriptor, fetched blobs). For example (run by
    tests/test_api_doctest.py against a local registry):

    >>> result = imagetool.pull(ref, layout)
    >>> sorted(os.listdir(layout))
    ['blobs', 'index.json', 'oci-layout']
    """
    from .puller import pull as _pull
    return _pull(ref, layout, **opts)


def unpack(layout_dir: str, tag: str | None, bundle_dir: str, **opts):
    """Unpack the image `tag` of `layout_dir` into the OCI bundle `bundle_dir`.
    Options: rootless, uid_map, gid_map (lists of OCI LinuxIDMapping dicts). For example,
    after the pull above:

    >>> _ = imagetool.unpack(layout, "latest", bundle_dir)
    >>> sorted(os.listdir(bundle_dir))
    ['config.json', 'rootfs']
    """
    from .unpacker import unpack as _unpack
    return _unpack(layout_dir, tag, bundle_dir, **opts)


def push(layout_dir: str, tag: str | None, ref: str, **opts):
    """Push the image `tag` of `layout_dir` to `ref`. Options: creds, authfile,
    plain_http, tls_verify, cert_dir, chunk_size, mount_from. Returns a PushResult."""
    from .pusher import push as _push
    return _push(layout_dir, tag, ref, **opts)


def copy(src: str, dst: str, **opts) -> str:
    """Copy between docker://REF and oci:LAYOUT[:TAG] (skopeo's transports); the digest."""
    from .pusher import copy as _copy
    return _copy(src, dst, **opts)
