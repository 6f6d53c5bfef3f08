-- The live run (tsj_lab/bench/live.py): the story's schema in a scratch schema, first on the
-- search_path, with ticks dated relative to now, while TimescaleDB's own scheduler runs the
-- policy jobs. Every statement reads and writes that schema's objects only.

-- name: scheduler
-- Whether TimescaleDB's job scheduler runs for this database: the background-worker limit
-- and the scheduler process itself (one per database, started by the launcher).
SELECT current_setting('timescaledb.max_background_workers')::int AS workers,
       EXISTS (SELECT 1 FROM pg_stat_activity
               WHERE datname = current_database()
                 AND backend_type = 'TimescaleDB Background Worker Scheduler') AS running;

-- name: drop_schema
-- A scratch schema left by a run that was killed: dropped with its jobs before a new run.
DROP SCHEMA IF EXISTS {schema} CASCADE;

-- name: backfill
-- %(symbol)s's ticks every %(spacing)s in [%(start)s, %(end)s): a price that drifts with the
-- clock (a sine of the day plus a slow trend), so candles have shape. Coarser spacing for
-- the old part: the policies act on whole chunks, not on the ticks' density.
INSERT INTO tick_data (time, symbol, bid_price, ask_price, last_price, volume, source)
SELECT t, %(symbol)s, p - 0.25, p + 0.25, p, 1 + (extract(epoch FROM t)::bigint %% 5), 'tsj-live'
FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '1 microsecond',
                     %(spacing)s::interval) AS t,
     LATERAL (SELECT round((%(base)s + 20 * sin(extract(epoch FROM t) / 3600.0)
                            + extract(epoch FROM t) / 864000.0 %% 50)::numeric, 2) AS p) AS q;

-- name: insert_ticks
-- One batch of the writer, as the application sends it: a few rows in one INSERT.
INSERT INTO tick_data (time, symbol, bid_price, ask_price, last_price, volume, source)
SELECT to_timestamp(t), %(symbol)s, p - 0.25, p + 0.25, p, v, 'tsj-live'
FROM unnest(%(times)s::float8[], %(prices)s::numeric[], %(volumes)s::bigint[]) AS u(t, p, v);

-- name: realtime_check
-- Whether candle_1m's answer for the bucket of %(at)s already counts every tick of it (one
-- snapshot for both sides): the real-time part serves ticks newer than the watermark.
WITH b AS (SELECT time_bucket('1 minute', to_timestamp(%(at)s)) AS bucket)
SELECT (SELECT c.tick_count FROM candle_1m c, b
        WHERE c.symbol = %(symbol)s AND c.bucket = b.bucket)
       IS NOT DISTINCT FROM
       (SELECT count(*) FROM tick_data t, b
        WHERE t.symbol = %(symbol)s AND t.time >= b.bucket
          AND t.time < b.bucket + interval '1 minute');

-- name: jobs
-- The policy jobs of the scratch schema's objects, named as the proofs name them
-- ('compression', 'retention', '<view> refresh': {named} is policies.jobs), with their
-- schedule. %(views)s: the candle view names.
SELECT p.policy, p.job_id, j.schedule_interval
FROM ({named}) AS p (policy, job_id)
JOIN timescaledb_information.jobs j USING (job_id)
ORDER BY p.job_id;

-- name: pause_job
-- Job %(job)s off the schedule while the history is loaded (it would compress or drop
-- part of it before the run starts).
SELECT alter_job(%(job)s, scheduled => false);

-- name: schedule_job
-- Job %(job)s back on the schedule, its next run at %(at)s: the scheduler starts it then,
-- and afterwards on its own interval (fixed schedules keep their grid).
SELECT alter_job(%(job)s, scheduled => true, next_start => to_timestamp(%(at)s));

-- name: poll
-- One sample of the run, every time in epoch seconds of the server's clock: the clock
-- itself, each job's last run as the scheduler recorded it (NULL: never ran), and each
-- candle view's watermark (where its materialized part ends).
SELECT extract(epoch FROM clock_timestamp())::float8 AS at,
       (SELECT coalesce(jsonb_agg(jsonb_build_array(
                 s.job_id,
                 CASE WHEN isfinite(s.last_run_started_at)
                      THEN extract(epoch FROM s.last_run_started_at)::float8 END,
                 extract(epoch FROM s.last_run_duration)::float8, s.last_run_status,
                 s.job_status, s.total_runs, s.total_failures,
                 CASE WHEN isfinite(s.next_start)
                      THEN extract(epoch FROM s.next_start)::float8 END)), '[]')
        FROM timescaledb_information.job_stats s
        WHERE s.job_id = ANY(%(jobs)s)) AS jobs,
       (SELECT coalesce(jsonb_object_agg(ca.view_name::text,
                 extract(epoch FROM _timescaledb_functions.to_timestamp(
                   _timescaledb_functions.cagg_watermark(h.id)))::float8), '{}')
        FROM timescaledb_information.continuous_aggregates ca
        JOIN _timescaledb_catalog.hypertable h
          ON h.schema_name = ca.materialization_hypertable_schema
         AND h.table_name = ca.materialization_hypertable_name
        WHERE ca.view_schema = current_schema()) AS watermarks;

-- name: chunks
-- The chunks of tick_data: name, end of range (epoch seconds), compressed or not.
SELECT c.chunk_name::text, extract(epoch FROM c.range_end)::float8, c.is_compressed
FROM timescaledb_information.chunks c
WHERE c.hypertable_schema = current_schema() AND c.hypertable_name = 'tick_data'
ORDER BY c.range_start;

-- name: job_errors
-- The scheduler's record of the scratch jobs' failed runs since %(since)s, and the role
-- each job runs as.
SELECT e.job_id, extract(epoch FROM e.start_time)::float8, e.err_message, j.owner::text
FROM timescaledb_information.job_errors e
JOIN timescaledb_information.jobs j ON j.job_id = e.job_id
WHERE e.job_id = ANY(%(jobs)s) AND e.start_time >= to_timestamp(%(since)s)
ORDER BY e.finish_time;

-- name: job_state
-- What job_stats says of the scratch jobs at the end: runs, failures, next start.
SELECT s.job_id, s.total_runs, s.total_failures, s.last_run_status,
       CASE WHEN isfinite(s.next_start) THEN s.next_start END AS next_start
FROM timescaledb_information.job_stats s
WHERE s.job_id = ANY(%(jobs)s);

-- name: job_finished_runs
-- How many runs of job %(job)s have finished (succeeded or failed): total_runs counts a run
-- from its start, so it cannot say that a running job is done.
SELECT coalesce(sum(s.total_successes + s.total_failures), 0)
FROM timescaledb_information.job_stats s
WHERE s.job_id = %(job)s;
