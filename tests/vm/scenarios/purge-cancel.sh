# shellcheck shell=sh
# shellcheck disable=SC2016 # wait_for takes shell text to eval later: single quotes on purpose
# purge-cancel (issues 4, 8): a path that comes back within the grace period is not deleted, and
# the audit log says the request was cancelled. Meanwhile the checker is SIGKILLed: its successor
# re-probes every path within an interval and the grace period is not reset.
# vm-needs-binary: yes
# vm-timeout: 150

require_mpsup
P=/tmp/policy.toml
sed 's/^delay = .*/delay = "20s"/' "$POLICY" >"$P"

mpath_pair disk0 mpatha

step "start mpsup (delay 20 s)"
mpsup_start "$P"
wait_state "$B" up 30

step "unmap, then remap within the grace period"
lio_unmap_path disk0 1
wait_state "$B" disconnected 5
"$MPSUP" ctl show purges | grep -q grace || daemon_fail "no request in grace: $("$MPSUP" ctl show purges)"

step "kill -9 the checker during the grace: its successor re-probes every path, the grace stays"
before_a="$(last_check "$A")"
before_b="$(last_check "$B")"
CP="$(helper_pid checker)" || fail "no checker"
kill -KILL "$CP"
t0="$(uptime_cs)"
wait_for '[ "$(grep -c "helper ready role=checker" "$DLOG")" -ge 2 ]' 10 || daemon_fail "checker not restarted"
wait_for '[ "$(last_check "$A")" != "$before_a" ] && [ "$(last_check "$B")" != "$before_b" ]' 5 \
	|| daemon_fail "paths not re-probed after the checker restart"
t1="$(uptime_cs)"
log "MEASURED checker SIGKILL to every path re-probed: $((t1 - t0))0 ms (interval 1 s)"
expect_eq "$(state_of "$A")" up "$A after the checker restart"
expect_eq "$(state_of "$B")" disconnected "$B after the checker restart"
"$MPSUP" ctl show purges | grep -q grace || daemon_fail "the grace period did not survive: $("$MPSUP" ctl show purges)"
expect_eq "$(audit_count cancelled "$B")" 0 "cancelled records after the checker restart"
lio_remap_path disk0 1
wait_state "$B" up 5
wait_audit cancelled "$B" 5
show cat "$AUDIT"
expect_eq "$(audit_count intent "$B")" 0 "intent records"
expect_eq "$(audit_count deleted "$B")" 0 "deleted records"
expect_exists "/sys/class/block/$B" "$B"
grep -F '"event":"cancelled"' "$AUDIT" | grep -qF "reported up again" || daemon_fail "cancel reason missing"
audit_verify
mpsup_stop
