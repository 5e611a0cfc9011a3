"""``vidsvd demo``: a synthetic scene with ground truth, the main job on it, and its scores."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.cli.arguments import Commands
from pipelines.cli.cluster_flags import add_cluster_flags, cluster_options
from pipelines.cli.console import say

__all__ = ["add_parser"]


def add_parser(commands: Commands) -> None:
    """Add ``demo`` to the sub-command table."""
    parser = commands.add_parser(
        "demo", help="a synthetic scene with ground truth, the main job on it, and its scores"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_cluster_flags(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Run the demo; return the exit status."""
    from pipelines.steps.context import JobContext
    from pipelines.steps.demo import demo
    from pipelines.text_tables import format_scores

    with JobContext(
        cluster=cluster_options(args), progress=not args.quiet, log=None if args.quiet else say
    ) as job:
        scores = demo(out=args.out, context=job)
    print(format_scores(scores))
    if not args.quiet:
        out = Path(args.out)
        say(f"look at {out / 'report.html'}, {out / 'compare.mp4'} and {out / 'background.png'}")
    return 0
