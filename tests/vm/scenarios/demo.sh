# shellcheck shell=sh
# demo: a newcomer's tour (scripts/lab-demo runs it). It prints rather than asserts: the
# scenario passes when it ran to the end, whatever mpsup answered.
#   1. a LUN reachable over two paths, in a dm-multipath map
#   2. mpsup starts; `mpsup ctl show paths` shows both paths up
#   3. the array unmaps the LUN from one path: TUR there says 05/25/00
#   4. mpsup notices, waits out its grace period, re-checks and deletes the dead path
#   5. `mpsup ctl show paths` / `show purges` / the audit log tell what happened
# vm-needs-binary: yes
# vm-timeout: 150

require_mpsup

AUDIT=/var/log/mpsup/audit.jsonl

banner() {
	echo
	echo "=================================================================="
	echo "  $*"
	echo "=================================================================="
}

# Each ctl call is bounded (busybox timeout) so a daemon that does not answer yet costs 5 s.
ctl() {
	echo "\$ mpsup ctl $*"
	timeout 5 "$MPSUP" ctl "$@" 2>&1 || echo "(mpsup ctl exited with status $?)"
}

banner "1. One LUN, two paths, one multipath map"
mpath_pair disk0 mpatha
show lsscsi
echo "path 0: /dev/$A  $(dev_hctl "$A")  wwid $(dev_wwid "$A")"
echo "path 1: /dev/$B  $(dev_hctl "$B")  wwid $(dev_wwid "$B")"
show dmsetup status mpatha
turs_show "$A"
turs_show "$B"

banner "2. Start mpsup"
show cat "$POLICY"
mkdir -p /run/mpsup /var/log/mpsup /var/lib/mpsup
"$MPSUP" --config "$POLICY" >"$DLOG" 2>&1 &
SUP=$!
echo "supervisor pid $SUP"
wait_for '[ -S /run/mpsup/mpsup.sock ]' 15 || echo "(no control socket after 15 s)"
sleep 3
for p in $(mpsup_pids); do echo "  pid $p: $(proc_cmdline "$p")"; done
ctl show helpers
ctl show paths

banner "3. The array unmaps the LUN from path 1 (/dev/$B)"
lio_unmap_path disk0 1
turs_show "$B"
echo "TUR on /dev/$B: $(tur "$B")    TUR on /dev/$A: $(tur "$A")"
sleep 2
ctl show paths

banner "4. mpsup waits out its grace period, re-checks, deletes"
# Grace period (policy delay 3s) + checker interval + confirmations: give it up to 30 s, and
# stop waiting early once the purge request has ended without a deletion.
purge_over() {
	[ ! -e "/sys/class/block/$B" ] && return 0
	timeout 3 "$MPSUP" ctl show purges 2>/dev/null | grep -qE "[[:space:]]${B}[[:space:]].*(refused|failed|cancelled|vanished)"
}
if wait_for purge_over 30; then
	if [ -e "/sys/class/block/$B" ]; then
		echo "/dev/$B still exists: its purge request ended without a deletion"
	else
		echo "/dev/$B is gone from sysfs: deleted"
	fi
else
	echo "/dev/$B still exists after 30 s"
fi
ctl show purges
ctl show paths
show dmsetup status mpatha
show lsscsi

banner "5. The audit record"
ctl show audit
if [ -e "$AUDIT" ]; then
	show ls -l "$AUDIT"
	show cat "$AUDIT"
else
	echo "(no audit log at $AUDIT)"
fi

banner "6. Stop mpsup"
kill -TERM "$SUP" 2>/dev/null || true
( sleep 15; kill -KILL "$SUP" 2>/dev/null ) &
rc=0
wait "$SUP" || rc=$?
echo "supervisor exit status $rc"
echo "---- mpsup output ----"
cat "$DLOG"
echo "---- end ----"
