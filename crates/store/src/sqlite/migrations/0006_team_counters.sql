-- PostgreSQL moves each team's revision and secret count into a table of
-- their own in this step (see its 0006). SQLite takes no row locks, so
-- they stay on the teams row here; the step exists to keep both engines'
-- step lists the same.
SELECT 1;
