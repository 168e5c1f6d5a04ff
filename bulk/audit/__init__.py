"""Checking the database: `status`, `verify` and the independent SQL reference."""
