-- Whether the prices a rule set reads exist at all: a market_prices row (seed),
-- or both history tables (the kill-date rule sets). Without them the readiness
-- check leaves price coverage to db.require_rule_prices, which names the fix.
-- Parameters: %(seed)s boolean.
SELECT CASE
           WHEN %(seed)s THEN EXISTS (SELECT 1 FROM market_prices)
           ELSE to_regclass('market_price_history') IS NOT NULL
                AND to_regclass('price_overrides') IS NOT NULL
       END
