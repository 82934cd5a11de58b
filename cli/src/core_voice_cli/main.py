"""`corevoice`: the operators' command line (start the stack, place a synthetic call)."""

import argparse
import sys

from core_voice_cli import calls, synthetic_call, up


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="corevoice", description=__doc__)
    subparsers = parser.add_subparsers(required=True, metavar="COMMAND")
    up.add_parser(subparsers)
    synthetic_call.add_parser(subparsers)
    calls.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
