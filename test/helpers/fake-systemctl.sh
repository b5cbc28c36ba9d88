#!/usr/bin/env bash
# A systemctl stand-in for doc tests that run inside a private mount namespace
# (no systemd runs there): it does what systemd does with the installed units
# for the verbs the docs use. start: Environment= then EnvironmentFile=,
# ExecStart= in the background (its pid in /run/fake-systemd), then
# ExecStartPost= (the readiness probe), whose status is the start's. stop:
# SIGTERM to the main pid, then a bounded wait. Units without a unit file
# (flanneld, which cannot run here) only flip a state file.
set -euo pipefail
STATE=/run/fake-systemd
mkdir -p "$STATE"
root=
args=()
for a in "$@"; do
  case "$a" in
    --root=*) root=${a#--root=} ;;
    --quiet|-q|--now|--no-block) ;;
    *) args+=("$a") ;;
  esac
done
verb=${args[0]:-}
unit=${args[1]:-}
name=${unit%.service}
file=${root%/}/etc/systemd/system/$name.service

# KEY=VALUE lines (no quotes, as install-weft.sh writes them) into the environment.
load_env() {
  local line
  while IFS= read -r line; do
    [[ "$line" =~ ^([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] && export "${BASH_REMATCH[1]}=${BASH_REMATCH[2]}"
  done
}
unit_key() { sed -n "s/^$1=//p" "$file" | head -1; }
# A PID's start time (field 22 of /proc/PID/stat, after the parenthesised comm).
start_time() { local st; st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1; st=${st##*) }; set -- $st; echo "${20}"; }
# Alive = the recorded PID runs with the recorded start time: PIDs wrap quickly
# on a busy machine (pid_max 32768), and a recycled one must never be signalled.
alive() {
  [ -f "$STATE/$name.pid" ] && [ -f "$STATE/$name.start" ] || return 1
  [ "$(start_time "$(cat "$STATE/$name.pid")")" = "$(cat "$STATE/$name.start")" ]
}

case "$verb" in
  daemon-reload) exit 0 ;;
  is-enabled) [ -e "${root%/}/etc/systemd/system/multi-user.target.wants/$name.service" ] ;;
  enable)
    mkdir -p "${root%/}/etc/systemd/system/multi-user.target.wants"
    ln -sfn "/etc/systemd/system/$name.service" "${root%/}/etc/systemd/system/multi-user.target.wants/$name.service" ;;
  disable) rm -f "${root%/}/etc/systemd/system/multi-user.target.wants/$name.service" ;;
  is-active)
    if [ -f "$file" ]; then alive; else [ -f "$STATE/$name.active" ]; fi ;;
  start)
    if [ ! -f "$file" ]; then touch "$STATE/$name.active"; exit 0; fi
    if alive; then exit 0; fi
    (
      # systemd's clean environment, then the unit's.
      for v in $(compgen -e); do case "$v" in PATH|HOME) ;; *) unset "$v" ;; esac; done
      for kv in $(unit_key Environment); do export "${kv?}"; done
      load_env < "$(unit_key EnvironmentFile)"
      # $VAR splits into words as systemd does; the values hold no quotes.
      eval "set -- $(unit_key ExecStart)"
      setsid "$@" </dev/null >>"$STATE/$name.log" 2>&1 &
      echo $! >"$STATE/$name.pid"
      start_time $! >"$STATE/$name.start" || true
      eval "set -- $(unit_key ExecStartPost)"
      "$@"
    ) ;;
  stop)
    if [ ! -f "$file" ]; then rm -f "$STATE/$name.active"; exit 0; fi
    if alive; then
      pid=$(cat "$STATE/$name.pid")
      kill -TERM "$pid"
      for _ in $(seq 300); do alive || break; sleep 0.1; done
      if alive; then echo "fake systemctl: $name did not stop" >&2; exit 1; fi
    fi
    rm -f "$STATE/$name.pid" "$STATE/$name.start" ;;
  *) echo "fake systemctl: unsupported: $*" >&2; exit 1 ;;
esac
