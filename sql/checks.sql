-- Integrity checks (tsj_lab.checks). Every heavy query scans tick_data once and leaves
-- its per-(symbol, UTC day) or per-finding result in a temporary table (chk_*) of the
-- suite's one transaction (ON COMMIT DROP: a transaction-mode pooler may give the server
-- connection to another client afterwards); the small queries after it read those
-- tables, never the ticks.
-- {table} is the tick table, {view} a candle view (identifiers).
--
-- The plausible tick domain is [1970-01-01, 9999-12-31) UTC: rows outside it (+/-infinity,
-- year 20000, epoch-zero mistakes) have no day, are counted by 'implausible_times' and stay
-- out of the ordered walk. Sample rows give time as ISO text (session TimeZone is UTC), so
-- they are JSON-ready and never fail to load.

-- name: session
-- The suite's transaction: UTC for every time text and day boundary. LOCAL: the suite
-- runs in one transaction, and a transaction-mode pooler hands the server connection to
-- another client after it, which must not inherit the setting.
SET LOCAL TIME ZONE 'UTC';

-- name: old_chunks
-- Chunks of %(table)s entirely older than the retention period %(retention)s: retention
-- (a policy on the timescale edition, tsj's drop_chunks on apache) should have dropped
-- them. The first %(limit)s by age, with the total.
SELECT count(*) OVER () AS total, chunk_name, range_start, range_end, is_compressed
FROM timescaledb_information.chunks
WHERE (quote_ident(hypertable_schema) || '.' || quote_ident(hypertable_name))::regclass
      = to_regclass(%(table)s)
  AND range_end <= now() - %(retention)s::interval
ORDER BY range_start
LIMIT %(limit)s;

-- name: uncompressed_old_chunks
-- Chunks of %(table)s older than the compression age %(compress_after)s that are still
-- uncompressed (the policy should have compressed them), the first %(limit)s, with the total.
SELECT count(*) OVER () AS total, chunk_name, range_start, range_end
FROM timescaledb_information.chunks
WHERE (quote_ident(hypertable_schema) || '.' || quote_ident(hypertable_name))::regclass
      = to_regclass(%(table)s)
  AND range_end <= now() - %(compress_after)s::interval
  AND NOT is_compressed
ORDER BY range_start
LIMIT %(limit)s;

-- name: day_scan
-- THE quality pass: one scan of {table}, one row per (symbol, UTC day) into chk_days with
-- the tick count, first/last time and a count per anomaly (FILTER clauses):
--   null_price      any of bid/ask/last NULL
--   crossed_quote   bid > ask (locked bid = ask is allowed)
--   last_outside    last below bid or above ask by more than %(last_tolerance)s x price
--                   (only where the quote is not crossed: a crossed quote has no inside)
--   non_positive    a price <= 0
--   negative_volume volume < 0
--   future          time later than now() + %(future_tolerance)s (and plausible)
--   implausible     time outside the plausible domain (see the top of this file)
CREATE TEMP TABLE chk_days ON COMMIT DROP AS
SELECT symbol,
       CASE WHEN time >= '1970-01-01 00:00+00' AND time < '9999-12-31 00:00+00'
            THEN (time AT TIME ZONE 'UTC')::date END AS day,
       count(*) AS n,
       min(time) FILTER (WHERE time >= '1970-01-01 00:00+00' AND time < '9999-12-31 00:00+00')
         AS first_time,
       max(time) FILTER (WHERE time >= '1970-01-01 00:00+00' AND time < '9999-12-31 00:00+00')
         AS last_time,
       count(*) FILTER (WHERE bid_price IS NULL OR ask_price IS NULL OR last_price IS NULL)
         AS null_price,
       count(*) FILTER (WHERE bid_price > ask_price) AS crossed_quote,
       count(*) FILTER (WHERE bid_price <= ask_price
                          AND (last_price < bid_price - %(last_tolerance)s * last_price
                               OR last_price > ask_price + %(last_tolerance)s * last_price))
         AS last_outside,
       count(*) FILTER (WHERE bid_price <= 0 OR ask_price <= 0 OR last_price <= 0)
         AS non_positive,
       count(*) FILTER (WHERE volume < 0) AS negative_volume,
       count(*) FILTER (WHERE time > now() + %(future_tolerance)s::interval
                          AND time < '9999-12-31 00:00+00') AS future,
       count(*) FILTER (WHERE NOT (time >= '1970-01-01 00:00+00'
                                   AND time < '9999-12-31 00:00+00')) AS implausible
FROM {table}
GROUP BY 1, 2;

-- name: day_findings
-- Per (symbol, day) count of quality anomaly %(kind)s (a chk_days column name passed as a
-- value and picked by CASE, so no SQL is built from it); days without any are left out.
SELECT symbol, day, found, n
FROM (SELECT symbol, day, n,
             CASE %(kind)s
               WHEN 'null_price' THEN null_price
               WHEN 'crossed_quote' THEN crossed_quote
               WHEN 'last_outside' THEN last_outside
               WHEN 'non_positive' THEN non_positive
               WHEN 'negative_volume' THEN negative_volume
               WHEN 'future' THEN future
               WHEN 'implausible' THEN implausible
             END AS found
      FROM chk_days) d
WHERE found > 0
ORDER BY symbol, day NULLS FIRST;

-- name: quality_sample
-- The first %(limit)s ticks of %(symbol)s on UTC day %(day)s showing anomaly %(kind)s (the
-- same predicates as day_scan). The day range lets the (symbol, time) index serve it.
SELECT to_json(time) #>> '{{}}' AS time, symbol, bid_price, ask_price, last_price, volume
FROM {table}
WHERE symbol = %(symbol)s
  AND time >= %(day)s::date::timestamp AT TIME ZONE 'UTC'
  AND time < (%(day)s::date + 1)::timestamp AT TIME ZONE 'UTC'
  AND CASE %(kind)s
        WHEN 'null_price' THEN bid_price IS NULL OR ask_price IS NULL OR last_price IS NULL
        WHEN 'crossed_quote' THEN bid_price > ask_price
        WHEN 'last_outside' THEN bid_price <= ask_price
             AND (last_price < bid_price - %(last_tolerance)s * last_price
                  OR last_price > ask_price + %(last_tolerance)s * last_price)
        WHEN 'non_positive' THEN bid_price <= 0 OR ask_price <= 0 OR last_price <= 0
        WHEN 'negative_volume' THEN volume < 0
        WHEN 'future' THEN time > now() + %(future_tolerance)s::interval
      END
ORDER BY {table}.time, bid_price, ask_price, last_price, volume
LIMIT %(limit)s;

-- name: undated_sample
-- The first %(limit)s ticks of %(symbol)s outside the plausible domain (no UTC day).
SELECT to_json(time) #>> '{{}}' AS time, symbol, bid_price, ask_price, last_price, volume
FROM {table}
WHERE symbol = %(symbol)s
  AND (time < '1970-01-01 00:00+00' OR time >= '9999-12-31 00:00+00')
ORDER BY {table}.time, bid_price, ask_price, last_price, volume
LIMIT %(limit)s;

-- name: symbol_steps
-- Each symbol's usual spacing of ticks: the median step between its first %(n)s plausible
-- ticks (index order, cheap), in seconds; steps of zero (same-time ticks) are ignored.
-- Every symbol gets a row: NULL when it has no two ticks apart (its gaps go unchecked,
-- its duplicates not).
SELECT s.symbol,
       (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY f.step)
        FROM (SELECT extract(epoch FROM h.time - lag(h.time) OVER (ORDER BY h.time)) AS step
              FROM (SELECT t.time FROM {table} t
                    WHERE t.symbol = s.symbol AND t.time >= '1970-01-01 00:00+00'
                    ORDER BY t.time LIMIT %(n)s) h) f
        WHERE f.step > 0) AS step_s
