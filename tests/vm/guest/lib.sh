# shellcheck shell=sh
# shellcheck disable=SC2016 # wait_for takes shell text to eval later: single quotes on purpose
# Guest-side library for lab scenarios (busybox sh). /init sources it, then the scenario, in a
# shell with `set -eu`. No udev runs in the guest: device nodes come from devtmpfs, and the
# scenarios poll sysfs with bounded loops (wait_for) where the kernel works asynchronously.
#
# Conventions
#   step "text"           names the current step; a failure or timeout reports the last one
#   fail "reason"         ends the scenario as FAILED with that reason (also from subshells)
#   expect_eq A B WHAT    fail unless A = B
#   wait_for CMD SECS     retry the shell command CMD until it succeeds; status 1 on timeout
#   log / show            timestamped messages / print a command and its output
#
# Paths: LIO pairs are made by lio_pair and described by lio_path_dev, lio_unmap_path and
# lio_remap_path; scsi_debug by sdebug_load and sdebug_timeout; dm maps by mpath_create.

VM_STATE=/run/mpsup-vm
MODDIR=/lib/mpsup-vm/modules
CFG=/sys/kernel/config/target
mkdir -p "$VM_STATE"

# ---- reporting -------------------------------------------------------------------------------

uptime_s() { cut -d' ' -f1 /proc/uptime; }

log() { echo "[$(uptime_s)] $*" >&2; }

step() {
	echo "$*" >"$VM_STATE/step"
	log "== $*"
}

fail() {
	# The first reason wins: it is the cause, later ones are consequences.
	[ -s "$VM_STATE/fail-reason" ] || echo "$*" >"$VM_STATE/fail-reason"
	log "FAIL: $*"
	exit 1
}

# show CMD...: print the command and its output (for logs and the demo); keeps its status.
show() {
	echo "\$ $*"
	"$@" 2>&1
}

expect_eq() { # ACTUAL EXPECTED WHAT
	[ "$1" = "$2" ] || fail "${3:-value}: expected '$2', got '$1'"
	log "ok: ${3:-value} = '$1'"
}

expect_ne() { # ACTUAL UNEXPECTED WHAT
	[ "$1" != "$2" ] || fail "${3:-value}: expected anything but '$2'"
	log "ok: ${3:-value} = '$1' (not '$2')"
}

expect_ge() { # ACTUAL MIN WHAT (integers)
	[ "$1" -ge "$2" ] 2>/dev/null || fail "${3:-value}: expected >= $2, got '$1'"
	log "ok: ${3:-value} = $1 (>= $2)"
}

expect_match() { # ACTUAL GLOB WHAT
	# shellcheck disable=SC2254
	case "$1" in
		$2) log "ok: ${3:-value} = '$1' (matches $2)" ;;
		*) fail "${3:-value}: expected to match '$2', got '$1'" ;;
	esac
}

expect_exists() { # PATH WHAT
	[ -e "$1" ] || fail "${2:-path}: $1 does not exist"
	log "ok: ${2:-path}: $1 exists"
}

expect_absent() { # PATH WHAT
	[ ! -e "$1" ] || fail "${2:-path}: $1 exists but should not"
	log "ok: ${2:-path}: $1 absent"
}

# wait_for CMD TIMEOUT_SECONDS: run CMD (a shell string, eval'ed) every 0.1 s until it
# succeeds. Bounded; the guest has no event source to wait on (no udev), so this is the one
# place a retry loop is acceptable. Returns 1 on timeout.
wait_for() {
	_wf_cmd="$1"
	_wf_limit="$(( ${2:-10} * 100 ))"
	_wf_t0="$(uptime_cs)"
	while :; do
		if eval "$_wf_cmd" >/dev/null 2>&1; then
			return 0
		fi
		if [ $(( $(uptime_cs) - _wf_t0 )) -ge "$_wf_limit" ]; then
			log "wait_for: gave up after ${2:-10}s: $_wf_cmd"
			return 1
		fi
		usleep 100000
	done
}

