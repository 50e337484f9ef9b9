#!/usr/bin/env bash
# A real one-node cluster on this machine: containerd, kubelet, kube-proxy and kube-scheduler next to
# the control plane of hack/control-plane.sh. Called by `hack/control-plane.sh up --with-node` and
# `down`; needs root. Facts behind the settings: ../shared/reference/node.md (and docs/development/node.md).
#
#   hack/node.sh deps           install the Debian packages it needs (once per machine)
#   hack/node.sh up             start the node against the running control plane in $CP_STATE_DIR
#   hack/node.sh down           stop it and undo every change it made to the host
#   hack/node.sh reclaim        undo the host changes of a node whose owner died before `down`
#   hack/node.sh import TAR     import a docker-archive image into the node's containerd
#
# One node per machine: port 10250, the /kubepods cgroups, the cni0 bridge, 10.244.0.0/24 and the
# kube-proxy iptables chains are machine-wide. A lock file says which state directory owns the node.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE=${CP_STATE_DIR:-$PWD/.control-plane}
NODE=$STATE/node
BIN=${BIN:-$(bash "$HERE/control-plane.sh" bin-dir)}
NODE_NAME=${NODE_NAME:-secretstage-node}
POD_CIDR=10.244.0.0/24
LOCK=/run/secretstage-node.owner
SOCK=$NODE/containerd/containerd.sock
PAUSE_IMAGE=localhost/secretstage/pause:1
PACKAGES=(containerd runc containernetworking-plugins iptables conntrack buildah debootstrap)
# Kernel settings kubelet, kube-proxy and the bridge plugin change; restored by `down`.
SYSCTLS=(net.ipv4.ip_forward net.ipv4.conf.all.route_localnet net.bridge.bridge-nf-call-iptables
  vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys
  kernel.keys.root_maxbytes net.netfilter.nf_conntrack_max)
# Host paths kubelet and containerd write to whatever their configuration says; removed by `down`
# when `up` found them absent.
FIXED_PATHS=(/var/lib/kubelet /var/log/containers /var/log/pods /var/lib/cni /run/containerd /usr/libexec/kubernetes)

log() { echo "node: $*" >&2; }
die() { log "error: $*"; exit 1; }
# shellcheck source=hack/lib.sh
source "$HERE/lib.sh"

cmd_deps() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || die "missing Debian packages ${missing[*]}, and installing them needs root"
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}




kubeconfig() { # file user cert key
  cat > "$1" <<KC
apiVersion: v1
kind: Config
clusters:
- name: secretstage-test
  cluster: {server: "https://127.0.0.1:$APISERVER_PORT", certificate-authority: "$STATE/pki/ca.crt"}
users:
- name: $2
  user: {client-certificate: "$3", client-key: "$4"}
contexts:
- name: default
  context: {cluster: secretstage-test, user: $2}
current-context: default
KC
}

write_configs() {
  mkdir -p "$NODE"/{containerd,cni/net.d,cni/ipam,cni/cache,kubelet/pki,pod-logs,volume-plugins,runc}
  kubeconfig "$NODE/kubelet.kubeconfig" kubelet "$STATE/pki/kubelet.crt" "$STATE/pki/kubelet.key"
  kubeconfig "$NODE/kube-proxy.kubeconfig" kube-proxy "$STATE/pki/kube-proxy.crt" "$STATE/pki/kube-proxy.key"
  kubeconfig "$NODE/kube-scheduler.kubeconfig" kube-scheduler "$STATE/pki/kube-scheduler.crt" "$STATE/pki/kube-scheduler.key"
  # restrict_oom_score_adj: without it every sandbox fails ("can't get final child's PID from pipe"),
  # because this machine's containers lack CAP_SYS_RESOURCE for the pause container's oom_score_adj.
  cat > "$NODE/containerd/config.toml" <<TOML
version = 2
root = "$NODE/containerd/root"
state = "$NODE/containerd/state"
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$NODE/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$NODE/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$NODE/cni/net.d"
TOML
  cat > "$NODE/cni/net.d/10-secretstage.conflist" <<JSON
{
  "cniVersion": "0.4.0",
  "name": "secretstage",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}],
              "dataDir": "$NODE/cni/ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
  # failCgroupV1: 1.35 refuses cgroup v1 otherwise (this machine kind has v1). Eviction and image GC
  # thresholds loosened: a CI disk is often fuller than kubelet's defaults allow.
  cat > "$NODE/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$SOCK
failSwapOn: false
address: $NODE_IP
readOnlyPort: 0
healthzPort: $(free_port)
healthzBindAddress: 127.0.0.1
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: "$STATE/pki/ca.crt"}
authorization: {mode: AlwaysAllow}
podLogsDir: $NODE/pod-logs
volumePluginDir: $NODE/volume-plugins
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
YAML
  cat > "$NODE/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: "$NODE/kube-proxy.kubeconfig"}
