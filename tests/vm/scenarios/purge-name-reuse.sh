# shellcheck shell=sh
# shellcheck disable=SC2016 # wait_for takes shell text to eval later: single quotes on purpose
# purge-name-reuse (issues 4, 7): the device under an in-flight purge request disappears and a
# new LUN appears. The fds the request holds (the checker's, passed to the purger, and the
# purger's own) pin the old device, so the new one gets neither its name nor its dev_t, and the
# purger deletes nothing. (The map drops the path first, as multipathd would: dm holding it
# would pin it too and hide what mpsup's fds do.) Contrast: once mpsup has stopped and every fd is closed, the kernel
# hands the name out again, so it really was the pin that kept it.
# vm-needs-binary: yes
# vm-timeout: 180

require_mpsup
P=/tmp/policy.toml
# A wide confirmation window to hold the purger in; the whole LUN going away must not pause.
sed -e 's/^confirmation_interval = .*/confirmation_interval = "3s"/' \
	-e 's/^pause_fraction = .*/pause_fraction = 1.0/' "$POLICY" >"$P"

mpath_pair disk0 mpatha
BDEVT="$(dev_devt "$B")"

step "start mpsup"
mpsup_start "$P"
wait_state "$B" up 30

step "unmap $B; hold the purger in the middle of its verification"
lio_unmap_path disk0 1
wait_log "verifying id=1" 30
PP="$(helper_pid purger)" || fail "no purger"
kill -STOP "$PP"

step "the device goes away under the request, and a new LUN appears"
# The purger is past its holders check. Drop the path from the map as multipathd would, so
# that only mpsup's fds (the purger's, stopped here) can still be holding it.
mpath_set_paths mpatha "$A"
expect_eq "$(ls "/sys/class/block/$B/holders" | wc -l)" 0 "holders of $B after the map dropped it"
echo 1 >"/sys/class/block/$B/device/delete"
wait_for '[ ! -e "/sys/class/block/$B" ]' 10 || fail "$B not deleted out of band"
lio_pair disk1 1
N="$(lio_path_dev disk1 0)"
log "new device $N ($(dev_devt "$N")); the request's device was $B ($BDEVT)"
expect_ne "$N" "$B" "the new device's name"
expect_ne "$(dev_devt "$N")" "$BDEVT" "the new device's dev_t"

step "the purger goes on and deletes nothing"
kill -CONT "$PP"
wait_for 'grep -F "\"id\":1," "$AUDIT" | grep -qE "\"event\":\"(refused|vanished|cancelled)\""' 30 \
	|| daemon_fail "no outcome for request 1: $(cat "$AUDIT")"
show cat "$AUDIT"
expect_eq "$(audit_count deleted)" 0 "deleted records"
expect_exists "/sys/class/block/$N" "the new device"
expect_exists "/sys/class/block/$A" "the other path"
audit_intents_closed || daemon_fail "an intent without exactly one outcome"
audit_verify
mpsup_stop

step "contrast: with every fd closed, the kernel reuses the name"
lio_pair disk2 1
M="$(lio_path_dev disk2 0)"
log "next new device after mpsup stopped: $M ($(dev_devt "$M"))"
expect_eq "$M" "$B" "the freed name is handed out again"
