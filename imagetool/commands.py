"""The `imagetool` click group: one small function per subcommand.

Every failure ends as one line `imagetool: <thing>: <reason>` on stderr and exit 1
(IMAGETOOL_DEBUG=1 shows the traceback instead).
"""
from __future__ import annotations

import functools
import os
import sys

import click

from .cliargs import error_line, run_unpack, split_layout_ref


def _one_line_errors(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except click.exceptions.ClickException:
            raise
        except KeyboardInterrupt:
            click.echo("imagetool: interrupted", err=True)
            sys.exit(130)
        except Exception as e:  # noqa: BLE001 - the user gets one line, not a traceback
            if os.environ.get("IMAGETOOL_DEBUG"):
                raise
            click.echo(error_line(e), err=True)
            sys.exit(1)
    return wrapper


def _tls_options(fn):
    """--tls-verify and --cert-dir, as skopeo has them."""
    fn = click.option("--cert-dir", type=click.Path(file_okay=False), metavar="DIR",
                      help="CA certificates (*.crt) and a client certificate (*.cert with its "
                           "*.key) for the registry, instead of /etc/containers/certs.d/HOST:PORT/.")(fn)
    fn = click.option("--tls-verify", type=click.BOOL, default=True, show_default=True,
                      metavar="BOOL",
                      help="Verify the registry's certificate. --tls-verify=false checks "
                           "nothing, and falls back to plain HTTP when the server does not "
                           "speak TLS.")(fn)
    return fn


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option("0.1.0", prog_name="imagetool")
def cli() -> None:
    """Pull images from registries into OCI image layouts, unpack them into bundles;
    push and copy them, inspect and list what a registry holds."""


@cli.command()
@click.option("--platform", help="OS/ARCH[/VARIANT] to pick from an index (default: this host's).")
@click.option("--creds", metavar="USER:PASS", help="Credentials for the registry.")
@click.option("--authfile", type=click.Path(dir_okay=False), help="Docker-style config.json with credentials.")
@click.option("--plain-http", is_flag=True,
              help="Use HTTP, not HTTPS (localhost and 127.0.0.0/8: HTTPS first, HTTP when "
                   "the server does not speak TLS).")
@_tls_options
@click.option("--jobs", "-j", type=int, default=None, help="Blobs downloaded in parallel (default 4).")
@click.option("--quiet", "-q", is_flag=True, help="No progress display.")
@click.option("--format", "format_", type=click.Choice(["oci", "keep"]), default="oci",
              show_default=True,
              help="oci: OCI media types, a Docker v2s2 manifest rewritten to them (a new "
                   "manifest digest, the same blobs), as skopeo's oci: destination does; "
                   "keep: the manifest byte for byte as the registry sent it (its digest stays "
                   "the registry's), but a Docker image is then recorded with Docker media "
                   "types, which skopeo 1.9 and umoci 0.4.7 cannot read from a layout.")
@click.argument("ref")
@click.argument("layout_dir")
@_one_line_errors
def pull(ref, layout_dir, platform, creds, authfile, plain_http, tls_verify, cert_dir, jobs,
         quiet, format_):
    """Pull REF into the OCI image layout LAYOUT_DIR, tagged with REF's tag."""
    from .puller import pull as do_pull
    result = do_pull(ref, layout_dir, platform=platform, creds=creds, authfile=authfile,
                     plain_http=plain_http, jobs=jobs, progress=False if quiet else None,
                     format=format_, tls_verify=tls_verify, cert_dir=cert_dir)
    click.echo(result.descriptor["digest"])


@cli.command()
@click.option("--rootless", is_flag=True, help="Unpack as an unprivileged user would.")
@click.option("--uid-map", multiple=True, metavar="CONTAINER:HOST:SIZE", help="User ID mapping.")
@click.option("--gid-map", multiple=True, metavar="CONTAINER:HOST:SIZE", help="Group ID mapping.")
@click.argument("image", metavar="LAYOUT_DIR[:TAG]")
@click.argument("bundle_dir")
@_one_line_errors
def unpack(image, bundle_dir, rootless, uid_map, gid_map):
    """Unpack an image from a layout into the OCI bundle BUNDLE_DIR."""
    run_unpack(image, bundle_dir, rootless, uid_map, gid_map)


def _registry_options(fn):
    """How to reach a registry: credentials, HTTP or TLS."""
    fn = _tls_options(fn)
    fn = click.option("--plain-http", is_flag=True, help="Use HTTP, not HTTPS.")(fn)
    fn = click.option("--authfile", type=click.Path(dir_okay=False),
                      help="Docker-style config.json with credentials.")(fn)
    fn = click.option("--creds", metavar="USER:PASS", help="Credentials for the registry.")(fn)
    return fn


def _print_json(value) -> None:
    import json
    click.echo(json.dumps(value, indent=4))  # skopeo's indent


@cli.command()
@click.option("--raw", is_flag=True, help="Print the manifest as stored (as served, for docker://).")
@click.option("--config", "show_config", is_flag=True, help="Print the image config.")
@click.option("--platform", help="OS/ARCH[/VARIANT] to look at in an index (docker://; default: this host's).")
@_registry_options
@click.argument("image", metavar="LAYOUT_DIR[:TAG] | docker://REFERENCE")
@_one_line_errors
def inspect(image, raw, show_config, platform, creds, authfile, plain_http, tls_verify, cert_dir):
    """Describe an image in a layout, or in a registry without pulling it (docker://REF):
    JSON with skopeo inspect's keys."""
    import json
    if image.startswith("docker://"):
        from .remote import inspect as remote_inspect
        answer = remote_inspect(image[len("docker://"):], raw=raw, config=show_config,
                                platform=platform, creds=creds, authfile=authfile,
                                plain_http=plain_http, tls_verify=tls_verify, cert_dir=cert_dir)
        if isinstance(answer, bytes):
            sys.stdout.buffer.write(answer)
        else:
            _print_json(answer)
        return
    from .layout import Layout
    if image.startswith("oci:"):
        image = image[len("oci:"):]
    layout_dir, tag = split_layout_ref(image)
    layout = Layout(layout_dir)
    desc = layout.resolve(tag)
    if raw:
        sys.stdout.buffer.write(layout.read_blob(desc["digest"], desc.get("size")))
        return
    manifest = layout.read_json(desc["digest"], desc.get("size"))
    if "manifests" in manifest:
        click.echo(json.dumps({"Digest": desc["digest"], "MediaType": desc.get("mediaType"),
                               "Manifests": manifest["manifests"]}, indent=2))
        return
    config_desc = _config_desc(manifest, desc)
    config_blob = layout.read_json(config_desc["digest"], config_desc.get("size"))
    if show_config:
        click.echo(json.dumps(config_blob, indent=2))
        return
    config = config_blob.get("config") or {}
    layers = manifest.get("layers") or []
    tags = sorted(t for t, d in layout.tags() if t and d.get("digest") == desc["digest"])
    click.echo(json.dumps({
        "Name": layout_dir,
        "Tag": (desc.get("annotations") or {}).get("org.opencontainers.image.ref.name"),
        "Digest": desc["digest"],
        "RepoTags": tags,
        "MediaType": desc.get("mediaType") or manifest.get("mediaType"),
        "Created": config_blob.get("created"),
        "DockerVersion": config_blob.get("docker_version", ""),
        "Labels": config.get("Labels"),
        "Architecture": config_blob.get("architecture"),
        "Os": config_blob.get("os"),
        "Variant": config_blob.get("variant"),
        "Layers": [layer["digest"] for layer in layers],
        "LayersData": [{"MIMEType": layer.get("mediaType"), "Digest": layer["digest"],
                        "Size": layer.get("size"), "Annotations": layer.get("annotations")}
                       for layer in layers],
        "Env": config.get("Env"),
        "Entrypoint": config.get("Entrypoint"),
        "Cmd": config.get("Cmd"),
        "WorkingDir": config.get("WorkingDir"),
        "User": config.get("User"),
        "Size": sum(layer.get("size", 0) for layer in layers),
    }, indent=2))


def _config_desc(manifest: dict, desc: dict) -> dict:
    config = manifest.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("digest"), str):
        raise RuntimeError(f"{desc['digest']}: not an image manifest (no config)")
    return config


