"""Argument types and the parser class of the ``vidsvd`` command line.

Each type turns a string into a value or raises ``argparse.ArgumentTypeError`` with
a message that says what is expected; :class:`OneLineParser` prints that message as
one line and exits with status 2, the convention for usage errors.
"""

from __future__ import annotations

import argparse
import difflib
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeAlias

__all__ = [
    "BACKGROUND_MODELS",
    "DEFAULT_MODEL",
    "PLATE_WINDOW_S",
    "TRUTH_FORMATS",
    "Commands",
    "OneLineParser",
    "add_model_flag",
    "add_truth_layout_flags",
    "frame_size",
    "model_list",
    "non_negative_int",
    "positive_float",
    "positive_int",
    "positive_int_list",
    "rank_list",
    "scale_factor",
    "threshold_value",
]


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line on stderr, exit status 2.

    A command's parser refuses an option it does not know before anything else
    (argparse would first complain about a missing required option), naming the
    command and the closest options it has: ``vidsvd run: error: unknown option
    --outt; did you mean --out?``.
    """

    has_commands = False

    def add_subparsers(self, **kwargs: Any) -> Any:
        """As argparse's; options are then checked by each command's own parser."""
        self.has_commands = True
        return super().add_subparsers(**kwargs)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        """As argparse's, after refusing options this (command) parser does not know."""
        tokens = list(sys.argv[1:] if args is None else args)
        if not self.has_commands:
            self._refuse_unknown_options(tokens)
        return super().parse_known_args(tokens, namespace)

    def _refuse_unknown_options(self, tokens: Sequence[str]) -> None:
        known = [option for action in self._actions for option in action.option_strings]
        for token in tokens:
            if token == "--":
                return  # what follows is positional
            if not token.startswith("--"):
                continue
            name = token.split("=", 1)[0]
            if any(option.startswith(name) for option in known):
                continue  # an option or argparse's accepted abbreviation of one
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else ""
            self.error(f"unknown option {name}{hint}")

    def error(self, message: str) -> NoReturn:
        """Print ``PROG: error: MESSAGE (see PROG --help)`` and exit with status 2."""
        sys.stderr.write(f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")
        raise SystemExit(2)


def _number(text: str, option: str, example: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{option} must be a number (e.g. {example}), got {text!r}"
        ) from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{option} must be a finite number, got {text!r}")
    return value


def positive_float(option: str, example: str) -> Callable[[str], float]:
    """Return a type that accepts numbers > 0 for ``option``."""

    def parse(text: str) -> float:
        value = _number(text, option, example)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{option} must be greater than 0 (e.g. {example}), got {text}")
        return value

    return parse


def scale_factor(text: str) -> float:
    """Parse ``--scale``: a factor in (0, 1]."""
    value = _number(text, "--scale", "0.5")
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(
            f"--scale must be in (0, 1] (0.5 halves each side; use --size to enlarge), got {text}"
        )
    return value


def frame_size(text: str) -> tuple[int, int]:
    """Parse ``--size WxH`` into (width, height), both positive."""
    parts = text.lower().split("x")
    try:
        width, height = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--size must be WIDTHxHEIGHT (e.g. 320x240), got {text!r}"
        ) from None
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(
            f"--size must have positive width and height (e.g. 320x240), got {text}"
        )
    return width, height


