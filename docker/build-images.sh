#!/usr/bin/env bash
# Builds the agent's images on this machine, with no registry and no image to pull:
#
#   sts-base:bookworm             a minimal Debian 12 root file system (debootstrap minbase),
#                                 imported with `docker import`; the release binaries are
#                                 built on Debian 12 too, so they find the same glibc (2.36)
#   stackstate/node-daemon:TAG    docker/node-daemon.Dockerfile
#   stackstate/trace-sidecar:TAG  docker/trace-sidecar.Dockerfile
#
# TAG is $IMAGE_TAG, default `dev`. Everything is cached:
# - the base is made only when `docker image inspect sts-base:bookworm` fails
#   (REBUILD_BASE=1 forces it);
# - an app image is rebuilt only when its build key changed: the sha256 of its binary, of
#   its Dockerfile and the base image id, kept in the image label `org.stackstate.build-key`.
#
# The Debian mirror is the one apt already uses on this machine (/etc/apt/sources.list and
# /etc/apt/sources.list.d/), or $DEBIAN_MIRROR when set. Run as root (debootstrap).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

BASE=sts-base:bookworm
TAG=${IMAGE_TAG:-dev}
SUITE=bookworm

log() { echo "build-images: $*" >&2; }

# The first apt source that serves Debian's main archive for $SUITE (not -security or
# -updates, not a third-party repository: those do not carry the suite `bookworm` itself).
debian_mirror() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f $f ]] || continue
        # One-line format: deb [options] URI suite component...
        sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" |
            awk -v suite="$SUITE" '$1 == "deb" && $3 == suite { print $2; exit }'
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] || continue
        # deb822 format: paragraphs of `Key: value` fields.
        awk -v suite="$SUITE" '
            BEGIN { RS = ""; FS = "\n" }
            {
                types = ""; uris = ""; suites = ""; enabled = "yes"
                for (i = 1; i <= NF; i++) {
                    line = $i
                    if (line ~ /^[ \t]*#/) continue
                    key = tolower(line); sub(/:.*/, "", key)
                    value = line; sub(/^[^:]*:[ \t]*/, "", value)
                    if (key == "types") types = value
                    else if (key == "uris") uris = value
                    else if (key == "suites") suites = value
                    else if (key == "enabled") enabled = tolower(value)
                }
                if (enabled == "no" || (" " types " ") !~ / deb /) next
                if ((" " suites " ") ~ (" " suite " ")) { split(uris, u, /[ \t]+/); print u[1]; exit }
            }' "$f"
    done
}

build_base() {
    if [[ ${REBUILD_BASE:-0} != 1 ]] && docker image inspect "$BASE" >/dev/null 2>&1; then
        log "$BASE is cached"
        return
    fi
    local mirror=${DEBIAN_MIRROR:-}
    if [[ -z $mirror ]]; then
        mirror=$(debian_mirror | head -n1)
    fi
    if [[ -z $mirror ]]; then
        log "no apt source for Debian $SUITE found in /etc/apt; set DEBIAN_MIRROR"
        exit 1
    fi
    if ! command -v debootstrap >/dev/null; then
        log "installing debootstrap"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    fi
    local rootfs
    rootfs=$(mktemp -d "${TMPDIR:-/tmp}/sts-base.XXXXXX")
    # shellcheck disable=SC2064 # expand now: the trap must remove this very directory
    trap "rm -rf '$rootfs'" EXIT
    log "debootstrap --variant=minbase $SUITE from $mirror"
    # ca-certificates: the receiver is reached over HTTPS with the system's roots.
    debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$rootfs" "$mirror" \
        >"$rootfs.log" 2>&1 || {
        tail -n 30 "$rootfs.log" >&2
        rm -f "$rootfs.log"
        exit 1
    }
    rm -f "$rootfs.log"
    # Smaller: no package lists or caches, no documentation, manuals or translations.
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
        "$rootfs"/usr/share/locale/* "$rootfs"/var/log/* "$rootfs"/tmp/* "$rootfs"/root/.cache
    log "importing $BASE ($(du -sh "$rootfs" | cut -f1))"
    tar -C "$rootfs" --numeric-owner -c . | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/bin/bash"]' \
        --message "debootstrap --variant=minbase $SUITE" \
        - "$BASE" >/dev/null
    rm -rf "$rootfs"
    trap - EXIT
}

# build_app BINARY DOCKERFILE IMAGE
build_app() {
    local binary=target/release/$1 dockerfile=$2 image=$3
    local base_id key have
    base_id=$(docker image inspect -f '{{.Id}}' "$BASE")
    key=$(
        {
            sha256sum "$binary" | cut -d' ' -f1
            sha256sum "$dockerfile" | cut -d' ' -f1
            echo "$base_id"
        } | sha256sum | cut -d' ' -f1
    )
    have=$(docker image inspect -f '{{index .Config.Labels "org.stackstate.build-key"}}' "$image" 2>/dev/null || true)
    if [[ $have == "$key" ]]; then
        log "$image is up to date"
        return
    fi
    log "building $image"
    local previous
    previous=$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)
    # The context is the workspace root; .dockerignore lets only the two release binaries
    # and docker/ through. DOCKER_BUILDKIT=0: the engine's classic builder resolves FROM
    # against the local image store without looking for a registry (its deprecation notice
    # is shown only with a failure).
    local out
    if ! out=$(DOCKER_BUILDKIT=0 docker build \
        --label "org.stackstate.build-key=$key" \
        --label "org.stackstate.binary.sha256=$(sha256sum "$binary" | cut -d' ' -f1)" \
        -f "$dockerfile" -t "$image" . 2>&1); then
        echo "$out" >&2
        log "docker build of $image failed"
        exit 1
    fi
    # The binary must load in the image: every library found, every glibc symbol version
    # present (a binary built on a newer glibc than bookworm's 2.36 would fail here).
    if ! out=$(docker run --rm --network none "$image" ldd "/usr/local/bin/$1" 2>&1) ||
        [[ $out == *"not found"* ]]; then
        echo "$out" >&2
        log "/usr/local/bin/$1 does not load in $image"
        exit 1
    fi
    # The image this one replaces is untagged now: remove it (and its untagged parents, an
    # older base among them) unless a container still uses it.
    if [[ -n $previous && $previous != "$(docker image inspect -f '{{.Id}}' "$image")" ]]; then
        docker rmi "$previous" >/dev/null 2>&1 || true
    fi
}

if ! docker info >/dev/null 2>&1; then
    log "no Docker engine answers (docker info failed)"
    exit 1
fi

build_base
log "cargo build --release"
cargo build --release --locked --bin node-daemon --bin trace-sidecar
build_app node-daemon docker/node-daemon.Dockerfile "stackstate/node-daemon:$TAG"
build_app trace-sidecar docker/trace-sidecar.Dockerfile "stackstate/trace-sidecar:$TAG"
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' |
    grep -E "^(sts-base:bookworm|stackstate/(node-daemon|trace-sidecar):$TAG) " >&2 || true