uptime_cs() { # uptime in centiseconds, an integer
	_u="$(uptime_s)"
	echo "$(( ${_u%.*} * 100 + 1${_u#*.} - 100 ))"
}

# ---- devices ---------------------------------------------------------------------------------

# hctl_dev H:C:T:L -> sdX (empty and status 1 if none)
hctl_dev() {
	for _b in /sys/class/scsi_device/"$1"/device/block/*; do
		[ -e "$_b" ] || return 1
		echo "${_b##*/}"
		return 0
	done
	return 1
}

# dev_hctl sdX -> H:C:T:L
dev_hctl() {
	_l="$(readlink "/sys/class/block/$1/device")" || return 1
	echo "${_l##*/}"
}

dev_attr() { # sdX ATTR (under device/): prints the value with trailing blanks stripped
	sed 's/[[:space:]]*$//' "/sys/class/block/$1/device/$2"
}

dev_wwid() { dev_attr "$1" wwid; }
dev_state() { dev_attr "$1" state; }
dev_devt() { cat "/sys/class/block/$1/dev"; }

# Block devices whose node devtmpfs has created and whose sd driver is bound.
dev_ready() { [ -b "/dev/$1" ] && [ -e "/sys/class/block/$1/size" ]; }

# path_offline sdX / path_running sdX: set the scsi_device state.
path_offline() { echo offline >"/sys/class/block/$1/device/state"; }
path_running() { echo running >"/sys/class/block/$1/device/state"; }

# ---- TEST UNIT READY -------------------------------------------------------------------------

