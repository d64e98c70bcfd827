#!/usr/bin/env bash
# nfs-server.sh - run a real NFS server (nfs-ganesha 4.3 from Debian, FSAL_VFS) on 127.0.0.1
# for cachefs' tests and benchmarks. Needs root (FSAL_VFS uses open_by_handle_at, i.e.
# CAP_DAC_READ_SEARCH); no systemd, no kernel NFS, no rpcbind.
#
#   scripts/nfs-server.sh start    install packages if missing, write the config, start
#                                  ganesha.nfsd in the background, wait until a real
#                                  MOUNT + READDIRPLUS works, record its pid; idempotent.
#                                  The last line of its output is the URL for cachefs:
#                                  nfs://127.0.0.1:NFS_PORT/export?mountport=MNT_PORT
#   scripts/nfs-server.sh stop     stop the recorded pid only (never by name): SIGTERM, then
#                                  SIGKILL after 10 s. The export directory is left alone.
#   scripts/nfs-server.sh status   exit 0 if the recorded server runs, 3 if not.
#
# Environment (all optional):
#   CACHEFS_NFS_DIR=/tmp/cachefs-nfs     state dir: ganesha.conf, ganesha.log, ganesha.pid, ...
#   CACHEFS_NFS_EXPORT_DIR=$DIR/export   exported directory (created mode 0777 if missing; never
#                                        recreate it between runs: the root handle embeds its inode)
#   CACHEFS_NFS_PORT=2049                NFS (v3 + v4) TCP port
#   CACHEFS_MNT_PORT=20048               MOUNT (v1 + v3) TCP port
#   CACHEFS_NFS_PSEUDO=/export           path clients mount (NFSv3 MNT path == NFSv4 pseudo path)
#   CACHEFS_NFS_READY_TIMEOUT=30         seconds `start` waits for readiness
#   CACHEFS_NFS_WATCH_PID=               if set: a watchdog (this script, `_watch`) stops the server
#                                        once that process is gone (test runs that die by a signal)
#
# No portmapper: ganesha 4.3 refuses to start when it cannot register with rpcbind, so it runs
# with an LD_PRELOAD shim (built with cc into the state dir) whose rpcb_set/rpcb_unset just
# succeed. Nothing listens on port 111 or on a non-loopback address; clients must use fixed
# ports (libnfs: ?nfsport=P&mountport=M). Several instances with distinct state dirs and
# ports can run side by side.
set -euo pipefail

DIR=${CACHEFS_NFS_DIR:-/tmp/cachefs-nfs}
EXPORT_DIR=${CACHEFS_NFS_EXPORT_DIR:-$DIR/export}
NFS_PORT=${CACHEFS_NFS_PORT:-2049}
MNT_PORT=${CACHEFS_MNT_PORT:-20048}
PSEUDO=${CACHEFS_NFS_PSEUDO:-/export}
READY_TIMEOUT=${CACHEFS_NFS_READY_TIMEOUT:-30}
HOST=127.0.0.1

CONF=$DIR/ganesha.conf
LOG=$DIR/ganesha.log
PID_FILE=$DIR/ganesha.pid                 # the pid this script started (used by stop/status)
OWN_PID_FILE=$DIR/run/ganesha.nfsd.pid    # the pid file ganesha writes itself (-p)
PORTS_FILE=$DIR/ports                     # "NFS_PORT MNT_PORT PSEUDO" of the running instance
WATCH_PID_FILE=$DIR/watchdog.pid          # the watchdog started for CACHEFS_NFS_WATCH_PID
SELF=$(readlink -f "${BASH_SOURCE[0]}")
SHIM=$DIR/norpcbind.so
PACKAGES=(nfs-ganesha nfs-ganesha-vfs libnfs-utils iproute2 gcc libc6-dev)

say() { printf '[nfs-server] %s\n' "$*"; }
die() { printf '[nfs-server] ERROR: %s\n' "$*" >&2; exit 1; }
log_tail() { [ -f "$LOG" ] && { echo "----- $LOG (last 20 lines) -----"; tail -n 20 "$LOG"; } >&2 || true; }