def _ls_row(layout, tag, desc: dict) -> dict:
    """What `ls` shows for one index.json entry: from the manifest and its config."""
    row = {"tag": tag, "digest": desc.get("digest"), "mediaType": desc.get("mediaType"),
           "platform": None, "size": None, "created": None}
    manifest = layout.read_json(desc["digest"], desc.get("size"))
    if "manifests" in manifest:
        plats = [_platform_text(d.get("platform") or {}) for d in manifest["manifests"]]
        row["platform"] = ",".join(p for p in plats if p) or None
        row["size"] = desc.get("size", 0) + sum(d.get("size", 0) for d in manifest["manifests"])
        return row
    config_desc = _config_desc(manifest, desc)
    config = layout.read_json(config_desc["digest"], config_desc.get("size"))
    row["platform"] = _platform_text(config) or _platform_text(desc.get("platform") or {}) or None
    row["size"] = (desc.get("size", 0) + config_desc.get("size", 0)
                   + sum(d.get("size", 0) for d in manifest.get("layers") or []))
    row["created"] = config.get("created")
    return row


def _platform_text(p: dict) -> str:
    return "/".join(x for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x)


def _human_size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


@cli.command(name="ls")
@click.option("--format", "format_", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="A table for people or JSON for programs.")
@click.argument("layout_dir")
@_one_line_errors
def ls_(layout_dir, format_):
    """List the images of a layout: TAG, DIGEST, PLATFORM, SIZE, CREATED.

    SIZE is the stored size (manifest, config and compressed layers).
    """
    from .layout import Layout
    layout = Layout(layout_dir)
    rows = [_ls_row(layout, tag, desc) for tag, desc in layout.tags()]
    if format_ == "json":
        import json
        click.echo(json.dumps(rows, indent=2))
        return
    table = [("TAG", "DIGEST", "PLATFORM", "SIZE", "CREATED")]
    for r in rows:
        table.append((r["tag"] or "<none>", r["digest"], r["platform"] or "-",
                      _human_size(r["size"]), r["created"] or "-"))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    for row in table:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])