FROM (SELECT DISTINCT symbol FROM chk_days) s;

-- name: sequence_scan
-- THE sequence pass: one ordered walk over {table} per symbol, newest first (window by
-- time DESC, then every column, so identical rows are neighbours). time DESC is the
-- (symbol, time DESC) index's order: the planner walks the index and sorts only rows of
-- equal time (incremental sort), where an ascending walk sorts the whole table on disk.
-- lag() is therefore the next LATER tick (next_time). Keeps into chk_seq only the rows
--   dup        identical in every column to its neighbour (one per extra copy)
--   collision  at the same time as its neighbour but different (same symbol and time)
--   gap        followed by the next tick more than the symbol's %(gap_s)s seconds later
-- %(symbols)s / %(gap_s)s are parallel arrays: the gap threshold of each symbol.
CREATE TEMP TABLE chk_seq ON COMMIT DROP AS
WITH th AS (
  SELECT * FROM unnest(%(symbols)s::text[], %(gap_s)s::float8[]) AS th(symbol, gap_s)
), walk AS (
  SELECT t.time, t.symbol, t.bid_price, t.ask_price, t.last_price, t.volume,
         lag(t.time) OVER w AS next_time, (t IS NOT DISTINCT FROM lag(t) OVER w) AS dup
  FROM {table} t
  WHERE t.time >= '1970-01-01 00:00+00' AND t.time < '9999-12-31 00:00+00'
  WINDOW w AS (PARTITION BY t.symbol
               ORDER BY t.time DESC, t.bid_price, t.ask_price, t.last_price, t.volume,
                        t.source, t.trade_id, t.account_id)
)
SELECT w.time, w.symbol, w.bid_price, w.ask_price, w.last_price, w.volume, w.next_time,
       w.dup,
       (NOT w.dup AND w.time = w.next_time) AS collision,
       extract(epoch FROM w.next_time - w.time) > th.gap_s AS gap
