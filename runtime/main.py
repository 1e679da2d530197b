"""Entry point of the `pyrun` script: nothing but argv handed to cli.main."""
import sys


def main() -> int:
    from .cli import main as cli_main
    return cli_main(sys.argv[1:])
