"""MinHash near-duplicate detection: shingling, signatures, LSH banding and clustering.

The modules are plain functions over numpy/Polars data so the pipeline step, the tests and the
benchmarks all run the same code, and so the global phases can later be placed on other workers.
"""