FROM walk w JOIN th USING (symbol)
WHERE w.dup OR w.time = w.next_time OR extract(epoch FROM w.next_time - w.time) > th.gap_s;

-- name: duplicates
-- Extra copies of identical ticks per (symbol, UTC day), from chk_seq.
SELECT symbol, (time AT TIME ZONE 'UTC')::date AS day, count(*) AS found
FROM chk_seq WHERE dup
GROUP BY 1, 2 ORDER BY 1, 2;

-- name: duplicate_sample
-- The first %(limit)s extra copies of %(symbol)s on day %(day)s.
SELECT to_json(time) #>> '{{}}' AS time, symbol, bid_price, ask_price, last_price, volume
FROM chk_seq
WHERE dup AND symbol = %(symbol)s AND (time AT TIME ZONE 'UTC')::date = %(day)s::date
ORDER BY chk_seq.time, bid_price, ask_price, last_price, volume
LIMIT %(limit)s;

-- name: gaps
-- Gaps of chk_seq (last tick before: prev_time, first after: time) that no session break
-- explains, with their UTC clock times. A gap is a session break when
--   * it recurs: a gap (any symbol) on another UTC day starts and ends at the same clock
--     minutes (daily halts, overnight closes);
--   * %(weekends)s and it starts on a Friday and ends on a Saturday, Sunday or Monday (UTC);
--   * it lies inside one of the daily clock windows %(break_start_s)s..%(break_end_s)s
--     (seconds after UTC midnight, parallel arrays; an end before the start wraps midnight)
--     widened by the symbol's gap threshold.
WITH g AS (
  SELECT s.symbol, s.prev_time, s.time,
         extract(epoch FROM s.time - s.prev_time) AS gap_s,
         date_trunc('minute', s.prev_time AT TIME ZONE 'UTC')::time AS start_tod,
         date_trunc('minute', s.time AT TIME ZONE 'UTC')::time AS end_tod,
         extract(isodow FROM s.prev_time AT TIME ZONE 'UTC') AS start_dow,
         extract(isodow FROM s.time AT TIME ZONE 'UTC') AS end_dow,
         extract(epoch FROM (s.prev_time AT TIME ZONE 'UTC')::time) AS start_s,
         extract(epoch FROM (s.time AT TIME ZONE 'UTC')::time) AS end_s
  FROM (SELECT symbol, time AS prev_time, next_time AS time FROM chk_seq WHERE gap) s
), recurring AS (
  -- on two or more UTC days: an outage of every symbol at once is still a gap
  SELECT start_tod, end_tod FROM g GROUP BY 1, 2
  HAVING count(DISTINCT (prev_time AT TIME ZONE 'UTC')::date) > 1
), windows AS (
  SELECT * FROM unnest(%(break_start_s)s::float8[], %(break_end_s)s::float8[]) AS b(b0, b1)
)
SELECT g.symbol, (g.time AT TIME ZONE 'UTC')::date AS day, g.prev_time, g.time,
       g.gap_s::float8 AS gap_s
