"""The ``samebits`` command line: ``samebits demo | audit | env | record | verify | serve``."""

from __future__ import annotations

import argparse
import sys

from samebits.errors import SamebitsError

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


def _cmd_demo(args: argparse.Namespace) -> int:
    from samebits import _demo

    result = _demo.run()
    return EXIT_OK if result["changed_invariant"] == 0 else EXIT_FINDINGS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="samebits", description="Same input, same output bits.")
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo", help="show batch variance on the bundled MiniLM, before and after the mode"
    )
    demo.set_defaults(func=_cmd_demo)
    return p


def _version() -> str:
    from samebits import __version__

    return f"samebits {__version__}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return args.func(args)
    except SamebitsError as e:
        print(f"samebits {args.command}: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
