# shellcheck shell=sh
# shellcheck disable=SC2016 # wait_for takes shell text to eval later: single quotes on purpose
# purge-unmap (issue 4): the LUN is unmapped from one path of a dm-multipath pair. After the
# grace period mpsup deletes that sdX; the other path and the map stay; the audit log holds
# intent + deleted with the evidence, and `mpsup audit verify` passes. Then the audit file is
# edited and truncated by hand, and `audit verify` names the line each time.
# vm-needs-binary: yes
# vm-timeout: 180

require_mpsup
P=/tmp/policy.toml
cp "$POLICY" "$P"

step "an LIO pair in a multipath map"
mpath_pair disk0 mpatha
BDEVT="$(dev_devt "$B")"

step "start mpsup; both paths up"
mpsup_start "$P"
wait_state "$A" up 30
wait_state "$B" up 10

step "unmap the LUN from path 1 ($B): deleted after the 3 s grace"
t0="$(uptime_cs)"
lio_unmap_path disk0 1
wait_state "$B" disconnected 5
wait_audit deleted "$B" 30
t1="$(uptime_cs)"
log "MEASURED unmap-to-deleted: $((t1 - t0))0 ms (delay 3 s, 2 confirmations 500 ms apart)"
expect_absent "/sys/class/block/$B" "$B after the purge"
expect_absent "/sys/dev/block/$BDEVT" "$BDEVT after the purge"
expect_exists "/sys/class/block/$A" "the other path"
expect_exists "/sys/block/$DM" "the multipath map"
expect_eq "$(state_of "$A")" up "the other path's state"
expect_eq "$(audit_count intent "$B")" 1 "intent records for $B"
expect_eq "$(audit_count deleted "$B")" 1 "deleted records for $B"
grep -F '"event":"intent"' "$AUDIT" | grep -qF '"sense":"70 00 05 00 00 00 00 0a 00 00 00 00 25 00' \
	|| daemon_fail "the intent record lacks the 05/25/00 evidence"
grep -F '"event":"deleted"' "$AUDIT" | grep -qF '"holders":["'"$DM"'"]' \
	|| daemon_fail "the deleted record lacks the holders"
show "$MPSUP" ctl show purges
show cat "$AUDIT"

step "the audit chain verifies"
audit_verify
mpsup_stop

step "a hand-edited audit line is named"
cp "$AUDIT" /tmp/audit.good
sed -i '1s/"event":"intent"/"event":"cancelled"/' "$AUDIT"
out="$("$MPSUP" audit verify "$AUDIT" 2>&1)" && fail "verify passed an edited log"
log "verify says: $out"
expect_match "$out" "*audit.jsonl:2: prev_sha256 does not match*" "verify names line 2"

step "a truncated audit log is named (with the head file)"
head -n 1 /tmp/audit.good >"$AUDIT"
out="$("$MPSUP" audit verify "$AUDIT" --head /var/lib/mpsup/audit.head 2>&1)" && fail "verify passed a truncated log"
log "verify says: $out"
expect_match "$out" "*audit.jsonl:2: log ends at seq 1 but the head says*truncated*" "verify names the cut"
