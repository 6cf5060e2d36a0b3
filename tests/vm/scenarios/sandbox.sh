# shellcheck shell=sh
# shellcheck disable=SC2016 # wait_for takes shell text to eval later: single quotes on purpose
# sandbox: the helpers run sandboxed on the lab kernel (6.12, landlock ABI 6) and the full purge
# still works: every helper's /proc status shows seccomp filter mode, no_new_privs and no
# capabilities, `show helpers json` reports the sandbox with landlock fully enforced, the
# checker's SG_IO workers and the purger's delete run under it, and no helper is killed by
# SIGSYS along the way.
# vm-needs-binary: yes
# vm-timeout: 180

require_mpsup
P=/tmp/policy.toml
cp "$POLICY" "$P"

step "an LIO pair in a multipath map"
mpath_pair disk0 mpatha

step "start mpsup; both paths up (the checker's workers ran SG_IO in the sandbox)"
mpsup_start "$P"
wait_state "$A" up 30
wait_state "$B" up 10

step "the supervisor keeps no capability after start"
st="/proc/$SUP/status"
show grep -E '^(NoNewPrivs|Cap[A-Za-z]+):' "$st"
expect_eq "$(awk '$1 == "NoNewPrivs:" { print $2 }' "$st")" 1 "supervisor NoNewPrivs"
for c in CapInh CapPrm CapEff CapBnd CapAmb; do
	expect_eq "$(awk -v k="$c:" '$1 == k { print $2 }' "$st")" 0000000000000000 "supervisor $c"
done

step "every helper is sandboxed"
for role in checker purger listener; do
	pid="$(helper_pid "$role")"
	[ -n "$pid" ] || daemon_fail "no $role helper"
	st="/proc/$pid/status"
	show grep -E '^(Seccomp|NoNewPrivs|Cap[A-Za-z]+):' "$st"
	expect_eq "$(awk '$1 == "Seccomp:" { print $2 }' "$st")" 2 "$role Seccomp"
	expect_eq "$(awk '$1 == "NoNewPrivs:" { print $2 }' "$st")" 1 "$role NoNewPrivs"
	for c in CapInh CapPrm CapEff CapBnd CapAmb; do
		expect_eq "$(awk -v k="$c:" '$1 == k { print $2 }' "$st")" 0000000000000000 "$role $c"
	done
	for t in /proc/"$pid"/task/*; do
		expect_eq "$(awk '$1 == "Seccomp:" { print $2 }' "$t/status")" 2 "$role thread $t Seccomp"
	done
done
json="$("$MPSUP" ctl show helpers json)"
log "show helpers json: $json"
for kv in '"capabilities_dropped":true' '"landlock_abi":6' '"landlock_fully_enforced":true' \
	'"no_new_privs":true' '"seccomp":true'; do
	expect_eq "$(echo "$json" | grep -o "$kv" | wc -l | tr -d ' ')" 3 "helpers reporting $kv"
done
show "$MPSUP" ctl show helpers

step "unmap the LUN from path 1 ($B): the sandboxed purger deletes it"
lio_unmap_path disk0 1
wait_state "$B" disconnected 10
wait_audit deleted "$B" 30
expect_absent "/sys/class/block/$B" "$B after the purge"
expect_exists "/sys/class/block/$A" "the other path"
expect_exists "/sys/block/$DM" "the multipath map"

step "no helper was killed or restarted"
if grep -q "SIGSYS" "$DLOG"; then daemon_fail "a helper was killed by SIGSYS"; fi
expect_eq "$(echo "$("$MPSUP" ctl show helpers json)" | grep -o '"restarts":0' | wc -l | tr -d ' ')" 3 "helpers with 0 restarts"
mpsup_stop