FROM g
WHERE NOT EXISTS (SELECT 1 FROM recurring r
                  WHERE r.start_tod = g.start_tod AND r.end_tod = g.end_tod)
  AND NOT (%(weekends)s AND g.start_dow = 5 AND g.end_dow IN (6, 7, 1))
  AND NOT EXISTS (
    SELECT 1 FROM windows b
    WHERE g.gap_s <= 86400
      AND CASE WHEN b.b0 <= b.b1
               THEN g.start_s >= b.b0 - %(slack_s)s AND g.end_s <= b.b1 + %(slack_s)s
                    AND g.end_s >= g.start_s
               ELSE (g.start_s >= b.b0 - %(slack_s)s OR g.start_s <= b.b1)
                    AND (g.end_s <= b.b1 + %(slack_s)s OR g.end_s >= b.b0)
          END)
ORDER BY g.symbol, g.time;

-- name: hour_shifts
-- Time-zone mistakes. A block of ticks written %(max_hours)s hours or less off leaves two
-- traces in its symbol's ticks: a HOLE where it belonged (a gap in chk_seq), and where it
-- landed on ticks of its own symbol, same-time COLLISIONS (chk_seq) as long as the hole.
-- A collision run is the maximal sequence of collisions at most %(join_steps)s steps apart.
-- A run and a hole of the same length (within %(tol_steps)s steps) are a shift when
--   * the run starts a whole number of hours after (or before) the hole: the block was
--     shorter than the shift, every shifted tick collides (kind 'collisions'); or
--   * the hole lasts a whole number of hours: the block was longer than the shift, which
--     is the hole's length; the block runs from the hole to the end of the run (forward)
--     or from the start of the run to the hole (backward) (kind 'block').
-- The first reading wins when both fit. %(symbols)s / %(step_s)s: each symbol's step.
WITH st AS (
  SELECT * FROM unnest(%(symbols)s::text[], %(step_s)s::float8[]) AS st(symbol, step_s)
), holes AS (
  SELECT symbol, time AS prev_time, next_time FROM chk_seq WHERE gap
), c AS (
  SELECT s.symbol, s.time, st.step_s,
         CASE WHEN extract(epoch FROM s.time - lag(s.time) OVER w) <= %(join_steps)s * st.step_s
              THEN 0 ELSE 1 END AS starts_run
  FROM chk_seq s JOIN st USING (symbol)
  WHERE s.collision
  WINDOW w AS (PARTITION BY s.symbol ORDER BY s.time)
), runs AS (
  SELECT symbol, step_s, sum(starts_run) OVER (PARTITION BY symbol ORDER BY time) AS run, time
  FROM c
), r AS (
  SELECT symbol, run, min(step_s) AS step_s, min(time) AS first_time, max(time) AS last_time,
         count(*) AS found
  FROM runs GROUP BY symbol, run
)
SELECT r.symbol, (r.first_time AT TIME ZONE 'UTC')::date AS day, r.first_time, r.last_time,
       r.found, h.prev_time AS hole_after, h.next_time AS hole_before,
       coalesce(h.k_offset, h.k_hole) AS shift_hours,
       CASE WHEN h.k_offset IS NOT NULL THEN 'collisions' ELSE 'block' END AS kind,
       CASE WHEN h.offset_s > 0 THEN h.next_time ELSE r.first_time END AS block_first,
       CASE WHEN h.offset_s > 0 THEN r.last_time ELSE h.prev_time END AS block_last
