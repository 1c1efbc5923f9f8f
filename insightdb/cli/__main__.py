"""``python -m insightdb.cli``: the ``insightdb`` command line."""

from __future__ import annotations

from insightdb.cli.main import main

if __name__ == "__main__":
    main()
