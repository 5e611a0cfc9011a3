"""``python -m pipelines.cli``: the ``vidsvd`` command."""

from pipelines.cli import console_main

console_main()
