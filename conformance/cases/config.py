"""config.md's general rules: annotations (unknown keys accepted), extensibility (unknown
properties ignored), what create applies; config-linux.md#Personality."""
from conformance import host
from conformance.suite import case


@case("annotations.unknown-keys-accepted", "config.md#Annotations")
def annotations_unknown(ctx):
    """An unknown annotation key MUST NOT be an error."""
    cfg = ctx.config()
    cfg["annotations"] = {"com.example.cf.unknown": "x", "org.opencontainers.cf.unknown": "y", "cf": ""}
    out = ctx.sh("echo ran", cfg)
    ctx.check(out.strip() == "ran", f"the container printed {out!r}")


@case("extensibility.unknown-property-ignored", "config.md#Extensibility")
def unknown_top(ctx):
    """An unknown top-level property MUST be ignored, not an error."""
    cfg = ctx.config()
    cfg["cfUnknownProperty"] = {"nested": [1, 2]}
    p = ctx.run_container(dict(cfg, process=dict(cfg["process"], args=["echo", "ran"])))
    ctx.check(p.out.strip() == "ran", f"with an unknown property: {p.why()}")


@case("extensibility.unknown-nested-property-ignored", "config.md#Extensibility")
def unknown_nested(ctx):
    cfg = ctx.config()
    cfg["process"]["cfUnknownProperty"] = True
    cfg["linux"]["cfUnknownProperty"] = "x"
    cfg["process"]["args"] = ["echo", "ran"]
    p = ctx.run_container(cfg)
    ctx.check(p.out.strip() == "ran", f"with unknown process and linux properties: {p.why()}")


@case("create.applies-config", "runtime.md#Create")
def create_applies(ctx):
    """All of config.json but process is applied at create: the hostname and a mount are there
    before start, as the host sees the container's process."""
    cfg = ctx.config()
    cfg["hostname"] = "cf-at-create"
    cfg["mounts"].append({"destination": "/cf-tmp", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]})
    cfg["process"]["args"] = ["sleep", "100"]
    c, _ = ctx.create(cfg)
    pid = c.pid
    name = host.capture(["nsenter", "-t", str(pid), "-u", "hostname"]).strip()
    ctx.check(name == "cf-at-create", f"after create the container's hostname is {name!r}")
    with open(f"/proc/{pid}/mountinfo") as f:
        points = [line.split()[4] for line in f]
    ctx.check("/cf-tmp" in points, "after create the configured mount is not there")


@case("personality", "config-linux.md#Personality")
def personality(ctx):
    cfg = ctx.config()
    cfg["linux"]["personality"] = {"domain": "LINUX32"}
    out = ctx.sh("uname -m", cfg)
    ctx.check(out.strip() in ("i686", "i386", "armv7l", "armv8l"), f"uname -m under LINUX32: {out.strip()!r}")