# tur DEV [SECONDS]: one TUR via sg_raw (SG_IO) with a command timeout; prints one word:
#   good              GOOD status
#   sense K/AA/QQ     CHECK CONDITION with sense key K, ASC AA, ASCQ QQ (hex)
#   timeout           the command timed out (DID_TIME_OUT or sg_raw's own report)
#   host:<text>       another transport/host error
#   error:<rc>        sg_raw failed to issue the command (open failed, ...)
# Also leaves sg_raw's full output in $VM_STATE/tur.out.
tur() {
	_dev="$1"
	case "$_dev" in /*) ;; *) _dev="/dev/$_dev" ;; esac
	_rc=0
	sg_raw -v -t "${2:-5}" -R "$_dev" 00 00 00 00 00 00 >"$VM_STATE/tur.out" 2>&1 || _rc=$?
	tur_classify "$_rc" <"$VM_STATE/tur.out"
}

tur_classify() { # RC < sg_raw output
	awk -v rc="$1" '
		BEGIN { st = ""; raw = 0; n = 0; to = 0; h = "" }
		tolower($0) ~ /time ?out|did_time_out/ { to = 1 }
		/SCSI Status: *Good/ { st = "good" }
		/Host_status|host_status/ { h = $0 }
		/Raw sense data/ { raw = 1; next }
		raw == 1 && /^ *[0-9a-fA-F][0-9a-fA-F]( |$)/ {
			for (i = 1; i <= NF; i++) { if ($i ~ /^[0-9a-fA-F][0-9a-fA-F]$/) b[n++] = tolower($i) }
			next
		}
		raw == 1 { raw = 2 }
		END {
			if (n >= 14 && (b[0] == "70" || b[0] == "71")) {
				printf "sense %x/%s/%s\n", hex(b[2]), b[12], b[13]; exit
			}
			if (n >= 4 && (b[0] == "72" || b[0] == "73")) {
				printf "sense %x/%s/%s\n", hex(b[1]), b[2], b[3]; exit
			}
			if (to) { print "timeout"; exit }
			if (st == "good" && rc == 0) { print "good"; exit }
			if (h != "") { gsub(/^ +| +$/, "", h); gsub(/ +/, "_", h); print "host:" h; exit }
			print "error:" rc
		}
		function hex(s,   v, i, c) {
			v = 0
			for (i = 1; i <= length(s); i++) {
				c = index("0123456789abcdef", substr(s, i, 1)) - 1
				v = v * 16 + c
			}
			return v % 16
		}'
}

# sg_turs on a device, printing its exit status and output (the sg3-utils view of TUR).
turs_show() {
	_rc=0
	_out="$(sg_turs -v "/dev/$1" 2>&1)" || _rc=$?
	echo "sg_turs /dev/$1 -> rc=$_rc: $(echo "$_out" | tr '\n' ' ')"
}

# ---- LIO (target_core + tcm_loop) multipath pairs ---------------------------------------------
# Layout (vm-lab.md): one fileio backstore with a fixed vpd_unit_serial; per path one tcm_loop
# target naa.<wwn> (its own SCSI host in the guest) with tpgt_1, an initiator WWN written to
# tpgt_1/nexus BEFORE the backstore is linked into tpgt_1/lun/lun_1 (the link triggers the scan).
# State per pair lives in $VM_STATE/lio/<name>/.

lio_serial() { # NAME -> a fixed, UUID-shaped serial derived from the name
	_h="$(echo "mpsup-lab-$1" | md5sum | cut -c1-32)"
	echo "$(echo "$_h" | cut -c1-8)-$(echo "$_h" | cut -c9-12)-$(echo "$_h" | cut -c13-16)-$(echo "$_h" | cut -c17-20)-$(echo "$_h" | cut -c21-32)"
}

_lio_next_index() { # a global counter so WWNs never collide across pairs
	_n="$(cat "$VM_STATE/lio-next" 2>/dev/null || echo 0)"
	echo $((_n + 1)) >"$VM_STATE/lio-next"
	echo "$_n"
}

# lio_pair NAME NPATHS [SIZE]: create the backstore and NPATHS tcm_loop paths to it, wait
# until each path's sdX is there, and print nothing. SIZE in bytes (default 64 MiB).
lio_pair() {
	_name="$1"
	_np="$2"
	_size="${3:-67108864}"
	_st="$VM_STATE/lio/$_name"
	[ ! -d "$_st" ] || fail "lio_pair: $_name exists"
	mkdir -p "$_st"
	_bs="$CFG/core/fileio_0/$_name"
	mkdir -p "$_bs" || fail "lio_pair: mkdir $_bs"
	echo "fd_dev_name=/tmp/lio-$_name.img,fd_dev_size=$_size" >"$_bs/control" || fail "lio_pair: backstore control"
	lio_serial "$_name" >"$_bs/wwn/vpd_unit_serial" || fail "lio_pair: vpd_unit_serial"
	echo 1 >"$_bs/enable" || fail "lio_pair: enable backstore $_name"
	echo "$_bs" >"$_st/backstore"
	echo "$_np" >"$_st/npaths"
	_i=0
	while [ "$_i" -lt "$_np" ]; do
		_k="$(_lio_next_index)"
		_tw="$(printf 'naa.50014050%08x' "$_k")"
		_iw="$(printf 'naa.50014051%08x' "$_k")"
		_tpg="$CFG/loopback/$_tw/tpgt_1"
		mkdir -p "$_tpg/lun/lun_1" || fail "lio_pair: mkdir $_tpg/lun/lun_1"
		echo "$_iw" >"$_tpg/nexus" || fail "lio_pair: nexus $_iw on $_tw"
		ln -s "$_bs" "$_tpg/lun/lun_1/mpsup_port" || fail "lio_pair: link backstore into $_tpg/lun/lun_1"
		mkdir -p "$_st/path$_i"
		echo "$_tw" >"$_st/path$_i/target"
		echo "$_iw" >"$_st/path$_i/initiator"
		echo "$_tpg" >"$_st/path$_i/tpg"
		_i=$((_i + 1))
	done
	_i=0
	while [ "$_i" -lt "$_np" ]; do
		wait_for "_d=\$(lio_path_dev $_name $_i) && dev_ready \$_d" 20 \
			|| fail "lio_pair: path $_i of $_name never got an sd device ($(cat "$(cat "$_st/path$_i/tpg")/address" 2>/dev/null))"
		log "lio_pair $_name path $_i: $(cat "$_st/path$_i/target") -> $(lio_path_dev "$_name" "$_i") ($(lio_path_hctl "$_name" "$_i"))"
		_i=$((_i + 1))
	done
}

# lio_path_hctl NAME IDX -> H:C:T:L of the path's LUN. tcm_loop's tpgt_1/address says
# "<host>:0:<tpgt>", and the LUN is lun_1.
lio_path_hctl() {
	_tpg="$(cat "$VM_STATE/lio/$1/path$2/tpg")" || return 1
	_a="$(cat "$_tpg/address" 2>/dev/null)" || return 1
	[ -n "$_a" ] || return 1
	echo "$_a:1"
}

# lio_path_dev NAME IDX -> sdX of that path (status 1 while it does not exist).
lio_path_dev() {
	_h="$(lio_path_hctl "$1" "$2")" || return 1
	hctl_dev "$_h"
}

# lio_unmap_path NAME IDX: the array unmaps the LUN from this path's initiator only
# (vm-lab.md): make the session's dynamic ACL explicit, map lun_1 into it, then remove that
# mapping. The sdX stays; TUR on it then says 05/25/00.
lio_unmap_path() {
	_p="$VM_STATE/lio/$1/path$2"
	_tpg="$(cat "$_p/tpg")" || fail "lio_unmap_path: no path $2 in $1"
	_acl="$_tpg/acls/$(cat "$_p/initiator")"
	[ -d "$_acl" ] || mkdir "$_acl" || fail "lio_unmap_path: mkdir $_acl"
	if [ ! -d "$_acl/lun_1" ]; then
		mkdir "$_acl/lun_1" || fail "lio_unmap_path: mkdir $_acl/lun_1"
		ln -s "$_tpg/lun/lun_1" "$_acl/lun_1/mpsup_map" || fail "lio_unmap_path: map lun_1 into the ACL"
	fi
	rm "$_acl/lun_1/mpsup_map" || fail "lio_unmap_path: unlink the mapped LUN"
	rmdir "$_acl/lun_1" || fail "lio_unmap_path: rmdir the mapped LUN"
	log "lio_unmap_path $1 path $2: LUN 1 unmapped from $(cat "$_p/initiator")"
}

# lio_remap_path NAME IDX: map the LUN back to the path's initiator (a reconnect).
lio_remap_path() {
	_p="$VM_STATE/lio/$1/path$2"
	_tpg="$(cat "$_p/tpg")" || fail "lio_remap_path: no path $2 in $1"
	_acl="$_tpg/acls/$(cat "$_p/initiator")"
	[ -d "$_acl" ] || fail "lio_remap_path: path $2 of $1 was never unmapped"
	mkdir "$_acl/lun_1" || fail "lio_remap_path: mkdir $_acl/lun_1"
	ln -s "$_tpg/lun/lun_1" "$_acl/lun_1/mpsup_map" || fail "lio_remap_path: map lun_1 into the ACL"
	log "lio_remap_path $1 path $2: LUN 1 mapped to $(cat "$_p/initiator") again"
}

# lio_remove_path NAME IDX: unlink the LUN from the target port; tcm_loop deletes the sdX
# (a clean removal, not a stale path).
lio_remove_path() {
	_tpg="$(cat "$VM_STATE/lio/$1/path$2/tpg")" || fail "lio_remove_path: no path $2 in $1"
	rm "$_tpg/lun/lun_1/mpsup_port" || fail "lio_remove_path: unlink"
}

# ---- dm-multipath (no multipathd) --------------------------------------------------------------

export DM_DISABLE_UDEV=1

dev_sectors() { cat "/sys/class/block/$1/size"; }

# mpath_create MAPNAME sdX...: a multipath map over the given paths, service-time selector, one
# priority group, uuid mpath-<wwid of the first path> like multipathd makes it. Prints dm-N.
mpath_create() {
	_map="$1"
	shift
	[ $# -ge 1 ] || fail "mpath_create: no paths"
	_sec="$(dev_sectors "$1")"
	_wwid="$(dev_wwid "$1")"
	_tbl="0 $_sec multipath 0 0 1 1 service-time 0 $# 1"
	for _d in "$@"; do
		_tbl="$_tbl $(dev_devt "$_d") 1"
	done
	log "mpath_create $_map: $_tbl"
	dmsetup create --noudevsync -u "mpath-$_wwid" "$_map" --table "$_tbl" \
		|| fail "mpath_create: dmsetup create $_map failed"
	_dm="$(mpath_dm "$_map")" || fail "mpath_create: no dm device for $_map"
	wait_for "[ -b /dev/$_dm ]" 10 || fail "mpath_create: /dev/$_dm never appeared"
	echo "$_dm"
}

# mpath_dm MAPNAME -> dm-N
mpath_dm() {
	for _u in /sys/block/dm-*/dm/name; do
		[ -e "$_u" ] || continue
		if [ "$(cat "$_u")" = "$1" ]; then
			_u="${_u%/dm/name}"
			echo "${_u##*/}"
			return 0
		fi
	done
	return 1
}

