#!/usr/bin/env bash
# `make docker-test` (run by .ci/run): build the image and smoke-test it on a Docker daemon of its own.
#
# Steps: install docker.io + mmdebstrap with apt when missing; start dockerd by hand (no iptables, no bridge, its
# own data/exec root under a temp dir); make a local Debian bookworm base image with mmdebstrap from this machine's
# apt sources and CA certificates (no registry needed); build the Dockerfile on it; run the image with host
# networking on a free loopback port; wait until healthy; POST /infer must answer 200; the process must not run as
# root; `docker stop` must exit 0. Prints the image size and the total time. Stops dockerd by PID afterwards.
#
# Exit 0: all checks passed, or Docker cannot run on this machine (then it says so, in a line starting with
# "docker-test: SKIPPED"; DOCKER_TEST_REQUIRED=1 turns that into a failure). Exit 1: a check failed.
# Heavy steps (mmdebstrap, docker build) run under flock $BENCH_LOCK (the machine's shared measurement lock).
set -euo pipefail
cd "$(dirname "$0")/.."

LOCK="${BENCH_LOCK:-/tmp/recsys-bench.lock}"
SUITE="${DOCKER_TEST_SUITE:-bookworm}"
IMAGE="${DOCKER_TEST_IMAGE:-recsys-retrieval:ci}"
BASE_IMAGE="recsys-base:$SUITE"
CACHE_DIR="${DOCKER_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/recsys-retrieval}"
started=$(date +%s)
work=""
dockerd_pid=""
container=""

say() { echo "docker-test: $*"; }
elapsed() { echo $(($(date +%s) - started)); }
fail() {
    say "FAILED: $*" >&2
    exit 1
}
cannot_run() {
    if [ "${DOCKER_TEST_REQUIRED:-0}" = 1 ]; then fail "docker cannot run on this machine: $*"; fi
    say "SKIPPED: docker cannot run on this machine: $*"
    say "SKIPPED: the image was NOT built or tested"
    exit 0
}
locked() {
    if [ "$LOCK" = none ]; then "$@"; else flock "$LOCK" "$@"; fi
}

cleanup() {
    set +e
    if [ -n "$container" ]; then docker rm -f "$container" >/dev/null 2>&1; fi
    if [ -n "$dockerd_pid" ]; then
        kill "$dockerd_pid" 2>/dev/null
        for _ in $(seq 1 60); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.5; done
        kill -9 "$dockerd_pid" 2>/dev/null
        wait "$dockerd_pid" 2>/dev/null
        # dockerd leaves its default network namespace mounted under the exec root
        if mountpoint -q "$work/exec/netns/default" 2>/dev/null; then umount "$work/exec/netns/default"; fi
    fi
    if [ -n "$work" ]; then
        # anything dockerd left mounted below the temp dir must go before the directory does
        grep -o " $work/[^ ]*" /proc/mounts | sort -r | while read -r mount; do umount -l "$mount"; done
        rm -rf "$work"
    fi
}
trap cleanup EXIT

# ---- 1. tools ------------------------------------------------------------------------------------------------
missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        cannot_run "${missing[*]} not installed, and no apt-get as root to install them"
    fi
    say "installing ${missing[*]} with apt-get"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" ca-certificates) >/dev/null 2>&1 || cannot_run "apt-get install ${missing[*]} failed"
fi
command -v docker >/dev/null 2>&1 || cannot_run "no docker client"
[ "$(id -u)" = 0 ] || cannot_run "dockerd needs root (this runs as uid $(id -u))"

# ---- 2. the daemon -------------------------------------------------------------------------------------------
work=$(mktemp -d /tmp/recsys-docker.XXXXXX)
export DOCKER_HOST="unix://$work/docker.sock"
dockerd --iptables=false --ip6tables=false --ip-forward=false --bridge=none --storage-driver=overlay2 \
    --data-root "$work/data" --exec-root "$work/exec" --pidfile "$work/dockerd.pid" --host "$DOCKER_HOST" \
    >"$work/dockerd.log" 2>&1 &
dockerd_pid=$!
for _ in $(seq 1 120); do
    docker version >/dev/null 2>&1 && break
    kill -0 "$dockerd_pid" 2>/dev/null || break
    sleep 0.5
done
if ! docker version >/dev/null 2>&1; then
    tail -5 "$work/dockerd.log" | sed 's/^/    dockerd: /'
    cannot_run "dockerd did not start (log above)"
fi
say "dockerd $(docker version --format '{{.Server.Version}}') running (pid $dockerd_pid, root $work)"

