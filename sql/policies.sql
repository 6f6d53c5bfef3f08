-- Proof of the story's policies (tsj_lab/policies.py): every statement runs in a scratch
-- schema, first on the search_path, that holds the story's schema and generated ticks.

-- name: extension_schema
-- Where TimescaleDB's functions live (public on Timescale Cloud and here), to keep it on
-- the scratch schema's search_path.
SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'timescaledb';

-- name: recent_ticks
-- Ticks of the last hour (one each 20 seconds, from 50 to 2 minutes ago) that only the
-- refresh policies see: the history back-fill ends before them.
INSERT INTO tick_data (time, symbol, bid_price, ask_price, last_price, volume, source)
SELECT t, %(symbol)s, 100.00, 100.25, 100.25 + (extract(epoch FROM t)::bigint / 20 %% 7) * 0.25,
       1, 'tsj-proof'
FROM generate_series(now() - INTERVAL '50 minutes', now() - INTERVAL '2 minutes',
                     INTERVAL '20 seconds') AS t;

-- name: jobs
-- The policy jobs on the scratch schema's objects, named as the proof names them:
-- 'compression', 'retention', '<view> refresh'. A refresh policy's job names the view
-- since 2.20 and its materialization hypertable before: both are accepted. No semicolon:
-- live.jobs composes it in.
SELECT CASE j.proc_name WHEN 'policy_compression' THEN 'compression'
                        ELSE 'retention' END AS policy, j.job_id
FROM timescaledb_information.jobs j
WHERE j.hypertable_schema = current_schema() AND j.hypertable_name = 'tick_data'
  AND j.proc_name IN ('policy_compression', 'policy_retention')
UNION ALL
SELECT ca.view_name || ' refresh', j.job_id
FROM timescaledb_information.continuous_aggregates ca
JOIN timescaledb_information.jobs j
  ON (j.hypertable_schema, j.hypertable_name)
     IN ((ca.view_schema, ca.view_name),
         (ca.materialization_hypertable_schema, ca.materialization_hypertable_name))
WHERE j.proc_name = 'policy_refresh_continuous_aggregate'
  AND ca.view_schema = current_schema() AND ca.view_name = ANY(%(views)s)

-- name: run_job
-- Run job %(job)s now, in this session, as its schedule would (a procedure: autocommit).
CALL run_job(%(job)s);

-- name: facts
-- The chunks of tick_data against the policies' horizons (now - %(compress_after)s,
-- now - %(drop_after)s): a chunk is older than a horizon when it ends at or before it.
-- expired_ticks: the ticks inside the chunks the retention job is to drop.
WITH c AS (
  SELECT ch.range_end, ch.is_compressed FROM timescaledb_information.chunks ch
  WHERE ch.hypertable_schema = current_schema() AND ch.hypertable_name = 'tick_data')
SELECT (SELECT count(*) FROM c) AS chunks,
       (SELECT count(*) FROM c WHERE range_end <= now() - %(compress_after)s::interval)
         AS old_chunks,
       (SELECT count(*) FROM c WHERE range_end <= now() - %(compress_after)s::interval
          AND NOT is_compressed) AS old_uncompressed,
       (SELECT count(*) FROM c WHERE range_end > now() - %(compress_after)s::interval
          AND is_compressed) AS young_compressed,
       (SELECT count(*) FROM c WHERE range_end <= now() - %(drop_after)s::interval)
         AS expired_chunks,
       (SELECT max(range_end) FROM c WHERE range_end <= now() - %(drop_after)s::interval)
         AS expired_until,
       (SELECT count(*) FROM tick_data
        WHERE time < (SELECT max(range_end) FROM c
                      WHERE range_end <= now() - %(drop_after)s::interval)) AS expired_ticks,
       (SELECT count(*) FROM tick_data) AS ticks;

-- name: chunk_settings
-- Segmentby and orderby of each compressed chunk of tick_data (the columnstore settings
-- the compression job applied).
SELECT s.segmentby, s.orderby
FROM timescaledb_information.chunk_compression_settings s
WHERE s.hypertable = to_regclass(quote_ident(current_schema()) || '.tick_data');

-- name: old_candles
-- Candles of {view} before %(until)s: the days whose ticks the retention job dropped.
SELECT count(*) FROM {view} WHERE bucket < %(until)s;

-- name: materialized
-- The buckets of a candle view that the proof's recent ticks fall in and that the refresh
-- policy's window [%(at)s - start_offset, %(at)s - end_offset) covers whole ('want'),
-- and how many of them the materialization hypertable {mat} holds after the job.
WITH want AS (
  SELECT DISTINCT time_bucket(%(width)s::interval, t.time) AS bucket, t.symbol
  FROM tick_data t
  WHERE t.source = 'tsj-proof'
    AND time_bucket(%(width)s::interval, t.time)
        >= %(at)s::timestamptz - %(start_offset)s::interval
    AND time_bucket(%(width)s::interval, t.time) + %(width)s::interval
        <= %(at)s::timestamptz - %(end_offset)s::interval)
SELECT (SELECT count(*) FROM want w JOIN {mat} m ON m.bucket = w.bucket AND m.symbol = w.symbol)
         AS materialized,
       (SELECT count(*) FROM want) AS expected;

-- name: materialization_table
-- The materialization hypertable of continuous aggregate %(view)s (current schema).
SELECT ca.materialization_hypertable_schema::text, ca.materialization_hypertable_name::text
FROM timescaledb_information.continuous_aggregates ca
WHERE ca.view_schema = current_schema() AND ca.view_name = %(view)s;

-- name: create_job_runs
-- tsj's record of the jobs it ran with CALL run_job: a run outside the scheduler writes
-- neither job_stats nor job_errors, so without this a failed manual run leaves no trace.
CREATE TABLE IF NOT EXISTS tsj_job_runs (
  job_id INTEGER NOT NULL,
  started_at TIMESTAMPTZ NOT NULL,
  finished_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
  succeeded BOOLEAN NOT NULL,
  message TEXT
);

-- name: record_job_run
-- One run of job %(job)s and how it ended.
INSERT INTO tsj_job_runs (job_id, started_at, succeeded, message)
VALUES (%(job)s, %(started_at)s, %(succeeded)s, %(message)s);
