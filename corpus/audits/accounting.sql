-- Every document a build read is accounted for: final documents + rejects = inputs.
-- For every successful build, runs.docs_in/docs_out/docs_rejected are recorded and add up, the
-- raw shards it read (run_inputs) hold docs_in rows, its step_stats exist and chain (a step's
-- docs_in is the previous step's docs_out, and docs_in - docs_out equals the step's drops by
-- reason). For the latest build, the one the views show, documents and rejects hold exactly
-- docs_out and docs_rejected rows, and the rejects per step and reason match step_stats. Raw data
-- that arrived after the latest build (a crawl not built yet) is not part of any build's count.
WITH builds AS (
    SELECT run_id, finished_at, docs_in, docs_out, docs_rejected FROM runs
    WHERE kind = 'build' AND status = 'succeeded'
),
latest AS (
    SELECT * FROM builds ORDER BY finished_at DESC, run_id DESC LIMIT 1
),
stats AS (
    SELECT s.run_id, s.step_index, s.step, s.docs_in, s.docs_out,
           coalesce(list_sum(map_values(s.drops)), 0) AS dropped,
           lag(s.docs_out) OVER (PARTITION BY s.run_id ORDER BY s.step_index) AS prev_out,
           max(s.step_index) OVER (PARTITION BY s.run_id) AS last_index
    FROM step_stats s JOIN builds b ON s.run_id = b.run_id
),
drops AS (
    SELECT step, unnest(map_keys(drops)) AS reason, unnest(map_values(drops)) AS n
    FROM step_stats WHERE run_id = (SELECT run_id FROM latest)
),
rejected AS (
    SELECT step, reason, count(*) AS n FROM rejects GROUP BY step, reason
),
violations (run_id, problem, step, expected, actual) AS (
    SELECT NULL::VARCHAR, 'no successful build in the catalog', NULL::VARCHAR, NULL::BIGINT, NULL::BIGINT
    WHERE NOT EXISTS (SELECT 1 FROM builds)
    UNION ALL
    SELECT run_id, 'runs.docs_in/docs_out/docs_rejected not recorded', NULL, NULL, NULL FROM builds
    WHERE docs_in IS NULL OR docs_out IS NULL OR docs_rejected IS NULL
    UNION ALL
    SELECT run_id, 'docs_out + docs_rejected != docs_in', NULL, docs_in, docs_out + docs_rejected FROM builds
    WHERE docs_out + docs_rejected <> docs_in
    UNION ALL
    SELECT run_id, 'no step_stats for the run', NULL, NULL, NULL FROM builds b
    WHERE NOT EXISTS (SELECT 1 FROM step_stats s WHERE s.run_id = b.run_id)
    UNION ALL
    SELECT run_id, 'step docs_in - docs_out != its drops', step, docs_in - docs_out, dropped FROM stats
    WHERE docs_in - docs_out <> dropped
    UNION ALL
    SELECT run_id, 'step docs_in != previous step docs_out', step, prev_out, docs_in FROM stats
    WHERE prev_out IS NOT NULL AND prev_out <> docs_in
    UNION ALL
    SELECT s.run_id, 'first step docs_in != runs.docs_in', s.step, b.docs_in, s.docs_in
    FROM stats s JOIN builds b ON s.run_id = b.run_id WHERE s.step_index = 0 AND s.docs_in <> b.docs_in
    UNION ALL
    SELECT s.run_id, 'last step docs_out != runs.docs_out', s.step, b.docs_out, s.docs_out
    FROM stats s JOIN builds b ON s.run_id = b.run_id WHERE s.step_index = s.last_index AND s.docs_out <> b.docs_out
    UNION ALL
    SELECT b.run_id, 'rows of the raw shards the build read != docs_in', NULL, b.docs_in, i.rows
    FROM builds b LEFT JOIN (SELECT run_id, sum(rows) AS rows FROM run_inputs GROUP BY run_id) i USING (run_id)
    WHERE i.rows IS DISTINCT FROM b.docs_in
    UNION ALL
    SELECT run_id, 'documents rows != docs_out', NULL, docs_out, (SELECT count(*) FROM documents) FROM latest
    WHERE docs_out <> (SELECT count(*) FROM documents)
    UNION ALL
    SELECT run_id, 'rejects rows != docs_rejected', NULL, docs_rejected, (SELECT count(*) FROM rejects) FROM latest
    WHERE docs_rejected <> (SELECT count(*) FROM rejects)
    UNION ALL
    SELECT (SELECT run_id FROM latest), 'rejects for step/reason != step_stats drops',
           coalesce(d.step, r.step) || ': ' || coalesce(d.reason, r.reason), coalesce(d.n, 0), coalesce(r.n, 0)
    FROM drops d FULL OUTER JOIN rejected r ON d.step = r.step AND d.reason = r.reason
    WHERE coalesce(d.n, 0) <> coalesce(r.n, 0)
)
SELECT * FROM violations ORDER BY run_id NULLS FIRST, problem, step;
