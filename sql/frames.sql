-- name: describe
-- The result columns of {query} (one of our named queries, its semicolon cut), without
-- its rows: names and types for the folded statement below. Once per query and connection.
SELECT * FROM ({query}) AS q LIMIT 0

-- name: columns
-- The rows of {query} folded into one array per column ({arrays}: array_agg of each of
-- {aliases}, the columns renamed c0, c1, ... so that duplicate names cannot clash), read
-- as one binary row by db.read_frame. The aggregate takes the subquery's rows in the
-- order its ORDER BY gives them (an Agg over one subquery scan does not reorder; tested).
SELECT {arrays} FROM ({query}) AS q ({aliases})

-- name: column_array
-- One column's array in frames.columns.
array_agg({column}) AS {column}

-- name: generic_plans
-- read_frame's connection plans each prepared statement once, for any parameters, instead
-- of again on every read (PostgreSQL's default tries 5 custom plans first): the planner is
-- 1.9-2.0 ms of the real-time candle view's 3.3 ms. Only where statements can be prepared.
SET plan_cache_mode = force_generic_plan
