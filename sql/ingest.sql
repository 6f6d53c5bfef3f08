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

-- name: compression
-- The story's columnstore settings on the scratch table (segment by symbol, newest first):
-- its history loads end in compressed chunks, by direct compression or by the job.
ALTER TABLE {table} SET (timescaledb.compress,
                         timescaledb.compress_segmentby = 'symbol',
                         timescaledb.compress_orderby = 'time DESC');

-- name: compression_policy
-- The story's compression policy on the scratch table; its job compresses psql's load.
SELECT add_compression_policy(%(name)s::regclass, compress_after => INTERVAL '30 days');

-- name: wal_lsn
-- Where the WAL stands: the bytes a load wrote are the difference before and after it.
SELECT pg_current_wal_lsn()::text;

-- name: wal_since
-- WAL bytes written since %(lsn)s (by the load, on an otherwise idle benchmark server).
SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %(lsn)s::pg_lsn)::bigint;

-- name: size
-- Bytes {table} holds after a load: its chunks, their indexes and compressed chunks.
SELECT hypertable_size(%(name)s::regclass);

-- name: chunk_status
-- The catalog status of each chunk of %(name)s (0 plain; 1 compressed; +2 unordered, +8
-- partial): what a load left.
SELECT coalesce(array_agg(c.status ORDER BY c.id), '{}')
FROM _timescaledb_catalog.chunk c
JOIN _timescaledb_catalog.hypertable h ON h.id = c.hypertable_id
WHERE (quote_ident(h.schema_name) || '.' || quote_ident(h.table_name))::regclass
      = to_regclass(%(name)s)
  AND NOT c.dropped;
