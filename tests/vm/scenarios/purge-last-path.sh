# shellcheck shell=sh
# shellcheck disable=SC2016 # wait_for takes shell text to eval later: single quotes on purpose
# purge-last-path (issue 4): the LUN is unmapped from both paths (as when an array unmaps a
# volume from the host). With allow_last_path = false one path is deleted and the map's last
# path is refused, and both decisions are audited.
# vm-needs-binary: yes
# vm-timeout: 180

require_mpsup
P=/tmp/policy.toml
# Both of 2 paths disconnect: 100 %, so the outage brake must allow it for this scenario.
sed 's/^pause_fraction = .*/pause_fraction = 1.0/' "$POLICY" >"$P"

mpath_pair disk0 mpatha

step "start mpsup"
mpsup_start "$P"
wait_state "$A" up 30
wait_state "$B" up 10

step "unmap the LUN from both paths"
lio_unmap_path disk0 0
lio_unmap_path disk0 1
wait_for '[ "$(audit_count deleted)" -ge 1 ] && [ "$(audit_count refused)" -ge 1 ]' 60 \
	|| daemon_fail "want one deleted and one refused: $(cat "$AUDIT")"
show cat "$AUDIT"
expect_eq "$(audit_count deleted)" 1 "deleted records"
grep -F '"event":"refused"' "$AUDIT" | grep -qF "last path of map mpatha ($DM)" \
	|| daemon_fail "the refusal does not name the last path rule"
n=0
for d in "$A" "$B"; do [ -e "/sys/class/block/$d" ] && n=$((n + 1)); done
expect_eq "$n" 1 "paths left in the map"
expect_exists "/sys/block/$DM" "the map"
audit_verify
mpsup_stop
