-- How the stored total values spread over the usual killboard bands (ISK).
SELECT count(*) FILTER (WHERE total_value < 1e6)                            AS under_1m,
       count(*) FILTER (WHERE total_value >= 1e6 AND total_value < 1e7)     AS m1_10m,
       count(*) FILTER (WHERE total_value >= 1e7 AND total_value < 1e8)     AS m10_100m,
       count(*) FILTER (WHERE total_value >= 1e8 AND total_value < 1e9)     AS m100m_1b,
       count(*) FILTER (WHERE total_value >= 1e9)                           AS over_1b,
       count(*) FILTER (WHERE total_value IS NULL)                          AS no_value,
       max(total_value)                                                     AS biggest
FROM killmails
