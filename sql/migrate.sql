-- Migration source (plain PostgreSQL tick_data) -> target (the hypertable).
--
-- A batch is one symbol's rows in [lo, hi) (a slice of one UTC day). Its rows and its
-- checkpoint in tsj_migration_batches commit in ONE target transaction, so after a crash
-- (SIGKILL included) a batch is either wholly there with its checkpoint or not at all.
-- The tick domain (see digest.sql) is [0001-01-02, 9999-12-31) UTC; rows outside it, or
-- with a NULL symbol, form one "odd" batch per symbol and go to the quarantine.

-- name: create_batches
-- Checkpoints: one row per finished batch. batch_key identifies the batch's content (symbol,
-- range, the source's row count of that symbol-day, batch size): a rerun skips a batch
-- whose key is here. plan_key (hash of the whole batch list) groups a run's history.
CREATE TABLE IF NOT EXISTS tsj_migration_batches (
  plan_key TEXT NOT NULL,
  batch_id INTEGER NOT NULL,
  batch_key TEXT,
  symbol TEXT,
  lo TIMESTAMPTZ,
  hi TIMESTAMPTZ,
  source_rows BIGINT NOT NULL,
  copied_rows BIGINT NOT NULL,
  quarantined_rows BIGINT NOT NULL,
  checksum NUMERIC,
  seconds DOUBLE PRECISION NOT NULL,
  finished_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (plan_key, batch_id)
);

-- name: create_quarantine
-- Rows the target could not take, with the reason; same columns as tick_data, no constraints.
CREATE TABLE IF NOT EXISTS tsj_migration_quarantine (
  time TIMESTAMPTZ,
  symbol TEXT,
  bid_price DECIMAL(20, 8),
  ask_price DECIMAL(20, 8),
  last_price DECIMAL(20, 8),
  volume BIGINT,
  source TEXT,
  trade_id UUID,
  account_id UUID,
  reason TEXT NOT NULL,
  plan_key TEXT,
  batch_id INTEGER,
  quarantined_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);

-- name: has_timescaledb
-- Whether the database has the timescaledb extension (before asking its catalog).
SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') AS has_timescaledb;

-- name: is_hypertable
-- Whether the tick_data on the search path is a hypertable (the target must be one).
SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables h
               JOIN pg_namespace n ON n.nspname = h.hypertable_schema
               JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = h.hypertable_name
               WHERE c.oid = to_regclass('tick_data')) AS is_hypertable;

-- name: upgrade_batches
-- Checkpoint tables made before batch_key existed get the column (their rows never match).
ALTER TABLE tsj_migration_batches ADD COLUMN IF NOT EXISTS batch_key TEXT;

-- name: upgrade_batches_held
-- held_rows: what the target holds in the batch's range when its checkpoint is written
-- (checkpoint_held); the CHECK refuses a checkpoint whose range holds other than the
-- copied rows (another writer, a trigger), so the batch's transaction fails, whole.
ALTER TABLE tsj_migration_batches ADD COLUMN IF NOT EXISTS held_rows BIGINT
  CONSTRAINT tsj_migration_batches_held CHECK (held_rows = copied_rows);

-- name: done
-- Which of these batch keys already have their checkpoint.
SELECT batch_key FROM tsj_migration_batches WHERE batch_key = ANY(%(keys)s::text[]);

-- name: invalidate
-- Before a batch's checkpoint: drop checkpoints of earlier plans whose range overlaps it
-- (their rows were just replaced), so a source that changes back can never be skipped.
DELETE FROM tsj_migration_batches
WHERE symbol IS NOT DISTINCT FROM %(symbol)s
  AND ((%(lo)s::timestamptz IS NULL AND lo IS NULL)
       OR (lo < %(hi)s::timestamptz AND hi > %(lo)s::timestamptz));

-- name: history
-- The checkpoints of a plan, for the throughput chart and the summary.
SELECT batch_id, symbol, lo, hi, source_rows, copied_rows, quarantined_rows, checksum,
       seconds, finished_at
FROM tsj_migration_batches WHERE plan_key = %(plan_key)s ORDER BY finished_at;

-- name: rate
-- The rows/s earlier migrations into this target achieved (for --dry-run estimates).
SELECT sum(source_rows)::float8 / nullif(sum(seconds), 0) FROM tsj_migration_batches;

-- name: copy_out
-- One batch from the source, streamed as binary COPY (psycopg merges the values client-side).
-- The casts give the target's binary formats even when the source's types are looser (a
-- real Supabase table with double precision prices, say); with the story's types they are
-- no-ops. A value the cast rounds changes the checksum, so the verification reports it.
COPY (SELECT time::timestamptz, symbol::text, bid_price::numeric(20, 8),
             ask_price::numeric(20, 8), last_price::numeric(20, 8), volume::bigint,
             source::text, trade_id::uuid, account_id::uuid
      FROM tick_data
      WHERE symbol = %(symbol)s AND time >= %(lo)s AND time < %(hi)s)
