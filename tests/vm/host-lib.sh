# shellcheck shell=bash
# Host-side helpers shared by tests/vm/build-initramfs and tests/vm/run (sourced, not executed).

VM_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck disable=SC2034 # used by the scripts that source this file
BUILD_DIR="${MPSUP_VM_BUILD_DIR:-$VM_DIR/build}"

vm_die() {
  printf '%s: error: %s\n' "${0##*/}" "$*" >&2
  exit 1
}

vm_log() {
  printf '%s: %s\n' "${0##*/}" "$*" >&2
}

# Every host tool the lab uses, with the package that provides it.
vm_require_tools() {
  local missing=() t
  local -A pkg=(
    [qemu-system-x86_64]=qemu-system-x86 [cpio]=cpio [gzip]=gzip [xz]=xz-utils
    [modprobe]=kmod [sg_turs]=sg3-utils [sg_inq]=sg3-utils [sg_raw]=sg3-utils
    [dmsetup]=dmsetup [ldd]=libc-bin [timeout]=coreutils [flock]=util-linux
    [sha256sum]=coreutils
  )
  for t in "$@"; do
    command -v "$t" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$t" >/dev/null 2>&1 \
      || missing+=("$t (${pkg[$t]:-?})")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    vm_die "missing host tools: ${missing[*]}; run scripts/lab-deps (as root) to install the lab's packages"
  fi
}

# The busybox-static binary (Debian installs it as /bin/busybox; a dynamic busybox would need
# libraries in the guest, so it is refused).
vm_busybox() {
  local b
  for b in "${MPSUP_VM_BUSYBOX:-}" /bin/busybox /usr/bin/busybox; do
    if [ -z "$b" ] || [ ! -x "$b" ]; then continue; fi
    if [[ "$(ldd "$b" 2>&1 || true)" == *"not a dynamic executable"* ]]; then
      printf '%s\n' "$b"
      return 0
    fi
  done
  vm_die "no static busybox found; run scripts/lab-deps (package busybox-static)"
}

# Kernel version to boot: $MPSUP_VM_KERNEL_VERSION, or the newest installed 6.12 Debian kernel
# that has both an image and a module tree with modules.dep.
vm_kernel_version() {
  if [ -n "${MPSUP_VM_KERNEL_VERSION:-}" ]; then
    printf '%s\n' "$MPSUP_VM_KERNEL_VERSION"
    return 0
  fi
  local img v best=""
  for img in /boot/vmlinuz-6.12.*; do
    [ -e "$img" ] || continue
    v="${img#/boot/vmlinuz-}"
    [ -f "/lib/modules/$v/modules.dep" ] || continue
    best="$(printf '%s\n%s\n' "$best" "$v" | sed '/^$/d' | sort -V | tail -n1)"
  done
  [ -n "$best" ] || vm_die "no 6.12 kernel under /boot with modules in /lib/modules; run scripts/lab-deps (package linux-image-6.12-amd64)"
  printf '%s\n' "$best"
}

vm_kernel_image() {
  local v="$1" img="${MPSUP_VM_KERNEL_IMAGE:-/boot/vmlinuz-$1}"
  [ -r "$img" ] || vm_die "kernel image $img missing or unreadable; run scripts/lab-deps"
  [ -f "/lib/modules/$v/modules.dep" ] || vm_die "/lib/modules/$v/modules.dep missing; run scripts/lab-deps"
  printf '%s\n' "$img"
}

vm_scenario_file() {
  local s="$1"
  case "$s" in
    ''|*/*|.*) vm_die "bad scenario name '$s'" ;;
  esac
  # Benchmarks (tests/vm/bench/, run by scripts/lab-bench) print figures and are not tests.
  local f="$VM_DIR/scenarios/$s.sh"
  case "$s" in bench-*) f="$VM_DIR/bench/$s.sh" ;; esac
  [ -f "$f" ] || vm_die "no scenario '$s' (no $f); have: $(vm_list_scenarios | tr '\n' ' ')"
  printf '%s\n' "$f"
}

vm_list_scenarios() {
  local f
  for f in "$VM_DIR"/scenarios/*.sh; do
    [ -e "$f" ] || continue
    f="${f##*/}"
    printf '%s\n' "${f%.sh}"
  done
}

# A scenario may declare its in-guest wall-clock limit with a line "# vm-timeout: SECONDS".
vm_scenario_timeout() {
  local t
  t="$(sed -n 's/^# vm-timeout: *\([0-9][0-9]*\).*/\1/p' "$1" | head -n1)"
  printf '%s\n' "${t:-120}"
}