FROM r
JOIN LATERAL (
  SELECT h.prev_time, h.next_time, o.offset_s, k.k_offset, k.k_hole
  FROM holes h
  -- offset_s: from the first missing tick (prev_time + step) to the first collision;
  -- hole_s: the missing span
  CROSS JOIN LATERAL (
    SELECT extract(epoch FROM r.first_time - h.prev_time) - r.step_s AS offset_s,
           extract(epoch FROM h.next_time - h.prev_time) - r.step_s AS hole_s) o
  CROSS JOIN LATERAL (
    SELECT CASE WHEN abs(o.offset_s - 3600 * round(o.offset_s / 3600)) <= %(tol_steps)s * r.step_s
                 AND abs(round(o.offset_s / 3600)) BETWEEN 1 AND %(max_hours)s
                THEN round(o.offset_s / 3600)::int END AS k_offset,
           CASE WHEN abs(o.hole_s - 3600 * round(o.hole_s / 3600)) <= %(tol_steps)s * r.step_s
                 AND round(o.hole_s / 3600) BETWEEN 1 AND %(max_hours)s
                THEN (sign(o.offset_s) * round(o.hole_s / 3600))::int END AS k_hole) k
  WHERE h.symbol = r.symbol
    -- the hole holds as many missing ticks as the run has collisions
    AND abs(o.hole_s - extract(epoch FROM r.last_time - r.first_time) - r.step_s)
        <= %(tol_steps)s * r.step_s
    AND (k.k_offset IS NOT NULL OR k.k_hole IS NOT NULL)
  ORDER BY k.k_offset IS NULL, abs(o.offset_s)
  LIMIT 1
) h ON true
ORDER BY r.symbol, r.first_time;

-- name: hour_shift_sample
-- The first %(limit)s collision rows of %(symbol)s between %(start)s and %(end)s.
SELECT to_json(time) #>> '{{}}' AS time, symbol, bid_price, ask_price, last_price, volume
FROM chk_seq
WHERE collision AND symbol = %(symbol)s AND time BETWEEN %(start)s AND %(end)s
ORDER BY chk_seq.time
LIMIT %(limit)s;

-- name: range_count
-- Ticks of %(symbol)s with %(start)s <= time <= %(end)s (the index serves it).
SELECT count(*) FROM {table}
WHERE symbol = %(symbol)s AND time >= %(start)s AND time <= %(end)s;

-- name: range_head
-- The first %(limit)s ticks of %(symbol)s from %(start)s on.
SELECT to_json(time) #>> '{{}}' AS time, symbol, bid_price, ask_price, last_price, volume
FROM {table}
WHERE symbol = %(symbol)s AND time >= %(start)s
ORDER BY {table}.time
LIMIT %(limit)s;

-- name: range_tail
-- The last %(limit)s ticks of %(symbol)s up to %(end)s, newest first.
SELECT to_json(time) #>> '{{}}' AS time, symbol, bid_price, ask_price, last_price, volume
FROM {table}
WHERE symbol = %(symbol)s AND time <= %(end)s
ORDER BY {table}.time DESC
LIMIT %(limit)s;

-- name: tick_extent
-- The last tick time, the tick count and the (symbol, day) pairs of the table, from chk_days.
SELECT max(last_time) AS last_time, coalesce(sum(n), 0)::bigint AS n, count(*) AS symbol_days
FROM chk_days;

-- name: candle_freshness
-- The newest bucket of candle view {view} and its total tick count.
SELECT max(bucket) FILTER (WHERE bucket < '9999-12-31 00:00+00') AS last_bucket,
       coalesce(sum(tick_count), 0)::bigint AS ticks
FROM {view};

