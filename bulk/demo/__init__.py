"""The demo: generated killmails and prices, their binary COPY, and `demo` end to end."""