TO STDOUT (FORMAT BINARY);

-- name: copy_in
-- The batch into {table} (tick_data, or the fallback's staging table).
COPY {table} (time, symbol, bid_price, ask_price, last_price, volume, source, trade_id, account_id)
FROM STDIN (FORMAT BINARY);

-- name: delete_range
-- Clears the batch's range in the target before copying: what makes a re-copy idempotent.
-- Safe only while nothing else writes this range of the target (see docs/ticks.md).
DELETE FROM tick_data WHERE symbol = %(symbol)s AND time >= %(lo)s AND time < %(hi)s;

-- name: delete_quarantine_range
-- Clears quarantined rows of the batch's range left by an earlier attempt.
DELETE FROM tsj_migration_quarantine
WHERE symbol = %(symbol)s AND time >= %(lo)s AND time < %(hi)s;

-- name: checkpoint
-- The batch's checkpoint, committed in the same transaction as its rows.
INSERT INTO tsj_migration_batches (plan_key, batch_id, batch_key, symbol, lo, hi, source_rows,
                                   copied_rows, quarantined_rows, checksum, seconds)
VALUES (%(plan_key)s, %(batch_id)s, %(batch_key)s, %(symbol)s, %(lo)s, %(hi)s,
        %(source_rows)s, %(copied_rows)s, %(quarantined_rows)s, %(checksum)s, %(seconds)s);

-- name: checkpoint_held
-- The batch's checkpoint with its checksum and held rows computed where the rows are
-- ({digest} is digest.range over the batch), so the checksum costs no exchange of its own:
-- it is sent with the COMMIT (tsj_lab.migrate._finish). The CHECK on held_rows fails the
-- batch when the range holds other than the copied rows.
INSERT INTO tsj_migration_batches (plan_key, batch_id, batch_key, symbol, lo, hi, source_rows,
                                   copied_rows, quarantined_rows, checksum, seconds, held_rows)
SELECT %(plan_key)s, %(batch_id)s, %(batch_key)s, %(symbol)s, %(lo)s, %(hi)s, %(source_rows)s,
       %(copied_rows)s, %(quarantined_rows)s, d.checksum, %(seconds)s, d.rows
FROM (
  {digest}
) d;  -- on a line of its own: the digest block may end in a comment

-- name: begin
-- A batch's transaction, opened explicitly so its first statements travel in one pipeline.
BEGIN;

-- name: commit
-- A batch's end, sent in the pipeline of its checkpoint (skipped when one of them fails).
COMMIT;

-- name: create_stage
-- The fallback's staging table: the batch without constraints, numbered for bisection.
CREATE TEMP TABLE tsj_migration_stage (
  time TIMESTAMPTZ, symbol TEXT, bid_price DECIMAL(20, 8), ask_price DECIMAL(20, 8),
  last_price DECIMAL(20, 8), volume BIGINT, source TEXT, trade_id UUID, account_id UUID,
  n BIGINT GENERATED ALWAYS AS IDENTITY
) ON COMMIT DROP;

-- name: stage_insert
-- Staged rows lo <= n < hi into tick_data (one bisection step, inside a savepoint).
INSERT INTO tick_data (time, symbol, bid_price, ask_price, last_price, volume, source,
                       trade_id, account_id)
SELECT time, symbol, bid_price, ask_price, last_price, volume, source, trade_id, account_id
FROM tsj_migration_stage WHERE n >= %(lo)s AND n < %(hi)s;

-- name: stage_quarantine
-- One staged row the target refused, into the quarantine with the server's reason.
INSERT INTO tsj_migration_quarantine (time, symbol, bid_price, ask_price, last_price, volume,
                                      source, trade_id, account_id, reason, plan_key, batch_id)
SELECT time, symbol, bid_price, ask_price, last_price, volume, source, trade_id, account_id,
       %(reason)s, %(plan_key)s, %(batch_id)s
FROM tsj_migration_stage WHERE n = %(n)s;

-- name: odd_copy_out
-- A symbol's odd rows (outside the tick domain, or any row with a NULL symbol) with the
-- reason each goes to the quarantine, streamed as binary COPY.
COPY (SELECT time::timestamptz, symbol::text, bid_price::numeric(20, 8),
             ask_price::numeric(20, 8), last_price::numeric(20, 8), volume::bigint,
             source::text, trade_id::uuid, account_id::uuid,
             CASE WHEN symbol IS NULL THEN 'symbol is NULL'
                  WHEN NOT isfinite(time) THEN 'time is ' || time::text
                  ELSE 'time outside the tick domain 0001-01-02..9999-12-31 UTC' END,
             %(plan_key)s::text, %(batch_id)s::integer
      FROM tick_data
      WHERE symbol IS NOT DISTINCT FROM %(symbol)s
        AND (symbol IS NULL OR NOT (time >= '0001-01-02 00:00+00' AND time < '9999-12-31 00:00+00'))
        AND time >= %(since)s::timestamptz AND time <= %(until)s::timestamptz
        AND (time < %(until)s::timestamptz OR %(until)s::timestamptz = 'infinity')
        AND (%(symbols)s::text[] IS NULL OR symbol = ANY(%(symbols)s::text[])))
TO STDOUT (FORMAT BINARY);

-- name: odd_copy_in
-- Odd rows straight into the quarantine.
COPY tsj_migration_quarantine (time, symbol, bid_price, ask_price, last_price, volume, source,
                               trade_id, account_id, reason, plan_key, batch_id)
FROM STDIN (FORMAT BINARY);

-- name: odd_clear
-- Before re-quarantining a symbol's odd rows: drop earlier copies of them from the target
-- and the quarantine (the time and symbol filters mirror odd_copy_out).
DELETE FROM tsj_migration_quarantine
WHERE symbol IS NOT DISTINCT FROM %(symbol)s
  AND (symbol IS NULL OR NOT (time >= '0001-01-02 00:00+00' AND time < '9999-12-31 00:00+00'))
  AND time >= %(since)s::timestamptz AND time <= %(until)s::timestamptz
  AND (time < %(until)s::timestamptz OR %(until)s::timestamptz = 'infinity');

-- name: anomalies
-- Source anomalies of symbol %(symbol)s in [lo, hi) (one symbol-day: a bounded statement),
-- carried as they are and counted for the summary: crossed or locked quotes (bid >= ask),
-- rows with a NULL price, and duplicate rows (copies beyond the first of a full row: legal
-- ticks, but worth knowing; identical rows share their time, so a day holds all copies).
-- Two scans of the range (the CTE is inlined, not materialized).
WITH r AS NOT MATERIALIZED (
  SELECT * FROM tick_data WHERE symbol = %(symbol)s AND time >= %(lo)s AND time < %(hi)s
)
SELECT
  count(*) FILTER (WHERE bid_price >= ask_price) AS crossed_quotes,
  count(*) FILTER (WHERE bid_price IS NULL OR ask_price IS NULL OR last_price IS NULL)
    AS null_prices,
  (SELECT coalesce(sum(n - 1), 0) FROM (
     SELECT count(*) AS n FROM r
     GROUP BY time, symbol, bid_price, ask_price, last_price, volume, source, trade_id,
              account_id
     HAVING count(*) > 1) d) AS duplicates
FROM r;

-- name: anomalies_odd
-- The same counts over the odd rows in [since, until) (outside the tick domain for
-- %(symbols)s, and with %(nulls)s a NULL symbol): index ranges, as digest.odd reads them.
WITH r AS NOT MATERIALIZED (
  SELECT * FROM (SELECT * FROM tick_data WHERE symbol = ANY(%(symbols)s::text[])
                                           AND time < '0001-01-02 00:00+00'
                 UNION ALL
                 SELECT * FROM tick_data WHERE symbol = ANY(%(symbols)s::text[])
                                           AND time >= '9999-12-31 00:00+00'
                 UNION ALL
                 SELECT * FROM tick_data WHERE symbol IS NULL AND %(nulls)s) o
  WHERE time >= %(since)s::timestamptz AND time <= %(until)s::timestamptz
    AND (time < %(until)s::timestamptz OR %(until)s::timestamptz = 'infinity')
)
SELECT
  count(*) FILTER (WHERE bid_price >= ask_price) AS crossed_quotes,
  count(*) FILTER (WHERE bid_price IS NULL OR ask_price IS NULL OR last_price IS NULL)
    AS null_prices,
  (SELECT coalesce(sum(n - 1), 0) FROM (
     SELECT count(*) AS n FROM r
     GROUP BY time, symbol, bid_price, ask_price, last_price, volume, source, trade_id,
              account_id
     HAVING count(*) > 1) d) AS duplicates
FROM r;

-- name: quarantine_rows
-- The quarantined rows, newest first; time as text because it may be +/-infinity or
-- beyond year 9999 (which Python cannot hold).
SELECT time::text AS time, symbol, bid_price, ask_price, last_price, volume, source, trade_id,
       account_id, reason, plan_key, batch_id, quarantined_at
FROM tsj_migration_quarantine
ORDER BY quarantined_at DESC
LIMIT %(limit)s;

-- name: identity
-- What tells two connections apart: same server start, same database, same table oid
-- means one table (migrating a table onto itself would delete it batch by batch).
SELECT pg_postmaster_start_time()::text, current_database()::text,
       to_regclass('tick_data')::oid::bigint;

-- name: server_now
-- The target's clock: days whose chunk ends by now() - drop_after are what its retention
-- job drops (the policies themselves are read by tsj_lab.layout, as provisioning does).
SELECT now();

-- name: target_settings
-- Which of the settings a batch may tune this server knows (older TimescaleDB lacks
-- direct compression on COPY; the apache edition compresses nothing).
SELECT name FROM pg_settings
WHERE name IN ('timescaledb.enable_direct_compress_copy',
               'timescaledb.max_tuples_decompressed_per_dml_transaction',
               'timescaledb.license');

-- name: set_local
-- One setting for the rest of the batch's transaction only (SET LOCAL as a function, so
-- the name is a value: works through a transaction-mode pooler, leaks into no session).
SELECT set_config(%(name)s, %(value)s, true);