# ---- 3. a local base image: Debian minbase + Python, this machine's apt sources and CA certificates -----------
sources=()
for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    if [ -f "$file" ] && grep -qE '^(deb |URIs:)' "$file"; then sources+=("$file"); fi
done
[ ${#sources[@]} -gt 0 ] || cannot_run "no apt sources in /etc/apt to build a base image from"
mkdir -p "$CACHE_DIR"
base_tar="$CACHE_DIR/base-$SUITE.tar"
key=$(cat "${sources[@]}" /usr/local/share/ca-certificates/*.crt 2>/dev/null | sha256sum | cut -c1-16)
if [ ! -f "$base_tar" ] || [ ! -s "$base_tar" ] || [ "$(cat "$base_tar.key" 2>/dev/null)" != "$key" ] \
    || [ -n "$(find "$base_tar" -mtime +7)" ]; then
    say "making the base image with mmdebstrap ($SUITE, sources: ${sources[*]})"
    t=$(date +%s)
    # Extra CA certificates of this machine go in (pip inside the build reaches the index through them).
    rm -rf "$base_tar" "$base_tar.tmp"
    # --format=tar: the output name does not end in .tar, and mmdebstrap guesses the format from it
    locked mmdebstrap --quiet --variant=minbase --format=tar \
        --include=ca-certificates,python3,python3-venv,python3-pip,python-is-python3 \
        --customize-hook='if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
            cp /usr/local/share/ca-certificates/*.crt "$1/usr/local/share/ca-certificates/";
            chroot "$1" update-ca-certificates >/dev/null; fi' \
        --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
        "$SUITE" "$base_tar.tmp" "${sources[@]}" || fail "mmdebstrap failed"
    mv "$base_tar.tmp" "$base_tar"
    echo "$key" >"$base_tar.key"
    say "base tarball made in $(($(date +%s) - t)) s ($(du -m "$base_tar" | cut -f1) MB)"
else
    say "base tarball from the cache: $base_tar (delete it to rebuild)"
fi
docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'CMD ["python3"]' \
    "$base_tar" "$BASE_IMAGE" >/dev/null || fail "docker import of the base image failed"

# ---- 4. build ------------------------------------------------------------------------------------------------
t=$(date +%s)
locked docker build --network host --build-arg BASE_IMAGE="$BASE_IMAGE" -t "$IMAGE" . \
    >"$work/build.log" 2>&1 || {
    tail -30 "$work/build.log" | sed 's/^/    build: /'
    fail "docker build failed (log above)"
}
size=$(docker image inspect --format '{{.Size}}' "$IMAGE")
say "built $IMAGE on $BASE_IMAGE in $(($(date +%s) - t)) s: image size $((size / 1000000)) MB"

# ---- 5. run, healthy, answering, non-root, stopped -----------------------------------------------------------
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
container=$(docker run --detach --network host -e RECSYS_HOST=127.0.0.1 -e RECSYS_PORT="$port" "$IMAGE")
t=$(date +%s)
status=starting
for _ in $(seq 1 180); do
    status=$(docker inspect --format '{{.State.Health.Status}}' "$container")
    [ "$status" = healthy ] && break
    [ "$(docker inspect --format '{{.State.Running}}' "$container")" = true ] || break
    sleep 1
done
if [ "$status" != healthy ]; then
    docker logs "$container" 2>&1 | tail -20 | sed 's/^/    container: /'
    fail "container not healthy ($status) after $(($(date +%s) - t)) s"
fi
say "healthy after $(($(date +%s) - t)) s on 127.0.0.1:$port (demo index built at start)"

answer=$(python3 - "$port" <<'PY'
import json, sys, urllib.request
base = f"http://127.0.0.1:{sys.argv[1]}"
dim = json.load(urllib.request.urlopen(f"{base}/index", timeout=10))["dim"]
body = json.dumps({"name": "ci", "vector": [0.1] * dim, "k": 3}).encode()
request = urllib.request.Request(f"{base}/infer", body, {"content-type": "application/json"})
with urllib.request.urlopen(request, timeout=10) as response:
    found = json.load(response)["recommendations"]
    assert response.status == 200 and len(found) == 3, found
    print(response.status, ", ".join(f"{r['id']} {r['score']:.3f}" for r in found))
PY
) || fail "POST /infer did not answer 200 with 3 recommendations"
say "POST /infer -> $answer"

uid=$(docker exec "$container" id -u)
user=$(docker exec "$container" id -un)
[ "$uid" != 0 ] || fail "the server runs as root"
say "runs as $user (uid $uid), not root"

t=$(date +%s)
docker stop --time 30 "$container" >/dev/null || fail "docker stop failed"
code=$(docker inspect --format '{{.State.ExitCode}}' "$container")
[ "$code" = 0 ] || fail "the server exited with $code on docker stop (SIGTERM)"
say "stopped cleanly: docker stop exit 0, server exit code $code, in $(($(date +%s) - t)) s"
say "OK: built, healthy, answering, non-root, stopped; image $((size / 1000000)) MB; total $(elapsed) s"
