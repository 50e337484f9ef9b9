# Shared by hack/control-plane.sh and hack/node.sh (sourced; each defines log()). Background processes
# are started in a session of their own and tracked by pid file in a directory the caller names.

wait_for() { # description timeout command...
  local what=$1 timeout=$2; shift 2
  local deadline=$((SECONDS + timeout)) out=""
  while [ $SECONDS -lt $deadline ]; do
    if out=$("$@" 2>&1); then return 0; fi
    sleep 0.2
  done
  log "timed out after ${timeout}s waiting for $what; last output: ${out:0:500}"
  return 1
}

start_bg() { # dir name command...
  local dir=$1 name=$2; shift 2
  printf '%q ' "$@" > "$dir/$name.cmd"  # kept for `start NAME` after `stop NAME` (fault tests)
  setsid "$@" >>"$dir/$name.log" 2>&1 < /dev/null &
  echo $! > "$dir/$name.pid"
}

stop_pid() { # dir name: TERM, up to 20 s, then KILL
  local f=$1/$2.pid pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}