# pid_alive PID: the process exists and is not a zombie (a ganesha reparented to a PID 1 that
# does not reap stays <defunct> for a while after it exited; it holds no ports any more).
pid_alive() {
  local st
  [[ ${1:-} =~ ^[0-9]+$ ]] && [ -r "/proc/$1/stat" ] || return 1
  st=$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
  [ "$st" != Z ] && [ "$st" != X ]
}
# is_ours PID: its command line is the ganesha.nfsd this script starts with this state dir's config
is_ours() {
  local cmd
  cmd=$(tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null) || return 1
  [[ " $cmd" == *"ganesha.nfsd -F -f $CONF "* ]]
}
# running_pid: prints the recorded pid and succeeds if that process is alive and ours
running_pid() {
  local pid
  [ -f "$PID_FILE" ] || return 1
  pid=$(cat "$PID_FILE" 2>/dev/null) || return 1
  pid_alive "$pid" && is_ours "$pid" || return 1
  echo "$pid"
}
port_listeners() { ss -Hltnp "sport = :$1" 2>/dev/null || true; }
url() { echo "nfs://$HOST:$1$3?mountport=$2"; }

# kill_pid PID: SIGTERM, SIGKILL after 10 s; succeeds once the process is gone (or a zombie)
kill_pid() {
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do pid_alive "$pid" || return 0; sleep 0.1; done
  say "pid $pid ignored SIGTERM for 10 s, sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do pid_alive "$pid" || return 0; sleep 0.1; done
  return 1
}

require_root() {
  [ "$(id -u)" = 0 ] || die "must run as root (ganesha's FSAL_VFS needs open_by_handle_at / CAP_DAC_READ_SEARCH)"
}

