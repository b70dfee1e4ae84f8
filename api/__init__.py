"""The query API: a Starlette service answering top-k inner-product searches from a memory-mapped index."""