@cli.command(name="list-tags")
@_registry_options
@click.argument("repository", metavar="[docker://]REPOSITORY")
@_one_line_errors
def list_tags(repository, creds, authfile, plain_http, tls_verify, cert_dir):
    """List the tags of a repository in a registry (JSON, as skopeo list-tags)."""
    from .remote import list_tags as do_list
    _print_json(do_list(repository, creds=creds, authfile=authfile, plain_http=plain_http,
                        tls_verify=tls_verify, cert_dir=cert_dir))


def _chunk_size(text: str | None) -> int:
    """0 (one PUT) or a size in bytes, with an optional k/M/G (binary) suffix."""
    if text is None:
        return 0
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().rstrip("ib")
    mult = units.get(t[-1:], 1)
    number = t[:-1] if t[-1:] in units else t
    if not number.isdigit():
        raise click.BadParameter(f"{text!r} is not a size (bytes, or with k, M or G)",
                                 param_hint="'--chunk-size'")
    return int(number) * mult


@cli.command()
@_registry_options
@click.option("--chunk-size", metavar="SIZE",
              help="Upload each blob in PATCH requests of SIZE bytes (k, M, G allowed), not one PUT.")
@click.option("--mount-from", metavar="REPOSITORY",
              help="A repository of the same registry to link blobs from instead of sending them.")
