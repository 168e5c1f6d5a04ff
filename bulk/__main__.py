"""`python -m bulk`: the same CLI as the bulk-backfill console script."""

from bulk.cli import main

main()
