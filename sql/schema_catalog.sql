-- Catalog reads of the provisioning phase: what exists (so provisioning is idempotent and
-- a dry run can say what it would do), who may change it, and the AC1-AC6 validation.
-- Every object is looked up in the connection's current schema (the first on search_path).

-- name: provision_state
-- One row: which of the objects provisioning creates already exist, and the settings it
-- compares with the story's. %(views)s is the list of candle view names, %(indexes)s
-- the list of index names looked for.
WITH ns AS (SELECT current_schema()::text::regnamespace AS oid),
ht AS (SELECT h.* FROM timescaledb_information.hypertables h
       WHERE h.hypertable_schema = current_schema() AND h.hypertable_name = 'tick_data')
SELECT
  EXISTS (SELECT 1 FROM pg_class c, ns WHERE c.relnamespace = ns.oid
          AND c.relname = 'tick_data' AND c.relkind IN ('r', 'p')) AS has_table,
  EXISTS (SELECT 1 FROM ht) AS is_hypertable,
  (SELECT d.time_interval FROM timescaledb_information.dimensions d
   WHERE d.hypertable_schema = current_schema() AND d.hypertable_name = 'tick_data'
     AND d.dimension_number = 1) AS chunk_interval,
  coalesce((SELECT compression_enabled FROM ht), false) AS compression_enabled,
  ARRAY(SELECT c.relname::text FROM pg_class c, ns WHERE c.relnamespace = ns.oid
        AND c.relname = ANY(%(views)s) AND c.relkind IN ('m', 'v')) AS views,
  ARRAY(SELECT c.relname::text FROM pg_class c, ns WHERE c.relnamespace = ns.oid
        AND c.relname = ANY(%(indexes)s) AND c.relkind IN ('i', 'I')) AS indexes,
  -- NULL when there is no such policy; the interval of the first one otherwise
  (SELECT (j.config ->> 'compress_after')::interval FROM timescaledb_information.jobs j
   WHERE j.proc_name = 'policy_compression' AND j.hypertable_schema = current_schema()
     AND j.hypertable_name = 'tick_data' ORDER BY j.job_id LIMIT 1) AS compress_after,
  (SELECT (j.config ->> 'drop_after')::interval FROM timescaledb_information.jobs j
   WHERE j.proc_name = 'policy_retention' AND j.hypertable_schema = current_schema()
     AND j.hypertable_name = 'tick_data' ORDER BY j.job_id LIMIT 1) AS drop_after;

-- name: candle_policies
-- The refresh policy of each candle view that has one: its job and intervals. A refresh
-- policy's job names the view since 2.20 and its materialization hypertable before, so
-- both are accepted. %(views)s: the candle view names.
SELECT ca.view_name::text AS view, j.job_id,
       (j.config ->> 'start_offset')::interval AS start_offset,
       (j.config ->> 'end_offset')::interval AS end_offset,
       j.schedule_interval
FROM timescaledb_information.continuous_aggregates ca
JOIN timescaledb_information.jobs j
  ON (j.hypertable_schema, j.hypertable_name)
     IN ((ca.view_schema, ca.view_name),
         (ca.materialization_hypertable_schema, ca.materialization_hypertable_name))
WHERE j.proc_name = 'policy_refresh_continuous_aggregate'
  AND ca.view_schema = current_schema() AND ca.view_name = ANY(%(views)s)
ORDER BY j.job_id;

-- name: count_ticks
-- Rows in tick_data (asked only of a plain table, before refusing to convert it).
SELECT count(*) FROM tick_data;

-- name: provision_privileges
-- Who we are, where objects go, and whether we may create there and own tick_data
-- (converting and indexing a table needs its ownership; new objects need CREATE).
SELECT current_user::text AS role,
       current_schema()::text AS schema,
       coalesce(has_schema_privilege(current_schema(), 'CREATE'), false) AS can_create,
       (SELECT pg_has_role(c.relowner, 'USAGE') FROM pg_class c
        WHERE c.relnamespace = current_schema()::text::regnamespace AND c.relname = 'tick_data')
         AS owns_table,
       (SELECT pg_get_userbyid(c.relowner)::text FROM pg_class c
        WHERE c.relnamespace = current_schema()::text::regnamespace AND c.relname = 'tick_data')
         AS table_owner;

