"""The SQL files of bulk-backfill, shipped inside the package and loaded by bulk.sqlfiles."""
