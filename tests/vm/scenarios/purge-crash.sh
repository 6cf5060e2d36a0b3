# shellcheck shell=sh
# shellcheck disable=SC2016 # wait_for takes shell text to eval later: single quotes on purpose
# purge-crash (issues 4, 8): the purger is SIGKILLed between its intent and the delete, and
# again after a delete; then the whole daemon gets SIGTERM with a purge in flight. After each restart every deletion has exactly one intent and one
# outcome record, and nothing is deleted twice.
# Between intent and delete: the supervisor is stopped (SIGSTOP) once it has sent the request,
# so the purger's intent waits unanswered; the purger logs that it is waiting, and is killed
# there. When the supervisor continues, the request is requeued and re-verified from scratch.
# vm-needs-binary: yes
# vm-timeout: 240

require_mpsup
P=/tmp/policy.toml
sed -e 's/^pause_fraction = .*/pause_fraction = 1.0/' "$POLICY" >"$P"

# Three multipath pairs: disk0 (A, B), disk1 (C, D), disk2 (E, F).
mpath_pair disk2 mpathc
E="$A"
F="$B"
mpath_pair disk1 mpathb
C="$A"
D="$B"
mpath_pair disk0 mpatha

step "start mpsup"
mpsup_start "$P"
wait_state "$B" up 30
wait_state "$D" up 10

step "kill the purger between intent and delete"
lio_unmap_path disk0 1
wait_log "sending purge request" 30
kill -STOP "$SUP"
wait_log "intent sent, awaiting the supervisor's decision" 20
PP="$(helper_pid purger)" || fail "no purger"
kill -KILL "$PP"
kill -CONT "$SUP"
wait_audit deleted "$B" 60
show cat "$AUDIT"
expect_eq "$(audit_count intent "$B")" 1 "intent records for $B"
expect_eq "$(audit_count deleted "$B")" 1 "deleted records for $B"
expect_absent "/sys/class/block/$B" "$B"
grep -qF "purger lost with a request in flight: requeued" "$DLOG" || daemon_fail "no requeue logged"

step "kill the purger after a delete"
lio_unmap_path disk1 1
wait_audit deleted "$D" 60
PP="$(helper_pid purger)" || fail "no purger"
kill -KILL "$PP"
wait_for '[ "$(grep -c "helper ready role=purger" "$DLOG")" -ge 3 ]' 20 || daemon_fail "purger not restarted"
expect_eq "$(audit_count deleted "$D")" 1 "deleted records for $D"
expect_eq "$(audit_count intent "$D")" 1 "intent records for $D"
expect_eq "$(grep -c '"event":"' "$AUDIT")" 4 "audit records in all (2 intents, 2 deletions)"
audit_intents_closed || daemon_fail "an intent without exactly one outcome"
audit_verify

step "SIGTERM while a purge is in flight: finished or aborted, never left unaudited"
lio_unmap_path disk2 1
wait_log "sending purge request id=3" 30
mpsup_stop
log "audit after the stop:"
grep -F '"id":3' "$AUDIT" || true
# An intent the stop cut off is resolved at the next start; the path is then purged anew.
mpsup_start "$P"
wait_audit deleted "$F" 60
show cat "$AUDIT"
audit_intents_closed || daemon_fail "an intent without exactly one outcome"
expect_eq "$(audit_count deleted "$F")" 1 "deleted records for $F"
audit_verify
grep -E "sending purge request|intent sent|killed by|requeued|intent answered|purge finished|helper ready role=purger|protocol violation" "$DLOG"
mpsup_stop