-- name: timescaledb_routines
-- The TimescaleDB API the connected server has, and whether each name is a function
-- ('f') or a procedure ('p'): add_columnstore_policy is a procedure since 2.18.
SELECT p.proname::text, p.prokind::text
FROM pg_proc p
JOIN pg_extension e ON e.extname = 'timescaledb' AND p.pronamespace = e.extnamespace
WHERE p.proname IN ('add_columnstore_policy', 'add_compression_policy');

-- name: has_table
-- Whether relation %(name)s (table, view, continuous aggregate, materialized view) is
-- visible, as to_regclass reads a name: the first on search_path, or schema-qualified;
-- false rather than an error when there is none. The package's one "does this table
-- exist" (schema.has_table).
SELECT to_regclass(%(name)s) IS NOT NULL;

-- name: row_security
-- Whether row-level security filters relation %(name)s for this session's role (RLS on,
-- and the role neither a superuser, BYPASSRLS, nor the owner of a table without FORCE),
-- and the role's name. A read through a filter returns some rows without an error, so a
-- copy or a digest that trusts it is silently partial: pg_dump's row_security = off
-- exists for this. NULL for a relation that does not exist. Then whether RLS is on for the
-- table at all (the preflight says 'on, bypassed' apart from 'off').
SELECT row_security_active(to_regclass(%(name)s)),
       (SELECT relrowsecurity FROM pg_class WHERE oid = to_regclass(%(name)s)),
       current_user::text;

-- name: has_rows
-- Whether {table} holds any row (stops at the first, cheap on any size).
SELECT EXISTS (SELECT 1 FROM {table});

-- name: select_one
-- AC1: the story's connection test.
SELECT 1;

-- name: backend_pid
-- AC6: which server process serves this pooled connection.
SELECT pg_backend_pid();

-- name: max_connections
-- AC6: the server's connection limit, named when the pool test falls short.
SELECT current_setting('max_connections')::int;

-- name: hypertable_dimension
-- AC2: hypertable %(table)s (a name as to_regclass reads it: the first on search_path, or
-- schema-qualified), its chunk count, time column and chunk interval; no row: not a
-- hypertable. Matched as a relation, so a tick_data in another schema is not this one.
SELECT h.num_chunks, d.column_name::text, d.time_interval
FROM timescaledb_information.hypertables h
LEFT JOIN LATERAL (
  SELECT x.column_name, x.time_interval FROM timescaledb_information.dimensions x
  WHERE x.hypertable_schema = h.hypertable_schema AND x.hypertable_name = h.hypertable_name
    AND x.dimension_type = 'Time'
  ORDER BY x.dimension_number LIMIT 1) d ON true
WHERE (quote_ident(h.hypertable_schema) || '.' || quote_ident(h.hypertable_name))::regclass
      = to_regclass(%(table)s);

-- name: settings_views
-- AC3: which compression-settings views the server has (renamed to columnstore in 2.18).
SELECT table_name::text FROM information_schema.views
WHERE table_schema = 'timescaledb_information'
  AND table_name IN ('hypertable_columnstore_settings', 'hypertable_compression_settings');

-- name: compression_settings
-- AC3: segmentby/orderby of table %(table)s (as to_regclass reads it) from {view}, one of
-- the settings views above.
SELECT s.segmentby, s.orderby
FROM timescaledb_information.{view} s
WHERE s.hypertable = to_regclass(%(table)s);

-- name: policy_jobs
-- AC3/AC5: the compression and retention jobs on table %(table)s (as to_regclass reads
-- it) with their intervals, the oldest job of each kind first.
SELECT j.proc_name::text, j.job_id,
       (j.config ->> 'compress_after')::interval AS compress_after,
       (j.config ->> 'drop_after')::interval AS drop_after
FROM timescaledb_information.jobs j
WHERE j.proc_name IN ('policy_compression', 'policy_retention')
  AND (quote_ident(j.hypertable_schema) || '.' || quote_ident(j.hypertable_name))::regclass
      = to_regclass(%(table)s)
ORDER BY j.job_id;

