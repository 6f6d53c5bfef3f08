-- The ingest benchmark's statements (tsj_lab/ingest.py): its scratch table, each load
-- timed from an empty table after a checkpoint, psql's \copy beside tsj's binary COPY.

-- name: truncate
-- Empties {table} (the ingest benchmark starts each measured load from an empty table).
TRUNCATE {table};

-- name: count
-- Rows in {table}.
SELECT count(*) FROM {table};

-- name: hypertable
-- The scratch table as a hypertable with the target's 1-day chunks.
SELECT create_hypertable(%(name)s::regclass, 'time', chunk_time_interval => INTERVAL '1 day',
                         if_not_exists => TRUE);

-- name: index
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
