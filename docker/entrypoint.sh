#!/bin/sh
# Container entry: publish a first index when none is there (no 'current' link), then run the command
# (recsys-serve by default). The first index is built from BOOTSTRAP_INPUT (default: the demo catalogue in the
# image) with BOOTSTRAP_QUERIES (default: the demo queries; empty: none). A read-only index root cannot be
# bootstrapped here: say so and stop (on Kubernetes, deploy/bootstrap-job.yaml publishes the first index).
set -eu
root="${RECSYS_INDEX_ROOT:-/data/indexes}"
if [ ! -e "$root/current" ] && [ ! -L "$root/current" ]; then
    if ! mkdir -p "$root" 2>/dev/null || [ ! -w "$root" ]; then
        echo "entrypoint: no index under $root (no 'current' link), and $root is not writable: publish one first" \
            "(index-builder build ... --out $root; on Kubernetes deploy/bootstrap-job.yaml)" >&2
        exit 1
    fi
    input="${BOOTSTRAP_INPUT:-/app/demo/products.jsonl}"
    queries="${BOOTSTRAP_QUERIES-/app/demo/queries.npy}"
    echo "entrypoint: no index under $root (no 'current' link): building $input" >&2
    if [ -n "$queries" ]; then
        index-builder build "$input" --queries "$queries" --out "$root" --keep 3
    else
        index-builder build "$input" --out "$root" --keep 3
    fi
fi
exec "$@"
