-- name: create_tick_table
-- The story's tick_data columns, no primary key: the Supabase source table as it is, the
-- target's before it becomes a hypertable, and the ingest benchmark's scratch table.
CREATE TABLE IF NOT EXISTS {table} (
  time TIMESTAMPTZ NOT NULL,
  symbol TEXT NOT NULL,
  bid_price DECIMAL(20, 8),
  ask_price DECIMAL(20, 8),
  last_price DECIMAL(20, 8),
  volume BIGINT,
  source TEXT,
  trade_id UUID,
  account_id UUID
);

-- name: create_hypertable
-- 1-day chunks (AC2). create_hypertable() rather than CREATE TABLE ... WITH (tsdb.hypertable):
-- since 2.23 the latter also turns on a columnstore policy after one chunk interval.
SELECT create_hypertable('tick_data', 'time', chunk_time_interval => INTERVAL '1 day',
                         if_not_exists => TRUE);

-- name: create_hypertable_migrate_data
-- `tsj provision --migrate-data`: an existing plain tick_data with rows becomes a
-- hypertable, its rows moved into chunks (slow on big tables: it copies every row once).
SELECT create_hypertable('tick_data', 'time', chunk_time_interval => INTERVAL '1 day',
                         if_not_exists => TRUE, migrate_data => TRUE);

-- name: create_tick_indexes
-- Replay reads one symbol's ticks in time order: (symbol, time DESC) serves both directions.
CREATE INDEX IF NOT EXISTS tick_data_symbol_time_idx ON tick_data (symbol, time DESC);

