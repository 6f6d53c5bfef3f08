-- name: create_source_table
-- The Supabase (plain PostgreSQL) tick_data of the story: no primary key, no extension.
CREATE TABLE IF NOT EXISTS tick_data (
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
CREATE INDEX IF NOT EXISTS tick_data_symbol_time_idx ON tick_data (symbol, time DESC);

-- name: create_tick_table
-- The target's tick_data: the story's columns, before it becomes a hypertable.
CREATE TABLE IF NOT EXISTS tick_data (
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

-- name: create_tick_indexes
-- Replay reads one symbol's ticks in time order: (symbol, time DESC) serves both directions.
CREATE INDEX IF NOT EXISTS tick_data_symbol_time_idx ON tick_data (symbol, time DESC);

-- name: create_candle_1m_matview
-- apache edition: candles as a PostgreSQL materialized view, refreshed by tsj.
CREATE MATERIALIZED VIEW IF NOT EXISTS candle_1m AS
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
