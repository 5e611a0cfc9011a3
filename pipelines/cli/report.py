"""``vidsvd report``: compression and reconstruction error per rank, spectrum, components."""

from __future__ import annotations

import argparse
import json

from pipelines.cli.arguments import Commands, add_truth_layout_flags, rank_list
from pipelines.cli.cluster_flags import add_cluster_flags, cluster_options
from pipelines.cli.console import say
from pipelines.cli.early_workers import early_workers

__all__ = ["add_parser"]


def add_parser(commands: Commands) -> None:
    """Add ``report`` to the sub-command table."""
    parser = commands.add_parser(
        "report",
        help="compression and reconstruction error per rank, spectrum, components (JSON + HTML)",
    )
    parser.add_argument("--store", required=True, help="store with a video and its factors")
    parser.add_argument("--factors", metavar="NAME", help="factor set (default: the highest rank)")
    parser.add_argument("--ranks", type=rank_list, metavar="1,2,5,10", help="ranks to measure")
    parser.add_argument(
        "--out", default="vidsvd-out", metavar="DIR", help="output folder (default vidsvd-out)"
    )
    parser.add_argument(
        "--truth",
        metavar="PATH",
        help="ground-truth folder: also score the stored masks and each background model against it",
    )
    add_truth_layout_flags(parser)
    parser.add_argument("--json", action="store_true", help="print report.json to stdout instead of a table")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_cluster_flags(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Run ``report``; return the exit status."""
    from pipelines.steps.context import JobContext

    with (
        JobContext(
            cluster=cluster_options(args), progress=not args.quiet, log=None if args.quiet else say
        ) as job,
        early_workers(job, args.store, writing_step=None),
    ):
        from pipelines.steps.report import report
        from pipelines.text_tables import format_rank_table, format_scores

        result = report(
            store=args.store,
            out=args.out,
            ranks=args.ranks,
            factors=args.factors,
            truth=args.truth,
            truth_format=args.format,
            frame_map=args.frame_map,
            context=job,
        )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_rank_table(result["ranks"]))
        if "quality" in result:
            print(format_scores(result["quality"]))
    return 0
