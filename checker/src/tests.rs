//! The whole helper loop over a real socketpair, with a fixture sysfs tree and the fake prober.

use super::*;
use crate::discovery::fixture::{disk, Disk, Sysfs};
use crate::pool::fake::{sense, Fake};
use mpsup_ipc::{DevT, PathReport, PathState};
use nix::sys::socket::{setsockopt, sockopt::ReceiveTimeout};
use nix::sys::time::TimeVal;
use std::os::fd::OwnedFd;
use std::thread::JoinHandle;

struct Harness {
    sup: Channel,
    sysfs: Sysfs,
    fake: Arc<Fake>,
    thread: Option<JoinHandle<Result<(), CheckerError>>>,
}

impl Harness {
    fn start(setup: impl FnOnce(&Sysfs, &Fake)) -> Harness {
        let sysfs = Sysfs::new();
        let fake = Arc::new(Fake::default());
        setup(&sysfs, &fake);
        let (sup, chk) = Channel::pair().unwrap();
        // A broken checker must fail the test, not hang it.
        setsockopt(&sup, ReceiveTimeout, &TimeVal::new(10, 0)).unwrap();
        let roots = Roots {
            sysfs: sysfs.root().to_path_buf(),
            dev: PathBuf::from("/devroot"),
        };
        let prober: Arc<dyn Prober> = fake.clone();
        let thread = std::thread::spawn(move || run_with(chk, roots, prober));
        Harness {
            sup,
            sysfs,
            fake,
            thread: Some(thread),
        }
    }

    fn recv(&mut self) -> (CheckerMsg, Option<OwnedFd>) {
        let r = self.sup.recv::<CheckerMsg>().expect("checker message");
        (r.msg, r.fd)
    }

    /// Next message that is not a ScanDone.
    fn recv_event(&mut self) -> (CheckerMsg, Option<OwnedFd>) {
        loop {
            let m = self.recv();
            if !matches!(m.0, CheckerMsg::ScanDone { .. }) {
                return m;
            }
        }
    }

    fn recv_scan_done(&mut self) -> u32 {
        loop {
            if let (CheckerMsg::ScanDone { paths }, _) = self.recv() {
                return paths;
            }
        }
    }

    fn configure(&mut self, interval_ms: u64) {
        let (msg, fd) = self.recv();
        assert!(matches!(msg, CheckerMsg::Ready(Hello { pid, .. }) if pid == std::process::id()));
        assert!(fd.is_none());
        let c = CheckerConfig {
            interval_ms,
            tur_timeout_ms: 2000,
            max_in_flight: 4,
        };
        self.sup.send(&ToChecker::Configure(c), None).unwrap();
    }

    fn finish(mut self) -> Result<(), CheckerError> {
        self.thread.take().unwrap().join().unwrap()
    }
}

fn report(m: &CheckerMsg) -> &PathReport {
    match m {
        CheckerMsg::Path(r) => r,
        other => panic!("expected a path report, got {other:?}"),
    }
}

#[test]
fn full_lifecycle_over_the_channel() {
    let mut h = Harness::start(|s, f| {
        s.add_disk(&Disk {
            holder: Some("dm-0"),
            ..disk("sdc", "1:0:0:0", "8:32")
        });
        s.add_disk(&disk("sdd", "1:0:0:1", "8:48"));
        f.set("/devroot/sdc", sense(5, 0x25, 0));
    });
    h.configure(200);

    // First round: both new paths (unknown), then their probe results, then ScanDone.
    let mut seen = Vec::new();
    let mut disconnected_fd = None;
    loop {
        let (msg, fd) = h.recv();
        if let CheckerMsg::ScanDone { paths } = msg {
            assert_eq!(paths, 2);
            break;
        }
        let r = report(&msg);
        if r.state == PathState::Disconnected {
            assert_eq!(r.identity.name, "sdc");
            assert_eq!(r.identity.map.as_ref().unwrap().uuid, "mpath-36001405abc");
            assert_eq!(
                crate::sense::decode(&r.evidence.sense).map(|s| (s.key, s.asc)),
                Some((5, 0x25))
            );
            disconnected_fd = Some(fd.expect("disconnected report carries the path's fd"));
        } else {
            assert!(fd.is_none());
        }
        seen.push((r.identity.name.clone(), r.state.word()));
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            ("sdc".into(), "disconnected"),
            ("sdc".into(), "unknown"),
            ("sdd".into(), "unknown"),
            ("sdd".into(), "up")
        ]
    );
    // The fd we got is a real open file (the fake's /dev/null), passed with SCM_RIGHTS.
    let st = nix::sys::stat::fstat(disconnected_fd.as_ref().unwrap()).unwrap();
    assert_eq!(st.st_mode & libc::S_IFMT, libc::S_IFCHR);

    // Nothing changed: later rounds are only ScanDone.
    assert_eq!(h.recv().0, CheckerMsg::ScanDone { paths: 2 });

    // sdd disappears from sysfs.
    h.sysfs.remove_disk("sdd", "1:0:0:1");
    let (msg, _) = h.recv_event();
    assert_eq!(
        msg,
        CheckerMsg::Gone {
            name: "sdd".into(),
            dev_t: DevT {
                major: 8,
                minor: 48
            }
        }
    );
    assert_eq!(h.recv_scan_done(), 1);

    // Resync re-reports the current state, fd included.
    h.sup.send(&ToChecker::Resync, None).unwrap();
    let (msg, fd) = h.recv_event();
    assert_eq!(report(&msg).state, PathState::Disconnected);
    assert!(fd.is_some());

    // The path comes back (LUN remapped): reported up, without fd.
    h.fake
        .set("/devroot/sdc", mpsup_ipc::TurEvidence::default());
    let (msg, fd) = h.recv_event();
    assert_eq!(report(&msg).state, PathState::Up);
    assert!(fd.is_none());

    // Each path was opened once and its fd reused for every later TUR.
    let opens = h.fake.opens.lock().unwrap().clone();
    assert_eq!(
        opens.iter().filter(|p| p.ends_with("sdc")).count(),
        1,
        "{opens:?}"
    );

    h.sup.send(&ToChecker::Shutdown, None).unwrap();
    assert!(h.finish().is_ok());
}

