#!/usr/bin/env bash
# Apply a promotion and wait for its outcome; exit non-zero (with the reason) if it fails.
#   examples/kubectl/promote.sh [-n NAMESPACE] [FILE]
set -euo pipefail
ns_args=()
if [ "${1:-}" = "-n" ]; then ns_args=(-n "$2"); shift 2; fi
file=${1:-"$(dirname "$0")/promotion.yaml"}
name=$(kubectl create --dry-run=client -o jsonpath='{.metadata.name}' -f "$file")
kubectl apply "${ns_args[@]}" -f "$file"
if kubectl wait "${ns_args[@]}" --for=condition=Succeeded "ssp/$name" --timeout="${TIMEOUT:-120s}"; then
  kubectl get "${ns_args[@]}" "ssp/$name"
else
  reason=$(kubectl get "${ns_args[@]}" "ssp/$name" -o jsonpath='{.status.conditions[?(@.type=="Succeeded")].reason}: {.status.conditions[?(@.type=="Succeeded")].message}')
  echo "promotion $name did not succeed: $reason" >&2
  exit 1
fi
