#!/bin/sh
# Remove from a finished virtualenv what neither recsys-serve nor index-builder loads (runs in the image build).
# pyarrow: the Flight and S3 modules and their libraries are optional (pyarrow.fs skips what it cannot import);
# the core libraries, parquet and compute stay. The Dockerfile checks the imports and a parquet round trip after.
set -eu
venv="$1"
site=$(echo "$venv"/lib/python3*/site-packages)
"$venv/bin/python" -m pip uninstall --quiet --yes pip setuptools wheel 2>/dev/null || true
for package in numpy pyarrow faiss; do
    if [ -d "$site/$package" ]; then
        find "$site/$package" -depth -type d -name tests -exec rm -rf {} +
    fi
done
rm -rf "$site/pyarrow/include" "$site/pyarrow/src" "$site/numpy/_core/include"
rm -f "$site"/pyarrow/*flight* "$site"/pyarrow/libarrow_s3* "$site"/pyarrow/_s3fs* "$site"/pyarrow/_pyarrow_cpp_tests*
find "$site" \( -name "*.pyx" -o -name "*.pxd" \) -exec rm -f {} +
