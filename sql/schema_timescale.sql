-- The story's production DDL for a TimescaleDB server under the `timescale` license
-- (Timescale Cloud, timescale images). One statement per block: tsj applies only the
-- blocks whose object is missing, and a test parses each with pglast. The table, the
-- hypertable and the tick index are shared with the apache edition (sql/schema.sql).

-- name: ts_enable_columnstore
-- AC3, TimescaleDB >= 2.18 (the columnstore names): segment by symbol so one symbol's
-- replay decompresses only its own segments; newest first inside a segment.
ALTER TABLE tick_data SET (timescaledb.enable_columnstore = true,
                           timescaledb.segmentby = 'symbol',
                           timescaledb.orderby = 'time DESC');

-- name: ts_enable_compression
-- AC3, TimescaleDB < 2.18: the same settings under the old compression names.
ALTER TABLE tick_data SET (timescaledb.compress,
                           timescaledb.compress_segmentby = 'symbol',
                           timescaledb.compress_orderby = 'time DESC');

-- name: ts_add_columnstore_policy
-- AC3, TimescaleDB >= 2.18: a procedure (CALL), its interval argument is `after`.
CALL add_columnstore_policy('tick_data', after => INTERVAL '30 days', if_not_exists => true);

-- name: ts_add_compression_policy
-- AC3, TimescaleDB < 2.18: a function (SELECT, returns the job id).
SELECT add_compression_policy('tick_data', compress_after => INTERVAL '30 days',
                              if_not_exists => true);

-- name: ts_add_retention_policy
-- AC5: raw ticks older than 90 days are dropped by a background job. The candle
-- aggregates keep their rows: their refresh windows never reach back 90 days.
SELECT add_retention_policy('tick_data', drop_after => INTERVAL '90 days',
                            if_not_exists => true);

-- name: ts_create_candle_1m
-- AC4: 1-minute candles. materialized_only = false (real-time aggregation): replay
-- shows the candle being formed, so a query unions the materialized buckets with the
-- raw ticks newer than the last refresh (the default since 2.13 is true).
-- time_bucket on timestamptz aligns sub-day buckets to UTC.
CREATE MATERIALIZED VIEW IF NOT EXISTS candle_1m
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 minute', time) AS bucket,
       symbol,
       first(last_price, time) AS open,
       max(last_price) AS high,
       min(last_price) AS low,
       last(last_price, time) AS close,
       sum(volume) AS volume,
       count(*) AS tick_count
FROM tick_data
GROUP BY bucket, symbol
WITH NO DATA;

-- name: ts_create_candle_5m
-- AC4: 5-minute candles as a hierarchical continuous aggregate on candle_1m (>= 2.9):
-- they equal aggregating the 1m candles by construction, and a refresh reads 1m rows,
-- not ticks.
CREATE MATERIALIZED VIEW IF NOT EXISTS candle_5m
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '5 minutes', bucket) AS bucket,
       symbol,
       first(open, bucket) AS open,
       max(high) AS high,
       min(low) AS low,
       last(close, bucket) AS close,
       sum(volume) AS volume,
       sum(tick_count)::bigint AS tick_count
FROM candle_1m
-- the expression, not the alias: in GROUP BY, `bucket` would name candle_1m's column
GROUP BY time_bucket(INTERVAL '5 minutes', bucket), symbol
WITH NO DATA;

-- name: ts_create_candle_15m
-- AC4: 15-minute candles on candle_1m (see candle_5m).
CREATE MATERIALIZED VIEW IF NOT EXISTS candle_15m
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '15 minutes', bucket) AS bucket,
       symbol,
       first(open, bucket) AS open,
       max(high) AS high,
       min(low) AS low,
       last(close, bucket) AS close,
       sum(volume) AS volume,
       sum(tick_count)::bigint AS tick_count
FROM candle_1m
-- the expression, not the alias: in GROUP BY, `bucket` would name candle_1m's column
GROUP BY time_bucket(INTERVAL '15 minutes', bucket), symbol
WITH NO DATA;

-- name: ts_create_candle_1h
-- AC4: 1-hour candles on candle_1m (see candle_5m).
CREATE MATERIALIZED VIEW IF NOT EXISTS candle_1h
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 hour', bucket) AS bucket,
       symbol,
       first(open, bucket) AS open,
       max(high) AS high,
       min(low) AS low,
       last(close, bucket) AS close,
       sum(volume) AS volume,
       sum(tick_count)::bigint AS tick_count
FROM candle_1m
-- the expression, not the alias: in GROUP BY, `bucket` would name candle_1m's column
GROUP BY time_bucket(INTERVAL '1 hour', bucket), symbol
WITH NO DATA;

-- name: ts_candle_1m_policy
-- AC4: the story's policy: every minute, materialize the last hour but the newest minute
-- (which real-time aggregation serves from the raw ticks).
SELECT add_continuous_aggregate_policy('candle_1m',
  start_offset => INTERVAL '1 hour', end_offset => INTERVAL '1 minute',
  schedule_interval => INTERVAL '1 minute', if_not_exists => true);

-- name: ts_candle_5m_policy
-- AC4: a refresh window must span at least two buckets; 5m lags 1m by one bucket.
SELECT add_continuous_aggregate_policy('candle_5m',
  start_offset => INTERVAL '2 hours', end_offset => INTERVAL '5 minutes',
  schedule_interval => INTERVAL '5 minutes', if_not_exists => true);

-- name: ts_candle_15m_policy
-- AC4: see candle_5m.
SELECT add_continuous_aggregate_policy('candle_15m',
  start_offset => INTERVAL '6 hours', end_offset => INTERVAL '15 minutes',
  schedule_interval => INTERVAL '15 minutes', if_not_exists => true);

-- name: ts_candle_1h_policy
-- AC4: see candle_5m.
SELECT add_continuous_aggregate_policy('candle_1h',
  start_offset => INTERVAL '1 day', end_offset => INTERVAL '1 hour',
  schedule_interval => INTERVAL '1 hour', if_not_exists => true);

-- name: ts_refresh_candles
-- Materialize continuous aggregate %(view)s over [start, end) now (NULL: unbounded); a
-- procedure that must run outside a transaction block.
CALL refresh_continuous_aggregate(%(view)s::regclass, %(start)s::timestamptz,
                                  %(end)s::timestamptz);
