"""The ``vidsvd`` command line: one module per command over :mod:`pipelines.steps`.

Building the parser imports only argparse and this package, so ``--help`` and usage
errors answer at once; a command's handler imports the steps it runs.  Exit statuses
come from :mod:`pipelines.cli.exit_status`; tracebacks are shown only for bugs, or for
every error with ``VIDSVD_DEBUG=1``.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import NoReturn

from cluster.process_memory import fault_arrays_in_small_pages, keep_freed_memory
from pipelines.cli import apply, bench, decompose, demo, evaluate, ingest, report, run, separate
from pipelines.cli.arguments import OneLineParser
from pipelines.cli.console import say, show_warning
from pipelines.cli.exit_status import INTERRUPTED, environment_fault, exit_status
from pipelines.cli.interrupts import forget_unhandled_interrupt, interrupts_raised_again

__all__ = ["build_parser", "console_main", "main"]

Handler = Callable[[argparse.Namespace], int]

_COMMANDS = (ingest, decompose, separate, report, evaluate, apply, run, demo, bench)

_INTERRUPTED = {
    "": "interrupted; complete outputs are intact, rerun to finish",
    # a plain rerun of ingest refuses the incomplete store: say what continues it
    "ingest": "interrupted; the frames stored so far are kept, rerun with --resume to finish",
}
"""The line printed on Ctrl-C, by command ("" for every other)."""


def build_parser() -> OneLineParser:
    """Return the parser of every ``vidsvd`` subcommand."""
    parser = OneLineParser(
        prog="vidsvd",
        description="Separate the still background of long videos from what moves through them.",
    )
    parser.add_argument("--version", action="version", version=f"vidsvd {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    commands.required = True
    for command in _COMMANDS:
        command.add_parser(commands)
    return parser


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("vidsvd")
    except metadata.PackageNotFoundError:
        return "(not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    debug = os.environ.get("VIDSVD_DEBUG") == "1"
    with warnings.catch_warnings(), interrupts_raised_again() as interrupts:
        warnings.showwarning = show_warning
        try:
            status = handler(args)
            if interrupts.close():  # Ctrl-C was dropped in a callback as the command ended
                raise KeyboardInterrupt
            return status
        except KeyboardInterrupt:
            say(_INTERRUPTED.get(args.command, _INTERRUPTED[""]))
            forget_unhandled_interrupt()  # handled: exit 130, not by SIGINT
            return INTERRUPTED
        except Exception as exc:
            fault = environment_fault(exc)
            if fault is not None and not debug:
                say(f"error: {fault}")
                return 1
            known = exit_status(exc)
            if known is None or debug:
                raise
            say(f"error: {exc}")
            return known


def console_main() -> NoReturn:
    """The ``vidsvd`` executable: run :func:`main`, then exit with its status.

    Before exiting, every object is frozen out of the garbage collector
    (:func:`gc.freeze`): at exit Python collects all objects once more before it frees
    the modules, which with dask, distributed and zarr loaded is 0.1-0.2 s of a
    2-second command.  By then the command has written and closed everything it
    writes; the collection would only free memory the process gives back on exit.
    Callers of :func:`main` in a long-lived process (tests, notebooks) keep their
    collector.

    First, before any thread starts, the process's malloc is set to reuse the memory
    it frees (:func:`cluster.process_memory.keep_freed_memory`): the embedded worker
    computes in this process, and each array it would otherwise map afresh is
    faulted in and zeroed by the kernel again.  Then NumPy is imported, told not to
    advise huge pages for this process's arrays
    (:func:`cluster.process_memory.fault_arrays_in_small_pages`; worker processes it
    starts keep NumPy's default).  Both for the command
    only: a long-lived caller of :func:`main` keeps its allocator as it is, and so does
    ``vidsvd bench``, whose contenders (the processes it starts and the references it
    computes itself) must run as a user would run them; the ``vidsvd`` commands it
    times set their own.
    """
    if sys.argv[1:2] != [bench.COMMAND]:
        keep_freed_memory()  # first: importing NumPy starts OpenBLAS's threads
        fault_arrays_in_small_pages()
    status = main()
    gc.freeze()
    sys.exit(status)
