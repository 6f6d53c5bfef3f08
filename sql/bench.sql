-- name: symbol_span
-- Per symbol: first and last tick time and the tick count in [start, end). The benchmark
-- checks the plain table and the hypertable hold the same data set before timing them.
SELECT symbol, min(time) AS first_time, max(time) AS last_time, count(*) AS ticks
FROM tick_data
WHERE time >= %(start)s AND time < %(end)s
GROUP BY symbol
ORDER BY symbol;

-- name: window
-- One symbol's ticks in [start, end), oldest first: what the replay and chart load.
-- Prices are cast to float8 because the DataFrame holds floats anyway, and decoding
-- NUMERIC into Python Decimal objects is what made the naive fetch path slow.
SELECT time,
       bid_price::float8 AS bid_price,
       ask_price::float8 AS ask_price,
       last_price::float8 AS last_price,
       volume
FROM tick_data
WHERE symbol = %(symbol)s AND time >= %(start)s AND time < %(end)s
ORDER BY time;

-- name: window_numeric
-- The same window with the prices left as NUMERIC: the naive fetch path's query.
SELECT time, bid_price, ask_price, last_price, volume
FROM tick_data
WHERE symbol = %(symbol)s AND time >= %(start)s AND time < %(end)s
ORDER BY time;

-- name: page_first
-- Keyset pagination, first page: a symbol's ticks from 'start' up to and including the
-- instant of its 'limit'-th tick, so a page ends at an instant boundary and the key is
-- time alone. The story's table has no key, and the row's ctid is no key either:
-- compressed chunks (history older than 30 days) refuse every system column but
-- tableoid. A page holds 'limit' ticks, more when ticks share its last instant. Ordered
-- by time alone, both scans stop early on compressed chunks too (their batches are
-- ordered by time); a tie-breaking sort key would decompress and sort the rest.
WITH page_end AS (
    SELECT max(time) AS t
    FROM (SELECT time FROM tick_data
          WHERE symbol = %(symbol)s AND time >= %(start)s AND time < %(end)s
          ORDER BY time LIMIT %(limit)s) AS first_ticks
)
SELECT time,
       bid_price::float8 AS bid_price,
       ask_price::float8 AS ask_price,
       last_price::float8 AS last_price,
       volume
FROM tick_data
WHERE symbol = %(symbol)s AND time >= %(start)s AND time < %(end)s
  AND time <= (SELECT t FROM page_end)
ORDER BY time;

-- name: page_after
-- Keyset pagination, next page: the same after the instant that ended the last page.
WITH page_end AS (
    SELECT max(time) AS t
    FROM (SELECT time FROM tick_data
          WHERE symbol = %(symbol)s AND time > %(after_time)s AND time < %(end)s
          ORDER BY time LIMIT %(limit)s) AS next_ticks
)
SELECT time,
       bid_price::float8 AS bid_price,
       ask_price::float8 AS ask_price,
       last_price::float8 AS last_price,
       volume
FROM tick_data
WHERE symbol = %(symbol)s AND time > %(after_time)s AND time < %(end)s
  AND time <= (SELECT t FROM page_end)
ORDER BY time;

-- name: candles_raw_plain
-- The same candles on plain PostgreSQL (no time_bucket, no first/last): date_bin and
-- ordered array_agg, as an application on Supabase would have to write them. (The views
-- and TimescaleDB's raw aggregation are read with candles.view_range and
-- candles.raw_range, the queries the candle explorer runs.)
SELECT date_bin(%(width)s::interval, time, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
       ((array_agg(last_price ORDER BY time))[1])::float8 AS open,
       max(last_price)::float8 AS high,
       min(last_price)::float8 AS low,
       ((array_agg(last_price ORDER BY time DESC))[1])::float8 AS close,
       sum(volume)::int8 AS volume,
       count(*) AS tick_count
FROM tick_data
WHERE symbol = %(symbol)s AND time >= %(start)s AND time < %(end)s
GROUP BY 1
ORDER BY 1;

-- name: explain
-- Server-side execution time of the query composed in: EXPLAIN ANALYZE runs it without
-- sending rows. TIMING OFF because per-node clock reads would inflate the figure we
-- compare client latency against. No semicolon: the composed query brings its own.
EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) {query}

-- name: table_size_plain
-- Bytes of the plain tick_data with its indexes, for latency against table size.
SELECT pg_total_relation_size('tick_data') AS bytes;

-- name: table_size_hypertable
-- Bytes of the hypertable tick_data, all chunks and indexes included.
SELECT hypertable_size('tick_data') AS bytes;

-- name: analyze
-- Fresh planner statistics after a bulk load, so both databases plan the timed queries
-- from the data they hold (autovacuum may not have run yet).
ANALYZE tick_data;

-- name: day_counts
-- Ticks per symbol and UTC day in [start, end): which days of the data set are present.
SELECT symbol, (time AT TIME ZONE 'UTC')::date AS day, count(*) AS ticks
FROM tick_data
WHERE time >= %(start)s AND time < %(end)s
GROUP BY 1, 2;

-- name: delete_day
-- One symbol's ticks of one UTC day [start, end): a bench day of another spacing, removed
-- before it is generated again (only with 'tsj bench --replace').
DELETE FROM tick_data
WHERE symbol = %(symbol)s AND time >= %(start)s AND time < %(end)s;

-- name: prepare
-- A statement prepared under the name {statement} on the explaining connection, its values as
-- $1, $2, ... (psycopg's conversion): what read_frame's prepared statements are, so that
-- EXPLAIN EXECUTE times it planned as the client's is (bench.explainer, prepared=True).
PREPARE {statement} AS {query}

-- name: execute
-- The prepared statement {statement} with the values {args} (%s placeholders, bound client
-- side: EXECUTE takes values in its text), for bench.explain.
EXECUTE {statement}({args})

-- name: copy_binary
-- {query} (bound, its semicolon cut) as binary COPY: the copy_numpy candidate of
-- bench.workloads.candle_paths, parsed by one numpy structured dtype.
COPY ({query}) TO STDOUT (FORMAT BINARY)