install_missing() {
  local missing=() p created_policy=0 rc=0
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing ${missing[*]} (log: $DIR/apt.log)"
  # Where systemd runs, installing nfs-ganesha (and its Depends rpcbind) would start the
  # packaged services on 0.0.0.0:2049 / :111; a policy-rc.d answering 101 prevents that.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 0755 /usr/sbin/policy-rc.d; created_policy=1
  fi
  {
    apt-get update &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      -o DPkg::Lock::Timeout=120 "${missing[@]}"
  } >"$DIR/apt.log" 2>&1 || rc=$?
  [ "$created_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  [ "$rc" = 0 ] || { tail -n 10 "$DIR/apt.log" >&2; die "apt-get failed (exit $rc), see $DIR/apt.log"; }
}

build_shim() {
  [ -f "$SHIM" ] && return 0
  cat > "$DIR/norpcbind.c" <<'EOF'
/* LD_PRELOAD shim for ganesha.nfsd (cachefs tests): pretend portmapper (un)registration
 * succeeds, so no rpcbind is needed. libntirpc calls these through the PLT. */
int rpcb_set(unsigned long p, unsigned long v, const void *nc, const void *a) { (void)p; (void)v; (void)nc; (void)a; return 1; }
int rpcb_unset(unsigned long p, unsigned long v, const void *nc) { (void)p; (void)v; (void)nc; return 1; }
EOF
  cc -shared -fPIC -O2 -o "$SHIM.tmp.$$" "$DIR/norpcbind.c" || die "building the rpcbind shim with cc failed"
  mv -f "$SHIM.tmp.$$" "$SHIM"
}

write_config() {
  local fsal_so plugins_dir
  fsal_so=$(dpkg -L nfs-ganesha-vfs | grep -m1 '/libfsalvfs\.so$') || die "libfsalvfs.so not found (nfs-ganesha-vfs)"
  plugins_dir=$(dirname "$fsal_so")
  cat > "$CONF" <<EOF
# generated by cachefs scripts/nfs-server.sh
NFS_CORE_PARAM {
    Bind_Addr = $HOST;            # loopback only
    NFS_Port = $NFS_PORT;
    MNT_Port = $MNT_PORT;
    Enable_NLM = false;           # no lock manager (would need rpc.statd)
    Enable_RQUOTA = false;        # no rquota listener (port 875)
    Enable_UDP = false;           # TCP only
    Protocols = 3, 4;             # no 9P
    mount_path_pseudo = true;     # NFSv3 MNT path == NFSv4 pseudo path
    Plugins_Dir = $plugins_dir;
}
NFSv4 {
    Graceless = true;             # no 90 s grace period after a (re)start
    RecoveryRoot = $DIR/recovery;
    Only_Numeric_Owners = true;   # v4 owners as "0"/"1000", no idmapd needed
}
NFS_KRB5 { Active_krb5 = false; CCacheDir = $DIR/run; }
EXPORT {
    Export_Id = 1;                # part of every file handle: keep it fixed
    Path = $EXPORT_DIR;
    Pseudo = $PSEUDO;
    Access_Type = None;           # default deny; the CLIENT block grants loopback
    Squash = no_root_squash;
    SecType = sys;                # AUTH_SYS only
    Protocols = 3, 4;
    Transports = TCP;
    Attr_Expiration_Time = 0;     # changes made directly in the export dir are seen at once
    CLIENT { Clients = 127.0.0.1; Access_Type = RW; }
    FSAL { Name = VFS; }
}
LOG {
    Default_Log_Level = EVENT;
    Components { DBUS = FATAL; }  # no system dbus; its errors are noise
}
EOF
}

cmd_start() {
  require_root
  [[ $NFS_PORT =~ ^[0-9]+$ && $MNT_PORT =~ ^[0-9]+$ ]] || die "CACHEFS_NFS_PORT / CACHEFS_MNT_PORT must be numbers"
  [ "$NFS_PORT" != "$MNT_PORT" ] || die "CACHEFS_NFS_PORT and CACHEFS_MNT_PORT must differ (both $NFS_PORT)"
  [[ $PSEUDO == /* ]] || die "CACHEFS_NFS_PSEUDO must be an absolute path"
  mkdir -p "$DIR/run" "$DIR/recovery"

  local pid
  if pid=$(running_pid); then
    local running_ports
    running_ports=$(cat "$PORTS_FILE" 2>/dev/null || true)
    if [ "$running_ports" != "$NFS_PORT $MNT_PORT $PSEUDO" ]; then
      die "already running (pid $pid) with ports/path '$running_ports', not '$NFS_PORT $MNT_PORT $PSEUDO'; stop it first"
    fi
    say "already running (pid $pid)"
    url "$NFS_PORT" "$MNT_PORT" "$PSEUDO"
    return 0
  fi
  rm -f "$PID_FILE" "$PORTS_FILE"

  install_missing
  if [ ! -d "$EXPORT_DIR" ]; then mkdir -p "$EXPORT_DIR"; chmod 0777 "$EXPORT_DIR"; fi
  local p l
  for p in "$NFS_PORT" "$MNT_PORT"; do
    l=$(port_listeners "$p")
    [ -z "$l" ] || die "port $p is already in use: $l"
  done
  build_shim
  write_config

  rm -f "$OWN_PID_FILE"
  : > "$LOG"
  # setsid: its own session, so the caller's terminal/process group signals do not reach it.
  # Not a process group leader (no job control in a script), so setsid execs in place: $! is ganesha.
  LD_PRELOAD=$SHIM setsid ganesha.nfsd -F -f "$CONF" -L "$LOG" -p "$OWN_PID_FILE" -N NIV_EVENT \
    </dev/null >"$DIR/ganesha.stdout" 2>&1 &
  pid=$!
  echo "$pid" > "$PID_FILE"
  echo "$NFS_PORT $MNT_PORT $PSEUDO" > "$PORTS_FILE"

  local t0 ms deadline ready=0
  t0=$(date +%s%3N)
  deadline=$(( $(date +%s) + READY_TIMEOUT ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    if ! pid_alive "$pid"; then
      rm -f "$PID_FILE" "$PORTS_FILE"
      log_tail
      if grep -qiE 'Cannot bind|Address already in use' "$LOG" 2>/dev/null; then
        die "ganesha.nfsd could not bind port $NFS_PORT or $MNT_PORT (taken meanwhile?)"
      fi
      die "ganesha.nfsd exited during startup (log: $LOG, stdout/stderr: $DIR/ganesha.stdout)"
    fi
    if grep -q 'NFS SERVER INITIALIZED' "$LOG" 2>/dev/null &&
       (cd / && timeout 5 nfs-ls "nfs://$HOST$PSEUDO?nfsport=$NFS_PORT&mountport=$MNT_PORT" >/dev/null 2>&1); then
      ready=1; break
    fi
    sleep 0.1
  done
  if [ "$ready" != 1 ]; then
    log_tail
    if kill_pid "$pid"; then rm -f "$PID_FILE" "$PORTS_FILE"; fi
    die "not ready after ${READY_TIMEOUT}s; stopped it (pid $pid)"
  fi
  if [ -f "$OWN_PID_FILE" ] && [ "$(cat "$OWN_PID_FILE")" != "$pid" ]; then
    say "warning: ganesha's own pid file says $(cat "$OWN_PID_FILE"), started $pid"
  fi
  ms=$(( $(date +%s%3N) - t0 ))
  if [ -n "${CACHEFS_NFS_WATCH_PID:-}" ]; then
    pid_alive "$CACHEFS_NFS_WATCH_PID" || die "CACHEFS_NFS_WATCH_PID=$CACHEFS_NFS_WATCH_PID is not a running process"
    CACHEFS_NFS_DIR=$DIR setsid bash "$SELF" _watch "$CACHEFS_NFS_WATCH_PID" "$pid" </dev/null >>"$DIR/watchdog.log" 2>&1 &
    echo $! > "$WATCH_PID_FILE"
  fi
  say "ready after $((ms / 1000)).$(printf '%03d' $((ms % 1000)))s: ganesha.nfsd pid $pid, NFS $HOST:$NFS_PORT, MOUNT $HOST:$MNT_PORT"
  say "export $EXPORT_DIR as $PSEUDO; log $LOG; state $DIR"
  url "$NFS_PORT" "$MNT_PORT" "$PSEUDO"
}

# stop_watchdog: the watchdog recorded by start, if any (not when the watchdog itself stops us)
stop_watchdog() {
  local wpid
  [ -f "$WATCH_PID_FILE" ] || return 0
  wpid=$(cat "$WATCH_PID_FILE" 2>/dev/null || true)
  if [ "$wpid" != "${CACHEFS_NFS_SELF_WATCHDOG:-}" ] && pid_alive "$wpid" &&
     [[ "$(tr '\0' ' ' < "/proc/$wpid/cmdline" 2>/dev/null)" == *"nfs-server.sh _watch "* ]]; then
    kill -TERM "$wpid" 2>/dev/null || true
  fi
  rm -f "$WATCH_PID_FILE"
}

cmd_stop() {
  require_root
  local pid
  stop_watchdog
  if [ ! -f "$PID_FILE" ]; then say "not running (no $PID_FILE)"; return 0; fi
  pid=$(cat "$PID_FILE" 2>/dev/null || true)
  if ! pid_alive "$pid"; then say "pid $pid not running"; rm -f "$PID_FILE" "$PORTS_FILE"; return 0; fi
  if ! is_ours "$pid"; then
    say "pid $pid is not our ganesha.nfsd ($(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null)); leaving it alone"
    rm -f "$PID_FILE" "$PORTS_FILE"; return 0
  fi
  kill_pid "$pid" || die "pid $pid still alive after SIGKILL"
  rm -f "$PID_FILE" "$PORTS_FILE"
  say "stopped pid $pid"
}

cmd_status() {
  local pid
  if pid=$(running_pid); then
    local nfs='' mnt='' pseudo=''
    read -r nfs mnt pseudo 2>/dev/null < "$PORTS_FILE" || true
    say "running: pid $pid, state $DIR"
    [ -n "${nfs:-}" ] && url "$nfs" "$mnt" "$pseudo"
    return 0
  fi
  say "not running (state $DIR)"
  return 3
}

# _watch OWNER GPID (internal, started by start): wait until OWNER or GPID is gone; if OWNER went
# first and GPID is still our ganesha, stop it the normal way.
cmd_watch() {
  local owner=$1 gpid=$2
  while pid_alive "$owner" && pid_alive "$gpid"; do sleep 0.5; done
  if pid_alive "$gpid" && is_ours "$gpid" && [ "$(cat "$PID_FILE" 2>/dev/null)" = "$gpid" ]; then
    say "$(date '+%F %T') owner pid $owner is gone: stopping ganesha.nfsd pid $gpid"
    CACHEFS_NFS_SELF_WATCHDOG=$$ cmd_stop
  fi
}

case "${1:-}" in
  _watch) cmd_watch "$2" "$3" ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) echo "usage: $0 start|stop|status   (env: CACHEFS_NFS_DIR, CACHEFS_NFS_EXPORT_DIR, CACHEFS_NFS_PORT, CACHEFS_MNT_PORT, CACHEFS_NFS_PSEUDO)" >&2; exit 2 ;;
esac
