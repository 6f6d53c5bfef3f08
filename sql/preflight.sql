-- The preflight's facts (tsj_lab.migrate.preflight): one catalog read per side, judged in
-- Python. Row-level security is read by schema_catalog.row_security, as the phases do.

-- name: facts
-- The server, the session's role and its rights on %(table)s, the role's limits, the
-- table's size and index, and what a parallel run's change feed needs (wal_level, slots).
-- Table columns are NULL when %(table)s does not exist.
SELECT current_database()::text AS database,
       current_setting('server_version') AS server_version,
       current_setting('server_version_num')::int AS server_version_num,
       current_user::text AS role,
       r.rolsuper AS superuser,
       r.rolbypassrls AS bypassrls,
       r.rolreplication AS replication,
       c.oid IS NOT NULL AS has_table,
       has_table_privilege(c.oid, 'SELECT') AS can_select,
       has_table_privilege(c.oid, 'INSERT') AS can_insert,
       has_table_privilege(c.oid, 'DELETE') AS can_delete,
       has_schema_privilege(current_schema(), 'CREATE') AS can_create,
       (SELECT setting::bigint FROM pg_settings WHERE name = 'statement_timeout')
         AS statement_timeout_ms,
       (SELECT setting::bigint FROM pg_settings
        WHERE name = 'idle_in_transaction_session_timeout') AS idle_timeout_ms,
       pg_total_relation_size(c.oid) AS table_bytes,
       c.reltuples::bigint AS estimated_rows,
       current_setting('wal_level') AS wal_level,
       current_setting('max_replication_slots')::int AS max_slots,
       (SELECT count(*) FROM pg_replication_slots)::int AS used_slots,
       EXISTS (SELECT 1 FROM pg_index i
               JOIN pg_attribute a0 ON a0.attrelid = i.indrelid AND a0.attnum = i.indkey[0]
               JOIN pg_attribute a1 ON a1.attrelid = i.indrelid AND a1.attnum = i.indkey[1]
               WHERE i.indrelid = c.oid AND a0.attname = 'symbol' AND a1.attname = 'time')
         AS symbol_time_index
FROM pg_roles r
LEFT JOIN pg_class c ON c.oid = to_regclass(%(table)s)
WHERE r.rolname = current_user;