-- name: paths_source
-- The measurement's ticks (tsj_lab/migrate_paths.py), in its scratch schema: %(per_day)s
-- per symbol and UTC day for %(days)s days from %(start)s, prices on a quarter-point grid,
-- deterministic (the ways are compared on the same rows).
CREATE TABLE mig_paths_source AS
SELECT %(start)s::timestamptz + d * INTERVAL '1 day'
         + (i * (86400.0 / %(per_day)s)) * INTERVAL '1 second' AS time,
       s.symbol,
       (5000 + (i %% 997) * 0.25 + d)::numeric(20, 8) AS bid_price,
       (5000.25 + (i %% 997) * 0.25 + d)::numeric(20, 8) AS ask_price,
       (5000.25 + ((i * 7) %% 997) * 0.25 + d)::numeric(20, 8) AS last_price,
       (1 + i %% 9)::bigint AS volume, 'tsj-paths'::text AS source,
       md5(s.symbol || d || '/' || i)::uuid AS trade_id, NULL::uuid AS account_id, i AS n
FROM generate_series(0, %(days)s - 1) AS d,
     generate_series(0, %(per_day)s - 1) AS i,
     unnest(%(symbols)s::text[]) AS s(symbol);

-- name: paths_copy_out
-- One symbol-day of the measurement's ticks as binary COPY (the migration's unit of work);
-- %(half)s 0 or 1 picks every other tick (two interleaved halves of the day), NULL all.
COPY (SELECT time, symbol, bid_price, ask_price, last_price, volume, source, trade_id,
             account_id
      FROM mig_paths_source
      WHERE symbol = %(symbol)s AND time >= %(lo)s AND time < %(hi)s
        AND (%(half)s::int IS NULL OR n %% 2 = %(half)s::int)
      ORDER BY time)
