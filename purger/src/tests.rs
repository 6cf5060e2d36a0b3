//! The purger over a real `Channel::pair()`, the test playing the supervisor, with a fixture
//! sysfs tree of the real shape (relative symlinks: `/sys/dev/block/MAJ:MIN`, `class/block`,
//! `device`, `holders/dm-N`, `dm-N/slaves/*`) and fakes for the device and the sysfs write.

use super::*;
use mpsup_checker::sgio::Prober;
use mpsup_ipc::{
    DevT, Hctl, MapRef, PathIdentity, PurgeEvidence, PurgeOutcome, PurgeRequest, PurgerConfig,
    PurgerMsg, ToPurger, TurEvidence,
};
use nix::sys::socket::{setsockopt, sockopt::ReceiveTimeout};
use nix::sys::time::TimeVal;
use std::collections::{HashMap, VecDeque};
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- fixture sysfs

const WWID: &str = "naa.6001405abc";
const MAP_UUID: &str = "mpath-36001405abc";

struct Fixture {
    dir: tempfile::TempDir,
}

/// The shortest relative path from directory `from` to `to` (both absolute).
fn rel(from: &Path, to: &Path) -> PathBuf {
    let f: Vec<_> = from.components().collect();
    let t: Vec<_> = to.components().collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut p = PathBuf::new();
    for _ in common..f.len() {
        p.push("..");
    }
    for c in &t[common..] {
        p.push(c);
    }
    p
}

/// A relative symlink at `at` to `target`, as the kernel makes them.
fn link(target: &Path, at: &Path) {
    symlink(rel(at.parent().unwrap(), target), at).unwrap();
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let f = Fixture { dir };
        for d in ["sys/class/block", "sys/dev/block", "dev"] {
            fs::create_dir_all(f.root().join(d)).unwrap();
        }
        f
    }

    fn root(&self) -> PathBuf {
        fs::canonicalize(self.dir.path()).unwrap()
    }

    fn sys(&self) -> PathBuf {
        self.root().join("sys")
    }

    fn roots(&self) -> Roots {
        Roots {
            sysfs: self.sys(),
            dev: self.root().join("dev"),
        }
    }

    fn sdev_dir(&self, hctl: &str) -> PathBuf {
        let t: Vec<&str> = hctl.split(':').collect();
        self.sys().join(format!(
            "devices/platform/host{h}/session{h}/target{h}:{}:{}/{hctl}",
            t[1],
            t[2],
            h = t[0]
        ))
    }

    fn blk(&self, name: &str) -> PathBuf {
        fs::canonicalize(self.sys().join("class/block").join(name)).unwrap()
    }

    fn dev_entry(&self, dev: &str) -> PathBuf {
        self.sys().join("dev/block").join(dev)
    }

    /// `.../H:C:T:L/{vendor,model,state,wwid,delete,scsi_device/H:C:T:L}`,
    /// `.../H:C:T:L/block/NAME/{dev,holders/,device -> ../../../H:C:T:L}`,
    /// `class/block/NAME` and `dev/block/MAJ:MIN` -> `.../block/NAME`.
    fn add_disk(&self, name: &str, hctl: &str, dev: &str, wwid: Option<&str>) {
        let sdev = self.sdev_dir(hctl);
        fs::create_dir_all(sdev.join("scsi_device").join(hctl)).unwrap();
        fs::write(sdev.join("vendor"), "LIO-ORG \n").unwrap();
        fs::write(sdev.join("model"), "disk0           \n").unwrap();
        fs::write(sdev.join("state"), "running\n").unwrap();
        fs::write(sdev.join("delete"), "").unwrap();
        if let Some(w) = wwid {
            fs::write(sdev.join("wwid"), format!("{w}\n")).unwrap();
        }
        let blk = sdev.join("block").join(name);
        fs::create_dir_all(blk.join("holders")).unwrap();
        fs::write(blk.join("dev"), format!("{dev}\n")).unwrap();
        link(&sdev, &blk.join("device"));
        link(&blk, &self.sys().join("class/block").join(name));
        link(&blk, &self.dev_entry(dev));
    }

    /// A dm device `dm` with `dm/{name,uuid}` holding `members`:
    /// `MEMBER/holders/dm-N -> dm-N` and `dm-N/slaves/MEMBER -> MEMBER`.
    fn add_dm(&self, dm: &str, name: &str, uuid: &str, members: &[&str]) {
        let dir = self.sys().join("devices/virtual/block").join(dm);
        fs::create_dir_all(dir.join("dm")).unwrap();
        fs::create_dir_all(dir.join("slaves")).unwrap();
        fs::create_dir_all(dir.join("holders")).unwrap();
        fs::write(dir.join("dev"), "253:0\n").unwrap();
        fs::write(dir.join("dm/name"), format!("{name}\n")).unwrap();
        fs::write(dir.join("dm/uuid"), format!("{uuid}\n")).unwrap();
        link(&dir, &self.sys().join("class/block").join(dm));
        for m in members {
            let blk = self.blk(m);
            link(&dir, &blk.join("holders").join(dm));
            link(&blk, &dir.join("slaves").join(m));
        }
    }

    /// A partition `part` of `disk` held by `holder` (LVM on sdc1).
    fn add_partition_holder(&self, disk: &str, part: &str, holder: &str) {
        let p = self.blk(disk).join(part);
        fs::create_dir_all(p.join("holders")).unwrap();
        fs::write(p.join("partition"), "1\n").unwrap();
        fs::write(p.join("dev"), "8:33\n").unwrap();
        let dir = self.sys().join("devices/virtual/block").join(holder);
        fs::create_dir_all(dir.join("dm")).unwrap();
        fs::write(dir.join("dm/uuid"), "LVM-xyz\n").unwrap();
        link(&dir, &p.join("holders").join(holder));
    }
}

