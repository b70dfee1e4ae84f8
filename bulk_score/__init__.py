"""`recsys-score`: top-k for every user of a file, written as a parquet dataset, on one machine or on Ray.

Every user is searched through `index_format.Searcher` (the same plans as the HTTP service), so the job's answer for
a user is the Python API's answer for that user's vector, filter and exclusions.
"""