-- name: candle_relations
-- AC4: each candle view that exists: its kind ('m' materialized view, 'v' view, which is
-- how a continuous aggregate shows), whether it is populated, and for a continuous
-- aggregate its materialized_only flag and whether it has a refresh policy.
SELECT c.relname::text AS view, c.relkind::text AS kind, c.relispopulated AS populated,
       ca.materialized_only,
       EXISTS (SELECT 1 FROM timescaledb_information.jobs j
               WHERE j.proc_name = 'policy_refresh_continuous_aggregate'
                 -- the view since 2.20, the materialization hypertable before
                 AND (j.hypertable_schema, j.hypertable_name)
                     IN ((ca.view_schema, ca.view_name),
                         (ca.materialization_hypertable_schema,
                          ca.materialization_hypertable_name))) AS has_policy
FROM pg_class c
LEFT JOIN timescaledb_information.continuous_aggregates ca
  ON ca.view_schema = current_schema() AND ca.view_name = c.relname
WHERE c.relnamespace = current_schema()::text::regnamespace AND c.relname = ANY(%(views)s);

-- name: chunk_layout
-- The chunks of tick_data, oldest first, with their time range and on-disk size.
SELECT c.chunk_name::text, c.range_start, c.range_end, c.is_compressed,
       s.table_bytes, s.index_bytes, s.total_bytes
FROM timescaledb_information.chunks c
LEFT JOIN chunks_detailed_size(to_regclass(quote_ident(current_schema()) || '.tick_data')) s
  ON s.chunk_schema = c.chunk_schema AND s.chunk_name = c.chunk_name
WHERE c.hypertable_schema = current_schema() AND c.hypertable_name = 'tick_data'
ORDER BY c.range_start;

-- name: relation_sizes
-- On-disk size of tick_data and of each candle view: a materialized view's own relation,
-- or a continuous aggregate's materialization hypertable.
SELECT 'tick_data' AS relation, s.table_bytes, s.index_bytes, s.toast_bytes, s.total_bytes
FROM hypertable_detailed_size(to_regclass(quote_ident(current_schema()) || '.tick_data')) s
UNION ALL
SELECT c.relname::text, pg_table_size(c.oid), pg_indexes_size(c.oid), 0,
       pg_total_relation_size(c.oid)
FROM pg_class c
WHERE c.relnamespace = current_schema()::text::regnamespace AND c.relkind = 'm'
  AND c.relname = ANY(%(views)s)
UNION ALL
SELECT ca.view_name::text, s.table_bytes, s.index_bytes, s.toast_bytes, s.total_bytes
FROM timescaledb_information.continuous_aggregates ca
CROSS JOIN LATERAL hypertable_detailed_size(
  (quote_ident(ca.materialization_hypertable_schema) || '.'
   || quote_ident(ca.materialization_hypertable_name))::regclass) s
WHERE ca.view_schema = current_schema() AND ca.view_name = ANY(%(views)s);

-- name: story_ac2
-- AC2 as the story's validation table writes it: SELECT * FROM
-- timescaledb_information.hypertables WHERE hypertable_name = 'tick_data' returns 1 row
-- (here: of the current schema).
SELECT count(*) FROM timescaledb_information.hypertables
WHERE hypertable_name = 'tick_data' AND hypertable_schema = current_schema();

-- name: story_ac3
-- AC3 as the story writes it: timescaledb_information.compression_settings shows the
-- settings (a row per segmentby and orderby column of tick_data).
SELECT count(*) FROM timescaledb_information.compression_settings
WHERE hypertable_name = 'tick_data' AND hypertable_schema = current_schema();

-- name: story_ac4
-- AC4 as the story writes it: timescaledb_information.continuous_aggregates shows 4 views
-- (here: of the current schema).
SELECT count(*) FROM timescaledb_information.continuous_aggregates
WHERE view_schema = current_schema();

-- name: story_ac5
-- AC5 as the story writes it: timescaledb_information.jobs WHERE proc_name =
-- 'policy_retention' exists (here: on tick_data of the current schema).
SELECT count(*) FROM timescaledb_information.jobs
WHERE proc_name = 'policy_retention' AND hypertable_name = 'tick_data'
  AND hypertable_schema = current_schema();