# holder_of sdX -> the dm-N holding it (first one)
holder_of() {
	for _h in /sys/class/block/"$1"/holders/*; do
		[ -e "$_h" ] || return 1
		echo "${_h##*/}"
		return 0
	done
	return 1
}

# ---- scsi_debug --------------------------------------------------------------------------------

SDEBUG_SYS=/sys/bus/pseudo/drivers/scsi_debug

# sdebug_load PARAM=VALUE...: insmod scsi_debug and wait (bounded) until every LUN it announces
# (add_host * num_tgts * max_luns) has an sd block device with a /dev node.
sdebug_load() {
	insmod "$MODDIR/scsi_debug.ko" "$@" || fail "sdebug_load: insmod scsi_debug $*"
	_want=$(( $(cat $SDEBUG_SYS/add_host) * $(cat $SDEBUG_SYS/num_tgts) * $(cat $SDEBUG_SYS/max_luns) ))
	echo "$_want" >"$VM_STATE/sdebug-want"
	log "sdebug_load $*: expecting $_want devices"
	wait_for '[ "$(sdebug_count_ready)" -ge "$(cat $VM_STATE/sdebug-want)" ]' "${SDEBUG_SETTLE:-120}" \
		|| fail "sdebug_load: only $(sdebug_count_ready) of $_want scsi_debug disks appeared"
}

