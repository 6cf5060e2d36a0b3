//! A bounded pool of worker threads for blocking SG_IO.
//!
//! SG_IO is synchronous and a sick path can hold it for the whole kernel timeout (longer, if the
//! host sits in error recovery first), so probes never run on the event loop. Jobs go through
//! one queue to at most `max_workers` threads, spawned lazily (one more only when every
//! existing worker is busy) and kept for the life of the pool. Each result goes back through an
//! mpsc channel followed by a `notify` call (the event loop's `mio::Waker`). A hung path costs
//! one worker until its TUR returns; the others keep draining the queue. The pool does not
//! deduplicate: the caller submits at most one job per path (see `tracker`).

use crate::classify::{classify, exhausted, Verdict};
use crate::sgio::{wwid_from_vpd83, Prober};
use mpsup_ipc::{DevT, DownReason, PathState, TurEvidence, MAX_SENSE_LEN};
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tracing::{debug, warn};

/// UNIT ATTENTION (or deferred error) answers tolerated per probe before the path is reported
/// `Down(UnitAttentionStorm)`. A device reports each pending UA once, so a healthy one needs
/// one or two.
pub const MAX_UA_RETRIES: u8 = 3;
/// Worker stack: the job is a few syscalls and small buffers.
const WORKER_STACK: usize = 256 * 1024;

/// One probe of one path.
#[derive(Debug)]
pub struct Job {
    /// The tracker's id for the path (not its name: a name can be reused by a new device).
    pub id: u64,
    pub devnode: PathBuf,
    pub dev_t: DevT,
    /// The path's open fd; `None` means open it first (open can block, so it is done here).
    pub fd: Option<Arc<OwnedFd>>,
    pub timeout: Duration,
    /// Also read VPD 0x83 for a WWID (sysfs had none).
    pub want_vpd: bool,
}

#[derive(Debug)]
pub struct Outcome {
    pub id: u64,
    /// The fd the TUR went through, `None` if open failed.
    pub fd: Option<Arc<OwnedFd>>,
    pub evidence: TurEvidence,
    pub state: PathState,
    /// Whether VPD 0x83 was attempted, and the WWID it gave.
    pub vpd_tried: bool,
    pub vpd_wwid: Option<String>,
}

/// Runs one job to completion on the calling thread: open if needed, TUR with bounded
/// UNIT ATTENTION retries, then VPD 0x83 if asked and the device answered.
pub fn run_job(prober: &dyn Prober, job: Job) -> Outcome {
    let fd = match job.fd {
        Some(fd) => fd,
        None => match prober.open(&job.devnode, job.dev_t) {
            Ok(fd) => Arc::new(fd),
            Err(e) => {
                let errno = e.raw_os_error().unwrap_or(libc::EIO);
                debug!(dev = %job.devnode.display(), error = %e, "open failed");
                return Outcome {
                    id: job.id,
                    fd: None,
                    evidence: TurEvidence {
                        errno: Some(errno),
                        ..Default::default()
                    },
                    state: PathState::Down(DownReason::Errno(errno)),
                    vpd_tried: false,
                    vpd_wwid: None,
                };
            }
        },
    };
    let mut retries = 0u8;
    let (mut evidence, state) = loop {
        let mut ev = prober.tur(fd.as_fd(), job.timeout);
        // Evidence crosses to the supervisor, which refuses oversized sense.
        ev.sense.truncate(MAX_SENSE_LEN);
        match classify(&ev) {
            Verdict::Final(s) => break (ev, s),
            Verdict::Retry if retries < MAX_UA_RETRIES => retries += 1,
            v => break (ev, exhausted(v)),
        }
    };
    evidence.unit_attention_retries = retries;
    let answering = matches!(
        state,
        PathState::Up | PathState::Standby | PathState::Transitioning
    );
    let vpd_tried = job.want_vpd && answering;
    let vpd_wwid = if vpd_tried {
        match prober.vpd83(fd.as_fd(), job.timeout) {
            Ok(page) => wwid_from_vpd83(&page),
            Err(e) => {
                debug!(dev = %job.devnode.display(), error = %e, "INQUIRY VPD 0x83 failed");
                None
            }
        }
    } else {
        None
    };
    Outcome {
        id: job.id,
        fd: Some(fd),
        evidence,
        state,
        vpd_tried,
        vpd_wwid,
    }
}

struct State {
    queue: VecDeque<Job>,
    workers: usize,
    idle: usize,
    max_workers: usize,
    shutdown: bool,
}

