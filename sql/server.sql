-- The embedded server's own housekeeping (tsj_lab.server.cluster).

-- name: databases
-- Every database that accepts connections: an extension update visits each.
SELECT datname FROM pg_database WHERE datallowconn ORDER BY datname;

-- name: has_timescaledb
-- The TimescaleDB version installed in this database; no row without the extension.
SELECT extversion FROM pg_extension WHERE extname = 'timescaledb';
