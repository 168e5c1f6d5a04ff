"""The valuation engine: pricing sums, batch write, keyset scan, SQL files, error classes."""
