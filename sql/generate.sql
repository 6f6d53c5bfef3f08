-- name: copy_ticks_in
-- Bulk load of generated ticks: binary COPY into {table}, the story's columns in order.
-- The client builds the tuples (tsj_lab.copybin.copy_buffer) and sends signature and trailer.
COPY {table} (time, symbol, bid_price, ask_price, last_price, volume, source, trade_id, account_id)
FROM STDIN (FORMAT BINARY);

-- name: truncate
-- Empties {table} (the ingest benchmark starts each measured load from an empty table).
TRUNCATE {table};

-- name: count
-- Rows in {table}.
SELECT count(*) FROM {table};

-- name: bench_hypertable
-- The scratch table as a hypertable with the target's 1-day chunks.
SELECT create_hypertable(%(name)s::regclass, 'time', chunk_time_interval => INTERVAL '1 day',
                         if_not_exists => TRUE);

-- name: bench_index
-- The replay index of the target, so both loads pay for the same index maintenance.
CREATE INDEX IF NOT EXISTS {index} ON {table} (symbol, time DESC);

-- name: drop_table
-- Removes the benchmark's scratch table.
DROP TABLE IF EXISTS {table};

-- name: psql_copy
-- The psql meta-command the ingest benchmark compares with: CSV from psql's stdin.
\copy {table} (time, symbol, bid_price, ask_price, last_price, volume, source, trade_id, account_id) FROM pstdin WITH (FORMAT csv, HEADER)

-- name: checkpoint
-- Flushes dirty pages between benchmark loads so one load does not pay for the previous.
CHECKPOINT;

-- name: part_count
-- Ticks of one symbol in one generated part's time range [lo, hi): tells whether that part
-- is already loaded (so a re-run of `tsj generate` never doubles rows).
SELECT count(*) FROM {table} WHERE symbol = %(symbol)s AND time >= %(lo)s AND time < %(hi)s;

-- name: delete_part
-- Removes one part's range before it is generated again (`tsj generate --replace`).
DELETE FROM {table} WHERE symbol = %(symbol)s AND time >= %(lo)s AND time < %(hi)s;
