-- No final document has an empty text (null, or nothing but whitespace).
SELECT doc_id, source, bucket, split, length(text) AS chars
FROM documents
WHERE text IS NULL OR length(trim(regexp_replace(text, '[\s\p{Z}]+', ' ', 'g'))) = 0
ORDER BY doc_id;
