-- History on the timescale edition (tsj_lab/history.py): the same ticks in scratch
-- schemas of the target, one copy left uncompressed, others compressed by the story's
-- compression job, to measure what compression and continuous aggregates change. Every
-- statement runs with the scratch schema first on the search_path.

-- name: copy_ticks
-- The bench's ticks of [start, end) copied from the target's own tick_data ({src},
-- schema-qualified) into the scratch schema's tick_data: both copies hold the same rows.
INSERT INTO tick_data (time, symbol, bid_price, ask_price, last_price, volume, source,
                       trade_id, account_id)
SELECT time, symbol, bid_price, ask_price, last_price, volume, source, trade_id, account_id
FROM {src}
WHERE time >= %(start)s AND time < %(end)s AND symbol = ANY(%(symbols)s);

-- name: create_float8
-- The story's table with double precision prices: what an application using JavaScript
-- numbers or pandas floats would store.
CREATE TABLE tick_data (
  time TIMESTAMPTZ NOT NULL,
  symbol TEXT NOT NULL,
  bid_price DOUBLE PRECISION,
  ask_price DOUBLE PRECISION,
  last_price DOUBLE PRECISION,
  volume BIGINT,
  source TEXT,
  trade_id UUID,
  account_id UUID
);

-- name: create_int8
-- The story's table with prices as integers in units of 1e-8 (the DECIMAL(20,8) scale):
-- exact by construction, a client divides by 1e8.
CREATE TABLE tick_data (
  time TIMESTAMPTZ NOT NULL,
  symbol TEXT NOT NULL,
  bid_price BIGINT,
  ask_price BIGINT,
  last_price BIGINT,
  volume BIGINT,
  source TEXT,
  trade_id UUID,
  account_id UUID
);

-- name: hypertable
-- The story's 1-day chunks.
SELECT create_hypertable('tick_data', 'time', chunk_time_interval => INTERVAL '1 day');

-- name: index
-- The (symbol, time) index the provisioned table has (sql/schema.sql).
CREATE INDEX tick_data_symbol_time_idx ON tick_data (symbol, time DESC);

-- name: compression
-- The story's compression settings (segment by symbol, newest first).
ALTER TABLE tick_data SET (timescaledb.compress,
                           timescaledb.compress_segmentby = 'symbol',
                           timescaledb.compress_orderby = 'time DESC');

-- name: compression_policy
-- The story's policy: compress chunks older than 30 days.
SELECT add_compression_policy('tick_data', compress_after => INTERVAL '30 days');

-- name: copy_float8
-- The scratch tick_data filled from the numeric copy {src}, prices cast to float8.
INSERT INTO tick_data
SELECT time, symbol, bid_price::float8, ask_price::float8, last_price::float8, volume,
       source, trade_id, account_id
FROM {src};

-- name: copy_int8
-- The scratch tick_data filled from the numeric copy {src}, prices in units of 1e-8.
INSERT INTO tick_data
SELECT time, symbol, round(bid_price * 100000000)::int8, round(ask_price * 100000000)::int8,
       round(last_price * 100000000)::int8, volume, source, trade_id, account_id
FROM {src};

-- name: policy_job
-- The job of the policy %(proc)s ('policy_compression', 'policy_retention') on this
-- schema's tick_data.
SELECT job_id FROM timescaledb_information.jobs
WHERE hypertable_schema = current_schema() AND hypertable_name = 'tick_data'
  AND proc_name = %(proc)s;

-- name: sizes
-- This schema's tick_data: ticks, chunks, compressed chunks, bytes of the whole
-- hypertable (chunks, compressed chunks, indexes, TOAST).
SELECT (SELECT count(*) FROM tick_data) AS ticks,
       (SELECT count(*) FROM timescaledb_information.chunks
        WHERE hypertable_schema = current_schema() AND hypertable_name = 'tick_data') AS chunks,
       (SELECT count(*) FROM timescaledb_information.chunks
        WHERE hypertable_schema = current_schema() AND hypertable_name = 'tick_data'
          AND is_compressed) AS compressed_chunks,
       hypertable_size('tick_data') AS bytes;

