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
