# shellcheck shell=sh
# shellcheck disable=SC2016 # wait_for takes shell text to eval later: single quotes on purpose
# checker-states (issue 3): the checker classifies real paths as the kernel answers them.
# An LIO pair: both paths up; unmapping the LUN from one path makes it `disconnected` with sense
# 05/25/00 within one interval while the other stays up; remapping makes it up again; `echo
# offline > device/state` reports `offline`. A scsi_debug disk made to time out reports
# `timeout`, and while its TUR hangs another path's change is still seen within one interval.
# Purging is disabled: this scenario is about seeing, not deleting.
# vm-needs-binary: yes
# vm-timeout: 240

require_mpsup
P=/tmp/checker-policy.toml
cat >"$P" <<'TOML'
[checker]
interval = "1s"
tur_timeout = "3s"
[purge]
enabled = false
[[device]]
purge = false
TOML

step "an LIO pair in a multipath map"
mpath_pair disk0 mpatha

step "start mpsup"
mpsup_start "$P"
wait_state "$A" up 30
wait_state "$B" up 10
show "$MPSUP" ctl show paths

step "unmap the LUN from path 1: $B turns disconnected within one interval"
t0="$(uptime_cs)"
lio_unmap_path disk0 1
wait_state "$B" disconnected 5
t1="$(uptime_cs)"
log "MEASURED unmap-to-disconnected: $((t1 - t0))0 ms (interval 1 s)"
expect_eq "$(state_of "$A")" up "the other path"
path_json "$B" | grep -q '"sense":"70 00 05 00 00 00 00 0a 00 00 00 00 25 00' \
	|| daemon_fail "evidence of $B lacks fixed sense 05/25/00: $(path_json "$B")"
show "$MPSUP" ctl show paths

step "remap: $B is up again"
lio_remap_path disk0 1
wait_state "$B" up 5

step "offline: $A reports offline"
path_offline "$A"
wait_state "$A" offline 5
path_running "$A"
wait_state "$A" up 5

step "scsi_debug: one disk times out, the others keep being seen"
sdebug_load add_host=1 num_tgts=1 max_luns=2
wait_for '[ "$(sdebug_count_ready)" -ge 2 ]' 30 || fail "scsi_debug disks did not appear"
set -- $(sdebug_devs)
X="$1"
wait_state "$X" up 15
sdebug_timeout "$(dev_hctl "$X")"
t0="$(uptime_cs)"
# While X's TUR hangs (the kernel's SG_IO floor is about 7 s), a change on another path is seen
# within one interval: the hung probe holds one worker, not the checker.
lio_unmap_path disk0 1
wait_state "$B" disconnected 5
t1="$(uptime_cs)"
expect_ne "$(state_of "$X")" timeout "X must still be in flight when B's change is seen"
log "MEASURED change-seen-while-another-path-hangs: $((t1 - t0))0 ms"
wait_state "$X" timeout 40
t2="$(uptime_cs)"
log "MEASURED injection-to-timeout: $((t2 - t0))0 ms (tur_timeout 3 s, kernel floor 7 s)"
show "$MPSUP" ctl show paths
sdebug_clear "$(dev_hctl "$X")"
wait_state "$X" up 40

step "stop"
mpsup_stop