struct Shared {
    state: Mutex<State>,
    work: Condvar,
    /// Signalled when a worker exits (tests wait on it instead of polling).
    exited: Condvar,
    prober: Arc<dyn Prober>,
    results: Sender<Outcome>,
    notify: Arc<dyn Fn() + Send + Sync>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking worker cannot leave State half-updated (every update is one statement).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub struct Pool {
    shared: Arc<Shared>,
}

impl Pool {
    /// No threads are started until the first job.
    pub fn new(
        prober: Arc<dyn Prober>,
        max_workers: usize,
        results: Sender<Outcome>,
        notify: Arc<dyn Fn() + Send + Sync>,
    ) -> Pool {
        let state = State {
            queue: VecDeque::new(),
            workers: 0,
            idle: 0,
            max_workers: max_workers.max(1),
            shutdown: false,
        };
        Pool {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                work: Condvar::new(),
                exited: Condvar::new(),
                prober,
                results,
                notify,
            }),
        }
    }

    /// Queues a job, starting a worker if every existing one is busy and the bound allows.
    /// Fails only if no worker exists at all and none can be started.
    pub fn submit(&self, job: Job) -> io::Result<()> {
        let spawn = {
            let mut st = self.shared.lock();
            st.queue.push_back(job);
            let spawn = st.idle < st.queue.len() && st.workers < st.max_workers;
            if spawn {
                // Counted before the thread exists so concurrent submits do not overshoot.
                st.workers += 1;
            }
            spawn
        };
        self.shared.work.notify_one();
        if spawn {
            let shared = Arc::clone(&self.shared);
            let started = std::thread::Builder::new()
                .name("mpsup-tur".into())
                .stack_size(WORKER_STACK)
                .spawn(move || worker(shared));
            if let Err(e) = started {
                let mut st = self.shared.lock();
                st.workers -= 1;
                if st.workers == 0 {
                    // Nobody would ever run the queue: give the jobs back as a hard error.
                    st.queue.clear();
                    return Err(e);
                }
                warn!(error = %e, workers = st.workers, "cannot start another probe worker");
            }
        }
        Ok(())
    }

    /// Changes the bound. Extra workers leave after their current job.
    pub fn set_max_workers(&self, n: usize) {
        self.shared.lock().max_workers = n.max(1);
        self.shared.work.notify_all();
    }

    /// Workers currently alive (started and not yet exited).
    pub fn workers(&self) -> usize {
        self.shared.lock().workers
    }

    /// Waits until at most `n` workers are alive; false on timeout.
    #[cfg(test)]
    fn wait_workers_at_most(&self, n: usize, timeout: Duration) -> bool {
        let st = self.shared.lock();
        let (st, _) = self
            .shared
            .exited
            .wait_timeout_while(st, timeout, |st| st.workers > n)
            .unwrap_or_else(PoisonError::into_inner);
        st.workers <= n
    }
}

impl Drop for Pool {
    /// Idle workers exit; busy ones finish their ioctl (bounded by its timeout) and exit. They
    /// are not joined: a stuck ioctl must not hold up shutdown, and process exit ends them.
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.shutdown = true;
        st.queue.clear();
        drop(st);
        self.shared.work.notify_all();
    }
}

