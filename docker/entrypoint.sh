#!/bin/sh
# Container entry: build the demo index when no index is mounted, then run the command (recsys-serve by default).
set -eu
root="${RECSYS_INDEX_ROOT:-/data/indexes}"
if [ ! -e "$root/current" ] && [ ! -L "$root/current" ]; then
    echo "entrypoint: no index under $root (no 'current' link): building the demo index from /app/demo" >&2
    index-builder build /app/demo/products.jsonl --queries /app/demo/queries.npy --out "$root" --keep 3
fi
exec "$@"
