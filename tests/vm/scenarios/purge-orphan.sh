# shellcheck shell=sh
# shellcheck disable=SC2016 # wait_for takes shell text to eval later: single quotes on purpose
# purge-orphan (issue 4): a disconnected device in no multipath map is refused when
# require_multipath = true (the default), and the refusal is audited.
# vm-needs-binary: yes
# vm-timeout: 150

require_mpsup
P=/tmp/policy.toml
sed 's/^pause_fraction = .*/pause_fraction = 1.0/' "$POLICY" >"$P"

lio_pair disk1 1
S="$(lio_path_dev disk1 0)"

step "start mpsup"
mpsup_start "$P"
wait_state "$S" up 30

step "unmap: refused, not in a multipath map"
lio_unmap_path disk1 0
wait_audit refused "$S" 30
show cat "$AUDIT"
grep -F '"event":"refused"' "$AUDIT" | grep -qF "not in a dm-multipath map (no holders)" \
	|| daemon_fail "wrong refusal reason"
expect_eq "$(audit_count intent "$S")" 0 "intent records"
expect_exists "/sys/class/block/$S" "$S"
audit_verify
mpsup_stop