def _integer(text: str, option: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{option} must be a whole number, got {text!r}") from None


def positive_int(option: str) -> Callable[[str], int]:
    """Return a type that accepts whole numbers >= 1 for ``option``."""

    def parse(text: str) -> int:
        value = _integer(text, option)
        if value < 1:
            raise argparse.ArgumentTypeError(f"{option} must be at least 1, got {text}")
        return value

    return parse


def non_negative_int(option: str) -> Callable[[str], int]:
    """Return a type that accepts whole numbers >= 0 for ``option``."""

    def parse(text: str) -> int:
        value = _integer(text, option)
        if value < 0:
            raise argparse.ArgumentTypeError(f"{option} must be 0 or more, got {text}")
        return value

    return parse


def positive_int_list(option: str, example: str) -> Callable[[str], list[int]]:
    """Return a type that parses ``1,2,5`` for ``option`` into sorted distinct positive ints."""

    def parse(text: str) -> list[int]:
        values = sorted({_integer(part.strip(), option) for part in text.split(",") if part.strip()})
        if not values or values[0] < 1:
            raise argparse.ArgumentTypeError(
                f"{option} must be positive whole numbers like {example}, got {text!r}"
            )
        return values

    return parse


rank_list = positive_int_list("--ranks", "1,2,5,10")
"""Parse ``--ranks 1,2,5,10`` into a sorted list of distinct positive ranks."""


def threshold_value(text: str) -> float | None:
    """Parse ``--threshold``: ``auto`` (None) or a positive number of grey levels."""
    if text == "auto":
        return None
    return positive_float("--threshold", "auto or 25")(text)


BACKGROUND_MODELS = ("robust", "median", "svd")
"""``--model`` choices; equal to :data:`pipelines.background_models.BACKGROUND_MODELS`
(a test keeps them equal), spelled here so that ``--help`` does not import dask."""

DEFAULT_MODEL = "robust"
"""The background model when ``--model`` is not given."""


TRUTH_FORMATS = ("cdnet", "masks")
"""Layouts of ground truth; equal to :data:`pipelines.steps.evaluate.TRUTH_FORMATS` (a test
keeps them equal), spelled here so that ``--help`` does not import dask."""


def add_truth_layout_flags(parser: argparse.ArgumentParser) -> None:
    """Add ``--format cdnet|masks`` and ``--frame-map CSV``: how a ``--truth`` folder is laid out."""
    parser.add_argument("--format", choices=TRUTH_FORMATS, default="masks", help="truth layout")
    parser.add_argument("--frame-map", metavar="CSV", help="masks format: CSV mapping each mask to its frame")


def model_list(text: str) -> list[str]:
    """Parse ``--models robust,median,svd`` into distinct model names, in the order given."""
    names = list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [name for name in names if name not in BACKGROUND_MODELS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"--models takes {','.join(BACKGROUND_MODELS)} or some of them, got {text!r}"
        )
    return names


PLATE_WINDOW_S = 600.0
"""``--plate-window``'s default; equal to :data:`pipelines.background_models.PLATE_WINDOW_S`
(a test keeps them equal)."""


def add_model_flag(parser: argparse.ArgumentParser) -> None:
    """Add ``--model robust|median|svd`` and ``--plate-window SECONDS``."""
    parser.add_argument(
        "--model",
        choices=BACKGROUND_MODELS,
        default=None,
        help=(
            "background: robust (temporal median of the gain-corrected frames, times a gain "
            "per frame), median (exact temporal "
            f"median) or svd (the notebook's rank-k SVD); default {DEFAULT_MODEL}, or svd when "
            "SVD factors or a rank are named"
        ),
    )
    parser.add_argument(
        "--plate-window",
        dest="plate_window_s",
        type=positive_float("--plate-window", "600"),
        default=None,
        metavar="SECONDS",
        help=(
            "robust and median models: one plate per this many seconds of a longer video, so that the "
            f"background follows the light over hours (default {PLATE_WINDOW_S:g}: one plate for a clip "
            "of up to 10 minutes)"
        ),
    )


def add_separation_output_flags(parser: argparse.ArgumentParser) -> None:
    """Add the flags of what a separation writes and how its masks are made.

    ``--masks-video`` (also write masks.mp4), ``--no-videos`` (write none),
    ``--foreground`` (store it) and ``--shadows``/``--no-shadows`` (cast shadows out of
    the masks, the default, or kept).
    """
    parser.add_argument(
        "--masks-video",
        action="store_true",
        help="also write masks.mp4: the masks as a video, white foreground on black",
    )
    parser.add_argument(
        "--no-videos",
        dest="make_videos",
        action="store_false",
        help=(
            "write no video (foreground.mp4, compare.mp4) nor sample frames: the masks, the"
            " background images and the report only, when the videos would cost more than they show"
        ),
    )
    parser.add_argument(
        "--foreground",
        action="store_true",
        help=(
            "also store the foreground (frame - background, int16) in STORE/foreground: 2 bytes per"
            " pixel and frame, which the video and the background determine (off by default)"
        ),
    )
    parser.add_argument(
        "--shadows",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=(
            "take cast shadows out of the masks (the default): pixels at the scene's commonest"
            " darkening of the background (+-0.05) where they show the ground's pattern darkened;"
            " --no-shadows keeps them in the foreground"
        ),
    )


Commands: TypeAlias = "argparse._SubParsersAction[OneLineParser]"
"""The sub-command table of a parser, as each command module receives it."""
