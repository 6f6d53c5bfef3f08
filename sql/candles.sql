-- name: view_range
-- One symbol's candles in [start, end) from candle view {view} (candle_1m ... candle_1h).
-- Prices as float8: the chart and the summary hold floats, and the fast fetch path
-- would hand NUMERIC over as text.
SELECT bucket,
       open::float8 AS open,
       high::float8 AS high,
       low::float8 AS low,
       close::float8 AS close,
       volume::bigint AS volume,
       tick_count::bigint AS tick_count
FROM {view}
WHERE symbol = %(symbol)s AND bucket >= %(start)s AND bucket < %(end)s
ORDER BY bucket;

-- name: view_range_exact
-- view_range with the prices as the view holds them, NUMERIC: read_frame hands them over
-- as exact Decimal objects (candles.read(..., exact=True): 71234.25, 0.00000001 as stored).
SELECT bucket, open, high, low, close,
       volume::bigint AS volume,
       tick_count::bigint AS tick_count
FROM {view}
WHERE symbol = %(symbol)s AND bucket >= %(start)s AND bucket < %(end)s
ORDER BY bucket;

-- name: raw_range
-- The same columns for a width no view has ('2 minutes', '4 hours'), aggregated from the
-- raw ticks of [start, end) with TimescaleDB's time_bucket and first/last.
SELECT time_bucket(%(width)s::interval, time) AS bucket,
       first(last_price, time)::float8 AS open,
       max(last_price)::float8 AS high,
       min(last_price)::float8 AS low,
       last(last_price, time)::float8 AS close,
       sum(volume)::bigint AS volume,
       count(*)::bigint AS tick_count
FROM tick_data
WHERE symbol = %(symbol)s AND time >= %(start)s AND time < %(end)s
GROUP BY 1
ORDER BY 1;

-- name: raw_range_exact
-- raw_range with NUMERIC prices (exact Decimal objects in the frame), as view_range_exact.
SELECT time_bucket(%(width)s::interval, time) AS bucket,
       first(last_price, time) AS open,
       max(last_price) AS high,
       min(last_price) AS low,
       last(last_price, time) AS close,
       sum(volume)::bigint AS volume,
       count(*)::bigint AS tick_count
FROM tick_data
WHERE symbol = %(symbol)s AND time >= %(start)s AND time < %(end)s
GROUP BY 1
ORDER BY 1;

-- name: tick_totals
-- Tick count and volume of one symbol in [start, end), straight from tick_data: what
-- the candles of that range must add up to.
SELECT count(*)::bigint AS ticks, coalesce(sum(volume), 0)::bigint AS volume
FROM tick_data
WHERE symbol = %(symbol)s AND time >= %(start)s AND time < %(end)s;

-- name: symbols
-- Every symbol with its first and last tick time. A loose index scan (one index probe
-- per symbol on (symbol, time DESC)) instead of a GROUP BY over the whole table.
WITH RECURSIVE s AS (
  (SELECT symbol FROM tick_data ORDER BY symbol LIMIT 1)
  UNION ALL
  SELECT (SELECT t.symbol FROM tick_data t WHERE t.symbol > s.symbol ORDER BY t.symbol LIMIT 1)
  FROM s WHERE s.symbol IS NOT NULL
)
SELECT symbol,
       (SELECT min(time) FROM tick_data t WHERE t.symbol = s.symbol) AS first_time,
       (SELECT max(time) FROM tick_data t WHERE t.symbol = s.symbol) AS last_time
FROM s
WHERE symbol IS NOT NULL
ORDER BY symbol;