#[test]
fn a_hung_path_holds_neither_the_others_nor_the_rounds() {
    let mut h = Harness::start(|s, f| {
        s.add_disk(&disk("sdc", "1:0:0:0", "8:32"));
        s.add_disk(&disk("sdd", "1:0:0:1", "8:48"));
        // Kept alive in the fake until the test ends: sdd's first TUR never returns.
        std::mem::forget(f.gate("/devroot/sdd"));
    });
    h.configure(100);
    // Three ScanDones arrive although sdd's TUR from round one is still in flight.
    for _ in 0..3 {
        h.recv_scan_done();
    }
    let turs = h.fake.turs.lock().unwrap().clone();
    assert_eq!(
        turs.iter().filter(|p| p.ends_with("sdd")).count(),
        1,
        "sdd is never queued twice: {turs:?}"
    );
    assert!(turs.iter().filter(|p| p.ends_with("sdc")).count() >= 3);
    assert_eq!(*h.fake.max_concurrent_per_path.lock().unwrap(), 1);
    h.sup.send(&ToChecker::Shutdown, None).unwrap();
    assert!(h.finish().is_ok());
}

#[test]
fn offline_paths_are_reported_offline_and_still_probed() {
    let mut h = Harness::start(|s, f| {
        s.add_disk(&Disk {
            state: "transport-offline",
            ..disk("sdc", "1:0:0:0", "8:32")
        });
        f.open_errno
            .lock()
            .unwrap()
            .insert("/devroot/sdc".into(), libc::ENXIO);
    });
    h.configure(100);
    let (msg, _) = h.recv_event();
    assert_eq!(report(&msg).state, PathState::Offline);
    assert_eq!(report(&msg).device_state, "transport-offline");
    h.recv_scan_done();
    h.recv_scan_done();
    // Open is retried every round (it fails with ENXIO while offline).
    assert!(h.fake.opens.lock().unwrap().len() >= 2);
    h.sup.send(&ToChecker::Shutdown, None).unwrap();
    assert!(h.finish().is_ok());
}

#[test]
fn supervisor_closing_the_channel_is_a_clean_exit() {
    let mut h = Harness::start(|_, _| {});
    h.configure(100);
    assert_eq!(h.recv_scan_done(), 0);
    let Harness { sup, thread, .. } = h;
    drop(sup);
    assert!(thread.unwrap().join().unwrap().is_ok());
}

#[test]
fn closed_before_configure_is_a_clean_exit() {
    let h = Harness::start(|_, _| {});
    let Harness { sup, thread, .. } = h;
    drop(sup);
    assert!(thread.unwrap().join().unwrap().is_ok());
}

#[test]
fn a_garbage_frame_from_the_supervisor_is_an_error() {
    let mut h = Harness::start(|_, _| {});
    let _ = h.recv();
    h.sup.send_raw(&[0xff, 0xff, 0xff, 0x01], None).unwrap();
    assert!(matches!(h.finish(), Err(CheckerError::Ipc(_))));
}

#[test]
fn an_fd_from_the_supervisor_is_an_error() {
    let mut h = Harness::start(|_, _| {});
    let _ = h.recv();
    let frame = mpsup_ipc::codec::encode(&ToChecker::Resync).unwrap();
    let f = std::fs::File::open("/dev/null").unwrap();
    h.sup.send_raw(&frame, Some(f.as_fd())).unwrap();
    assert!(matches!(
        h.finish(),
        Err(CheckerError::Ipc(IpcError::UnexpectedFd(_)))
    ));
}

#[test]
fn settings_are_clamped() {
    let s = Settings::from_config(&CheckerConfig {
        interval_ms: 0,
        tur_timeout_ms: 0,
        max_in_flight: 0,
    });
    assert_eq!(
        s,
        Settings {
            interval: MIN_INTERVAL,
            tur_timeout: MIN_TUR_TIMEOUT,
            max_in_flight: 1
        }
    );
    let s = Settings::from_config(&CheckerConfig {
        interval_ms: 5000,
        tur_timeout_ms: 30_000,
        max_in_flight: 1_000_000,
    });
    assert_eq!(s.max_in_flight, MAX_IN_FLIGHT);
    assert_eq!(s.watchdog(), Duration::from_secs(40));
    assert_eq!(
        Roots::default(),
        Roots {
            sysfs: "/sys".into(),
            dev: "/dev".into()
        }
    );
}
