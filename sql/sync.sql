-- The parallel run: keeping the target level with a source the application still writes
-- (tsj_lab/migrate/sync.py, follow.py, cutover.py).
--
-- The source has no key, so a changed row can only be found by content: the catch-up
-- compares the per-(symbol, UTC day) digests of digest.sql on both sides and re-copies the
-- days that differ; the follow mode re-copies each symbol's newest seconds by time. Both
-- write the target under one advisory lock (a transaction-level lock: it works through a
-- transaction-mode pooler and ends with the transaction), so a catch-up and a follow
-- step never interleave their delete-and-copy of the same range.

-- name: lock
-- The target's writers of the parallel run take turns (held until the transaction ends).
SELECT pg_advisory_xact_lock(hashtextextended('tsj_lab.parallel_run', 0));

-- name: newest
-- Each symbol's newest tick inside the tick domain: a loose index scan over the (symbol,
-- time DESC) index both sides have (one probe per symbol), not a scan of the table.
WITH RECURSIVE s AS (
  (SELECT symbol FROM tick_data WHERE symbol IS NOT NULL ORDER BY symbol LIMIT 1)
  UNION ALL
  SELECT (SELECT t.symbol FROM tick_data t WHERE t.symbol > s.symbol ORDER BY t.symbol LIMIT 1)
  FROM s WHERE s.symbol IS NOT NULL
)
SELECT s.symbol::text,
       (SELECT t.time FROM tick_data t
        WHERE t.symbol = s.symbol AND t.time < '9999-12-31 00:00+00'
        ORDER BY t.time DESC LIMIT 1) AS newest
FROM s
WHERE s.symbol IS NOT NULL
ORDER BY 1;

-- name: follow_copy_out
-- The follow mode's read: each symbol's ticks from its own start on (the arrays pair a
-- symbol with its start), inside the tick domain, as binary COPY with migrate.copy_out's
-- casts. One statement: one snapshot of the source for every symbol.
COPY (SELECT t.time::timestamptz, t.symbol::text, t.bid_price::numeric(20, 8),
             t.ask_price::numeric(20, 8), t.last_price::numeric(20, 8), t.volume::bigint,
             t.source::text, t.trade_id::uuid, t.account_id::uuid
      FROM unnest(%(symbols)s::text[], %(starts)s::timestamptz[]) AS w(symbol, start)
      JOIN tick_data t ON t.symbol = w.symbol AND t.time >= w.start
                      AND t.time < '9999-12-31 00:00+00')
TO STDOUT (FORMAT BINARY);

-- name: follow_delete
-- The target's copy of one symbol's newest ticks, before the follow mode copies them again:
-- the range then equals the source's whatever happened in it (a tick updated, deleted, or
-- committed late inside the overlap).
DELETE FROM tick_data WHERE symbol = %(symbol)s AND time >= %(start)s;

-- name: minute_digest
-- One symbol's [lo, hi) per minute: rows and the multiset checksum of digest.sql (the same
-- row text and hash), to narrow a differing day down to the minutes that differ.
SELECT date_bin('1 minute', time::timestamptz, %(lo)s::timestamptz) AS minute,
       count(*) AS rows,
       sum(hashtextextended(
           ROW(extract(epoch FROM time::timestamptz), symbol::text, bid_price::numeric(20, 8),
               ask_price::numeric(20, 8), last_price::numeric(20, 8), volume::bigint,
               source::text, trade_id::uuid, account_id::uuid)::text, 0)::numeric) AS checksum
FROM tick_data
WHERE symbol = %(symbol)s AND time >= %(lo)s AND time < %(hi)s
GROUP BY 1
ORDER BY 1;

-- name: minute_rows
-- One symbol's rows in the given minutes (starts of 1-minute ranges), every column as
-- the migration writes it; prices as text so a difference shows exactly as stored.
SELECT time::timestamptz AS time, symbol::text, bid_price::numeric(20, 8)::text AS bid_price,
       ask_price::numeric(20, 8)::text AS ask_price,
       last_price::numeric(20, 8)::text AS last_price, volume::bigint AS volume,
       source::text AS source, trade_id::uuid::text AS trade_id,
       account_id::uuid::text AS account_id
FROM tick_data
JOIN unnest(%(minutes)s::timestamptz[]) AS m(start)
  ON time >= m.start AND time < m.start + INTERVAL '1 minute'
WHERE symbol = %(symbol)s
ORDER BY 1;

