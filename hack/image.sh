#!/usr/bin/env bash
# Build the operator image from the repository's Dockerfile, here, without a registry or a daemon.
#
#   hack/image.sh base            the Python base image, made from Debian packages (cached by recipe)
#   hack/image.sh build [TAG]     buildah builds ./Dockerfile on that base; writes a docker-archive
#                                 tarball and prints its path (import it with hack/node.sh import)
#   hack/image.sh retag FROM TO   the built image under another tag, as its own tarball
#   hack/image.sh rm TAG...       remove built images from the buildah storage (the base stays)
#   hack/image.sh app DIR TAG FROM_TAG
#                                 DIR/Dockerfile (a test application) built on the operator image
#                                 FROM_TAG, as localhost/secretstage/<basename DIR>:TAG; prints its tarball
#   hack/image.sh rm-app NAME TAG...  remove such application images
#
# No registry is reachable here, so the Dockerfile's base (ARG PYTHON_IMAGE, python:3.11-slim-bookworm
# by default) is replaced by one built from Debian bookworm's own python3.11 with debootstrap: the same
# Debian release and Python minor version, pip installing into the system Python as in the official
# image. The Dockerfile itself is used unchanged (`buildah bud`), so what the tests run is what it says.
#
# Environment: SECRETSTAGE_CACHE_DIR (buildah storage and the base live under it), IMAGE_DIR (where
# tarballs go, default $PWD/.image).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
CACHE_ROOT=${SECRETSTAGE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/secretstage}
STORE=$CACHE_ROOT/buildah
IMAGE_DIR=${IMAGE_DIR:-$PWD/.image}
REPOSITORY=localhost/secretstage/secretstage-operator
SUITE=bookworm
BASE_PACKAGES=python3,python3-pip,ca-certificates
# The recipe's hash names the base, so a changed recipe builds a new one and an unchanged one is reused.
BASE_RECIPE="debootstrap minbase $SUITE $BASE_PACKAGES; pip into the system python; v1"
BASE_IMAGE=localhost/secretstage/python:3.11-$SUITE-$(echo "$BASE_RECIPE" | sha256sum | cut -c1-10)

log() { echo "image: $*" >&2; }
die() { log "error: $*"; exit 1; }

buildah_() { buildah --root "$STORE/root" --runroot "$STORE/run" --storage-driver vfs "$@"; }

mirror() {  # the Debian mirror apt on this machine already uses
  local uri
  uri=$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
  [ -n "$uri" ] || uri=$(sed -n 's/^deb \(http[^ ]*debian\) .*/\1/p' /etc/apt/sources.list 2>/dev/null | head -1)
  echo "${uri:-http://deb.debian.org/debian}"
}

