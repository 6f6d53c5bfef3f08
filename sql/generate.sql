-- name: copy_ticks_in
-- Bulk load of generated ticks: binary COPY into {table}, the story's columns in order.
-- The client builds the tuples (tsj_lab.copybin.copy_buffer) and sends signature and trailer.
COPY {table} (time, symbol, bid_price, ask_price, last_price, volume, source, trade_id, account_id)
FROM STDIN (FORMAT BINARY);

-- name: part_count
-- Ticks of one symbol in one generated part's time range [lo, hi): tells whether that part
-- is already loaded (so a re-run of `tsj generate` never doubles rows).
SELECT count(*) FROM {table} WHERE symbol = %(symbol)s AND time >= %(lo)s AND time < %(hi)s;

-- name: delete_part
-- Removes one part's range before it is generated again (`tsj generate --replace`).
DELETE FROM {table} WHERE symbol = %(symbol)s AND time >= %(lo)s AND time < %(hi)s;

-- name: direct_settings
-- The settings a direct compress COPY needs (TimescaleDB 2.23+): compression on COPY, and
-- the client's promise that its rows arrive in the columnstore's order.
SELECT name FROM pg_settings
WHERE name IN ('timescaledb.enable_direct_compress_copy',
               'timescaledb.enable_direct_compress_copy_client_sorted');

-- name: set_local
-- One setting for the rest of the day's transaction only (SET LOCAL as a function: the
-- name is a value, and nothing outlives the transaction, through a pooler too).
SELECT set_config(%(name)s, %(value)s, true);

-- name: server_now
-- The server's clock: a day goes in compressed when its chunk ends by now() - compress_after.
SELECT now();

-- name: chunk_ranges
-- The chunks of %(table)s (a hypertable) overlapping [%(lo)s, %(hi)s): a day whose range
-- holds a chunk already is loaded plain (direct compression starts a chunk of its own).
SELECT range_start, range_end
FROM timescaledb_information.chunks
WHERE (quote_ident(hypertable_schema) || '.' || quote_ident(hypertable_name))::regclass
      = to_regclass(%(table)s)
  AND range_start < %(hi)s AND range_end > %(lo)s;

-- name: day_chunks
-- The chunks of %(table)s overlapping [%(lo)s, %(hi)s) with their catalog status (1:
-- compressed; 2: unordered, 8: partial) and their compressed chunk (schema, name; NULL
-- when the chunk is not compressed): what a direct compress COPY of a day left there.
-- (through the functions and catalog both 2.24 and 2.29+ have: 2.29's chunk catalog names
-- chunks by relid and no longer holds compressed_chunk_id)
SELECT i.chunk_name, _timescaledb_functions.chunk_status(ch.oid), n.nspname, cc.relname
FROM timescaledb_information.chunks i
CROSS JOIN LATERAL (SELECT format('%%I.%%I', i.chunk_schema, i.chunk_name)::regclass AS oid) ch
LEFT JOIN _timescaledb_catalog.compression_settings s ON s.relid = ch.oid
LEFT JOIN pg_class cc ON cc.oid = s.compress_relid
LEFT JOIN pg_namespace n ON n.oid = cc.relnamespace
WHERE (quote_ident(i.hypertable_schema) || '.' || quote_ident(i.hypertable_name))::regclass
      = to_regclass(%(table)s)
  AND i.range_start < %(hi)s AND i.range_end > %(lo)s
ORDER BY i.range_start;

-- name: batch_totals
-- Per symbol, the ticks, oldest and newest time of compressed chunk {chunk}, from each
-- batch's metadata (_ts_meta_count, the order column's _ts_meta_min_1/_ts_meta_max_1):
-- no compressed value is read, no row decompressed.
SELECT symbol, sum(_ts_meta_count)::bigint, min(_ts_meta_min_1), max(_ts_meta_max_1)
FROM {chunk}
GROUP BY symbol
ORDER BY symbol;