/// sdc (1:0:0:0, 8:32) and sdd (2:0:0:0, 8:48), the two paths of mpatha (dm-0).
fn two_path_map() -> Fixture {
    let fx = Fixture::new();
    fx.add_disk("sdc", "1:0:0:0", "8:32", Some(WWID));
    fx.add_disk("sdd", "2:0:0:0", "8:48", Some(WWID));
    fx.add_dm("dm-0", "mpatha", MAP_UUID, &["sdc", "sdd"]);
    fx
}

fn sdc() -> PathIdentity {
    PathIdentity {
        name: "sdc".into(),
        dev_t: "8:32".parse().unwrap(),
        hctl: "1:0:0:0".parse().unwrap(),
        vendor: "LIO-ORG".into(),
        model: "disk0".into(),
        wwid: Some(WWID.into()),
        map: Some(MapRef {
            dm: "dm-0".into(),
            name: "mpatha".into(),
            uuid: MAP_UUID.into(),
        }),
    }
}

fn config() -> PurgerConfig {
    PurgerConfig {
        confirmations: 2,
        confirmation_interval_ms: 5,
        tur_timeout_ms: 1000,
        require_multipath: true,
        allow_last_path: false,
        dry_run: false,
    }
}

// ---------------------------------------------------------------- fakes

fn sense(key: u8, asc: u8, ascq: u8) -> TurEvidence {
    let mut s = vec![0u8; 18];
    s[0] = 0x70;
    s[2] = key;
    s[7] = 10;
    s[12] = asc;
    s[13] = ascq;
    TurEvidence {
        scsi_status: 0x02,
        driver_status: 0x08,
        sense: s,
        duration_ms: 1,
        ..Default::default()
    }
}

fn disconnected() -> TurEvidence {
    sense(5, 0x25, 0)
}

fn up() -> TurEvidence {
    TurEvidence {
        duration_ms: 1,
        ..Default::default()
    }
}

/// A device by devnode name: scripted TUR answers, then a default; every fd is /dev/null.
#[derive(Default)]
struct FakeProber {
    script: Mutex<HashMap<String, VecDeque<TurEvidence>>>,
    default: Mutex<HashMap<String, TurEvidence>>,
    open_errno: Mutex<HashMap<String, i32>>,
    vpd: Mutex<Option<Vec<u8>>>,
    fd_names: Mutex<HashMap<i32, String>>,
    /// "open sdc 8:32", "tur sdc", "vpd sdc", in order.
    log: Mutex<Vec<String>>,
    /// Told the devnode name of every TUR, before it is answered.
    tur_tx: Mutex<Option<mpsc::Sender<String>>>,
    /// The next TUR on this devnode waits until the test sends (or drops the sender).
    gate: Mutex<Option<(String, mpsc::Receiver<()>)>>,
}

impl FakeProber {
    fn set(&self, dev: &str, ev: TurEvidence) {
        self.default.lock().unwrap().insert(dev.into(), ev);
    }

    fn script(&self, dev: &str, evs: Vec<TurEvidence>) {
        self.script.lock().unwrap().insert(dev.into(), evs.into());
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn turs_on(&self, dev: &str) -> usize {
        let want = format!("tur {dev}");
        self.log().iter().filter(|l| **l == want).count()
    }

    fn opens(&self) -> usize {
        self.log().iter().filter(|l| l.starts_with("open ")).count()
    }

    fn name_of(&self, fd: BorrowedFd<'_>) -> String {
        self.fd_names
            .lock()
            .unwrap()
            .get(&fd.as_raw_fd())
            .cloned()
            .unwrap_or_else(|| "<not opened by the prober>".into())
    }
}

impl Prober for FakeProber {
    fn open(&self, devnode: &Path, dev_t: DevT) -> io::Result<OwnedFd> {
        let name = devnode.file_name().unwrap().to_string_lossy().to_string();
        self.log
            .lock()
            .unwrap()
            .push(format!("open {name} {dev_t}"));
        if let Some(e) = self.open_errno.lock().unwrap().get(&name) {
            return Err(io::Error::from_raw_os_error(*e));
        }
        let fd: OwnedFd = fs::File::open("/dev/null")?.into();
        self.fd_names.lock().unwrap().insert(fd.as_raw_fd(), name);
        Ok(fd)
    }

    fn tur(&self, fd: BorrowedFd<'_>, _timeout: Duration) -> TurEvidence {
        let name = self.name_of(fd);
        self.log.lock().unwrap().push(format!("tur {name}"));
        if let Some(tx) = &*self.tur_tx.lock().unwrap() {
            let _ = tx.send(name.clone());
        }
        let gate = {
            let mut g = self.gate.lock().unwrap();
            match g.take() {
                Some((dev, rx)) if dev == name => Some(rx),
                other => {
                    *g = other;
                    None
                }
            }
        };
        if let Some(rx) = gate {
            let _ = rx.recv();
        }
        if let Some(ev) = self
            .script
            .lock()
            .unwrap()
            .get_mut(&name)
            .and_then(|q| q.pop_front())
        {
            return ev;
        }
        self.default
            .lock()
            .unwrap()
            .get(&name)
            .cloned()
            .unwrap_or(TurEvidence {
                errno: Some(libc::EIO),
                ..Default::default()
            })
    }