# sdebug_devs: sdX names of the scsi_debug disks, in H:C:T:L order. (Few forks: with hundreds
# of devices under TCG, one process per device costs seconds.)
sdebug_devs() {
	grep -l '^scsi_debug' /sys/class/scsi_device/*/device/model 2>/dev/null | while read -r _m; do
		_d="${_m%/device/model}"
		for _b in "$_d"/device/block/*; do
			[ -e "$_b" ] && echo "${_d##*/} ${_b##*/}"
		done
	done | sort -t: -k1,1n -k2,2n -k3,3n -k4,4n | awk '{print $2}'
}

# sdebug_hosts: host numbers of the scsi_debug hosts, ascending.
sdebug_hosts() {
	grep -l '^scsi_debug' /sys/class/scsi_host/host*/proc_name 2>/dev/null \
		| sed 's,.*/host\([0-9]*\)/proc_name,\1,' | sort -n
}

sdebug_count_ready() {
	_c=0
	for _d in $(sdebug_devs); do
		[ -b "/dev/$_d" ] && _c=$((_c + 1))
	done
	echo "$_c"
}

# sdebug_timeout H:C:T:L [OPCODE]: every command with that opcode (default 0x00, TEST UNIT
# READY; 0xff for all) to that LUN is swallowed and times out. Kernel >= 6.7 per-device error
# injection, debugfs file /sys/kernel/debug/scsi_debug/<hctl>/error, rule
# "<type=0 timeout> <count> <opcode>", a positive count meaning "always".
sdebug_timeout() {
	_e="/sys/kernel/debug/scsi_debug/$1/error"
	[ -e "$_e" ] || fail "sdebug_timeout: $_e missing (debugfs mounted? kernel >= 6.7?)"
	echo "0 1 0x${2:-00}" >"$_e" || fail "sdebug_timeout: write to $_e"
	log "sdebug_timeout $1 opcode 0x${2:-00}: $(tail -n +2 "$_e" | tr '\t\n' '  ')"
}

