-- No step removes more than a set share of one source's documents (default 20%): a guard against
-- silent over-filtering, such as a quality rule that drops a third of one crawl. For every step of
-- the latest build and every source, the documents of that source that reached the step (its raw
-- documents minus what earlier steps removed) are compared with what the step removed; a
-- violation names the step, the source, the share and its top reasons. The limit is set with
-- `python -m corpus.audit --max-removed-share 0.3`, per step with `--max-removed-share
-- exact_dedup=0.5`; a source with fewer than `--min-source-docs` (default 20) documents reaching
-- a step is not judged there (a share of five documents says little).
-- requires: table step_stats
WITH latest AS (
    SELECT run_id FROM runs WHERE kind = 'build' AND status = 'succeeded'
    ORDER BY finished_at DESC, run_id DESC LIMIT 1
),
steps AS (
    SELECT step_index, step FROM step_stats WHERE run_id = (SELECT run_id FROM latest)
),
raw AS (
    SELECT source, count(*) AS n FROM raw_documents GROUP BY source
),
removed AS (  -- rejects of steps that are not in step_stats (ingest) count before every step
    SELECT r.source, r.step, coalesce(s.step_index, -1) AS step_index, r.reason, count(*) AS n
    FROM rejects r LEFT JOIN steps s ON r.step = s.step
    GROUP BY ALL
),
per_step AS (
    SELECT source, step, step_index, sum(n) AS n,
           list(reason || ': ' || n ORDER BY n DESC, reason)[1:3] AS top
    FROM removed GROUP BY ALL
),
judged AS (
    SELECT s.step_index, s.step, raw.source,
           raw.n - coalesce((SELECT sum(p.n) FROM per_step p
                             WHERE p.source = raw.source AND p.step_index < s.step_index), 0) AS docs_in,
           coalesce(p.n, 0) AS docs_removed, p.top
    FROM steps s CROSS JOIN raw
    LEFT JOIN per_step p ON p.source = raw.source AND p.step = s.step
),
limits AS (
    SELECT j.*,
           coalesce(TRY_CAST(getvariable('max_removed_share_by_step')[j.step] AS DOUBLE),
                    TRY_CAST(getvariable('max_removed_share') AS DOUBLE), 0.2) AS max_share,
           coalesce(TRY_CAST(getvariable('min_source_docs') AS BIGINT), 20) AS min_docs
    FROM judged j
)
SELECT step, source, docs_in, docs_removed, round(docs_removed / docs_in, 4) AS removed_share, max_share,
       array_to_string(top, ', ') AS top_reasons
FROM limits
WHERE docs_in >= min_docs AND docs_in > 0 AND docs_removed / docs_in > max_share
ORDER BY step_index, removed_share DESC, source;
