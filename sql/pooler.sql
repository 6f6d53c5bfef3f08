-- PgBouncer in front of the embedded server (tsj_lab.pooler), and what tsj asks a
-- connection to learn whether a pooler stands between it and the server.

-- name: scram_secret
-- The stored SCRAM secret of role %(role)s (superuser only): PgBouncer's auth_file holds
-- it, so the pooler checks clients and logs into the server without a clear password.
SELECT rolpassword FROM pg_authid WHERE rolname = %(role)s;

-- name: server_side
-- The server process and the port it accepted this connection on: a port other than the
-- URL's, or another backend in the next transaction, means something pools in between.
SELECT pg_backend_pid(), inet_server_port();

-- name: prepared_here
-- Whether the server knows a prepared statement by the name %(name)s the client gave it:
-- PgBouncer 1.21+ (max_prepared_statements > 0) renames protocol-level prepared
-- statements to its own, so the server knows none by the client's name.
SELECT count(*) FROM pg_prepared_statements WHERE name = %(name)s;

-- name: deallocate
-- Removes the probe's prepared statement {statement} where the server kept it by that name.
DEALLOCATE {statement};