-- name: create_runs
-- What the parallel run did on this target: one row per catch-up pass or readiness check,
-- for "when was source = target last verified whole" (tsj cutover).
CREATE TABLE IF NOT EXISTS tsj_sync_runs (
  kind TEXT NOT NULL,  -- 'sync' or 'cutover'
  started_at TIMESTAMPTZ NOT NULL,
  finished_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
  since TIMESTAMPTZ,
  until TIMESTAMPTZ,
  whole BOOLEAN NOT NULL,  -- compared the whole kept window, every symbol
  days_compared INTEGER NOT NULL,
  days_differing INTEGER NOT NULL,
  days_copied INTEGER NOT NULL,
  rows_read_source BIGINT NOT NULL,
  rows_copied BIGINT NOT NULL,
  seconds DOUBLE PRECISION NOT NULL
);

-- name: record_run
-- One catch-up pass or readiness check, as it ended.
INSERT INTO tsj_sync_runs (kind, started_at, since, until, whole, days_compared,
                           days_differing, days_copied, rows_read_source, rows_copied, seconds)
VALUES (%(kind)s, %(started_at)s, %(since)s, %(until)s, %(whole)s, %(days_compared)s,
        %(days_differing)s, %(days_copied)s, %(rows_read_source)s, %(rows_copied)s,
        %(seconds)s);

-- name: last_level
-- The newest whole comparison that found source and target equal (NULL: none yet).
SELECT max(finished_at) FROM tsj_sync_runs WHERE whole AND days_differing = 0;

-- name: synced_days
-- The symbol-days the catch-up re-copied most recently (its checkpoints' plan keys start
-- 'sync-'), newest first: the days whose candles must have been refreshed.
SELECT symbol, (lo AT TIME ZONE 'UTC')::date AS day, max(finished_at) AS copied_at
FROM tsj_migration_batches
WHERE plan_key LIKE 'sync-%%' AND lo IS NOT NULL
GROUP BY 1, 2
ORDER BY 3 DESC
LIMIT %(limit)s;

-- name: candle_diff_day
-- Rows of {view} for one symbol in [lo, hi) that differ from a recompute from the ticks
-- (schema.candle_diff_ticks, for one symbol-day): 0 means the day's candles are current.
WITH want AS (
  SELECT time_bucket(%(width)s::interval, time) AS bucket, symbol,
         first(last_price, time) AS open, max(last_price) AS high, min(last_price) AS low,
         last(last_price, time) AS close, sum(volume) AS volume, count(*) AS tick_count
  FROM tick_data WHERE symbol = %(symbol)s AND time >= %(lo)s AND time < %(hi)s
  GROUP BY 1, 2),
have AS (
  SELECT bucket, symbol, open, high, low, close, volume, tick_count FROM {view}
  WHERE symbol = %(symbol)s AND bucket >= %(lo)s AND bucket < %(hi)s)
SELECT count(*) FROM (
  (SELECT * FROM want EXCEPT ALL SELECT * FROM have)
  UNION ALL
  (SELECT * FROM have EXCEPT ALL SELECT * FROM want)) AS d;

-- name: write_ticks
-- A stand-in for the application writing to the source (tsj_lab/bench/parallelrun.py):
-- %(n)s ticks per symbol stamped %(start)s + k * %(step)s, prices on a quarter-point grid
-- drifting with the time, so each tick is distinct and the candles are not flat.
INSERT INTO tick_data (time, symbol, bid_price, ask_price, last_price, volume, source)
SELECT x.t, s.symbol, x.p - 0.25, x.p + 0.25, x.p, 1 + k %% 9, 'tsj-writer'
FROM unnest(%(symbols)s::text[]) AS s(symbol),
     generate_series(0, %(n)s - 1) AS k,
     LATERAL (SELECT %(start)s::timestamptz + k * %(step)s::interval AS t,
                     (5000 + (floor(extract(epoch FROM %(start)s::timestamptz
                                             + k * %(step)s::interval)) %% 400) * 0.25
                     )::numeric(20, 8) AS p) AS x;

-- name: link_one_tick
-- What the application does when it links a tick to a trade: one tick of a symbol-day gets
-- a trade_id (the day's count unchanged). The first tick of the day on the plain source,
-- picked by ctid (it has no key).
UPDATE tick_data SET trade_id = %(trade_id)s::uuid
WHERE ctid = (SELECT ctid FROM tick_data
              WHERE symbol = %(symbol)s
                AND time >= %(day)s::date::timestamp AT TIME ZONE 'UTC'
                AND time < (%(day)s::date + 1)::timestamp AT TIME ZONE 'UTC'
              ORDER BY time LIMIT 1);
