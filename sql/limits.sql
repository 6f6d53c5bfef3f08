-- tsj's own limits inside its transactions (tsj_lab.db.limits).

-- name: lift
-- tsj's statement_timeout and idle_in_transaction_session_timeout for the rest of this
-- transaction only (set_config(..., true) is SET LOCAL with the value as a parameter): a
-- role's shorter limits, meant for an application's requests, do not cut tsj's bounded
-- statements, and nothing leaks into the session a transaction-mode pooler hands on.
SELECT set_config('statement_timeout', %(statement)s, true),
       set_config('idle_in_transaction_session_timeout', %(idle)s, true);

-- name: lift_session
-- The same for the rest of a session tsj owns and closes (a direct connection that runs a
-- statement no transaction block may hold, such as a continuous aggregate's refresh).
SELECT set_config('statement_timeout', %(statement)s, false),
       set_config('idle_in_transaction_session_timeout', %(idle)s, false);
