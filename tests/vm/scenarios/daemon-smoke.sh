# shellcheck shell=sh
# shellcheck disable=SC2016 # wait_for takes shell text to eval later: single quotes on purpose
# daemon-smoke: the real mpsup binary on a real kernel with SCSI devices.
# check-config accepts the guest policy; `mpsup --config` starts a supervisor and its three
# helpers (>= 4 mpsup processes, the helpers children of the supervisor); SIGTERM stops all of
# them and the supervisor exits 0.
# vm-needs-binary: yes
# vm-timeout: 120

require_mpsup
step "something to look at: an LIO pair in a multipath map"
mpath_pair disk0 mpatha
log "paths $A $B in $DM"

step "mpsup check-config $POLICY"
rc=0
"$MPSUP" check-config "$POLICY" >/tmp/check-config.out 2>&1 || rc=$?
head -n 40 /tmp/check-config.out
expect_eq "$rc" "0" "mpsup check-config exit status"

step "start the daemon"
# What a service manager would make (systemd RuntimeDirectory=, LogsDirectory=, StateDirectory=).
mkdir -p /run/mpsup /var/log/mpsup /var/lib/mpsup
"$MPSUP" --config "$POLICY" >"$DLOG" 2>&1 &
SUP=$!
log "supervisor pid $SUP"
wait_for '[ "$(mpsup_count)" -ge 4 ]' 30 \
	|| daemon_fail "only $(mpsup_count) mpsup processes 30 s after start (want supervisor + 3 helpers): $(mpsup_pids | tr '\n' ' ')"
kill -0 "$SUP" 2>/dev/null || daemon_fail "the supervisor (pid $SUP) is gone"

step "process tree"
children=0
for p in $(mpsup_pids); do
	pp="$(awk '/^PPid:/ { print $2 }' "/proc/$p/status" 2>/dev/null || echo '?')"
	echo "  pid $p ppid $pp: $(proc_cmdline "$p")"
	if [ "$p" != "$SUP" ] && [ "$pp" = "$SUP" ]; then
		children=$((children + 1))
	fi
done
expect_ge "$(mpsup_count)" 4 "mpsup processes"
expect_ge "$children" 3 "mpsup processes whose parent is the supervisor"

step "still running a few seconds later"
sleep 3
kill -0 "$SUP" 2>/dev/null || daemon_fail "the supervisor exited on its own within 3 s"
expect_ge "$(mpsup_count)" 4 "mpsup processes after 3 s"
if [ -S /run/mpsup/mpsup.sock ]; then
	log "control socket /run/mpsup/mpsup.sock exists"
else
	log "note: no control socket at /run/mpsup/mpsup.sock"
fi

step "SIGTERM the supervisor"
kill -TERM "$SUP"
# Bounded wait: a watchdog kills the supervisor if it has not exited 20 s after SIGTERM.
( sleep 20; kill -KILL "$SUP" 2>/dev/null && echo "watchdog: supervisor ignored SIGTERM for 20 s" >"$VM_STATE/watchdog" ) &
WD=$!
rc=0
wait "$SUP" || rc=$?
kill "$WD" 2>/dev/null || true
wait "$WD" 2>/dev/null || true
[ ! -s "$VM_STATE/watchdog" ] || daemon_fail "$(cat "$VM_STATE/watchdog")"
log "supervisor exit status $rc"
echo "---- mpsup output ----"
cat "$DLOG"
echo "---- end ----"
expect_eq "$rc" "0" "supervisor exit status after SIGTERM"
wait_for '[ "$(mpsup_count)" -eq 0 ]' 10 \
	|| daemon_fail "mpsup processes left after the supervisor exited: $(for p in $(mpsup_pids); do echo "$p:$(proc_cmdline "$p")"; done)"
expect_eq "$(mpsup_count)" "0" "mpsup processes after stop"

step "done"
