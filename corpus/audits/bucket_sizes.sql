-- Every curriculum bucket is non-empty: each bucket's final shards hold rows, the documents view
-- and the catalog agree on its size, and numbered buckets (names starting with a number, like
-- 0-easy, 1-medium, 2-hard) have no gaps, since a missing number is a bucket that came out empty.
-- requires: buckets
WITH listed AS (
    SELECT regexp_extract(path, 'bucket=([^/]+)', 1) AS bucket, sum(rows) AS catalog_rows
    FROM shards WHERE stage = 'final' GROUP BY 1
),
counted AS (
    SELECT bucket::VARCHAR AS bucket, count(*) AS documents FROM documents GROUP BY 1
),
numbered AS (
    SELECT TRY_CAST(regexp_extract(bucket, '^(\d+)', 1) AS INTEGER) AS num FROM counted
),
expected AS (
    SELECT unnest(range(min(num), max(num) + 1)) AS num FROM numbered
    HAVING count(*) = count(num) AND count(*) > 0
)
SELECT coalesce(l.bucket, c.bucket) AS bucket, 'bucket size differs between catalog and documents' AS problem,
       l.catalog_rows, c.documents
FROM listed l FULL OUTER JOIN counted c ON l.bucket = c.bucket
WHERE coalesce(l.catalog_rows, 0) <> coalesce(c.documents, 0) OR coalesce(c.documents, 0) = 0
UNION ALL
SELECT e.num::VARCHAR, 'numbered bucket missing (empty)', NULL, 0
FROM expected e WHERE e.num NOT IN (SELECT num FROM numbered)
ORDER BY bucket;
