"""Entry point of the `pyrun` script: nothing but argv handed to cli.main."""
import sys

# Commands that will move a process into a cgroup: the lock warm-up starts here,
# before the imports, so the kernel's wait overlaps them (see cgroups.prime).
_MIGRATING = frozenset(("create", "run", "exec"))


def main() -> int:
    if not _MIGRATING.isdisjoint(sys.argv[1:8]):
        from .cgroups import prime
        prime()
    from .cli import main as cli_main
    return cli_main(sys.argv[1:])
