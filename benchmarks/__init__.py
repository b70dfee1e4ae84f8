"""Benchmarks: recall–speed curves (`ann`), HTTP load (`http_load`), growth with the catalogue (`scale`)."""
