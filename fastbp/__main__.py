"""``python -m fastbp``: see :mod:`fastbp.cli`."""

from fastbp.cli import main

raise SystemExit(main())