-- name: candle_recompute
-- Candle view {view} against a recompute from the raw ticks of {table} with buckets of
-- %(width)s, over every bucket that ends by %(horizon)s (the last tick minus the refresh
-- lag). FULL JOIN: a bucket missing on either side is a mismatch. Returns the first
-- %(limit)s mismatches with the total and how many of them lie in the real-time tail, at
-- or after the aggregate's watermark %(watermark)s (bucket as ISO text). With
-- materialized_only = false the view serves the materialized buckets below the watermark
-- and aggregates the ticks above it as it is read: both parts are compared.
WITH v AS (
  SELECT bucket, symbol, open, high, low, close, volume, tick_count
  FROM {view} WHERE bucket + %(width)s::interval <= %(horizon)s
), r AS (
  SELECT time_bucket(%(width)s::interval, time) AS bucket, symbol,
         first(last_price, time) AS open, max(last_price) AS high, min(last_price) AS low,
         last(last_price, time) AS close, sum(volume) AS volume, count(*) AS tick_count
  FROM {table}
  WHERE time < %(horizon)s
  GROUP BY 1, 2
  HAVING time_bucket(%(width)s::interval, min(time)) + %(width)s::interval <= %(horizon)s
)
SELECT count(*) OVER () AS total,
       count(*) FILTER (WHERE bucket >= %(watermark)s::timestamptz) OVER () AS tail,
       to_json(bucket) #>> '{{}}' AS bucket, symbol,
       v.open AS view_open, r.open AS tick_open, v.high AS view_high, r.high AS tick_high,
       v.low AS view_low, r.low AS tick_low, v.close AS view_close, r.close AS tick_close,
       v.volume AS view_volume, r.volume AS tick_volume,
       v.tick_count AS view_ticks, r.tick_count AS tick_ticks
FROM v FULL JOIN r USING (bucket, symbol)
WHERE (v.open, v.high, v.low, v.close, v.volume, v.tick_count)
      IS DISTINCT FROM (r.open, r.high, r.low, r.close, r.volume, r.tick_count)
ORDER BY bucket, symbol
LIMIT %(limit)s;

-- name: candle_recompute_sample
-- Candle view {view} against a recompute from {table} on %(sample)s random buckets of
-- the view (setseed first for a repeatable sample) that end by %(horizon)s; each bucket
-- is recomputed from its own ticks through the (symbol, time) index.
WITH v AS (
  SELECT bucket, symbol, open, high, low, close, volume, tick_count
  FROM {view} WHERE bucket + %(width)s::interval <= %(horizon)s
  ORDER BY random() LIMIT %(sample)s
)
SELECT count(*) OVER () AS total,
       count(*) FILTER (WHERE v.bucket >= %(watermark)s::timestamptz) OVER () AS tail,
       to_json(v.bucket) #>> '{{}}' AS bucket, v.symbol,
       v.open AS view_open, r.open AS tick_open, v.high AS view_high, r.high AS tick_high,
       v.low AS view_low, r.low AS tick_low, v.close AS view_close, r.close AS tick_close,
       v.volume AS view_volume, r.volume AS tick_volume,
       v.tick_count AS view_ticks, r.tick_count AS tick_ticks
FROM v
CROSS JOIN LATERAL (
  SELECT first(last_price, time) AS open, max(last_price) AS high, min(last_price) AS low,
         last(last_price, time) AS close, sum(volume) AS volume, count(*) AS tick_count
  FROM {table} t
  WHERE t.symbol = v.symbol AND t.time >= v.bucket AND t.time < v.bucket + %(width)s::interval
) r
WHERE (v.open, v.high, v.low, v.close, v.volume, v.tick_count)
      IS DISTINCT FROM (r.open, r.high, r.low, r.close, r.volume, r.tick_count)
ORDER BY v.bucket, v.symbol
LIMIT %(limit)s;

-- name: set_seed
-- A repeatable random() for the sampled candle comparison.
SELECT setseed(%(seed)s);

