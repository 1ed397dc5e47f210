-- Every doc_id appears exactly once among the final documents and the rejects: no document is
-- both kept and rejected, kept twice or rejected twice.
WITH ids AS (
    SELECT doc_id, 'documents' AS place FROM documents
    UNION ALL
    SELECT doc_id, 'rejects:' || step FROM rejects
)
SELECT doc_id, count(*) AS occurrences, list(place ORDER BY place) AS found_in
FROM ids
GROUP BY doc_id
HAVING count(*) > 1
ORDER BY occurrences DESC, doc_id;
