#!/usr/bin/env bash
# Simulated LAN for peerkv: N test hosts, each a network namespace with its own address on one
# bridge. The bridge lives in a namespace of its own and is never attached to a real interface,
# so nothing here (mDNS multicast included) reaches the machine's network.
#
#   lan.sh up RUN N          make hosts 1..N of run RUN (addresses 10.77.0.1 … 10.77.0.N / 24)
#   lan.sh exec RUN I CMD…   run CMD inside host I
#   lan.sh addr I            print host I's address
#   lan.sh cut RUN I         cut host I off the LAN (its bridge port goes down)
#   lan.sh heal RUN I        plug it back in
#   lan.sh split RUN I…      partition: hosts I… move to a second bridge, apart from the rest
#   lan.sh join RUN          heal a partition: every host back on the first bridge
#   lan.sh down RUN          stop every process in the run's hosts, remove everything it made
#   lan.sh clean-stale       remove runs whose owner process is gone (an earlier crash)
#   lan.sh list              runs present on this machine
#
# RUN is a short name (letters and digits, at most 6); namespaces are pkv-RUN-br and
# pkv-RUN-hI. A test sets PKV_LAN_OWNER to its process id: `clean-stale` removes a run when that
# process no longer exists (a run made by hand, without it, stays until `down`). Needs root
# (CAP_NET_ADMIN).
set -euo pipefail

STATE_DIR=${PKV_LAN_STATE:-/run/peerkv-lan}
SUBNET=10.77.0

die() { echo "lan.sh: $*" >&2; exit 1; }
ns_br() { echo "pkv-$1-br"; }
ns_host() { echo "pkv-$1-h$2"; }

check_run() {
  [[ $1 =~ ^[a-z0-9]{1,6}$ ]] || die "run name '$1' must be 1-6 lower-case letters or digits"
}

check_rights() {
  if ! ip netns list >/dev/null 2>&1; then die "cannot use 'ip netns' (is iproute2 installed?)"; fi
  if [ "$(id -u)" != 0 ]; then die "making namespaces needs root (CAP_NET_ADMIN)"; fi
}

host_count() {
  local run=$1
  ip netns list | awk '{print $1}' | grep -c "^pkv-$run-h[0-9]*$" || true
}

cmd_up() {
  local run=$1 n=$2
  check_run "$run"; check_rights
  [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 200 ] || die "host count must be 1..200"
  mkdir -p "$STATE_DIR"
  echo "${PKV_LAN_OWNER:-manual}" > "$STATE_DIR/$run.owner"
  local br; br=$(ns_br "$run")
  ip netns add "$br"
  ip -n "$br" link set lo up
  ip -n "$br" link add br0 type bridge
  # No STP delay: ports forward as soon as they are up.
  ip -n "$br" link set br0 type bridge forward_delay 0 stp_state 0 mcast_snooping 0
  ip -n "$br" link set br0 up
  local i
  for i in $(seq 1 "$n"); do add_host "$run" "$i"; done
}

add_host() {
  local run=$1 i=$2 br h
  br=$(ns_br "$run"); h=$(ns_host "$run" "$i")
  ip netns add "$h"
  ip -n "$h" link set lo up
  ip -n "$h" link add eth0 type veth peer name "p$i" netns "$br"
  ip -n "$h" addr add "$SUBNET.$i/24" dev eth0
  ip -n "$h" link set eth0 multicast on up
  # mDNS sends to 224.0.0.251: route multicast out of the LAN interface.
  ip -n "$h" route add 224.0.0.0/4 dev eth0
  ip -n "$br" link set "p$i" master br0
  ip -n "$br" link set "p$i" up
}

cmd_exec() {
  local run=$1 i=$2; shift 2
  check_run "$run"
  exec ip netns exec "$(ns_host "$run" "$i")" "$@"
}

cmd_cut() { check_run "$1"; ip -n "$(ns_br "$1")" link set "p$2" down; }
cmd_heal() { check_run "$1"; ip -n "$(ns_br "$1")" link set "p$2" up; }

cmd_split() {
  local run=$1 br i; shift
  check_run "$run"; br=$(ns_br "$run")
  if ! ip -n "$br" link show br1 >/dev/null 2>&1; then
    ip -n "$br" link add br1 type bridge
    ip -n "$br" link set br1 type bridge forward_delay 0 stp_state 0 mcast_snooping 0
    ip -n "$br" link set br1 up
  fi
  for i in "$@"; do ip -n "$br" link set "p$i" master br1; done
}

cmd_join() {
  local run=$1 br port
  check_run "$run"; br=$(ns_br "$run")
  for port in $(ip -n "$br" -o link show master br1 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
    ip -n "$br" link set "$port" master br0
  done
}

cmd_down() {
  local run=$1 ns pids
  check_run "$run"
  for ns in $(ip netns list | awk '{print $1}' | grep "^pkv-$run-" || true); do
    # Only processes inside our own namespaces: the peers this run started.
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    if [ -n "$pids" ]; then kill -KILL $pids 2>/dev/null || true; fi
  done
  for ns in $(ip netns list | awk '{print $1}' | grep "^pkv-$run-" || true); do
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -f "$STATE_DIR/$run.owner"
}

cmd_clean_stale() {
  local run owner
  for run in $(ip netns list 2>/dev/null | awk '{print $1}' | sed -n 's/^pkv-\([a-z0-9]*\)-.*/\1/p' | sort -u); do
    owner=$(cat "$STATE_DIR/$run.owner" 2>/dev/null || echo "")
    # A run made by hand stays until `down`.
    [ "$owner" = manual ] && continue
    if [ -z "$owner" ] || ! kill -0 "$owner" 2>/dev/null; then
      echo "lan.sh: removing stale run $run (owner ${owner:-unknown} is gone)" >&2
      cmd_down "$run"
    fi
  done
}

cmd_list() {
  ip netns list 2>/dev/null | awk '{print $1}' | sed -n 's/^pkv-\([a-z0-9]*\)-.*/\1/p' | sort | uniq -c
}

case "${1:-}" in
  up) [ $# -eq 3 ] || die "usage: lan.sh up RUN N"; cmd_up "$2" "$3" ;;
  exec) [ $# -ge 4 ] || die "usage: lan.sh exec RUN I CMD..."; shift; cmd_exec "$@" ;;
  addr) [ $# -eq 2 ] || die "usage: lan.sh addr I"; echo "$SUBNET.$2" ;;
  cut) [ $# -eq 3 ] || die "usage: lan.sh cut RUN I"; cmd_cut "$2" "$3" ;;
  heal) [ $# -eq 3 ] || die "usage: lan.sh heal RUN I"; cmd_heal "$2" "$3" ;;
  split) [ $# -ge 3 ] || die "usage: lan.sh split RUN I..."; shift; cmd_split "$@" ;;
  join) [ $# -eq 2 ] || die "usage: lan.sh join RUN"; cmd_join "$2" ;;
  down) [ $# -eq 2 ] || die "usage: lan.sh down RUN"; cmd_down "$2" ;;
  clean-stale) cmd_clean_stale ;;
  list) cmd_list ;;
  *) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