@click.argument("image", metavar="LAYOUT_DIR[:TAG]")
@click.argument("ref", metavar="REFERENCE")
@_one_line_errors
def push(image, ref, creds, authfile, plain_http, tls_verify, cert_dir, chunk_size, mount_from):
    """Push an image (or index) of a layout to a registry: blobs the registry has are not
    sent again, the manifest goes last. Prints the manifest digest."""
    from .pusher import push as do_push
    layout_dir, tag = split_layout_ref(image[len("oci:"):] if image.startswith("oci:") else image)
    result = do_push(layout_dir, tag, ref[len("docker://"):] if ref.startswith("docker://") else ref,
                     creds=creds, authfile=authfile, plain_http=plain_http, tls_verify=tls_verify,
                     cert_dir=cert_dir, chunk_size=_chunk_size(chunk_size), mount_from=mount_from)
    click.echo(result.digest)


@cli.command()
@click.option("--src-creds", metavar="USER:PASS", help="Credentials for the source registry.")
@click.option("--dest-creds", metavar="USER:PASS", help="Credentials for the destination registry.")
@click.option("--authfile", type=click.Path(dir_okay=False), help="Docker-style config.json with credentials.")
@click.option("--plain-http", is_flag=True, help="Use HTTP, not HTTPS, for both registries.")
@click.option("--src-tls-verify", type=click.BOOL, default=True, metavar="BOOL",
              help="Verify the source registry's certificate.")
@click.option("--dest-tls-verify", type=click.BOOL, default=True, metavar="BOOL",
              help="Verify the destination registry's certificate.")
@click.option("--src-cert-dir", type=click.Path(file_okay=False), metavar="DIR",
              help="CA and client certificates for the source registry.")
@click.option("--dest-cert-dir", type=click.Path(file_okay=False), metavar="DIR",
              help="CA and client certificates for the destination registry.")
@click.option("--platform", help="OS/ARCH[/VARIANT] to copy from an index (default: this host's).")
@click.option("--format", "format_", type=click.Choice(["oci", "keep"]), default=None,
              help="Into a layout: as imagetool pull --format (default oci).")
@click.option("--chunk-size", metavar="SIZE", help="Into a registry: as imagetool push --chunk-size.")
@click.argument("src", metavar="SOURCE")
@click.argument("dst", metavar="DESTINATION")
@_one_line_errors
def copy(src, dst, src_creds, dest_creds, authfile, plain_http, src_tls_verify, dest_tls_verify,
         src_cert_dir, dest_cert_dir, platform, format_, chunk_size):
    """Copy an image: SOURCE and DESTINATION are docker://REFERENCE or oci:LAYOUT[:TAG],
    as skopeo copy takes them. Prints the digest written."""
    from .pusher import copy as do_copy
    click.echo(do_copy(src, dst, src_creds=src_creds, dest_creds=dest_creds, authfile=authfile,
                       src_tls_verify=src_tls_verify, dest_tls_verify=dest_tls_verify,
                       src_cert_dir=src_cert_dir, dest_cert_dir=dest_cert_dir,
                       plain_http=plain_http, platform=platform, format=format_,
                       chunk_size=_chunk_size(chunk_size)))


@cli.group()
def artifact() -> None:
    """OCI artifacts: files pushed as a manifest with an artifactType, attached to an
    image or not, and pulled back as files."""


def _file_and_type(text: str) -> tuple[str, str | None]:
    """FILE[:MEDIATYPE], as oras takes it (a media type has a '/', a path part may not)."""
    path, sep, media_type = text.rpartition(":")
    if sep and "/" in media_type and path:
        return path, media_type
    return text, None


def _annotations(items) -> dict:
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="'--annotation'")
        out[key] = value
    return out


@artifact.command(name="push")
@_registry_options
@click.option("--artifact-type", required=True, metavar="TYPE",
              help="The artifact's media type (e.g. application/spdx+json).")
@click.option("--subject", metavar="TAG|DIGEST",
              help="Attach the artifact to this image of the same repository.")
