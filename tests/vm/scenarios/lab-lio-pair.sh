# shellcheck shell=sh
# lab-lio-pair: the lab facts of vm-lab.md, checked on this kernel.
# Two tcm_loop paths to one LIO LUN are two sdX with one WWID; both answer TUR good; unmapping
# the LUN from path 1 makes TUR there fail with ILLEGAL REQUEST 25/00 while path 0 stays good;
# remapping makes it good again; a dm-multipath map over both shows as holders/dm-N with
# dm/uuid mpath-<wwid>.
# vm-timeout: 90

step "create LIO pair disk0 with 2 paths"
lio_pair disk0 2 $((64 * 1024 * 1024))
A="$(lio_path_dev disk0 0)"
B="$(lio_path_dev disk0 1)"
log "path 0 = $A ($(dev_hctl "$A")), path 1 = $B ($(dev_hctl "$B"))"
expect_ne "$A" "$B" "the two paths are distinct sd devices"
show lsscsi

step "both paths show the same LUN"
expect_eq "$(dev_attr "$A" vendor)" "LIO-ORG" "vendor of $A"
expect_eq "$(dev_attr "$B" vendor)" "LIO-ORG" "vendor of $B"
WWID="$(dev_wwid "$A")"
expect_match "$WWID" "naa.6001405*" "wwid of $A"
expect_eq "$(dev_wwid "$B")" "$WWID" "wwid of $B"
expect_eq "$(cat "/sys/class/block/$A/size")" "$(cat "/sys/class/block/$B/size")" "size in sectors"
show sg_inq "/dev/$A" | head -n 12

step "both paths answer TEST UNIT READY with GOOD"
turs_show "$A"
turs_show "$B"
sg_turs "/dev/$A" || fail "sg_turs on $A (path 0) failed before any unmap"
sg_turs "/dev/$B" || fail "sg_turs on $B (path 1) failed before any unmap"
expect_eq "$(tur "$A")" "good" "TUR on $A"
expect_eq "$(tur "$B")" "good" "TUR on $B"

step "a dm-multipath map over both paths"
DM="$(mpath_create mpatha "$A" "$B")"
log "map mpatha = $DM"
show dmsetup table mpatha
show dmsetup status mpatha
expect_exists "/sys/block/$A/holders/$DM" "holder of $A"
expect_exists "/sys/block/$B/holders/$DM" "holder of $B"
expect_eq "$(holder_of "$A")" "$DM" "holder_of $A"
expect_eq "$(cat "/sys/block/$DM/dm/uuid")" "mpath-$WWID" "dm uuid"
expect_match "$(cat "/sys/block/$DM/dm/uuid")" "mpath-*" "dm uuid prefix"
expect_eq "$(cat "/sys/block/$DM/dm/name")" "mpatha" "dm name"
[ -b "/dev/$DM" ] || fail "/dev/$DM is not a block device node"
dd if="/dev/$DM" of=/dev/null bs=4096 count=16 2>/dev/null || fail "read through the multipath map failed"

step "unmap the LUN from path 1 only"
lio_unmap_path disk0 1
expect_exists "/sys/class/block/$B" "the unmapped path's sd device stays"
turs_show "$B"
rc=0
out="$(sg_turs -v "/dev/$B" 2>&1)" || rc=$?
log "sg_turs /dev/$B: rc=$rc"
echo "$out"
expect_eq "$rc" "5" "sg_turs exit status on the unmapped path (5 = ILLEGAL REQUEST)"
echo "$out" | grep -qi "illegal request" || fail "sg_turs output on $B does not say ILLEGAL REQUEST: $out"
echo "$out" | grep -qi "logical unit not supported" || fail "sg_turs output on $B does not say LOGICAL UNIT NOT SUPPORTED: $out"
expect_eq "$(tur "$B")" "sense 5/25/00" "TUR sense on the unmapped path $B"
cat "$VM_STATE/tur.out"
expect_eq "$(tur "$A")" "good" "TUR on the still-mapped path $A"
sg_turs "/dev/$A" || fail "sg_turs on $A failed after unmapping path 1"
expect_eq "$(dev_state "$B")" "running" "scsi_device state of the unmapped path"

step "remap path 1: good again"
lio_remap_path disk0 1
log "first TUR on $B after the remap: $(tur "$B")"
# Should a UNIT ATTENTION come first on some kernel, the path must still settle to GOOD.
wait_for "sg_turs /dev/$B" 10 || fail "path 1 ($B) never answered TUR good after the remap: $(tur "$B")"
expect_eq "$(tur "$B")" "good" "TUR on $B after remap"
expect_eq "$(tur "$A")" "good" "TUR on $A after remap"

step "unmap again after a remap (the explicit ACL already exists)"
lio_unmap_path disk0 1
expect_eq "$(tur "$B")" "sense 5/25/00" "TUR sense on $B after the second unmap"
lio_remap_path disk0 1
wait_for "sg_turs /dev/$B" 10 || fail "path 1 ($B) not good after the second remap"

step "done"
show dmsetup ls
