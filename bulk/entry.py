"""The console script's entry point, importing the CLI only when it runs.

run and work spawn their children, and a spawned child imports the parent's
main script again: that script should cost a child nothing it does not use
(click, pika, every command's modules: about 0.2 s of CPU per child).
"""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from bulk.cli import main as cli_main
    except KeyboardInterrupt:
        # Ctrl+C in the first 0.1-0.2 s, while click and psycopg import: said as the
        # CLI says it, not with a traceback of the imports.
        sys.stderr.write("bulk-backfill: interrupted\n")
        raise SystemExit(130) from None
    cli_main()