@click.option("--annotation", "-a", multiple=True, metavar="KEY=VALUE", help="A manifest annotation.")
@click.argument("ref", metavar="REFERENCE")
@click.argument("files", metavar="FILE[:MEDIATYPE]...", nargs=-1, required=True)
@_one_line_errors
def artifact_push(ref, files, artifact_type, subject, annotation, creds, authfile, plain_http,
                  tls_verify, cert_dir):
    """Push FILEs as an artifact to REFERENCE. Prints the artifact's digest."""
    from .artifacts import push_artifact
    click.echo(push_artifact(ref, [_file_and_type(f) for f in files], artifact_type=artifact_type,
                             subject=subject, annotations=_annotations(annotation), creds=creds,
                             authfile=authfile, plain_http=plain_http, tls_verify=tls_verify,
                             cert_dir=cert_dir))


@artifact.command(name="pull")
@_registry_options
@click.argument("ref", metavar="REFERENCE")
@click.argument("outdir", metavar="DIR")
@_one_line_errors
def artifact_pull(ref, outdir, creds, authfile, plain_http, tls_verify, cert_dir):
    """Pull the files of the artifact REFERENCE into DIR (named by their titles; an
    existing file is never replaced). Prints the paths written."""
    from .artifacts import pull_artifact
    for path in pull_artifact(ref, outdir, creds=creds, authfile=authfile, plain_http=plain_http,
                              tls_verify=tls_verify, cert_dir=cert_dir):
        click.echo(path)


@cli.command()
@_registry_options
@click.option("--artifact-type", metavar="TYPE", help="Only the referrers of this artifact type.")
@click.argument("ref", metavar="[docker://]REFERENCE")
@_one_line_errors
def referrers(ref, artifact_type, creds, authfile, plain_http, tls_verify, cert_dir):
    """List the artifacts attached to an image (signatures, SBOMs): JSON descriptors,
    from the referrers API or, where the registry has none, its fallback tag."""
    from .artifacts import referrers as do_referrers
    _print_json(do_referrers(ref[len("docker://"):] if ref.startswith("docker://") else ref,
                             artifact_type=artifact_type, creds=creds, authfile=authfile,
                             plain_http=plain_http, tls_verify=tls_verify, cert_dir=cert_dir))


@cli.command()
@click.option("--username", "-u", help="User name (prompted if absent).")
@click.option("--password", "-p", help="Password (prompted if absent).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.option("--authfile", type=click.Path(dir_okay=False), help="Docker-style config.json to write.")
@click.option("--plain-http", is_flag=True, help="Use HTTP, not HTTPS.")
@_tls_options
@click.argument("registry")
@_one_line_errors
def login(registry, username, password, password_stdin, authfile, plain_http, tls_verify, cert_dir):
    """Check credentials against REGISTRY and store them."""
    from . import auth
    from .registry import client_for
    registry = _registry_name(registry)
    if not username:
        username = click.prompt("Username")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif password is None:
        password = click.prompt("Password", hide_input=True)
    client_for(registry, plain_http=plain_http, tls_verify=tls_verify, cert_dir=cert_dir,
               creds=(username, password)).ping()
    path = auth.store(registry, username, password, authfile)
    click.echo(f"Login Succeeded ({path})")


@cli.command()
@click.option("--authfile", type=click.Path(dir_okay=False), help="Docker-style config.json to edit.")
@click.argument("registry")
@_one_line_errors
def logout(registry, authfile):
    """Remove stored credentials for REGISTRY."""
    from . import auth
    registry = _registry_name(registry)
    if not auth.remove(registry, authfile):
        raise RuntimeError(f"{registry}: not logged in")
    click.echo(f"Removed login credentials for {registry}")


def _registry_name(text: str) -> str:
    from .reference import DOCKER_HUB
    text = text.removeprefix("https://").removeprefix("http://").rstrip("/")
    if text in ("index.docker.io", "registry-1.docker.io", "index.docker.io/v1", DOCKER_HUB):
        return DOCKER_HUB
    if not text or "/" in text:
        raise RuntimeError(f"{text}: not a registry host[:port]")
    return text


if __name__ == "__main__":
    cli(prog_name="imagetool")
