"""Push the demo busybox image: python -m tests.support.seed --registry HOST:PORT

The image's Cmd greets, so `make demo` shows a container ran: `echo Hello from pyrun`.
"""
from __future__ import annotations

import argparse
import sys

from tests.support import images

GREETING = ["echo", "Hello from pyrun"]


def seed(registry: str, repo: str = "demo/busybox", tag: str = "latest") -> str:
    return images.push(registry, repo, tag, images.busybox_image(cmd=GREETING))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.seed")
    parser.add_argument("--registry", required=True, help="HOST:PORT of a plain-HTTP registry")
    parser.add_argument("--repo", default="demo/busybox")
    parser.add_argument("--tag", default="latest")
    args = parser.parse_args(argv)
    try:
        digest = seed(args.registry, args.repo, args.tag)
    except (OSError, RuntimeError) as e:
        print(f"seed: {args.registry}: {e}", file=sys.stderr)
        return 1
    print(f"{args.registry}/{args.repo}:{args.tag}@{digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
