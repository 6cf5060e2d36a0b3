//! Kernel-level end-to-end tests: each test boots a Debian Linux 6.12 guest under qemu (TCG
//! emulation, no KVM) with real SCSI devices (LIO tcm_loop multipath pairs, scsi_debug,
//! dm-multipath) and runs one scenario of `tests/vm/scenarios/` through `tests/vm/run`.
//!
//! They need the lab's Debian packages (qemu, the 6.12 kernel image, busybox-static, ...):
//! run `scripts/lab-deps` once, as root. Without them these tests FAIL, on purpose: a skipped
//! kernel test looks green and proves nothing.
//!
//! Boots are serialized (the machines have 2 cores and some scenarios time commands); the
//! guest's serial log of each scenario is kept in `tests/vm/build/<scenario>.log`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

/// One VM at a time within this test binary (`tests/vm/run` also takes a file lock, for runs
/// from other processes).
static VM: Mutex<()> = Mutex::new(());

/// Every scenario in tests/vm/scenarios/ must have a test below.
const SCENARIOS: &[&str] = &[
    "checker-states",
    "daemon-smoke",
    "demo",
    "lab-lio-pair",
    "lab-sdebug",
    "purge-cancel",
    "purge-crash",
    "purge-last-path",
    "purge-name-reuse",
    "purge-orphan",
    "purge-unmap",
    "sandbox",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Fails with the remedy when the lab's packages are not installed.
fn require_lab_packages(root: &Path) {
    let deps = root.join("scripts/lab-deps");
    let out = Command::new("bash")
        .arg(&deps)
        .arg("--check")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", deps.display()));
    if !out.status.success() {
        panic!(
            "the VM lab's packages are missing: run `scripts/lab-deps` (as root) to install \
             qemu-system-x86, linux-image-6.12-amd64, busybox-static and the rest.\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn run_scenario(name: &str) {
    let _one_vm = VM.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let root = root();
    require_lab_packages(&root);
    let binary = env!("CARGO_BIN_EXE_mpsup");
    let started = Instant::now();
    let out = Command::new("bash")
        .arg(root.join("tests/vm/run"))
        .arg(name)
        .arg("--binary")
        .arg(binary)
        .current_dir(&root)
        .output()
        .unwrap_or_else(|e| panic!("cannot run tests/vm/run: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    eprintln!(
        "vm scenario {name}: {:.1}s in total",
        started.elapsed().as_secs_f64()
    );
    if !out.status.success() {
        let log = root.join("tests/vm/build").join(format!("{name}.log"));
        panic!(
            "VM scenario {name} failed ({}).\n\
             tests/vm/run said:\n{stderr}\n\
             last lines of {}:\n{}\n\
             (rerun alone: tests/vm/run {name} --binary {binary})",
            out.status,
            log.display(),
            tail(&log, 40),
        );
    }
}

#[test]
fn every_scenario_has_a_test() {
    let mut found: Vec<String> = std::fs::read_dir(root().join("tests/vm/scenarios"))
        .expect("tests/vm/scenarios")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".sh").map(str::to_owned)
        })
        .collect();
    found.sort();
    assert_eq!(
        found, SCENARIOS,
        "add a #[test] in tests/vm.rs for each scenario file, and list it in SCENARIOS"
    );
}

/// Two tcm_loop paths to one LIO LUN; unmapping it from one path gives 05/25/00 there only;
/// remap heals; a dm-multipath map over both.
#[test]
fn lab_lio_pair() {
    run_scenario("lab-lio-pair");
}

/// scsi_debug with hundreds of LUNs on two hosts; per-device timeout injection; offline.
#[test]
fn lab_sdebug() {
    run_scenario("lab-sdebug");
}

/// `mpsup check-config`, then the supervisor and its three helpers start and stop on SIGTERM.
#[test]
fn daemon_smoke() {
    run_scenario("daemon-smoke");
}

/// The newcomer's demo (scripts/lab-demo) runs to its end.
#[test]
fn demo() {
    run_scenario("demo");
}

/// Issue 3: up, disconnected (05/25/00) within an interval, up again, offline, timeout, and a
/// hung path never delaying another path's report.
#[test]
fn checker_states() {
    run_scenario("checker-states");
}

/// Issue 4: unmap one path of a pair, deleted after the grace, audited, chain verifies; the
/// audit file edited or truncated by hand is named by line.
#[test]
fn purge_unmap() {
    run_scenario("purge-unmap");
}

/// The helpers' sandboxes on the lab kernel: /proc status of each helper, `show helpers json`,
/// and a full purge under seccomp + landlock (ABI 6) without any SIGSYS.
#[test]
fn sandbox() {
    run_scenario("sandbox");
}

/// Issue 4: remapped within the grace period: nothing deleted, audited as cancelled.
#[test]
fn purge_cancel() {
    run_scenario("purge-cancel");
}

/// Issue 4: both paths unmapped: one deleted, the map's last path refused and audited.
#[test]
fn purge_last_path() {
    run_scenario("purge-last-path");
}

/// Issue 4: a disconnected device in no multipath map is refused.
#[test]
fn purge_orphan() {
    run_scenario("purge-orphan");
}

/// Issues 4 and 8: the purger SIGKILLed between intent and delete and after a delete: one
/// intent and one outcome per deletion, nothing deleted twice.
#[test]
fn purge_crash() {
    run_scenario("purge-crash");
}

/// Issues 4 and 7: a new device cannot take the name or dev_t of the device under an in-flight
/// request (its fds pin it), and nothing is deleted.
#[test]
fn purge_name_reuse() {
    run_scenario("purge-name-reuse");
}