# sdebug_sense H:C:T:L OPCODE KEY ASC ASCQ: commands with that opcode end in CHECK CONDITION
# with the given sense (hex), every time. (type 2: host driver status key asc ascq)
sdebug_sense() {
	_e="/sys/kernel/debug/scsi_debug/$1/error"
	echo "2 1 0x$2 0x00 0x00 0x02 0x$3 0x$4 0x$5" >"$_e" || fail "sdebug_sense: write to $_e"
}

# sdebug_clear H:C:T:L [TYPE [OPCODE]]: remove an injected rule (default: the timeout on TUR).
sdebug_clear() {
	echo "- ${2:-0} 0x${3:-00}" >"/sys/kernel/debug/scsi_debug/$1/error" || fail "sdebug_clear: $1"
}

# ---- mpsup in the guest ------------------------------------------------------------------------

MPSUP=/usr/local/bin/mpsup
# shellcheck disable=SC2034 # for the scenarios
POLICY=/etc/mpsup/policy.toml

require_mpsup() {
	[ -x "$MPSUP" ] || fail "no mpsup binary in the initramfs (run tests/vm/run with --binary PATH)"
}

# mpsup_pids: PIDs of every process running the mpsup binary (supervisor and helpers, whatever
# role argument they were exec'ed with): /proc/PID/exe is the binary, or argv[0] is "mpsup" or
# the binary's path. Kernel threads and other programs do not match.
mpsup_pids() {
	for _p in /proc/[0-9]*; do
		_exe="$(readlink "$_p/exe" 2>/dev/null)" || _exe=""
		case "$_exe" in
			"$MPSUP"|"$MPSUP (deleted)") echo "${_p#/proc/}"; continue ;;
		esac
		[ -n "$_exe" ] || continue
		_a0="$(tr '\0' '\n' <"$_p/cmdline" 2>/dev/null | head -n1)"
		case "$_a0" in
			mpsup|"$MPSUP") echo "${_p#/proc/}" ;;
		esac
	done
}

mpsup_count() { mpsup_pids | wc -l | tr -d ' '; }

# proc_cmdline PID -> its argv joined with spaces
proc_cmdline() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null; }

# mpath_set_paths MAP DEV...: reload MAP's table with only these paths, as multipathd does when
# it drops a path (dm then no longer holds the others open).
mpath_set_paths() {
	_map="$1"
	shift
	_tbl="0 $(dev_sectors "$1") multipath 0 0 1 1 service-time 0 $# 1"
	for _d in "$@"; do
		_tbl="$_tbl $(dev_devt "$_d") 1"
	done
	dmsetup reload --noudevsync "$_map" --table "$_tbl" || fail "mpath_set_paths: reload $_map"
	dmsetup resume --noudevsync "$_map" || fail "mpath_set_paths: resume $_map"
}

# mpath_pair NAME MAP: a LUN on two LIO paths (lio_pair NAME 2) in dm-multipath map MAP; sets
# A and B to the paths' sdX and DM to the map's dm-N.
mpath_pair() {
	lio_pair "$1" 2
	A="$(lio_path_dev "$1" 0)"
	B="$(lio_path_dev "$1" 1)"
	DM="$(mpath_create "$2" "$A" "$B")"
}

# ---- the daemon ------------------------------------------------------------------------------
# mpsup_policy FILE EXTRA: the guest policy with EXTRA (TOML) appended; later keys in a table
# cannot repeat earlier ones, so EXTRA uses its own tables or keys the base does not set.
DLOG=/tmp/mpsup.log

