-- Buckets are ordered easy -> hard: taken in the curriculum's order (bucket_index), each bucket's
-- difficulty range starts at or above where the previous one ended, and every bucket the
-- curriculum made holds the documents the final shards say it does. Lists the buckets that break
-- the order or disagree with the final shards.
-- requires: buckets
-- requires: table curriculum_buckets
WITH c AS (
    SELECT bucket::VARCHAR AS bucket, bucket_index, docs, difficulty_min, difficulty_max,
           lag(difficulty_max) OVER (ORDER BY bucket_index) AS previous_max
    FROM curriculum_buckets
),
d AS (SELECT bucket::VARCHAR AS bucket, count(*) AS final_docs FROM documents GROUP BY 1)
SELECT coalesce(c.bucket, d.bucket) AS bucket, c.bucket_index, c.difficulty_min, c.previous_max,
       c.docs AS curriculum_docs, d.final_docs,
       CASE WHEN c.bucket IS NULL THEN 'bucket in final shards but not in curriculum_buckets'
            WHEN c.difficulty_min < c.previous_max THEN 'difficulty below the previous bucket''s maximum'
            ELSE 'document count differs from the final shards' END AS problem
FROM c FULL OUTER JOIN d ON c.bucket = d.bucket
WHERE c.bucket IS NULL OR c.difficulty_min < c.previous_max OR c.docs IS DISTINCT FROM d.final_docs
ORDER BY c.bucket_index NULLS LAST, 1;