-- name: chunks
-- The chunk tables of this schema's tick_data and, when compressed, the table that holds
-- its compressed rows (one row per segment and batch of up to 1,000 ticks). The catalog
-- of TimescaleDB 2.2x+ names it in compression_settings.compress_relid.
SELECT n.nspname::text, k.relname::text, cn.nspname::text, ck.relname::text
FROM show_chunks('tick_data') c
JOIN pg_class k ON k.oid = c
JOIN pg_namespace n ON n.oid = k.relnamespace
LEFT JOIN _timescaledb_catalog.compression_settings cs ON cs.relid = c
LEFT JOIN pg_class ck ON ck.oid = cs.compress_relid
LEFT JOIN pg_namespace cn ON cn.oid = ck.relnamespace
ORDER BY k.relname;

-- name: columns
-- The columns of relation %(rel)s (a chunk or its compressed table), in order: the
-- compressed one adds TimescaleDB's metadata columns (_ts_meta_count, min/max per
-- orderby column).
SELECT attname::text FROM pg_attribute
WHERE attrelid = %(rel)s::regclass AND attnum > 0 AND NOT attisdropped
ORDER BY attnum;

-- name: column_bytes
-- Bytes the values of column {col} take in relation {rel} (pg_column_size: after
-- TOAST compression, without tuple headers).
SELECT coalesce(sum(pg_column_size({col})), 0)::int8 FROM {rel};

-- name: precision_float8
-- What storing the story's DECIMAL(20,8) prices as double precision loses, on this
-- schema's (numeric) tick_data: values that do not come back equal, and the largest error.
SELECT count(*) FILTER (WHERE p::float8::numeric <> p) AS changed,
       coalesce(max(abs(p::float8::numeric - p)), 0)::float8 AS max_error,
       count(p) AS values
FROM tick_data, LATERAL (VALUES (bid_price), (ask_price), (last_price)) v(p);

-- name: precision_int8
-- The same for integers in units of 1e-8 (exact for DECIMAL(20,8) below 9.2e10).
SELECT count(*) FILTER (WHERE round(p * 100000000)::int8 / 100000000.0 <> p) AS changed,
       coalesce(max(abs(round(p * 100000000)::int8 / 100000000.0 - p)), 0)::float8
         AS max_error,
       count(p) AS values
FROM tick_data, LATERAL (VALUES (bid_price), (ask_price), (last_price)) v(p);

-- name: refresh
-- Materialize {view} over [start, end), as its refresh policy's job does for its window.
CALL refresh_continuous_aggregate(%(view)s::regclass, %(start)s::timestamptz,
                                  %(end)s::timestamptz);

-- name: decompress_chunks
-- Every compressed chunk of tick_data in [start, end), decompressed again (bench-large
-- leaves the shared data set as it found it).
SELECT count(decompress_chunk(c, if_compressed => true))
FROM show_chunks('tick_data', newer_than => %(start)s::timestamptz,
                 older_than => %(end)s::timestamptz) c;

-- name: uncompressed_chunks
-- The uncompressed chunks of tick_data wholly inside [start, end).
SELECT format('%%I.%%I', chunk_schema, chunk_name)
FROM timescaledb_information.chunks
WHERE hypertable_schema = current_schema() AND hypertable_name = 'tick_data'
  AND NOT is_compressed AND range_start >= %(start)s AND range_end <= %(end)s
ORDER BY range_start;

-- name: compress_chunk
-- One chunk compressed with the hypertable's settings, as the policy's job does.
SELECT compress_chunk(%(chunk)s::regclass, if_not_compressed => true);

-- name: current_schema
-- The schema unqualified names resolve to: where the target's own tick_data is, and the
-- scratch schema on a scoped connection.
SELECT current_schema();