mode: iptables
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE_NAME
metricsBindAddress: 127.0.0.1:$(free_port)
healthzBindAddress: 127.0.0.1:$(free_port)
iptables: {localhostNodePorts: false}
conntrack: {maxPerCore: 0}
YAML
}

snapshot_host() {
  iptables-save > "$NODE/iptables.before"
  ip6tables-save > "$NODE/ip6tables.before" 2>/dev/null || true
  local k
  : > "$NODE/sysctl.before"
  for k in "${SYSCTLS[@]}"; do
    sysctl -n "$k" >/dev/null 2>&1 && echo "$k=$(sysctl -n "$k")" >> "$NODE/sysctl.before"
  done
  : > "$NODE/created-paths"
  for k in "${FIXED_PATHS[@]}"; do [ -e "$k" ] || echo "$k" >> "$NODE/created-paths"; done
}

pause_image() {
  python3 "$HERE/image_archive.py" --name "$PAUSE_IMAGE" --file "$BIN/pause:/pause" --entrypoint /pause \
    --output "$NODE/pause.tar"
  ctr --address "$SOCK" -n k8s.io images import "$NODE/pause.tar" >/dev/null
}

# True when a process of the node in directory $1 still runs: each one's command line names a file
# under that directory, so a recycled pid cannot pass for it.
node_alive() {
  local dir=$1 name pid
  for name in containerd kubelet kube-proxy kube-scheduler; do
    [ -f "$dir/$name.pid" ] || continue
    pid=$(cat "$dir/$name.pid")
    tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF "$dir/" && return 0
  done
  return 1
}

# A node whose owner was killed before `down` (a SIGKILLed test run) leaves no process but all its
# host changes, and its lock would refuse every later node. Undo them from its own snapshots, which
# hold the host as it was before it.
cmd_reclaim() {
  [ -f "$LOCK" ] || return 0
  local owner
  owner=$(cat "$LOCK")
  [ "$owner" != "$STATE" ] && [ -d "$owner/node" ] || return 0
  node_alive "$owner/node" && return 0
  log "the node of $owner was abandoned (none of its processes is running); restoring the host from its snapshots"
  CP_STATE_DIR=$owner BIN=$BIN bash "$HERE/node.sh" down || die "could not clean up the abandoned node of $owner"
}

