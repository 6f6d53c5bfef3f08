-- name: versions
-- PostgreSQL version (text and number), the installed TimescaleDB version in this
-- database (NULL without the extension), and whether the extension could be created.
SELECT current_setting('server_version') AS postgres_version,
       current_setting('server_version_num') AS postgres_version_num,
       (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb') AS timescaledb_version,
       EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') AS available;
