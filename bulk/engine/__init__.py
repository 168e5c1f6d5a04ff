"""The valuation engine: pricing, batch writes, scans, the stale search, statements, retries."""