TO STDOUT (FORMAT BINARY);

-- name: paths_compress_chunks
-- Compress every chunk of tick_data not yet compressed (the day just written).
SELECT count(compress_chunk(c, if_not_compressed => true)) FROM show_chunks('tick_data') c;

-- name: paths_state
-- What a way left: rows, chunks, chunks compressed, chunks with uncompressed rows beside
-- their compressed ones (partial: status bit 8), and the hypertable's bytes on disk.
SELECT (SELECT count(*) FROM tick_data) AS rows,
       count(*) AS chunks,
       count(*) FILTER (WHERE c.is_compressed) AS compressed,
       count(*) FILTER (WHERE k.status & 8 = 8) AS partial,
       hypertable_size('tick_data') AS bytes
FROM timescaledb_information.chunks c
-- the catalog names a chunk by relid since 2.2x, by schema_name/table_name before
JOIN _timescaledb_catalog.chunk k
  ON to_regclass(format('%%I.%%I', c.chunk_schema, c.chunk_name))
     = coalesce((to_jsonb(k) ->> 'relid')::regclass,
                to_regclass(format('%%I.%%I', to_jsonb(k) ->> 'schema_name',
                                   to_jsonb(k) ->> 'table_name')))
WHERE c.hypertable_schema = current_schema() AND c.hypertable_name = 'tick_data';

-- name: paths_compression_job
-- The compression policy's job on the scratch schema's tick_data.
SELECT j.job_id FROM timescaledb_information.jobs j
WHERE j.hypertable_schema = current_schema() AND j.hypertable_name = 'tick_data'
  AND j.proc_name = 'policy_compression';

-- name: paths_truncate
-- A clean hypertable between runs (drops its chunks, compressed ones too).
TRUNCATE tick_data;