cmd_base() {
  bash "$HERE/node.sh" deps  # buildah, debootstrap
  if buildah_ inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then
    log "base $BASE_IMAGE already built"
    return 0
  fi
  local t0=$SECONDS rootfs
  rootfs=$(mktemp -d)
  log "building the base $BASE_IMAGE with debootstrap ($SUITE, $(mirror))"
  debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$rootfs" "$(mirror)" >/dev/null \
    || { rm -rf "$rootfs"; die "debootstrap failed"; }
  rm -f "$rootfs"/usr/lib/python3.*/EXTERNALLY-MANAGED  # as python:3.11-slim: pip installs into the system
  [ -e "$rootfs/usr/bin/pip" ] || ln -s pip3 "$rootfs/usr/bin/pip"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* \
    "$rootfs"/usr/share/man/* "$rootfs"/var/log/*.log
  local ctr
  ctr=$(buildah_ from scratch)
  tar -C "$rootfs" -cf "$rootfs.tar" .
  buildah_ add "$ctr" "$rootfs.tar" / >/dev/null
  rm -f "$rootfs.tar"
  buildah_ config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
    --cmd python3 "$ctr"
  buildah_ commit --quiet --rm "$ctr" "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
  log "base built in $((SECONDS - t0))s"
}

cmd_build() {
  local tag=${1:-dev}
  cmd_base
  local t0=$SECONDS image=$REPOSITORY:$tag out
  mkdir -p "$IMAGE_DIR"
  out=$IMAGE_DIR/secretstage-operator-$tag.tar
  log "building $image from $ROOT/Dockerfile on $BASE_IMAGE"
  # RUN steps borrow this machine's CA bundle (read-only, not written into the image): where egress
  # goes through a TLS-inspecting proxy, pip in the build trusts what the host trusts.
  local trust=()
  [ -f /etc/ssl/certs/ca-certificates.crt ] \
    && trust=(--volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
  local revision
  revision=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
  buildah_ bud --quiet --isolation chroot --layers=false --build-arg "PYTHON_IMAGE=$BASE_IMAGE" "${trust[@]}" \
    --build-arg "REVISION=$revision" --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    -t "$image" -f "$ROOT/Dockerfile" "$ROOT" >&2
  rm -f "$out"
  buildah_ push --quiet "$image" "docker-archive:$out:$image" >&2
  local size
  size=$(buildah_ images --format '{{.Size}}' "$image" | head -1)
  log "built $image in $((SECONDS - t0))s: $size ($(du -h "$out" | cut -f1) archive)"
  echo "$out"
}

cmd_retag() {  # FROM TO: the same image under another tag, as its own tarball (an "upgrade" for tests)
  [ $# -eq 2 ] || die "usage: image.sh retag FROM_TAG TO_TAG"
  local out=$IMAGE_DIR/secretstage-operator-$2.tar
  buildah_ tag "$REPOSITORY:$1" "$REPOSITORY:$2"
  rm -f "$out"
  buildah_ push --quiet "$REPOSITORY:$2" "docker-archive:$out:$REPOSITORY:$2" >&2
  echo "$out"
}

cmd_rm() {  # TAG...: each image is a full copy in vfs storage (~370 MB), so tests remove theirs
  local tag
  for tag in "$@"; do buildah_ rmi "$REPOSITORY:$tag" >/dev/null 2>&1 || true; done
}

cmd_app() {  # DIR TAG FROM_TAG: a test application (tests/node/consumer) on the built operator image
  [ $# -eq 3 ] || die "usage: image.sh app DIR TAG FROM_TAG"
  local dir=$1 tag=$2 from=$REPOSITORY:$3 name image out t0=$SECONDS
  [ -f "$dir/Dockerfile" ] || die "no Dockerfile in $dir"
  name=$(basename "$dir")
  image=localhost/secretstage/$name:$tag
  out=$IMAGE_DIR/$name-$tag.tar
  mkdir -p "$IMAGE_DIR"
  buildah_ bud --quiet --isolation chroot --layers=false --build-arg "BASE=$from" -t "$image" \
    -f "$dir/Dockerfile" "$dir" >&2
  rm -f "$out"
  buildah_ push --quiet "$image" "docker-archive:$out:$image" >&2
  log "built $image in $((SECONDS - t0))s"
  echo "$out"
}

cmd_rm_app() {  # NAME TAG...
  local name=$1 tag
  shift
  for tag in "$@"; do buildah_ rmi "localhost/secretstage/$name:$tag" >/dev/null 2>&1 || true; done
}

case "${1:-}" in
  base) cmd_base ;;
  build) shift; cmd_build "$@" ;;
  retag) shift; cmd_retag "$@" ;;
  rm) shift; cmd_rm "$@" ;;
  app) shift; cmd_app "$@" ;;
  rm-app) shift; cmd_rm_app "$@" ;;
  *) echo "usage: $0 base|build [TAG]|retag FROM_TAG TO_TAG|rm TAG...|app DIR TAG FROM_TAG|rm-app NAME TAG..." >&2
     exit 2 ;;
esac
