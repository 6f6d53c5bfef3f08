-- Row identity and the per-(symbol, UTC day) digest that migration, verification and the
-- integrity checks share.
--
-- The story's tick_data has no primary key, and two identical ticks can both be real
-- (two fills at the same quote in the same millisecond). A tick's identity is therefore
-- the whole row, and a table is a MULTISET of rows: the digest must change when a row is
-- doubled or dropped. Each row's text form is hashed to 64 bits and the hashes are SUMMED
-- as numeric: exact, order-independent, and additive (target + quarantine = source),
-- while a duplicate adds its hash twice. bit_xor would cancel a duplicated pair out.
--
-- The text form is session-independent: time as its epoch (numeric, microseconds exact;
-- never the timestamptz text, which depends on TimeZone and DateStyle), and a ROW(...)
-- text that quotes and marks NULLs unambiguously ("a,,b" is not "a,b,"). Every column is
-- cast to the story's type (no-ops on the story's schema), so a source with looser types
-- (float prices, a naive timestamp read as the session's time zone) hashes the values the
-- migration writes, and a value the cast rounds shows up as a difference.
--
-- The tick domain: times in [0001-01-02, 9999-12-31) UTC, the span Python's datetime can
-- hold in any time zone. Rows outside it (+/-infinity, year 20000) get day NULL and no
-- first/last time, so they are counted and hashed but never break a reader.

-- name: day
-- Per symbol and UTC day of {table}: rows, first/last time, total volume and the multiset
-- checksum, for rows with since <= time < until and (symbols IS NULL or symbol in symbols).
-- day is NULL for rows outside the tick domain, so they are still counted, not lost.
SELECT symbol::text AS symbol,
       CASE WHEN time::timestamptz >= '0001-01-02 00:00+00'
             AND time::timestamptz < '9999-12-31 00:00+00'
            THEN (time::timestamptz AT TIME ZONE 'UTC')::date END AS day,
       count(*) AS rows,
       min(time::timestamptz) FILTER (WHERE time::timestamptz >= '0001-01-02 00:00+00'
                                      AND time::timestamptz < '9999-12-31 00:00+00') AS first_time,
       max(time::timestamptz) FILTER (WHERE time::timestamptz >= '0001-01-02 00:00+00'
                                      AND time::timestamptz < '9999-12-31 00:00+00') AS last_time,
       coalesce(sum(volume::bigint), 0) AS volume,
       coalesce(sum(hashtextextended(
           ROW(extract(epoch FROM time::timestamptz), symbol::text, bid_price::numeric(20, 8),
               ask_price::numeric(20, 8), last_price::numeric(20, 8), volume::bigint,
               source::text, trade_id::uuid, account_id::uuid)::text, 0)::numeric), 0) AS checksum
FROM {table}
WHERE time >= %(since)s::timestamptz AND time <= %(until)s::timestamptz
  AND (time < %(until)s::timestamptz OR %(until)s::timestamptz = 'infinity')
  AND (%(symbols)s::text[] IS NULL OR symbol = ANY(%(symbols)s::text[]))
GROUP BY 1, 2
ORDER BY 1, 2;

-- name: range
-- The same digest for one batch: symbol = %(symbol)s and lo <= time < hi (no ";": the
-- batch's checkpoint holds it as a subquery, migrate.checkpoint_held).
SELECT count(*) AS rows,
       coalesce(sum(hashtextextended(
           ROW(extract(epoch FROM time::timestamptz), symbol::text, bid_price::numeric(20, 8),
               ask_price::numeric(20, 8), last_price::numeric(20, 8), volume::bigint,
               source::text, trade_id::uuid, account_id::uuid)::text, 0)::numeric), 0) AS checksum
FROM {table}
WHERE symbol = %(symbol)s AND time >= %(lo)s AND time < %(hi)s

-- The same digest one symbol-day at a time (tsj_lab.data.digest): no statement of tsj's
-- reads more than one symbol's day, so a role's statement_timeout meets a bounded
-- statement, and each one is a range of the (symbol, time) index the story's table and
-- the hypertable both have. The walk: the symbols (a loose index scan), each symbol's
-- first and last tick, then one statement per UTC day in between, and one for the odd rows.

-- name: symbols
-- The distinct non-NULL symbols of {table} by a loose index scan: one index probe per
-- symbol on an index led by symbol, where DISTINCT would read the whole table.
WITH RECURSIVE s(symbol) AS (
  SELECT min(symbol) FROM {table}
  UNION ALL
  SELECT (SELECT min(t.symbol) FROM {table} t WHERE t.symbol > s.symbol)
  FROM s WHERE s.symbol IS NOT NULL
)
SELECT symbol::text FROM s WHERE symbol IS NOT NULL;

-- name: span
-- The first and last tick of symbol %(symbol)s inside the tick domain and [since, until)
-- (NULLs: none there): two probes of the (symbol, time) index.
SELECT min(time)::timestamptz, max(time)::timestamptz
FROM {table}
WHERE symbol = %(symbol)s
  AND time >= greatest(%(since)s::timestamptz, '0001-01-02 00:00+00')
  AND time < least(%(until)s::timestamptz, '9999-12-31 00:00+00');

-- name: symbol_days
-- The UTC days on which symbol %(symbol)s has ticks inside the tick domain and [since,
-- until), by a loose index scan: one probe of the (symbol, time) index per day with ticks,
-- so a symbol with a tick in 1990 and one in 2024 costs two probes, not 12,000 days.
WITH RECURSIVE d(day) AS (
  SELECT (min(time)::timestamptz AT TIME ZONE 'UTC')::date
  FROM {table}
  WHERE symbol = %(symbol)s
    AND time >= greatest(%(since)s::timestamptz, '0001-01-02 00:00+00')
    AND time < least(%(until)s::timestamptz, '9999-12-31 00:00+00')
  UNION ALL
  SELECT (SELECT (min(t.time)::timestamptz AT TIME ZONE 'UTC')::date
          FROM {table} t
          WHERE t.symbol = %(symbol)s
            AND t.time >= ((d.day + 1)::timestamp AT TIME ZONE 'UTC')
            AND t.time < least(%(until)s::timestamptz, '9999-12-31 00:00+00'))
  FROM d WHERE d.day IS NOT NULL
)
SELECT day FROM d WHERE day IS NOT NULL;

-- name: symbol_day
-- digest.day's row for symbol %(symbol)s in [lo, hi), a part of one UTC day (no row: no
-- ticks there).
SELECT symbol::text AS symbol, (time::timestamptz AT TIME ZONE 'UTC')::date AS day,
       count(*) AS rows, min(time::timestamptz) AS first_time,
       max(time::timestamptz) AS last_time, coalesce(sum(volume::bigint), 0) AS volume,
       coalesce(sum(hashtextextended(
           ROW(extract(epoch FROM time::timestamptz), symbol::text, bid_price::numeric(20, 8),
               ask_price::numeric(20, 8), last_price::numeric(20, 8), volume::bigint,
               source::text, trade_id::uuid, account_id::uuid)::text, 0)::numeric), 0) AS checksum
FROM {table}
WHERE symbol = %(symbol)s AND time >= %(lo)s AND time < %(hi)s
GROUP BY 1, 2;

-- name: odd
-- digest.day's rows for the odd rows in [since, until): those of %(symbols)s outside the
-- tick domain (day NULL), and with %(nulls)s the rows with a NULL symbol (by day, as
-- digest.day groups them). Index ranges only: below and above the domain, symbol IS NULL.
SELECT symbol::text AS symbol,
       CASE WHEN time::timestamptz >= '0001-01-02 00:00+00'
             AND time::timestamptz < '9999-12-31 00:00+00'
            THEN (time::timestamptz AT TIME ZONE 'UTC')::date END AS day,
       count(*) AS rows,
       min(time::timestamptz) FILTER (WHERE time::timestamptz >= '0001-01-02 00:00+00'
                                      AND time::timestamptz < '9999-12-31 00:00+00') AS first_time,
       max(time::timestamptz) FILTER (WHERE time::timestamptz >= '0001-01-02 00:00+00'
                                      AND time::timestamptz < '9999-12-31 00:00+00') AS last_time,
       coalesce(sum(volume::bigint), 0) AS volume,
       coalesce(sum(hashtextextended(
           ROW(extract(epoch FROM time::timestamptz), symbol::text, bid_price::numeric(20, 8),
               ask_price::numeric(20, 8), last_price::numeric(20, 8), volume::bigint,
               source::text, trade_id::uuid, account_id::uuid)::text, 0)::numeric), 0) AS checksum
FROM (SELECT * FROM {table} WHERE symbol = ANY(%(symbols)s::text[])
                              AND time < '0001-01-02 00:00+00'
      UNION ALL
      SELECT * FROM {table} WHERE symbol = ANY(%(symbols)s::text[])
                              AND time >= '9999-12-31 00:00+00'
      UNION ALL
      SELECT * FROM {table} WHERE symbol IS NULL AND %(nulls)s) o
WHERE time >= %(since)s::timestamptz AND time <= %(until)s::timestamptz
  AND (time < %(until)s::timestamptz OR %(until)s::timestamptz = 'infinity')
GROUP BY 1, 2;

-- name: count_symbol_day
-- symbol_day's count alone (the plan's unit: no hashing).
SELECT symbol::text AS symbol, (time::timestamptz AT TIME ZONE 'UTC')::date AS day,
       count(*) AS rows
FROM {table}
WHERE symbol = %(symbol)s AND time >= %(lo)s AND time < %(hi)s
GROUP BY 1, 2;

-- name: count_odd
-- odd's counts alone; the plan gives every odd row day NULL (one quarantine batch a symbol).
SELECT symbol::text AS symbol, NULL::date AS day, count(*) AS rows
FROM (SELECT symbol, time FROM {table} WHERE symbol = ANY(%(symbols)s::text[])
                                         AND time < '0001-01-02 00:00+00'
      UNION ALL
      SELECT symbol, time FROM {table} WHERE symbol = ANY(%(symbols)s::text[])
                                         AND time >= '9999-12-31 00:00+00'
      UNION ALL
      SELECT symbol, time FROM {table} WHERE symbol IS NULL AND %(nulls)s) o
WHERE time >= %(since)s::timestamptz AND time <= %(until)s::timestamptz
  AND (time < %(until)s::timestamptz OR %(until)s::timestamptz = 'infinity')
GROUP BY 1;
