-- name: copy_ticks_in
-- Bulk load of generated ticks: binary COPY into {table}, the story's columns in order.
-- The client builds the tuples (tsj_lab.generate.copy_buffer) and sends signature and trailer.
COPY {table} (time, symbol, bid_price, ask_price, last_price, volume, source, trade_id, account_id)
FROM STDIN (FORMAT BINARY);

-- name: copy_ticks_in_csv
-- The same load from CSV (header, the story's columns), as psql \copy would send it.
COPY {table} (time, symbol, bid_price, ask_price, last_price, volume, source, trade_id, account_id)
FROM STDIN (FORMAT CSV, HEADER);

-- name: gen_table_exists
-- Whether a table (or view) of that name is visible on the search path.
SELECT to_regclass(%(name)s) IS NOT NULL AS present;

-- name: gen_truncate
-- Empties {table} (the ingest benchmark starts each measured load from an empty table).
TRUNCATE {table};

-- name: gen_count
-- Rows in {table}.
SELECT count(*) FROM {table};
