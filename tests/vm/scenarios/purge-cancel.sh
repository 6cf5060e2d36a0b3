# shellcheck shell=sh
# shellcheck disable=SC2016 # wait_for takes shell text to eval later: single quotes on purpose
# purge-cancel (issue 4): a path that comes back within the grace period is not deleted, and
# the audit log says the request was cancelled.
# vm-needs-binary: yes
# vm-timeout: 150

require_mpsup
P=/tmp/policy.toml
sed 's/^delay = .*/delay = "20s"/' "$POLICY" >"$P"

lio_pair disk0 2
A="$(lio_path_dev disk0 0)"
B="$(lio_path_dev disk0 1)"
mpath_create mpatha "$A" "$B" >/dev/null

step "start mpsup (delay 20 s)"
mpsup_start "$P"
wait_state "$B" up 30

step "unmap, then remap within the grace period"
lio_unmap_path disk0 1
wait_state "$B" disconnected 5
"$MPSUP" ctl show purges | grep -q grace || daemon_fail "no request in grace: $("$MPSUP" ctl show purges)"
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