fn worker(shared: Arc<Shared>) {
    loop {
        let job = {
            let mut st = shared.lock();
            loop {
                if st.shutdown || st.workers > st.max_workers {
                    st.workers -= 1;
                    shared.exited.notify_all();
                    return;
                }
                if let Some(job) = st.queue.pop_front() {
                    break job;
                }
                st.idle += 1;
                st = shared.work.wait(st).unwrap_or_else(PoisonError::into_inner);
                st.idle -= 1;
            }
        };
        let outcome = run_job(shared.prober.as_ref(), job);
        if shared.results.send(outcome).is_err() {
            // The event loop is gone.
            shared.lock().workers -= 1;
            shared.exited.notify_all();
            return;
        }
        (shared.notify)();
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! A scriptable prober: per-devnode TUR answers, optional gates that hold a TUR until
    //! released, and counters.
    use super::*;
    use std::collections::HashMap;
    use std::os::fd::BorrowedFd;
    use std::path::Path;
    use std::sync::mpsc::{channel, Receiver};

    #[derive(Default)]
    pub struct Fake {
        pub answers: Mutex<HashMap<PathBuf, VecDeque<TurEvidence>>>,
        pub default: Mutex<HashMap<PathBuf, TurEvidence>>,
        pub gates: Mutex<HashMap<PathBuf, Receiver<()>>>,
        pub open_errno: Mutex<HashMap<PathBuf, i32>>,
        pub vpd: Mutex<Option<Vec<u8>>>,
        pub opens: Mutex<Vec<PathBuf>>,
        pub turs: Mutex<Vec<PathBuf>>,
        pub in_tur: Mutex<HashMap<PathBuf, usize>>,
        pub max_concurrent_per_path: Mutex<usize>,
        fd_paths: Mutex<HashMap<i32, PathBuf>>,
    }

    pub fn sense(key: u8, asc: u8, ascq: u8) -> TurEvidence {
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

    pub fn good() -> TurEvidence {
        TurEvidence {
            duration_ms: 1,
            ..Default::default()
        }
    }

    impl Fake {
        pub fn set(&self, dev: &str, ev: TurEvidence) {
            self.default.lock().unwrap().insert(dev.into(), ev);
        }

        pub fn script(&self, dev: &str, evs: Vec<TurEvidence>) {
            self.answers.lock().unwrap().insert(dev.into(), evs.into());
        }

        /// The next TUR on `dev` blocks until the returned sender sends (or is dropped).
        pub fn gate(&self, dev: &str) -> Sender<()> {
            let (tx, rx) = channel();
            self.gates.lock().unwrap().insert(dev.into(), rx);
            tx
        }

        fn devnode_of(&self, fd: BorrowedFd<'_>) -> PathBuf {
            // Every fake fd is /dev/null; which path it stands for is kept on the side.
            let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
            self.fd_paths
                .lock()
                .unwrap()
                .get(&raw)
                .cloned()
                .unwrap_or_default()
        }
    }

    impl Prober for Fake {
        fn open(&self, devnode: &Path, _dev_t: DevT) -> io::Result<OwnedFd> {
            self.opens.lock().unwrap().push(devnode.to_path_buf());
            if let Some(e) = self.open_errno.lock().unwrap().get(devnode) {
                return Err(io::Error::from_raw_os_error(*e));
            }
            let f: OwnedFd = std::fs::File::open("/dev/null")?.into();
            let raw = std::os::fd::AsRawFd::as_raw_fd(&f);
            self.fd_paths
                .lock()
                .unwrap()
                .insert(raw, devnode.to_path_buf());
            Ok(f)
        }

        fn tur(&self, fd: BorrowedFd<'_>, _timeout: Duration) -> TurEvidence {
            let dev = self.devnode_of(fd);
            {
                let mut in_tur = self.in_tur.lock().unwrap();
                let n = in_tur.entry(dev.clone()).or_default();
                *n += 1;
                let mut max = self.max_concurrent_per_path.lock().unwrap();
                *max = (*max).max(*n);
            }
            self.turs.lock().unwrap().push(dev.clone());
            let gate = self.gates.lock().unwrap().remove(&dev);
            if let Some(g) = gate {
                let _ = g.recv();
            }
            let scripted = self
                .answers
                .lock()
                .unwrap()
                .get_mut(&dev)
                .and_then(|q| q.pop_front());
            let ev = scripted
                .or_else(|| self.default.lock().unwrap().get(&dev).cloned())
                .unwrap_or_else(good);
            *self.in_tur.lock().unwrap().get_mut(&dev).unwrap() -= 1;
            ev
        }

        fn vpd83(&self, _fd: BorrowedFd<'_>, _timeout: Duration) -> io::Result<Vec<u8>> {
            self.vpd
                .lock()
                .unwrap()
                .clone()
                .ok_or_else(|| io::Error::other("no VPD"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{good, sense, Fake};
    use super::*;
    use std::path::Path;
    use std::sync::mpsc::channel;
    use std::time::Instant;

    fn job(id: u64, dev: &str) -> Job {
        Job {
            id,
            devnode: PathBuf::from(dev),
            dev_t: DevT {
                major: 8,
                minor: id as u32,
            },
            fd: None,
            timeout: Duration::from_secs(30),
            want_vpd: false,
        }
    }

    #[test]
    fn unit_attention_is_retried_inside_the_job_and_bounded() {
        let fake = Fake::default();
        fake.script(
            "/dev/a",
            vec![sense(6, 0x29, 0), sense(6, 0x3f, 0x0e), sense(5, 0x25, 0)],
        );
        let out = run_job(&fake, job(1, "/dev/a"));
        assert_eq!(out.state, PathState::Disconnected);
        assert_eq!(out.evidence.unit_attention_retries, 2);
        assert!(out.fd.is_some());

        fake.set("/dev/b", sense(6, 0x29, 0));
        let out = run_job(&fake, job(2, "/dev/b"));
        assert_eq!(out.state, PathState::Down(DownReason::UnitAttentionStorm));
        assert_eq!(out.evidence.unit_attention_retries, MAX_UA_RETRIES);
        let turs_on_b = fake
            .turs
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p == &Path::new("/dev/b"))
            .count();
        assert_eq!(turs_on_b, usize::from(MAX_UA_RETRIES) + 1);
    }

    #[test]
    fn open_failure_is_down_errno_without_fd() {
        let fake = Fake::default();
        fake.open_errno
            .lock()
            .unwrap()
            .insert("/dev/x".into(), libc::ENXIO);
        let out = run_job(&fake, job(1, "/dev/x"));
        assert_eq!(out.state, PathState::Down(DownReason::Errno(libc::ENXIO)));
        assert_eq!(out.evidence.errno, Some(libc::ENXIO));
        assert!(out.fd.is_none());
        assert!(fake.turs.lock().unwrap().is_empty());
    }

    #[test]
    fn an_open_fd_is_reused_not_reopened() {
        let fake = Fake::default();
        let first = run_job(&fake, job(1, "/dev/a"));
        let again = run_job(
            &fake,
            Job {
                fd: first.fd.clone(),
                ..job(1, "/dev/a")
            },
        );
        assert_eq!(fake.opens.lock().unwrap().len(), 1);
        assert!(Arc::ptr_eq(
            first.fd.as_ref().unwrap(),
            again.fd.as_ref().unwrap()
        ));
    }

    #[test]
    fn vpd_only_when_asked_and_answering() {
        let fake = Fake::default();
        let mut page = vec![0, 0x83, 0, 12, 1, 3, 0, 8];
        page.extend([0x50, 1, 2, 3, 4, 5, 6, 7]);
        *fake.vpd.lock().unwrap() = Some(page);
        let out = run_job(
            &fake,
            Job {
                want_vpd: true,
                ..job(1, "/dev/a")
            },
        );
        assert!(out.vpd_tried);
        assert_eq!(out.vpd_wwid.as_deref(), Some("naa.5001020304050607"));
        fake.set("/dev/b", sense(5, 0x25, 0));
        let out = run_job(
            &fake,
            Job {
                want_vpd: true,
                ..job(2, "/dev/b")
            },
        );
        assert!(!out.vpd_tried && out.vpd_wwid.is_none());
        let out = run_job(&fake, job(3, "/dev/c"));
        assert!(!out.vpd_tried);
    }

    #[test]
    fn a_hung_path_does_not_delay_the_others() {
        let fake = Arc::new(Fake::default());
        let release = fake.gate("/dev/hung");
        let (tx, rx) = channel();
        let pool = Pool::new(fake.clone(), 4, tx, Arc::new(|| {}));
        pool.submit(job(0, "/dev/hung")).unwrap();
        for i in 1..=20 {
            pool.submit(job(i, &format!("/dev/p{i}"))).unwrap();
        }
        let start = Instant::now();
        let mut done = Vec::new();
        for _ in 1..=20 {
            let o = rx
                .recv_timeout(Duration::from_secs(10))
                .expect("healthy paths must finish");
            done.push(o.id);
        }
        assert!(start.elapsed() < Duration::from_secs(10));
        assert!(!done.contains(&0), "the hung path is still hung");
        assert!(pool.workers() <= 4);
        release.send(()).unwrap();
        let late = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(late.id, 0);
        assert_eq!(late.state, PathState::Up);
    }

    #[test]
    fn workers_are_bounded_and_started_lazily() {
        let fake = Arc::new(Fake::default());
        let (tx, rx) = channel();
        let (wake_tx, wake_rx) = channel();
        let wake_tx = Mutex::new(wake_tx);
        let pool = Pool::new(
            fake.clone(),
            3,
            tx,
            Arc::new(move || {
                let _ = wake_tx.lock().unwrap().send(());
            }),
        );
        assert_eq!(pool.workers(), 0);
        let gates: Vec<_> = (0..5).map(|i| fake.gate(&format!("/dev/g{i}"))).collect();
        for i in 0..5 {
            pool.submit(job(i, &format!("/dev/g{i}"))).unwrap();
        }
        assert_eq!(pool.workers(), 3);
        drop(gates);
        for _ in 0..5 {
            rx.recv_timeout(Duration::from_secs(10)).unwrap();
            // Each result is followed by a wake-up of the event loop.
            wake_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        }
        assert_eq!(pool.workers(), 3);
        pool.set_max_workers(1);
        assert!(pool.wait_workers_at_most(1, Duration::from_secs(10)));
        pool.submit(job(9, "/dev/x")).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap().id, 9);
        assert_eq!(pool.workers(), 1);
        drop(pool);
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
    }

    #[test]
    fn dropping_the_pool_stops_idle_workers() {
        let fake = Arc::new(Fake::default());
        let (tx, rx) = channel();
        let pool = Pool::new(fake, 2, tx, Arc::new(|| {}));
        pool.submit(job(1, "/dev/a")).unwrap();
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let shared = Arc::clone(&pool.shared);
        drop(pool);
        let st = shared.state.lock().unwrap();
        let (st, _) = shared
            .exited
            .wait_timeout_while(st, Duration::from_secs(10), |st| st.workers > 0)
            .unwrap();
        assert_eq!(st.workers, 0);
        let _ = good();
    }
}
