-- Train and validation are disjoint: no doc_id and no text (case- and whitespace-folded, then
-- hashed) appears in more than one split, so validation loss never measures memorisation.
WITH d AS (
    SELECT doc_id, split::VARCHAR AS split, md5(lower(trim(regexp_replace(text, '[\s\p{Z}]+', ' ', 'g')))) AS text_hash,
           left(text, 80) AS text_start
    FROM documents
)
SELECT 'doc_id' AS overlap_by, doc_id AS key, list(DISTINCT split ORDER BY split) AS splits,
       count(*) AS documents, min(text_start) AS text_start
FROM d GROUP BY doc_id HAVING count(DISTINCT split) > 1
UNION ALL
SELECT 'text_hash', text_hash, list(DISTINCT split ORDER BY split), count(*), min(text_start)
FROM d GROUP BY text_hash HAVING count(DISTINCT split) > 1
ORDER BY overlap_by, key;
