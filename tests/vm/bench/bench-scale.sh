# shellcheck shell=sh
# shellcheck disable=SC2016 # wait_for takes shell text to eval later: single quotes on purpose
# bench-scale: mpsup watching thousands of SCSI paths (scsi_debug, 2 hosts). Prints figures
# (lines starting BENCH); asserts only that every path is seen. Run by scripts/lab-bench.
# vm-needs-binary: yes
# vm-timeout: 900

require_mpsup
TGTS="${BENCH_TGTS:-10}"
LUNS="${BENCH_LUNS:-100}"
P=/tmp/bench.toml
cat >"$P" <<'TOML'
[checker]
interval = "5s"
tur_timeout = "10s"
max_in_flight = 64
[purge]
enabled = false
TOML

proc_field() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

step "scsi_debug: 2 hosts x $TGTS targets x $LUNS LUNs"
t0="$(uptime_cs)"
sdebug_load add_host=2 vpd_use_hostno=0 num_tgts="$TGTS" max_luns="$LUNS"
N="$(cat "$VM_STATE/sdebug-want")"
wait_for '[ "$(sdebug_count_ready)" -ge '"$N"' ]' 600 || fail "only $(sdebug_count_ready) of $N disks appeared"
log "BENCH kernel created $N disks in $(( ($(uptime_cs) - t0) / 100 )) s"

step "mpsup sees every path"
t0="$(uptime_cs)"
mpsup_start "$P"
wait_for '[ "$("$MPSUP" ctl show paths | awk '"'"'$4 == "up"'"'"' | wc -l)" -ge '"$N"' ]' 300 \
	|| daemon_fail "not all $N paths up: $("$MPSUP" ctl show stats | grep mpsup_paths)"
t1="$(uptime_cs)"
log "BENCH $N paths all reported up $(( (t1 - t0) * 10 )) ms after start (interval 5 s, max_in_flight 64)"

step "steady state over 3 intervals"
SUPP="$SUP"
CH="$(helper_pid checker)"; PU="$(helper_pid purger)"; LI="$(helper_pid listener)"
for p in "$SUPP" "$CH" "$PU" "$LI"; do eval "c0_$p=$(cpu_ticks "$p")"; done
t0="$(uptime_cs)"
wait_for '[ $(( $(uptime_cs) - '"$t0"' )) -ge 1500 ]' 20 || true
el=$(( $(uptime_cs) - t0 ))
for pair in "supervisor:$SUPP" "checker:$CH" "purger:$PU" "listener:$LI"; do
	r="${pair%%:*}"; p="${pair#*:}"
	eval "c0=\$c0_$p"
	log "BENCH $r: cpu $(( ($(cpu_ticks "$p") - c0) * 100 / el ))% of one core over $((el / 100)) s, RSS $(proc_field "$p" VmRSS) kB, threads $(proc_field "$p" Threads), fds $(ls "/proc/$p/fd" | wc -l)"
done

step "control replies at this size"
t0="$(uptime_cs)"
"$MPSUP" ctl show paths json >/tmp/paths.json
log "BENCH show paths json: $(wc -c </tmp/paths.json) bytes in $(( ($(uptime_cs) - t0) * 10 )) ms"
t0="$(uptime_cs)"
"$MPSUP" ctl show paths >/tmp/paths.txt
log "BENCH show paths: $(wc -l </tmp/paths.txt) lines in $(( ($(uptime_cs) - t0) * 10 )) ms"
mpsup_stop