-- name: create_candles
-- AC4: a candle view of {width} buckets made from the ticks: candle_1m (and, in
-- history's comparison, flat views of any width). {options} is the view's WITH clause:
-- the timescale edition's continuous aggregate (schema_timescale.continuous), or nothing
-- for the apache edition's PostgreSQL materialized view. time_bucket on timestamptz aligns
-- sub-day buckets to UTC whatever the session TimeZone. {width} is a literal: DDL takes
-- no parameters, and a continuous aggregate needs a constant bucket width.
CREATE MATERIALIZED VIEW IF NOT EXISTS {view} {options} AS
SELECT time_bucket({width}::interval, time) AS bucket,
       symbol,
       first(last_price, time) AS open,
       max(last_price) AS high,
       min(last_price) AS low,
       last(last_price, time) AS close,
       sum(volume) AS volume,
       count(*) AS tick_count
FROM tick_data
GROUP BY 1, symbol
WITH NO DATA;

-- name: create_candle_rollup
-- AC4: a wider candle view rolled up from {base} (candle_1m): hierarchical, so the 5m,
-- 15m and 1h candles equal aggregating the 1m candles by construction, and a refresh
-- reads 1m rows, not ticks (a continuous aggregate on a continuous aggregate, >= 2.9).
-- The same columns and types as create_candles; {options} and {width} as there.
CREATE MATERIALIZED VIEW IF NOT EXISTS {view} {options} AS
SELECT time_bucket({width}::interval, bucket) AS bucket,
       symbol,
       first(open, bucket) AS open,
       max(high) AS high,
       min(low) AS low,
       last(close, bucket) AS close,
       sum(volume) AS volume,
       sum(tick_count)::bigint AS tick_count
FROM {base}
-- the expression, not the alias: in GROUP BY, `bucket` would name the base view's column
GROUP BY time_bucket({width}::interval, bucket), symbol
WITH NO DATA;

-- name: create_candle_unique_index
-- One row per (symbol, bucket): what REFRESH MATERIALIZED VIEW CONCURRENTLY needs, and the
-- index candle reads use. {view} and {index} are identifiers.
CREATE UNIQUE INDEX IF NOT EXISTS {index} ON {view} (symbol, bucket);

-- name: refresh_matview
-- apache edition: recompute the whole view ({view} is an identifier).
REFRESH MATERIALIZED VIEW {view};

-- name: refresh_matview_concurrently
-- apache edition: recompute without blocking readers (needs the unique index and data).
REFRESH MATERIALIZED VIEW CONCURRENTLY {view};

-- name: show_old_chunks
-- apache edition retention, dry run: the chunks drop_old_chunks would drop.
SELECT show_chunks('tick_data', older_than => %(older_than)s::interval)::text;

-- name: drop_old_chunks
-- apache edition retention (AC5 emulated): drop whole chunks whose ticks are all older
-- than %(older_than)s, what add_retention_policy's job does under the timescale license.
SELECT drop_chunks('tick_data', older_than => %(older_than)s::interval)::text;

-- name: candle_diff_ticks
-- Rows of {view} that differ from candles recomputed from the raw ticks at bucket width
-- %(width)s, counted both ways (EXCEPT ALL): 0 means equal row for row. From %(since)s
-- on (a bucket boundary; NULL: all): the candles of days whose ticks the retention
-- dropped have nothing to be recomputed from. With two ticks of one symbol at the same
-- instant, first()/last() may pick either: ties are not expected in tick data and would
-- show here.
WITH want AS (
  SELECT time_bucket(%(width)s::interval, time) AS bucket, symbol,
         first(last_price, time) AS open, max(last_price) AS high, min(last_price) AS low,
         last(last_price, time) AS close, sum(volume) AS volume, count(*) AS tick_count
  FROM tick_data WHERE %(since)s::timestamptz IS NULL OR time >= %(since)s
  GROUP BY 1, 2),
have AS (
  SELECT bucket, symbol, open, high, low, close, volume, tick_count FROM {view}
  WHERE %(since)s::timestamptz IS NULL OR bucket >= %(since)s)
SELECT count(*) FROM (
  (SELECT * FROM want EXCEPT ALL SELECT * FROM have)
  UNION ALL
  (SELECT * FROM have EXCEPT ALL SELECT * FROM want)) AS d;

-- name: candle_diff_rollup
-- Rows of {view} that differ from aggregating candle_1m to bucket width %(width)s:
-- open = first 1m open, close = last 1m close, high/low = max/min, sums of volume and
-- tick_count. 0 means the wider candles equal the rolled-up 1m candles.
WITH want AS (
  SELECT time_bucket(%(width)s::interval, bucket) AS bucket, symbol,
         first(open, bucket) AS open, max(high) AS high, min(low) AS low,
         last(close, bucket) AS close, sum(volume) AS volume,
         sum(tick_count)::bigint AS tick_count
  FROM candle_1m GROUP BY 1, 2),
have AS (
  SELECT bucket, symbol, open, high, low, close, volume, tick_count FROM {view})
SELECT count(*) FROM (
  (SELECT * FROM want EXCEPT ALL SELECT * FROM have)
  UNION ALL
  (SELECT * FROM have EXCEPT ALL SELECT * FROM want)) AS d;

-- name: set_chunk_interval
-- AC2 on a hypertable made with another chunk interval (e.g. 7 days, the default of
-- CREATE TABLE ... WITH (tsdb.hypertable)): new chunks span 1 day; chunks that exist
-- keep theirs.
SELECT set_chunk_time_interval('tick_data', INTERVAL '1 day');

-- name: create_extension
-- A database without TimescaleDB on a server that offers it (installed, preloaded): a
-- trusted extension, so the database owner or a role with CREATE on it may create it.
CREATE EXTENSION IF NOT EXISTS timescaledb;

-- name: timescaledb_preloaded
-- Whether the server preloads TimescaleDB (it works only then): its loader defines the
-- timescaledb.max_background_workers setting (the extension, not yet created, would
-- define the others). shared_preload_libraries itself is hidden from roles without
-- pg_read_all_settings, as on managed services.
SELECT current_setting('timescaledb.max_background_workers', true) IS NOT NULL;
