"""``python -m pipelines.cli``: the ``vidsvd`` command."""

from pipelines.cli import main

raise SystemExit(main())