-- name: candle_rollup
-- Candle view {view} (buckets of %(width)s) against its rollup of candle_1m {base}: open
-- = the first 1m open, close = the last 1m close, high/low = max/min, volume and tick
-- count summed. Both sides are small; the first %(limit)s mismatches with the total.
WITH r AS (
  SELECT time_bucket(%(width)s::interval, bucket) AS bucket, symbol,
         first(open, bucket) AS open, max(high) AS high, min(low) AS low,
         last(close, bucket) AS close, sum(volume) AS volume,
         sum(tick_count)::bigint AS tick_count
  FROM {base} GROUP BY 1, 2
), v AS (
  SELECT bucket, symbol, open, high, low, close, volume, tick_count::bigint AS tick_count
  FROM {view}
)
SELECT count(*) OVER () AS total, to_json(bucket) #>> '{{}}' AS bucket, symbol,
       v.open AS view_open, r.open AS rollup_open, v.close AS view_close,
       r.close AS rollup_close, v.volume AS view_volume, r.volume AS rollup_volume,
       v.tick_count AS view_ticks, r.tick_count AS rollup_ticks
FROM v FULL JOIN r USING (bucket, symbol)
WHERE (v.open, v.high, v.low, v.close, v.volume, v.tick_count)
      IS DISTINCT FROM (r.open, r.high, r.low, r.close, r.volume, r.tick_count)
ORDER BY bucket, symbol
LIMIT %(limit)s;

-- name: candle_watermark
-- Continuous aggregate %(view)s: its watermark (buckets before it are materialized; from
-- it on a real-time aggregate computes them from the ticks when read) and whether it
-- serves materialized rows only. No row: a plain materialized view (apache edition).
-- A never-refreshed aggregate's watermark (4714 BC: everything is the tail) is given as
-- 0001-01-02, the earliest time Python holds.
SELECT greatest(_timescaledb_functions.to_timestamp(_timescaledb_functions.cagg_watermark(h.id)),
                '0001-01-02 00:00+00') AS watermark,
       ca.materialized_only
FROM timescaledb_information.continuous_aggregates ca
JOIN _timescaledb_catalog.hypertable h
  ON h.schema_name = ca.materialization_hypertable_schema
 AND h.table_name = ca.materialization_hypertable_name
WHERE ca.view_schema = current_schema() AND ca.view_name = %(view)s;

-- name: candle_tail
-- Buckets of {view} at or after %(watermark)s: what its real-time aggregation serves
-- from ticks newer than the last refresh.
SELECT count(*) FROM {view} WHERE bucket >= %(watermark)s::timestamptz;

-- name: jobs
-- Every policy or user job of this database (ids from 1000; TimescaleDB's own below) with
-- what the scheduler recorded of its last run (job_stats) and its newest error (job_errors).
-- A run started with CALL run_job outside the scheduler records neither: tsj's own runs
-- are in tsj_job_runs (checks.tsj_job_runs below).
SELECT j.job_id, j.proc_schema::text || '.' || j.proc_name::text AS proc,
       coalesce(j.hypertable_name::text, '') AS relation, j.owner::text AS owner,
       -- a job that never ran reads -infinity here: NULL
       CASE WHEN isfinite(s.last_run_started_at) THEN s.last_run_started_at END
         AS last_run_started_at,
       s.last_run_status, s.total_runs, s.total_failures,
       e.err_message, CASE WHEN isfinite(e.finish_time) THEN e.finish_time END AS error_at
FROM timescaledb_information.jobs j
LEFT JOIN timescaledb_information.job_stats s ON s.job_id = j.job_id
LEFT JOIN LATERAL (
  SELECT x.err_message, x.finish_time FROM timescaledb_information.job_errors x
  WHERE x.job_id = j.job_id ORDER BY x.finish_time DESC NULLS LAST LIMIT 1) e ON true
WHERE j.job_id >= 1000
ORDER BY j.job_id;

-- name: tsj_job_runs
-- The newest run of each job that tsj ran itself (tsj_lab.policies.run_job).
SELECT DISTINCT ON (job_id) job_id, started_at, succeeded, message
FROM tsj_job_runs
ORDER BY job_id, started_at DESC;
