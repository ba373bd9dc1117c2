"""The ``polyvae`` command line. Argument parsing and reporting only: the work is
done by the library functions each subcommand calls.

:mod:`~polyvae.cli.parser` defines the subcommands and their options;
:mod:`~polyvae.cli.commands` holds one function per subcommand;
:mod:`~polyvae.cli.messages` words library messages with command-line options;
:mod:`~polyvae.cli.runner` runs a command in a child process that reports crashes. JAX's
compiled code is kept between runs by the package itself (:mod:`polyvae._compile_cache`).
"""

from __future__ import annotations

import os

from polyvae.cli.commands import _COMMANDS
from polyvae.cli.messages import cli_message  # noqa: F401  (importable here too)
from polyvae.cli.parser import _atom_numbers, build_parser  # noqa: F401  (importable here too)
from polyvae.cli.runner import _execute, _execute_in_child

__all__ = ["main", "build_parser"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``polyvae`` command; returns the exit code.

    Errors are one line on stderr with exit code 2. Run as a program (``argv`` None),
    the command works in a child process where the platform forks, so that a crash of
    a compiled trajectory reader is reported like any other error.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    command = _COMMANDS[args.command]
    if argv is None and hasattr(os, "fork"):
        return _execute_in_child(command, args)
    return _execute(command, args)
