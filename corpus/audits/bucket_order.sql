-- Buckets are ordered: taken in name order (numeric prefix first), the median quality_score of
-- each bucket moves in one direction only, so a curriculum that walks the buckets in order walks
-- the score monotonically. Lists the buckets whose median goes against the overall direction.
-- requires: buckets
-- requires: column documents.quality_score
WITH b AS (
    SELECT bucket::VARCHAR AS bucket, count(*) AS documents, median(quality_score) AS median_score,
           min(quality_score) AS min_score, max(quality_score) AS max_score
    FROM documents GROUP BY 1
),
o AS (
    SELECT *, row_number() OVER w AS position, lag(median_score) OVER w AS previous_median
    FROM b
    WINDOW w AS (ORDER BY TRY_CAST(regexp_extract(bucket, '^(\d+)', 1) AS INTEGER) NULLS LAST, bucket)
),
direction AS (
    SELECT sign(sum(median_score - previous_median)) AS d FROM o
)
SELECT bucket, position, documents, previous_median, median_score, min_score, max_score
FROM o, direction
WHERE previous_median IS NOT NULL AND (median_score - previous_median) * d < 0
ORDER BY position;
