"""bulk-backfill: compute and write killmail ISK values in bulk."""

__version__ = "0.1.0"
