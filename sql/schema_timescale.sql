-- The story's production DDL for a TimescaleDB server under the `timescale` license
-- (Timescale Cloud, timescale images). One statement per block: tsj applies only the
-- blocks whose object is missing, and a test parses each with pglast. The table, the
-- hypertable and the tick index are shared with the apache edition (sql/schema.sql).

-- name: enable_columnstore
-- AC3, TimescaleDB >= 2.18 (the columnstore names): segment by symbol so one symbol's
-- replay decompresses only its own segments; newest first inside a segment.
ALTER TABLE tick_data SET (timescaledb.enable_columnstore = true,
                           timescaledb.segmentby = 'symbol',
                           timescaledb.orderby = 'time DESC');

-- name: enable_compression
-- AC3, TimescaleDB < 2.18: the same settings under the old compression names.
ALTER TABLE tick_data SET (timescaledb.compress,
                           timescaledb.compress_segmentby = 'symbol',
                           timescaledb.compress_orderby = 'time DESC');

-- name: add_columnstore_policy
-- AC3, TimescaleDB >= 2.18: a procedure (CALL), its interval argument is `after`.
CALL add_columnstore_policy('tick_data', after => INTERVAL '30 days', if_not_exists => true);

-- name: add_compression_policy
-- AC3, TimescaleDB < 2.18: a function (SELECT, returns the job id).
SELECT add_compression_policy('tick_data', compress_after => INTERVAL '30 days',
                              if_not_exists => true);

-- name: add_retention_policy
-- AC5: raw ticks older than 90 days are dropped by a background job. The candle
-- aggregates keep their rows: their refresh windows never reach back 90 days.
SELECT add_retention_policy('tick_data', drop_after => INTERVAL '90 days',
                            if_not_exists => true);

-- name: continuous
-- AC4: the WITH clause that makes a candle view (schema.create_candles,
-- schema.create_candle_rollup) a continuous aggregate. The story's views have
-- {materialized_only} false (real-time aggregation): replay shows the candle being
-- formed, so a query unions the materialized buckets with the raw ticks newer than the
-- last refresh (the default since 2.13 is true).
WITH (timescaledb.continuous, timescaledb.materialized_only = {materialized_only})

-- name: add_candle_policy
-- AC4: the refresh policy of a candle view. The story's for candle_1m: every minute,
-- materialize the last hour but the newest minute (which real-time aggregation serves
-- from the raw ticks). The others lag by one bucket of their own, and a refresh window
-- must span at least two buckets (schema.CANDLE_POLICIES holds the intervals). No
-- window reaches back to the 90-day retention horizon, so candles outlive their ticks.
SELECT add_continuous_aggregate_policy(%(view)s::regclass,
  start_offset => %(start_offset)s::interval, end_offset => %(end_offset)s::interval,
  schedule_interval => %(schedule_interval)s::interval, if_not_exists => true);

-- name: remove_candle_policy
-- A refresh policy on %(view)s with other intervals than the story's goes before the
-- story's is added (provisioning says so).
SELECT remove_continuous_aggregate_policy(%(view)s::regclass, if_exists => true);

-- name: remove_columnstore_policy
-- A columnstore policy with another interval (e.g. the automatic one of a table made
-- WITH (tsdb.hypertable) on 2.23+, after = the chunk interval), TimescaleDB >= 2.18.
CALL remove_columnstore_policy('tick_data', if_exists => true);

-- name: remove_compression_policy
-- The same, TimescaleDB < 2.18.
SELECT remove_compression_policy('tick_data', if_exists => true);

-- name: remove_retention_policy
-- A retention policy with another interval than 90 days.
SELECT remove_retention_policy('tick_data', if_exists => true);

-- name: oldest_tick_day
-- Where a back-fill of the continuous aggregates starts: the UTC day of the oldest tick
-- left (NULL: no ticks). Earlier days' candles outlive their dropped ticks.
SELECT time_bucket(INTERVAL '1 day', min(time)) FROM tick_data;

-- name: refresh_candles
-- Materialize continuous aggregate %(view)s over [start, end) now (NULL end: up to the
-- newest data); a procedure that must run outside a transaction block.
CALL refresh_continuous_aggregate(%(view)s::regclass, %(start)s::timestamptz,
                                  %(end)s::timestamptz);

-- name: refresh_candles_batched
-- The same where the procedure takes options (TimescaleDB 2.30+), which batch a manual
-- refresh by 10 buckets unless told otherwise: 14,400 batches for 100 days of 1-minute
-- candles, minutes of work. %(options)s sets a day's buckets per batch.
CALL refresh_continuous_aggregate(%(view)s::regclass, %(start)s::timestamptz,
                                  %(end)s::timestamptz, options => %(options)s::jsonb);

-- name: refresh_takes_options
-- Whether refresh_continuous_aggregate has the options argument (buckets_per_batch).
SELECT EXISTS (
  SELECT 1 FROM pg_proc p JOIN pg_extension e ON e.extname = 'timescaledb'
   AND p.pronamespace = e.extnamespace
  WHERE p.proname = 'refresh_continuous_aggregate' AND 'options' = ANY(p.proargnames));