    fn vpd83(&self, fd: BorrowedFd<'_>, _timeout: Duration) -> io::Result<Vec<u8>> {
        let name = self.name_of(fd);
        self.log.lock().unwrap().push(format!("vpd {name}"));
        self.vpd
            .lock()
            .unwrap()
            .clone()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EIO))
    }
}

/// fstat that says whatever the test wants.
struct FakeFds(FdStat);

impl FdInspector for FakeFds {
    fn stat(&self, _fd: BorrowedFd<'_>) -> io::Result<FdStat> {
        Ok(self.0)
    }
}

fn block(dev: &str) -> Arc<dyn FdInspector> {
    Arc::new(FakeFds(FdStat {
        block_device: true,
        rdev: dev.parse().unwrap(),
    }))
}

/// Records every write; like the kernel, makes the device's sysfs entries disappear.
#[derive(Default)]
struct FakeWriter {
    writes: Mutex<Vec<(PathBuf, Vec<u8>)>>,
    remove_on_write: Mutex<Vec<PathBuf>>,
    fail_errno: Mutex<Option<i32>>,
}

impl FakeWriter {
    fn writes(&self) -> Vec<(PathBuf, Vec<u8>)> {
        self.writes.lock().unwrap().clone()
    }
}

impl SysfsWriter for FakeWriter {
    fn write_attr(&self, path: &Path, value: &[u8]) -> io::Result<()> {
        self.writes
            .lock()
            .unwrap()
            .push((path.to_path_buf(), value.to_vec()));
        if let Some(e) = *self.fail_errno.lock().unwrap() {
            return Err(io::Error::from_raw_os_error(e));
        }
        for p in self.remove_on_write.lock().unwrap().iter() {
            fs::remove_file(p)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- harness

struct Harness {
    fx: Fixture,
    prober: Arc<FakeProber>,
    writer: Arc<FakeWriter>,
    sup: Channel,
    thread: Option<JoinHandle<Result<(), PurgerError>>>,
}

impl Harness {
    /// The two-path map, sdc disconnected, sdd up, the passed fd block device 8:32, and the
    /// writer removing sdc's entries like the kernel. Checks `Ready` comes first.
    fn start() -> Harness {
        Harness::start_with(two_path_map(), block("8:32"))
    }

    fn start_with(fx: Fixture, fds: Arc<dyn FdInspector>) -> Harness {
        let prober = Arc::new(FakeProber::default());
        prober.set("sdc", disconnected());
        prober.set("sdd", up());
        let writer = Arc::new(FakeWriter::default());
        writer
            .remove_on_write
            .lock()
            .unwrap()
            .extend([fx.dev_entry("8:32"), fx.sys().join("class/block/sdc")]);
        let backend = Backend {
            prober: prober.clone(),
            fds,
            writer: writer.clone(),
            removal_timeout: Duration::from_millis(100),
        };
        let (sup, purger) = Channel::pair().unwrap();
        // A broken purger must fail the test, not hang it.
        setsockopt(&sup, ReceiveTimeout, &TimeVal::new(10, 0)).unwrap();
        let roots = fx.roots();
        let thread = std::thread::spawn(move || run_with(purger, roots, backend));
        let mut h = Harness {
            fx,
            prober,
            writer,
            sup,
            thread: Some(thread),
        };
        match h.recv() {
            PurgerMsg::Ready(hello) => assert_eq!(hello.pid, std::process::id()),
            other => panic!("first message must be Ready, got {other:?}"),
        }
        h
    }

    fn recv(&mut self) -> PurgerMsg {
        self.sup.recv::<PurgerMsg>().expect("a purger message").msg
    }

    fn send(&self, msg: &ToPurger) {
        self.sup.send(msg, None).unwrap();
    }

    fn configure(&self, c: PurgerConfig) {
        self.send(&ToPurger::Configure(c));
    }

    /// Sends `Purge` with an fd (/dev/null; the fake fstat says what it is).
    fn purge(&self, id: u64, identity: PathIdentity) {
        let f = fs::File::open("/dev/null").unwrap();
        self.sup
            .send(
                &ToPurger::Purge(PurgeRequest { id, identity }),
                Some(f.as_fd()),
            )
            .unwrap();
    }

    fn decide(&self, id: u64, proceed: bool) {
        self.send(&ToPurger::Decision { id, proceed });
    }

    fn intent(&mut self, want_id: u64) -> PurgeEvidence {
        match self.recv() {
            PurgerMsg::Intent { id, evidence } => {
                assert_eq!(id, want_id);
                evidence
            }
            other => panic!("expected Intent, got {other:?}"),
        }
    }

    fn outcome(&mut self, want_id: u64) -> (PurgeOutcome, PurgeEvidence) {
        match self.recv() {
            PurgerMsg::Outcome {
                id,
                outcome,
                evidence,
            } => {
                assert_eq!(id, want_id);
                (outcome, evidence)
            }
            other => panic!("expected Outcome, got {other:?}"),
        }
    }

    fn refused(&mut self, want_id: u64) -> (String, PurgeEvidence) {
        match self.outcome(want_id) {
            (PurgeOutcome::Refused(why), ev) => (why, ev),
            other => panic!("expected Refused, got {other:?}"),
        }
    }

    /// Joins the purger thread; one still running after 10 s fails the test.
    fn join(&mut self) -> Result<(), PurgerError> {
        let t = self.thread.take().unwrap();
        let t0 = Instant::now();
        while !t.is_finished() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "the purger did not exit"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        t.join().unwrap()
    }

    /// The purger must end now, saying nothing more: its end of the channel closes. Checked
    /// before joining, so that a purger that goes on fails the test instead of hanging it.
    fn exits(&mut self) -> Result<(), PurgerError> {
        match self.sup.recv::<PurgerMsg>() {
            Err(mpsup_ipc::IpcError::Closed) => {}
            other => panic!("expected the purger to exit, got {other:?}"),
        }
        self.join()
    }

    fn shutdown(mut self) {
        self.send(&ToPurger::Shutdown);
        self.exits().unwrap();
    }

    fn delete_attr(&self, hctl: &str) -> PathBuf {
        fs::canonicalize(self.fx.sdev_dir(hctl))
            .unwrap()
            .join("delete")
    }
}

fn assert_contains(s: &str, part: &str) {
    assert!(s.contains(part), "{s:?} does not contain {part:?}");
}

// ---------------------------------------------------------------- the happy path and step 7

#[test]
fn happy_path_deletes_once_with_1_at_the_scsi_device_delete_attribute() {
    let mut h = Harness::start();
    h.configure(config());
    h.purge(1, sdc());
    let ev = h.intent(1);
    assert_eq!(ev.turs, vec![disconnected(), disconnected()]);
    assert_eq!(ev.holders, ["dm-0"]);
    assert_eq!(ev.usable_paths_in_map, Some(2), "sdd and this path");
    assert!(
        h.writer.writes().is_empty(),
        "nothing written before Decision"
    );
    h.decide(1, true);
    let (outcome, ev2) = h.outcome(1);
    assert_eq!(outcome, PurgeOutcome::Deleted);
    assert_eq!(ev2, ev);
    assert_eq!(
        h.writer.writes(),
        vec![(h.delete_attr("1:0:0:0"), b"1".to_vec())]
    );
    assert!(!h.fx.dev_entry("8:32").exists());
    // Our own fd, opened through the devnode, carried every TUR on sdc (the passed fd none);
    // sdd got one fresh probe through its own open.
    assert_eq!(
        h.prober.log(),
        [
            "open sdc 8:32",
            "open sdd 8:48",
            "tur sdd",
            "tur sdc",
            "tur sdc"
        ]
    );
    h.shutdown();
}

#[test]
fn dry_run_passes_every_check_and_writes_nothing() {
    let mut h = Harness::start();
    h.configure(PurgerConfig {
        dry_run: true,
        ..config()
    });
    h.purge(1, sdc());
    h.intent(1);
    h.decide(1, true);
    assert_eq!(h.outcome(1).0, PurgeOutcome::WouldDelete);
    assert!(h.writer.writes().is_empty());
    assert!(h.fx.dev_entry("8:32").exists());
    h.shutdown();
}

#[test]
fn abort_writes_nothing() {
    let mut h = Harness::start();
    h.configure(config());
    h.purge(1, sdc());
    h.intent(1);
    h.decide(1, false);
    assert_eq!(h.outcome(1).0, PurgeOutcome::Aborted);
    assert!(h.writer.writes().is_empty());
    h.shutdown();
}

#[test]
fn a_request_resent_after_the_deletion_is_vanished() {
    let mut h = Harness::start();
    h.configure(config());
    h.purge(1, sdc());
    h.intent(1);
    h.decide(1, true);
    assert_eq!(h.outcome(1).0, PurgeOutcome::Deleted);
    // As after a purger restart: the same request again, with the (still open) checker fd.
    h.purge(1, sdc());
    assert_eq!(h.outcome(1).0, PurgeOutcome::Vanished);
    assert_eq!(h.writer.writes().len(), 1);
    h.shutdown();
}

#[test]
fn the_last_moment_check_catches_a_device_gone_or_changed_meanwhile() {
    // Gone while the supervisor recorded the intent.
    let mut h = Harness::start();
    h.configure(config());
    h.purge(1, sdc());
    h.intent(1);
    fs::remove_file(h.fx.dev_entry("8:32")).unwrap();
    h.decide(1, true);
    assert_eq!(h.outcome(1).0, PurgeOutcome::Vanished);
    assert!(h.writer.writes().is_empty());
    h.shutdown();

    // Another LU behind the same name and dev_t.
    let mut h = Harness::start();
    h.configure(config());
    h.purge(1, sdc());
    h.intent(1);
    fs::write(h.fx.sdev_dir("1:0:0:0").join("wwid"), "naa.600140599\n").unwrap();
    h.decide(1, true);
    let (why, _) = h.refused(1);
    assert_contains(&why, "dev_t 8:32 now belongs to another device");
    assert_contains(&why, "WWID naa.600140599 (expected naa.6001405abc)");
    assert!(h.writer.writes().is_empty());
    h.shutdown();
}

#[test]
fn a_failed_write_is_failed_with_its_errno() {
    let mut h = Harness::start();
    *h.writer.fail_errno.lock().unwrap() = Some(libc::EACCES);
    h.configure(config());
    h.purge(1, sdc());
    h.intent(1);
    h.decide(1, true);
    match h.outcome(1).0 {
        PurgeOutcome::Failed(why) => {
            assert_contains(&why, "writing 1 to");
            assert_contains(&why, "os error 13");
        }
        other => panic!("{other:?}"),
    }
    h.shutdown();
}

#[test]
fn a_device_still_there_after_delete_is_failed_within_the_deadline() {
    let mut h = Harness::start();
    h.writer.remove_on_write.lock().unwrap().clear();
    h.configure(config());
    h.purge(1, sdc());
    h.intent(1);
    let t0 = Instant::now();
    h.decide(1, true);
    match h.outcome(1).0 {
        PurgeOutcome::Failed(why) => assert_contains(&why, "still present after delete"),
        other => panic!("{other:?}"),
    }
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert_eq!(h.writer.writes().len(), 1);
    h.shutdown();
}

// ---------------------------------------------------------------- refusals, steps 1-3

#[test]
fn refuses_a_passed_fd_that_is_not_a_block_device() {
    // The real fstat on /dev/null, a character device.
    let mut h = Harness::start_with(two_path_map(), Arc::new(Fstat));
    h.configure(config());
    h.purge(1, sdc());
    let (why, _) = h.refused(1);
    assert_contains(&why, "not a block device");
    assert_eq!(h.prober.opens(), 0);
    h.shutdown();
}

#[test]
fn refuses_a_passed_fd_of_another_dev_t() {
    let mut h = Harness::start_with(two_path_map(), block("8:48"));
    h.configure(config());
    h.purge(1, sdc());
    let (why, _) = h.refused(1);
    assert_contains(&why, "is block device 8:48, not 8:32");
    assert_eq!(h.prober.opens(), 0);
    h.shutdown();
}

#[test]
fn refuses_when_the_dev_t_now_belongs_to_another_device() {
    // The name-reuse case: 8:32 is now sde, another LU at another address.
    let fx = Fixture::new();
    fx.add_disk("sde", "3:0:0:4", "8:32", Some("naa.600140577"));
    fx.add_disk("sdd", "2:0:0:0", "8:48", Some(WWID));
    fx.add_dm("dm-0", "mpatha", MAP_UUID, &["sde", "sdd"]);
    let mut h = Harness::start_with(fx, block("8:32"));
    h.configure(config());
    h.purge(1, sdc());
    let (why, _) = h.refused(1);
    assert_contains(&why, "dev_t 8:32 now belongs to another device");
    assert_contains(&why, "name sde (expected sdc)");
    assert_contains(&why, "H:C:T:L 3:0:0:4 (expected 1:0:0:0)");
    assert_eq!(h.prober.opens(), 0);
    h.shutdown();
}

#[test]
fn vanished_when_nothing_is_at_the_dev_t() {
    let fx = two_path_map();
    fs::remove_file(fx.dev_entry("8:32")).unwrap();
    let mut h = Harness::start_with(fx, block("8:32"));
    h.configure(config());
    h.purge(1, sdc());
    assert_eq!(h.outcome(1).0, PurgeOutcome::Vanished);
    assert_eq!(h.prober.opens(), 0);
    h.shutdown();
}

#[test]
fn refuses_when_the_devnode_is_now_another_device() {
    let mut h = Harness::start();
    // What SgIoProber::open says when st_rdev differs.
    h.prober
        .open_errno
        .lock()
        .unwrap()
        .insert("sdc".into(), libc::ESTALE);
    h.configure(config());
    h.purge(1, sdc());
    let (why, _) = h.refused(1);
    assert_contains(&why, "is no longer block device 8:32");
    assert_eq!(h.prober.turs_on("sdc"), 0);
    h.shutdown();
}

#[test]
fn a_wwid_that_came_from_vpd_is_reverified_through_the_device() {
    const NAA: [u8; 16] = [
        0x60, 0x01, 0x40, 0x5a, 0xbc, 0xde, 0xf0, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0,
        0x01,
    ];
    let mut page = vec![0x00, 0x83, 0x00, 20, 0x01, 0x03, 0x00, 16];
    page.extend_from_slice(&NAA);
    let want = PathIdentity {
        wwid: Some("naa.6001405abcdef0123456789abcdef001".into()),
        ..sdc()
    };
    let no_sysfs_wwid = || {
        let fx = Fixture::new();
        fx.add_disk("sdc", "1:0:0:0", "8:32", None);
        fx.add_disk("sdd", "2:0:0:0", "8:48", None);
        fx.add_dm("dm-0", "mpatha", MAP_UUID, &["sdc", "sdd"]);
        fx
    };

    let mut h = Harness::start_with(no_sysfs_wwid(), block("8:32"));
    *h.prober.vpd.lock().unwrap() = Some(page);
    h.configure(config());
    h.purge(1, want.clone());
    h.intent(1);
    assert!(h.prober.log().contains(&"vpd sdc".to_string()));
    h.decide(1, true);
    assert_eq!(h.outcome(1).0, PurgeOutcome::Deleted);
    h.shutdown();

    // The device no longer answers VPD 0x83 (an unmapped LU usually does not): refuse.
    let mut h = Harness::start_with(no_sysfs_wwid(), block("8:32"));
    h.configure(config());
    h.purge(1, want);
    let (why, _) = h.refused(1);
    assert_contains(&why, "cannot be re-verified");
    h.shutdown();
}

// ---------------------------------------------------------------- refusals, step 4

#[test]
fn refuses_a_path_in_no_multipath_map() {
    let fx = Fixture::new();
    fx.add_disk("sdc", "1:0:0:0", "8:32", Some(WWID));
    let mut h = Harness::start_with(fx, block("8:32"));
    h.configure(config());
    h.purge(1, sdc());
    let (why, ev) = h.refused(1);
    assert_eq!(why, "not in a dm-multipath map (no holders)");
    assert!(ev.holders.is_empty());
    assert_eq!(h.prober.turs_on("sdc"), 0);
    h.shutdown();

    // Held, but by LVM, not dm-multipath.
    let fx = Fixture::new();
    fx.add_disk("sdc", "1:0:0:0", "8:32", Some(WWID));
    fx.add_dm("dm-3", "vg-lv", "LVM-abc", &["sdc"]);
    let mut h = Harness::start_with(fx, block("8:32"));
    h.configure(config());
    h.purge(1, sdc());
    let (why, ev) = h.refused(1);
    assert_eq!(why, "not in a dm-multipath map (held by dm-3)");
    assert_eq!(ev.holders, ["dm-3"]);
    h.shutdown();
}

#[test]
fn without_require_multipath_and_no_holder_there_is_no_last_path_check() {
    let fx = Fixture::new();
    fx.add_disk("sdc", "1:0:0:0", "8:32", Some(WWID));
    let mut h = Harness::start_with(fx, block("8:32"));
    h.configure(PurgerConfig {
        require_multipath: false,
        ..config()
    });
    h.purge(1, PathIdentity { map: None, ..sdc() });
    let ev = h.intent(1);
    assert_eq!(ev.usable_paths_in_map, None);
    assert!(ev.holders.is_empty());
    h.decide(1, true);
    assert_eq!(h.outcome(1).0, PurgeOutcome::Deleted);
    h.shutdown();
}

#[test]
fn without_require_multipath_a_direct_holder_makes_this_its_only_path() {
    let setup = || {
        let fx = Fixture::new();
        fx.add_disk("sdc", "1:0:0:0", "8:32", Some(WWID));
        fx.add_partition_holder("sdc", "sdc1", "dm-5");
        fx
    };
    let mut h = Harness::start_with(setup(), block("8:32"));
    h.configure(PurgerConfig {
        require_multipath: false,
        ..config()
    });
    h.purge(1, PathIdentity { map: None, ..sdc() });
    let (why, ev) = h.refused(1);
    assert_contains(
        &why,
        "held by dm-5 (not dm-multipath), for which it is the only path",
    );
    assert_eq!(ev.holders, ["dm-5"]);
    h.shutdown();

    let mut h = Harness::start_with(setup(), block("8:32"));
    h.configure(PurgerConfig {
        require_multipath: false,
        allow_last_path: true,
        ..config()
    });
    h.purge(1, PathIdentity { map: None, ..sdc() });
    assert_eq!(h.intent(1).holders, ["dm-5"]);
    h.shutdown();
}

#[test]
fn a_dead_sibling_still_counts_as_a_path_so_all_but_the_last_can_go() {
    // The whole LUN unmapped from the host: the other path is disconnected too. This one may
    // go (the map keeps sdd); the evidence says no other path answers.
    let mut h = Harness::start();
    h.prober.set("sdd", disconnected());
    h.configure(config());
    h.purge(1, sdc());
    let ev = h.intent(1);
    assert_eq!(ev.usable_paths_in_map, Some(1));
    assert_eq!(ev.holders, ["dm-0"]);
    assert_eq!(h.prober.turs_on("sdd"), 1);
    h.decide(1, false);
    assert_eq!(h.outcome(1).0, PurgeOutcome::Aborted);
    h.shutdown();

    // A member that cannot even be opened is still a path of the map.
    let mut h = Harness::start();
    h.prober
        .open_errno
        .lock()
        .unwrap()
        .insert("sdd".into(), libc::ENXIO);
    h.configure(config());
    h.purge(1, sdc());
    assert_eq!(h.intent(1).usable_paths_in_map, Some(1));
    h.decide(1, false);
    assert_eq!(h.outcome(1).0, PurgeOutcome::Aborted);
    h.shutdown();
}

#[test]
fn refuses_the_last_path_of_a_map() {
    let one_path_map = || {
        let fx = Fixture::new();
        fx.add_disk("sdc", "1:0:0:0", "8:32", Some(WWID));
        fx.add_dm("dm-0", "mpatha", MAP_UUID, &["sdc"]);
        fx
    };
    let mut h = Harness::start_with(one_path_map(), block("8:32"));
    h.configure(config());
    h.purge(1, sdc());
    let (why, ev) = h.refused(1);
    assert_eq!(
        why,
        "last path of map mpatha (dm-0): no other path left in the map"
    );
    assert_eq!(ev.usable_paths_in_map, Some(1));
    assert!(
        ev.turs.is_empty(),
        "no confirmation before the holders pass"
    );
    h.shutdown();

    let mut h = Harness::start_with(one_path_map(), block("8:32"));
    h.configure(PurgerConfig {
        allow_last_path: true,
        ..config()
    });
    h.purge(1, sdc());
    assert_eq!(h.intent(1).usable_paths_in_map, Some(1));
    h.shutdown();
}

#[test]
fn standby_and_transitioning_members_are_usable() {
    for (ev, what) in [
        (sense(2, 4, 0x0b), "standby"),
        (sense(2, 4, 0x0a), "transitioning"),
    ] {
        let mut h = Harness::start();
        h.prober.set("sdd", ev);
        h.configure(config());
        h.purge(1, sdc());
        assert_eq!(h.intent(1).usable_paths_in_map, Some(2), "{what}");
        h.decide(1, false);
        assert_eq!(h.outcome(1).0, PurgeOutcome::Aborted);
        h.shutdown();
    }
}

// ---------------------------------------------------------------- refusals, step 5

#[test]
fn one_confirmation_not_disconnected_refuses() {
    let mut h = Harness::start();
    h.prober.script("sdc", vec![disconnected(), up()]);
    h.configure(config());
    h.purge(1, sdc());
    let (why, ev) = h.refused(1);
    assert_eq!(why, "path answered up on confirmation 2 of 2");
    assert_eq!(ev.turs, vec![disconnected(), up()]);
    assert!(h.writer.writes().is_empty());
    h.shutdown();

    let mut h = Harness::start();
    h.prober.script("sdc", vec![sense(2, 4, 1)]);
    h.configure(config());
    h.purge(1, sdc());
    assert_eq!(
        h.refused(1).0,
        "path answered down (sense 2/04/01) on confirmation 1 of 2"
    );
    h.shutdown();
}

#[test]
fn unit_attention_is_retried_within_one_confirmation() {
    let mut h = Harness::start();
    h.prober
        .script("sdc", vec![sense(6, 0x29, 0), disconnected()]);
    h.configure(config());
    h.purge(1, sdc());
    let ev = h.intent(1);
    assert_eq!(ev.turs.len(), 2);
    assert_eq!(ev.turs[0].unit_attention_retries, 1);
    assert_eq!(h.prober.turs_on("sdc"), 3);
    h.decide(1, false);
    h.outcome(1);
    h.shutdown();
}

// ---------------------------------------------------------------- resolve

#[test]
fn resolve_answers_vanished_or_failed_and_never_deletes() {
    let mut h = Harness::start();
    h.configure(config());
    let resolve = |h: &mut Harness, identity: PathIdentity| {
        h.send(&ToPurger::Resolve(PurgeRequest { id: 9, identity }));
        h.outcome(9).0
    };
    assert_eq!(
        resolve(&mut h, sdc()),
        PurgeOutcome::Failed("device still present; the deletion did not happen".into())
    );
    // Another identity at the dev_t: ours is gone.
    let other = PathIdentity {
        wwid: Some("naa.6001405ffff".into()),
        ..sdc()
    };
    assert_eq!(resolve(&mut h, other), PurgeOutcome::Vanished);
    fs::remove_file(h.fx.dev_entry("8:32")).unwrap();
    assert_eq!(resolve(&mut h, sdc()), PurgeOutcome::Vanished);
    assert!(h.writer.writes().is_empty());
    assert_eq!(h.prober.opens(), 0);
    h.shutdown();
}

// ---------------------------------------------------------------- protocol

#[test]
fn a_request_before_configure_is_a_protocol_error() {
    let mut h = Harness::start();
    h.purge(1, sdc());
    match h.exits() {
        Err(PurgerError::Protocol(why)) => assert_contains(&why, "before Configure"),
        other => panic!("{other:?}"),
    }
    assert_eq!(h.prober.opens(), 0);
}

#[test]
fn a_decision_with_a_wrong_id_is_a_protocol_error() {
    let mut h = Harness::start();
    h.configure(config());
    h.purge(1, sdc());
    h.intent(1);
    h.decide(2, true);
    match h.exits() {
        Err(PurgerError::Protocol(why)) => assert_contains(&why, "Decision for request 2"),
        other => panic!("{other:?}"),
    }
    assert!(h.writer.writes().is_empty());
}

#[test]
fn a_decision_outside_an_intent_is_a_protocol_error() {
    let mut h = Harness::start();
    h.configure(config());
    h.decide(1, true);
    assert!(matches!(h.exits(), Err(PurgerError::Protocol(_))));
}

#[test]
fn a_second_request_during_one_is_a_protocol_error() {
    let mut h = Harness::start();
    h.configure(config());
    h.purge(1, sdc());
    h.intent(1);
    h.send(&ToPurger::Resolve(PurgeRequest {
        id: 2,
        identity: sdc(),
    }));
    assert!(matches!(h.exits(), Err(PurgerError::Protocol(_))));
    assert!(h.writer.writes().is_empty());
}

#[test]
fn shutdown_mid_confirmation_is_heard_at_once() {
    let mut h = Harness::start();
    let (tx, rx) = mpsc::channel();
    *h.prober.tur_tx.lock().unwrap() = Some(tx);
    h.configure(PurgerConfig {
        confirmation_interval_ms: 60_000,
        ..config()
    });
    h.purge(1, sdc());
    // The first confirmation went out; the purger now waits a minute for the second.
    while rx.recv_timeout(Duration::from_secs(10)).unwrap() != "sdc" {}
    let t0 = Instant::now();
    h.send(&ToPurger::Shutdown);
    let (why, ev) = h.refused(1);
    assert_eq!(why, SHUTTING_DOWN);
    assert_eq!(ev.turs.len(), 1);
    h.exits().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert_eq!(h.prober.turs_on("sdc"), 1);
}

#[test]
fn shutdown_between_steps_is_heard_before_the_next_step() {
    let mut h = Harness::start();
    let (tx, rx) = mpsc::channel();
    *h.prober.tur_tx.lock().unwrap() = Some(tx);
    let (release, gate) = mpsc::channel();
    *h.prober.gate.lock().unwrap() = Some(("sdd".into(), gate));
    h.configure(config());
    h.purge(1, sdc());
    // The map member's probe (step 4) is in progress; Shutdown arrives meanwhile.
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), "sdd");
    h.send(&ToPurger::Shutdown);
    release.send(()).unwrap();
    let (why, ev) = h.refused(1);
    assert_eq!(why, SHUTTING_DOWN);
    assert_eq!(ev.holders, ["dm-0"]);
    h.exits().unwrap();
    assert_eq!(h.prober.turs_on("sdc"), 0, "no confirmation after Shutdown");
}

#[test]
fn shutdown_while_awaiting_the_decision_exits_without_an_outcome() {
    let mut h = Harness::start();
    h.configure(config());
    h.purge(1, sdc());
    h.intent(1);
    h.send(&ToPurger::Shutdown);
    h.exits().unwrap();
    assert!(h.writer.writes().is_empty());
}

#[test]
fn the_supervisor_closing_the_channel_ends_the_helper_cleanly() {
    // Idle.
    let mut h = Harness::start();
    h.configure(config());
    let (sup, _) = Channel::pair().unwrap();
    drop(std::mem::replace(&mut h.sup, sup));
    h.join().unwrap();

    // In the middle of the confirmations.
    let mut h = Harness::start();
    let (tx, rx) = mpsc::channel();
    *h.prober.tur_tx.lock().unwrap() = Some(tx);
    h.configure(PurgerConfig {
        confirmation_interval_ms: 60_000,
        ..config()
    });
    h.purge(1, sdc());
    while rx.recv_timeout(Duration::from_secs(10)).unwrap() != "sdc" {}
    let (sup, _) = Channel::pair().unwrap();
    drop(std::mem::replace(&mut h.sup, sup));
    h.join().unwrap();
    assert!(h.writer.writes().is_empty());
}

#[test]
fn shutdown_when_idle_ends_the_helper_cleanly() {
    let h = Harness::start();
    h.shutdown();
}

#[test]
fn a_policy_change_during_a_request_refuses_it_and_an_unchanged_one_does_not() {
    let mut h = Harness::start();
    h.configure(config());
    h.purge(1, sdc());
    h.intent(1);
    h.configure(config());
    h.decide(1, true);
    assert_eq!(h.outcome(1).0, PurgeOutcome::Deleted);
    h.shutdown();

    let mut h = Harness::start();
    h.configure(config());
    h.purge(1, sdc());
    h.intent(1);
    h.configure(PurgerConfig {
        dry_run: true,
        ..config()
    });
    h.decide(1, true);
    assert_eq!(h.outcome(1).0, PurgeOutcome::Refused(RECONFIGURED.into()));
    assert!(h.writer.writes().is_empty());
    // The new policy is in force for the next request.
    h.purge(2, sdc());
    h.intent(2);
    h.decide(2, true);
    assert_eq!(h.outcome(2).0, PurgeOutcome::WouldDelete);
    h.shutdown();
}

// ---------------------------------------------------------------- real backends, sysfs

#[test]
fn the_real_writer_writes_one_buffer_and_never_creates_or_follows() {
    let dir = tempfile::tempdir().unwrap();
    let attr = dir.path().join("delete");
    fs::write(&attr, "").unwrap();
    KernelSysfs.write_attr(&attr, b"1").unwrap();
    assert_eq!(fs::read(&attr).unwrap(), b"1");

    let missing = dir.path().join("nothing");
    let e = KernelSysfs.write_attr(&missing, b"1").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
    assert!(!missing.exists());

    let sneaky = dir.path().join("sneaky");
    symlink(&attr, &sneaky).unwrap();
    let e = KernelSysfs.write_attr(&sneaky, b"1").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
}

#[test]
fn the_real_fstat_tells_block_devices_from_others() {
    let null = fs::File::open("/dev/null").unwrap();
    let st = Fstat.stat(null.as_fd()).unwrap();
    assert!(!st.block_device);
    assert_eq!(st.rdev, DevT { major: 1, minor: 3 });
    let f = tempfile::tempfile().unwrap();
    assert!(!Fstat.stat(f.as_fd()).unwrap().block_device);
}

#[test]
fn the_scsi_device_directory_must_be_named_after_the_hctl_and_hold_delete() {
    let fx = two_path_map();
    let dev_t: DevT = "8:32".parse().unwrap();
    let hctl: Hctl = "1:0:0:0".parse().unwrap();
    assert_eq!(
        sysfs::scsi_device_dir(&fx.sys(), dev_t, hctl).unwrap(),
        fs::canonicalize(fx.sdev_dir("1:0:0:0")).unwrap()
    );
    let wrong: Hctl = "1:0:0:1".parse().unwrap();
    assert_contains(
        &sysfs::scsi_device_dir(&fx.sys(), dev_t, wrong).unwrap_err(),
        "not to the scsi_device 1:0:0:1",
    );
    fs::remove_file(fx.sdev_dir("1:0:0:0").join("delete")).unwrap();
    assert_contains(
        &sysfs::scsi_device_dir(&fx.sys(), dev_t, hctl).unwrap_err(),
        "delete",
    );
}

#[test]
fn a_partition_at_the_dev_t_is_not_the_disk() {
    let fx = two_path_map();
    let blk = fx.blk("sdc");
    fx.add_partition_holder("sdc", "sdc1", "dm-5");
    link(&blk.join("sdc1"), &fx.dev_entry("8:33"));
    assert_eq!(
        sysfs::read_live(&fx.sys(), "8:33".parse().unwrap()).unwrap(),
        sysfs::Live::NotScsiDisk {
            name: "sdc1".into()
        }
    );
}

#[test]
fn an_unreadable_holder_is_an_error_not_an_absence() {
    let fx = two_path_map();
    fs::remove_file(fx.sys().join("devices/virtual/block/dm-0/dm/uuid")).unwrap();
    assert!(sysfs::read_holders(&fx.dev_entry("8:32")).is_err());
}

#[test]
fn descriptions_carry_the_detail() {
    use mpsup_ipc::{DownReason, PathState};
    assert_eq!(describe(&PathState::Up), "up");
    assert_eq!(
        describe(&PathState::Down(DownReason::HostByte(1))),
        "down (host byte 0x01)"
    );
    assert_eq!(
        describe(&PathState::Down(DownReason::Errno(libc::EIO))),
        "down (errno 5: I/O error)"
    );
}
