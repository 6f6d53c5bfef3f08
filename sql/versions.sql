-- What upgrading TimescaleDB buys (tsj_lab.bench.versions): the same ticks and queries on
-- production's version and on a newer one, side by side.

-- name: create_database
-- A fresh database {db} for one comparison run (dropped first by drop_database).
CREATE DATABASE {db};

-- name: drop_database
-- The previous run's database {db}, connections and all.
DROP DATABASE IF EXISTS {db} WITH (FORCE);

-- name: create_extension
-- TimescaleDB in the fresh database, at the version the server was built with.
CREATE EXTENSION IF NOT EXISTS timescaledb;

-- name: delete_future
-- Ticks dated after now: the generator writes whole UTC days, an application's table
-- holds nothing ahead of its clock. Returns how many went.
WITH gone AS (DELETE FROM tick_data WHERE time > now() RETURNING 1)
SELECT count(*) FROM gone;

-- name: refresh_jobs
-- Each candle view's refresh policy job. The jobs view names the view itself (2.24) or
-- its materialization hypertable: either is resolved to the view.
SELECT j.job_id, coalesce(ca.view_name, j.hypertable_name) AS view_name
FROM timescaledb_information.jobs j
LEFT JOIN timescaledb_information.continuous_aggregates ca
  ON ca.materialization_hypertable_schema = j.hypertable_schema
 AND ca.materialization_hypertable_name = j.hypertable_name
WHERE j.proc_name = 'policy_refresh_continuous_aggregate';

-- name: candles_last_day
-- An application's chart query: the last day of 1-minute candles, the real-time view's
-- unmaterialized tail included, bounded by now() as the application writes it.
SELECT bucket, open, high, low, close, volume
FROM candle_1m
WHERE symbol = %(symbol)s AND bucket > now() - INTERVAL '1 day'
ORDER BY bucket;

-- name: candles_day_before
-- The day before that, all of it materialized, bounded by now() on both sides.
SELECT bucket, open, high, low, close, volume
FROM candle_1m
WHERE symbol = %(symbol)s AND bucket > now() - INTERVAL '2 days'
  AND bucket <= now() - INTERVAL '1 day'
ORDER BY bucket;

-- name: candles_since
-- The last day's query with the bound as a value the client computed, not now(): what
-- plan-time chunk exclusion always had.
SELECT bucket, open, high, low, close, volume
FROM candle_1m
WHERE symbol = %(symbol)s AND bucket > %(since)s
ORDER BY bucket;

-- name: hourly_last_week
-- A week of hourly candles bounded by now(): the hierarchical view over candle_1m.
SELECT bucket, open, high, low, close, volume
FROM candle_1h
WHERE symbol = %(symbol)s AND bucket > now() - INTERVAL '7 days'
ORDER BY bucket;

-- name: compression_stats
-- tick_data's bytes before and after compression, over its compressed chunks.
SELECT coalesce(sum(before_compression_total_bytes), 0) AS before,
       coalesce(sum(after_compression_total_bytes), 0) AS after,
       coalesce(sum(number_compressed_chunks), 0) AS chunks
FROM hypertable_compression_stats('tick_data');