# mpsup_start POLICY: start the supervisor (pid in $SUP), wait until its control socket answers.
mpsup_start() {
	mkdir -p /run/mpsup /var/log/mpsup /var/lib/mpsup
	"$MPSUP" --config "$1" >"$DLOG" 2>&1 &
	SUP=$!
	wait_for '"$MPSUP" ctl show helpers >/dev/null 2>&1' 30 || daemon_fail "control socket never answered"
}

# mpsup_stop: SIGTERM the supervisor and expect exit status 0.
mpsup_stop() {
	kill -TERM "$SUP"
	_rc=0
	wait "$SUP" || _rc=$?
	expect_eq "$_rc" 0 "supervisor exit status after SIGTERM"
}

daemon_fail() { # REASON: print the daemon's output, then fail
	echo "---- mpsup output ($DLOG) ----"
	cat "$DLOG" 2>/dev/null || true
	echo "---- end mpsup output ----"
	fail "$*"
}

# state_of sdX: the checker state word `mpsup ctl show paths` gives (empty if unknown).
state_of() { "$MPSUP" ctl show paths 2>/dev/null | awk -v d="$1" '$2 == d { print $4 }'; }

# path_json sdX: the path's object from `show paths json`.
path_json() { "$MPSUP" ctl show paths json 2>/dev/null | sed 's/},{"dev"/}\n{"dev"/g' | grep "\"dev\":\"$1\""; }

wait_state() { # sdX STATE SECONDS
	wait_for '[ "$(state_of '"$1"')" = "'"$2"'" ]' "$3" \
		|| daemon_fail "$1 is '$(state_of "$1")' after $3 s, expected $2"
}

# wait_log TEXT SECONDS: until the daemon's log has a line containing TEXT.
wait_log() {
	wait_for 'grep -qF -- "'"$1"'" "$DLOG"' "$2" || daemon_fail "no log line with '$1' within $2 s"
}

AUDIT=/var/log/mpsup/audit.jsonl
# audit_count EVENT [DEV]: records of EVENT (for DEV).
audit_count() {
	grep -F "\"event\":\"$1\"" "$AUDIT" 2>/dev/null | grep -cF "\"dev\":\"${2:-}" || true
}
wait_audit() { # EVENT DEV SECONDS
	wait_for '[ "$(audit_count '"$1"' '"$2"')" -ge 1 ]' "$3" \
		|| daemon_fail "no '$1' audit record for $2 within $3 s: $(cat "$AUDIT" 2>/dev/null)"
}
audit_verify() {
	"$MPSUP" audit verify "$AUDIT" --head /var/lib/mpsup/audit.head || daemon_fail "audit verify failed"
}

# helper_pid ROLE: pid of the running mpsup helper of that role (checker, purger, listener).
helper_pid() {
	for _p in $(mpsup_pids); do
		case "$(proc_cmdline "$_p")" in *"__helper $1"*) echo "$_p"; return 0 ;; esac
	done
	return 1
}

# last_check sdX: the time of the checker's latest report on the path, from show paths json.
last_check() { path_json "$1" | sed 's/.*"last_check":"\([^"]*\)".*/\1/'; }

# audit_intents_closed: every request id with an intent record has exactly one intent and
# exactly one outcome record. Prints the offenders; status 1 if any.
audit_intents_closed() {
	awk '
		{
			ev = ""; id = ""
			if (match($0, /"event":"[^"]*"/)) ev = substr($0, RSTART + 9, RLENGTH - 10)
			if (match($0, /"id":[0-9]+/)) id = substr($0, RSTART + 5, RLENGTH - 5)
			if (id == "") next
			if (ev == "intent") intent[id]++
			else if (ev ~ /^(deleted|would-delete|failed|refused|cancelled|vanished)$/) out[id]++
		}
		END {
			bad = 0
			for (i in intent) if (intent[i] != 1 || out[i] != 1) {
				print "request " i ": " intent[i] " intent(s), " (out[i] + 0) " outcome(s)"; bad = 1
			}
			exit bad
		}' "$AUDIT"
}
