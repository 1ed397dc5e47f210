-- No exact duplicate texts are left in the final shards: no two documents, in any bucket or
-- split, have the same text once case and whitespace runs are folded (the key exact_dedup uses).
SELECT md5(lower(trim(regexp_replace(text, '[\s\p{Z}]+', ' ', 'g')))) AS text_hash,
       count(*) AS copies,
       list(doc_id ORDER BY doc_id)[1:5] AS doc_ids,
       list(DISTINCT bucket::VARCHAR || '/' || split::VARCHAR) AS partitions,
       left(min(text), 80) AS text_start
FROM documents
GROUP BY text_hash
HAVING count(*) > 1
ORDER BY copies DESC, text_hash;
