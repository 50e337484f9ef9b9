#!/usr/bin/env bash
# Argo Rollouts' analysis controller, built from Go modules and run out of cluster against a control
# plane (hack/control-plane.sh), for the gate's `analysis` checks in tests.
#
#   hack/argo-rollouts.sh build      build rollouts-controller (cached by version) and extract the CRDs
#   hack/argo-rollouts.sh bin-dir    where the binary and crds/ are
#   hack/argo-rollouts.sh crds       apply the three analysis CRDs (server-side: two are too big for
#                                    client-side apply) to the cluster of $KUBECONFIG
#
# The module's go.mod has replace directives, so `go install ...@version` refuses it: a wrapper module
# copies its replace block (../shared reference: argo-rollouts.md). Cold: ~5 min on 2 cores.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROLLOUTS_VERSION=${ROLLOUTS_VERSION:-v1.10.0}  # v1.10.1+ declare a Go newer than this machine's
CACHE_ROOT=${SECRETSTAGE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/secretstage}
CACHE=$CACHE_ROOT/argo-rollouts-$ROLLOUTS_VERSION
BIN=$CACHE/bin
MODULE=github.com/argoproj/argo-rollouts

log() { echo "argo-rollouts: $*" >&2; }
die() { log "error: $*"; exit 1; }

go_env() {
  export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
  export GOMODCACHE=$CACHE/go/mod GOCACHE=$CACHE/go/build
}

cmd_build() {
  if [ -x "$BIN/rollouts-controller" ] && [ -f "$BIN/crds/analysis-run-crd.yaml" ]; then
    return 0
  fi
  command -v go >/dev/null || die "Go is needed to build Argo Rollouts"
  local t0=$SECONDS src=$CACHE/src gomod zipdir
  log "building rollouts-controller $ROLLOUTS_VERSION from Go modules (cold: ~5 min)"
  go_env
  rm -rf "$src"; mkdir -p "$src" "$BIN/crds"; cd "$src"
  go mod init secretstage.local/rollouts >/dev/null 2>&1
  gomod=$(go mod download -json "$MODULE@$ROLLOUTS_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  zipdir=$(go mod download -json "$MODULE@$ROLLOUTS_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  # the module's whole replace block, as it pins k8s.io/* and others
  python3 - "$gomod" >> go.mod <<'PY'
import re, sys
text = open(sys.argv[1]).read()
blocks = re.findall(r"^replace \((.*?)^\)", text, re.S | re.M)
singles = re.findall(r"^replace (?!\()(.*)$", text, re.M)
print("replace (")
for block in blocks:
    print(block.rstrip())
for line in singles:
    print("\t" + line)
print(")")
PY
  go get "$MODULE@$ROLLOUTS_VERSION"
  go build -trimpath -ldflags "-s -w" -o "$BIN/rollouts-controller" "$MODULE/cmd/rollouts-controller"
  for crd in analysis-run-crd analysis-template-crd cluster-analysis-template-crd; do
    cp "$zipdir/manifests/crds/$crd.yaml" "$BIN/crds/"
  done
  chmod -R u+w "$BIN/crds"
  log "built in $((SECONDS - t0))s: $(du -h "$BIN/rollouts-controller" | cut -f1)"
}

cmd_crds() {
  cmd_build
  local kubectl
  kubectl=$(bash "$HERE/control-plane.sh" bin-dir)/kubectl
  "$kubectl" apply --server-side --force-conflicts -f "$BIN/crds/" >&2
  "$kubectl" wait --for=condition=Established --timeout=60s \
    crd/analysisruns.argoproj.io crd/analysistemplates.argoproj.io crd/clusteranalysistemplates.argoproj.io >&2
}

case "${1:-}" in
  build) cmd_build ;;
  bin-dir) echo "$BIN" ;;
  crds) cmd_crds ;;
  *) echo "usage: $0 build|bin-dir|crds" >&2; exit 2 ;;
esac
