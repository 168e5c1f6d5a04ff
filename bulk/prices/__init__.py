"""Market prices: the book rules, ESI, price files, the market_prices table, fetch and import."""
