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
-- The same digest for one batch: symbol = %(symbol)s and lo <= time < hi.
SELECT count(*) AS rows,
       coalesce(sum(hashtextextended(
           ROW(extract(epoch FROM time::timestamptz), symbol::text, bid_price::numeric(20, 8),
               ask_price::numeric(20, 8), last_price::numeric(20, 8), volume::bigint,
               source::text, trade_id::uuid, account_id::uuid)::text, 0)::numeric), 0) AS checksum
FROM {table}
WHERE symbol = %(symbol)s AND time >= %(lo)s AND time < %(hi)s;
