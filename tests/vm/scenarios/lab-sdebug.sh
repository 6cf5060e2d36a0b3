# shellcheck shell=sh
# lab-sdebug: scsi_debug facts of vm-lab.md, checked on this kernel.
# Two hosts with a few hundred LUNs, paired by WWID across the hosts (vpd_use_hostno=0); a
# per-device timeout injection (debugfs) makes TUR on one LUN time out while another stays
# good; writing "offline" to device/state takes a path offline.
# vm-timeout: 240

HOSTS=2
TGTS=10
LUNS=15
WANT=$((HOSTS * TGTS * LUNS))

step "load scsi_debug with $HOSTS hosts x $TGTS targets x $LUNS LUNs"
t0="$(uptime_s)"
sdebug_load add_host=$HOSTS num_tgts=$TGTS max_luns=$LUNS vpd_use_hostno=0 dev_size_mb=8
log "scan of $WANT devices took $(awk -v a="$t0" -v b="$(uptime_s)" 'BEGIN { printf "%.1f", b - a }')s"

step "count the sd devices"
N="$(sdebug_devs | wc -l | tr -d ' ')"
expect_eq "$N" "$WANT" "scsi_debug sd devices"
expect_eq "$(sdebug_count_ready)" "$WANT" "scsi_debug devices with a /dev node"
set -- /sys/class/block/sd*
expect_eq "$#" "$WANT" "sd block devices in /sys/class/block"
H0="$(sdebug_devs | head -n1)"
HCTL0="$(dev_hctl "$H0")"
HOST0="${HCTL0%%:*}"
HOSTS_SEEN="$(sdebug_hosts | tr '\n' ' ')"
expect_eq "$(sdebug_hosts | wc -l | tr -d ' ')" "$HOSTS" "scsi_debug hosts ($HOSTS_SEEN)"
HOST1="$(sdebug_hosts | sed -n 2p)"
log "first device $H0 at $HCTL0; hosts $HOST0 and $HOST1"

step "LUNs are paired by WWID across the two hosts"
X="$(hctl_dev "$HOST0:0:3:7")" || fail "no device at $HOST0:0:3:7"
Y="$(hctl_dev "$HOST1:0:3:7")" || fail "no device at $HOST1:0:3:7"
Z="$(hctl_dev "$HOST1:0:3:8")" || fail "no device at $HOST1:0:3:8"
expect_eq "$(dev_wwid "$Y")" "$(dev_wwid "$X")" "wwid of $Y ($HOST1:0:3:7) vs $X ($HOST0:0:3:7)"
expect_ne "$(dev_wwid "$Z")" "$(dev_wwid "$X")" "wwid of $Z ($HOST1:0:3:8)"
log "pair: $X / $Y wwid $(dev_wwid "$X")"

step "TUR good on two devices"
T="$(hctl_dev "$HOST0:0:0:0")"
G="$(hctl_dev "$HOST1:0:0:1")"
# scsi_debug starts with a pending UNIT ATTENTION (power on reset) per LUN; clear it first.
sg_turs "/dev/$T" >/dev/null 2>&1 || true
sg_turs "/dev/$G" >/dev/null 2>&1 || true
expect_eq "$(tur "$T")" "good" "TUR on $T"
expect_eq "$(tur "$G")" "good" "TUR on $G"

step "inject a TUR timeout on $T ($HOST0:0:0:0)"
sdebug_timeout "$HOST0:0:0:0" 00
t0="$(uptime_cs)"
R="$(tur "$T" 3)"
dt=$(( $(uptime_cs) - t0 ))
cat "$VM_STATE/tur.out"
log "TUR on $T with a 3 s timeout: '$R' after $((dt / 100)).$((dt % 100))s"
expect_eq "$R" "timeout" "TUR result on the device with the injected timeout"
expect_ge "$dt" 280 "centiseconds before the TUR gave up (the 3 s command timeout)"
[ "$dt" -lt 3000 ] || fail "the timed-out TUR took ${dt}cs, far past its 3 s timeout"
expect_eq "$(tur "$G")" "good" "TUR on the other device $G while $T times out"
log "state of $T after the timeout: $(dev_state "$T"); kernel log:"
dmesg | tail -n 8

step "clear the injection: $T answers again"
sdebug_clear "$HOST0:0:0:0" 0 00
wait_for "[ \"\$(tur $T)\" = good ]" 20 || fail "TUR on $T not good after clearing the injection: $(tur "$T")"
expect_eq "$(tur "$T")" "good" "TUR on $T after clearing"

step "take $G offline"
path_offline "$G"
expect_eq "$(dev_state "$G")" "offline" "state of $G"
R="$(tur "$G")"
log "TUR on offline $G: $R"
cat "$VM_STATE/tur.out"
expect_ne "$R" "good" "TUR on the offline device"
rc=0
sg_turs "/dev/$G" >/dev/null 2>&1 || rc=$?
expect_ne "$rc" "0" "sg_turs exit status on the offline device"
expect_eq "$(tur "$T")" "good" "TUR on $T while $G is offline"
path_running "$G"
expect_eq "$(dev_state "$G")" "running" "state of $G after setting it running"
wait_for "[ \"\$(tur $G)\" = good ]" 10 || fail "TUR on $G not good after bringing it back: $(tur "$G")"

step "done"
