"""bulk-backfill: compute and write killmail ISK values in bulk (version: package metadata)."""