cmd_up() {
  [ "$(id -u)" = 0 ] || die "the node needs root"
  # shellcheck disable=SC1091
  . "$STATE/env"
  APISERVER_PORT=${K8S_SERVER##*:}
  [ -n "${NODE_IP:-}" ] || die "the control plane was not started with --with-node (no NODE_IP in $STATE/env)"
  cmd_reclaim
  if [ -f "$LOCK" ] && [ "$(cat "$LOCK")" != "$STATE" ] && [ -d "$(cat "$LOCK")/node" ]; then
    die "another node is running on this machine (state $(cat "$LOCK")); one node per machine"
  fi
  cmd_deps
  local t0=$SECONDS
  mkdir -p "$NODE"
  echo "$STATE" > "$LOCK"
  snapshot_host
  write_configs
  start_bg "$NODE" containerd containerd --config "$NODE/containerd/config.toml"
  wait_for "containerd" 30 ctr --address "$SOCK" version || { tail -20 "$NODE/containerd.log" >&2; return 1; }
  pause_image
  start_bg "$NODE" kubelet "$BIN/kubelet" --config "$NODE/kubelet.yaml" --kubeconfig "$NODE/kubelet.kubeconfig" \
    --root-dir "$NODE/kubelet" --cert-dir "$NODE/kubelet/pki" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP"
  start_bg "$NODE" kube-proxy "$BIN/kube-proxy" --config "$NODE/kube-proxy.yaml"
  start_bg "$NODE" kube-scheduler "$BIN/kube-scheduler" --kubeconfig "$NODE/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig "$NODE/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig "$NODE/kube-scheduler.kubeconfig" \
    --leader-elect=false --bind-address 127.0.0.1 --secure-port "$(free_port)"
  wait_for "node $NODE_NAME Ready" 90 \
    kubectl wait --for=condition=Ready "node/$NODE_NAME" --timeout=2s \
    || { tail -30 "$NODE/kubelet.log" >&2; return 1; }
  # node-lifecycle removes the not-ready taint once it sees the node Ready
  wait_for "node $NODE_NAME untainted" 60 bash -c \
    "[ -z \"\$(kubectl get node $NODE_NAME -o jsonpath='{.spec.taints}')\" ]" || return 1
  log "node $NODE_NAME Ready in $((SECONDS - t0))s (containerd $SOCK, pods $POD_CIDR, node IP $NODE_IP)"
}

cmd_import() {
  [ $# -eq 1 ] || die "usage: node.sh import IMAGE.tar"
  ctr --address "$SOCK" -n k8s.io images import "$1"
}

cmd_down() {
  [ -d "$NODE" ] || return 0
  local t0=$SECONDS problems=0
  # shellcheck disable=SC1091
  . "$STATE/env" 2>/dev/null || true
  # Pods first, while kubelet can still unmount their volumes and tear down their sandboxes.
  if kubectl version --request-timeout=2s >/dev/null 2>&1; then
    # workloads first (their controllers would make new pods), then the pods
    kubectl delete deployments,replicasets,statefulsets,daemonsets,jobs --all --all-namespaces --wait=false \
      >/dev/null 2>&1 || true
    kubectl delete pods --all --all-namespaces --grace-period=0 --force --wait=false >/dev/null 2>&1 || true
    wait_for "pods gone" 60 bash -c "[ -z \"\$(kubectl get pods -A -o name 2>/dev/null)\" ]" || problems=1
  fi
  stop_pid "$NODE" kube-scheduler
  stop_pid "$NODE" kube-proxy
  stop_pid "$NODE" kubelet
  if [ -S "$SOCK" ]; then  # whatever kubelet left: kill and delete tasks and containers
    local c
    for c in $(ctr --address "$SOCK" -n k8s.io tasks ls -q 2>/dev/null); do
      ctr --address "$SOCK" -n k8s.io tasks kill -s KILL "$c" >/dev/null 2>&1 || true
      ctr --address "$SOCK" -n k8s.io tasks delete -f "$c" >/dev/null 2>&1 || true
    done
    for c in $(ctr --address "$SOCK" -n k8s.io containers ls -q 2>/dev/null); do
      ctr --address "$SOCK" -n k8s.io containers delete "$c" >/dev/null 2>&1 || true
    done
  fi
  stop_pid "$NODE" containerd
  pkill -KILL -f "containerd-shim-runc-v2 .*-address $SOCK" 2>/dev/null || true
  # Mounts under the node's directory (volumes, netns, overlay rootfs, shm), deepest first.
  local m
  for m in $(findmnt -rn -o TARGET | grep -F "$NODE" | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || { log "cannot unmount $m"; problems=1; }
  done
  # Pod cgroups (cgroupfs driver: /kubepods under every hierarchy), deepest first.
  local d
  for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [ -d "$d" ] || continue
    find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    [ -d "$d" ] && { log "cgroup $d still in use"; problems=1; }
  done
  ip link delete cni0 2>/dev/null || true
  # iptables: back to the snapshot (kubelet's KUBE-FIREWALL, kube-proxy's KUBE-*, CNI's masquerade).
  if [ -f "$NODE/iptables.before" ]; then
    local t
    for t in filter nat mangle; do iptables -t "$t" -F 2>/dev/null || true; iptables -t "$t" -X 2>/dev/null || true; done
    iptables-restore < "$NODE/iptables.before" || problems=1
    if [ -s "$NODE/ip6tables.before" ]; then
      for t in filter nat mangle; do ip6tables -t "$t" -F 2>/dev/null || true; ip6tables -t "$t" -X 2>/dev/null || true; done
      ip6tables-restore < "$NODE/ip6tables.before" || problems=1
    fi
  fi
  if [ -f "$NODE/sysctl.before" ]; then
    local line
    while read -r line; do sysctl -q -w "$line" >/dev/null 2>&1 || true; done < "$NODE/sysctl.before"
  fi
  if [ -f "$NODE/created-paths" ]; then
    while read -r m; do
      [ -n "$m" ] || continue
      findmnt -rn -o TARGET | grep -q "^$m" && { log "$m still has mounts; left"; problems=1; continue; }
      rm -rf "$m"
    done < "$NODE/created-paths"
  fi
  [ "$(cat "$LOCK" 2>/dev/null)" = "$STATE" ] && rm -f "$LOCK"
  rm -rf "$NODE"
  log "node stopped and host restored in $((SECONDS - t0))s$([ $problems = 0 ] || echo ' (with the problems above)')"
  return $problems
}

case "${1:-}" in
  deps) cmd_deps ;;
  reclaim) cmd_reclaim ;;
  up) cmd_up ;;
  down) cmd_down ;;
  import) shift; cmd_import "$@" ;;
  *) echo "usage: $0 deps|reclaim|up|down|import IMAGE.tar" >&2; exit 2 ;;
esac
