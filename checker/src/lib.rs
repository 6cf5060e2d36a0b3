//! The mpsup checker helper: finds SCSI paths in sysfs, sends each a TEST UNIT READY through
//! SG_IO, classifies the answer (DESIGN.md, "TUR classification") and tells the supervisor
//! what changed. A `disconnected` report carries the path's open fd.
//!
//! # Concurrency design
//!
//! - **One event loop thread** (mio) owns everything that has state: the supervisor channel,
//!   the path table ([`tracker::Tracker`]), the open fds, the outgoing queue and the timers.
//!   It never blocks on a device: its only waits are `epoll_wait` with a timeout computed from
//!   the next deadline (next scan, next probe watchdog, debounced rediscovery), so there is no
//!   polling loop and no sleep.
//! - **A bounded worker pool** ([`pool::Pool`]) does the blocking work: `open()` of the devnode
//!   (which waits while the SCSI host is in error recovery) and SG_IO (which waits for the
//!   device, up to the kernel-enforced `tur_timeout`). At most `max_in_flight` workers exist;
//!   they are started lazily, one more only when all existing ones are busy, and then kept.
//!   Jobs go through one queue; results come back through an mpsc channel plus a `mio::Waker`.
//!   A hung path costs one worker until its TUR returns and never delays another path.
//! - **At most one probe per path** is in flight: a path whose TUR has not returned is not
//!   queued again; when it returns late its result still counts. A probe that outlives the
//!   kernel timeout by a margin is reported `timeout` by the loop's watchdog meanwhile.
//! - **No shared mutable state** between loop and workers beyond the job queue: a job carries
//!   an `Arc` of the path's fd, so a path that vanishes while its TUR is in flight keeps its fd
//!   open until the worker is done, and the fd number cannot be reused under the worker.
//! - UNIT ATTENTION retries (bounded, [`pool::MAX_UA_RETRIES`]) happen inside the job.
//! - Discovery reads sysfs on the loop thread: attribute reads are bounded in size and do not
//!   touch the device (the kernel answers them from memory).
//! - Optional kernel uevents trigger an early, debounced rediscovery; without them the timer
//!   alone is enough.
//!
//! Sandbox note: workers are threads started after `Configure`, i.e. after the helper has
//! sandboxed itself, so the checker's seccomp profile must allow thread creation (`clone3` /
//! `clone` with thread flags, `futex`, `mmap`/`munmap`/`mprotect`, `madvise`, `rseq`,
//! `set_robust_list`, `sched_yield`), plus `socket`/`bind` on AF_NETLINK for uevents (optional).

pub mod classify;
pub mod discovery;
pub mod pool;
pub mod sense;
pub mod sgio;
pub mod tracker;
mod uevent;

use mio::{Events, Interest, Poll, Token, Waker};
use mpsup_ipc::{
    Channel, CheckerConfig, CheckerMsg, Hello, IpcError, Received, SandboxStatus, ToChecker,
};
use pool::{Outcome, Pool};
use sgio::{Prober, SgIoProber};
use std::collections::{HashSet, VecDeque};
use std::io;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::{debug, error, info, warn};
use tracker::{Outgoing, Tracker};

/// Where the checker looks: the sysfs root and the directory of device nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Roots {
    pub sysfs: PathBuf,
    pub dev: PathBuf,
}

impl Default for Roots {
    fn default() -> Self {
        Roots {
            sysfs: PathBuf::from("/sys"),
            dev: PathBuf::from("/dev"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckerError {
    #[error("supervisor channel: {0}")]
    Ipc(#[from] IpcError),
    #[error("event loop: {0}")]
    Io(#[from] io::Error),
    #[error("{0} messages queued for a supervisor that does not read them")]
    Backlog(usize),
    #[error("{0}")]
    Sandbox(String),
}

/// Puts the helper in its sandbox and says what was applied. Called once, after the helper's
/// own setup (epoll, eventfd, uevent socket) and before its loop and `Ready`; an `Err` stops
/// the helper.
pub type Sandbox = Box<dyn FnOnce() -> Result<SandboxStatus, String>>;

const CHANNEL: Token = Token(0);
const WAKER: Token = Token(1);
const UEVENT: Token = Token(2);

/// Messages we hold for a supervisor that is slow to read before we give up on it.
const MAX_OUTBOX: usize = 64 * 1024;
/// The kernel raises any SG_IO timeout below this (BLK_MIN_SG_TIMEOUT, 7 s).
const KERNEL_MIN_SG_TIMEOUT: Duration = Duration::from_secs(7);
/// How long past the kernel timeout a probe may take (error handling, a blocked queue)
/// before the watchdog reports `timeout`.
const WATCHDOG_GRACE: Duration = Duration::from_secs(10);
/// Uevents come in bursts (a LUN add is several); wait this long and rediscover once.
const UEVENT_DEBOUNCE: Duration = Duration::from_millis(250);
/// Bounds on supervisor-provided settings (it validated them; we do not trust it blindly).
const MIN_INTERVAL: Duration = Duration::from_millis(100);
const MIN_TUR_TIMEOUT: Duration = Duration::from_secs(1);
const MAX_IN_FLIGHT: usize = 1024;

/// The helper's main loop with the real SG_IO prober. Returns `Ok` on `Shutdown` or when the
/// supervisor closes the channel; any other channel error is returned (the supervisor then
/// treats this helper as failed).
pub fn run(channel: Channel, roots: Roots) -> Result<(), CheckerError> {
    run_with(channel, roots, Arc::new(SgIoProber))
}

/// [`run`] with another prober (tests).
pub fn run_with(
    channel: Channel,
    roots: Roots,
    prober: Arc<dyn Prober>,
) -> Result<(), CheckerError> {
    Checker::new(channel, roots, prober)?.run(SandboxStatus::default())
}

/// [`run`], sandboxed by `sandbox` between setup and loop. The worker threads start later
/// (after `Configure`), inside the sandbox, and inherit it.
pub fn run_sandboxed(channel: Channel, roots: Roots, sandbox: Sandbox) -> Result<(), CheckerError> {
    let checker = Checker::new(channel, roots, Arc::new(SgIoProber))?;
    let status = sandbox().map_err(CheckerError::Sandbox)?;
    checker.run(status)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Settings {
    interval: Duration,
    tur_timeout: Duration,
    max_in_flight: usize,
}

impl Settings {
    fn from_config(c: &CheckerConfig) -> Settings {
        let s = Settings {
            interval: Duration::from_millis(c.interval_ms).max(MIN_INTERVAL),
            tur_timeout: Duration::from_millis(c.tur_timeout_ms).max(MIN_TUR_TIMEOUT),
            max_in_flight: usize::try_from(c.max_in_flight)
                .unwrap_or(MAX_IN_FLIGHT)
                .clamp(1, MAX_IN_FLIGHT),
        };
        if s.interval.as_millis() != u128::from(c.interval_ms)
            || s.tur_timeout.as_millis() != u128::from(c.tur_timeout_ms)
            || s.max_in_flight as u64 != u64::from(c.max_in_flight)
        {
            warn!(?c, ?s, "checker configuration clamped");
        }
        s
    }

    fn watchdog(&self) -> Duration {
        self.tur_timeout.max(KERNEL_MIN_SG_TIMEOUT) + WATCHDOG_GRACE
    }
}

/// Whether the loop goes on.
enum Flow {
    Continue,
    Stop,
}

struct Checker {
    channel: Channel,
    roots: Roots,
    prober: Arc<dyn Prober>,
    poll: Poll,
    waker: Arc<Waker>,
    uevents: Option<uevent::Uevents>,
    results_tx: Sender<Outcome>,
    results: Receiver<Outcome>,
    outbox: VecDeque<Outgoing>,
    settings: Option<Settings>,
    pool: Option<Pool>,
    tracker: Tracker,
    next_scan: Option<Instant>,
    rediscover_at: Option<Instant>,
    /// Paths queued by the current round and not back yet; `ScanDone` when it empties.
    round: Option<HashSet<u64>>,
}

impl Checker {
    fn new(
        mut channel: Channel,
        roots: Roots,
        prober: Arc<dyn Prober>,
    ) -> Result<Checker, CheckerError> {
        let poll = Poll::new()?;
        channel.set_nonblocking(true)?;
        // Edge-triggered both ways: readable to drain requests, writable to resume a backlog.
        poll.registry().register(
            &mut channel,
            CHANNEL,
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let uevents = match uevent::Uevents::open() {
            Ok(mut u) => match poll.registry().register(&mut u, UEVENT, Interest::READABLE) {
                Ok(()) => Some(u),
                Err(e) => {
                    info!(error = %e, "uevents unavailable; rediscovering on the timer only");
                    None
                }
            },
            Err(e) => {
                info!(error = %e, "uevents unavailable; rediscovering on the timer only");
                None
            }
        };
        let (results_tx, results) = std::sync::mpsc::channel();
        Ok(Checker {
            channel,
            roots,
            prober,
            poll,
            waker,
            uevents,
            results_tx,
            results,
            outbox: VecDeque::new(),
            settings: None,
            pool: None,
            tracker: Tracker::new(),
            next_scan: None,
            rediscover_at: None,
            round: None,
        })
    }

    fn run(mut self, sandbox: SandboxStatus) -> Result<(), CheckerError> {
        let hello = Hello {
            pid: std::process::id(),
            sandbox,
        };
        self.outbox.push_back(Outgoing {
            msg: CheckerMsg::Ready(hello),
            fd: None,
        });
        let mut events = Events::with_capacity(64);
        loop {
            if let Flow::Stop = self.flush()? {
                return Ok(());
            }
            let timeout = self
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e.into());
            }
            let mut uevent_ready = false;
            for ev in events.iter() {
                match ev.token() {
                    CHANNEL if ev.is_readable() || ev.is_read_closed() || ev.is_error() => {
                        if let Flow::Stop = self.read_requests()? {
                            return Ok(());
                        }
                    }
                    UEVENT => uevent_ready = true,
                    // WAKER: results are drained below; CHANNEL writable: flushed at the top.
                    _ => {}
                }
            }
            if uevent_ready {
                self.read_uevents();
            }
            self.drain_results();
            self.on_timers()?;
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let settings = self.settings?;
        [
            self.next_scan,
            self.rediscover_at,
            self.tracker.next_overdue(settings.watchdog()),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Sends what the socket takes now; the rest waits for a writable event.
    fn flush(&mut self) -> Result<Flow, CheckerError> {
        while let Some(o) = self.outbox.front() {
            let fd = o.fd.as_ref().map(|f| f.as_fd());
            match self.channel.send(&o.msg, fd) {
                Ok(()) => {}
                Err(IpcError::WouldBlock) => break,
                Err(IpcError::Closed) => return Ok(Flow::Stop),
                Err(
                    e @ (IpcError::UnexpectedFd(_)
                    | IpcError::MissingFd(_)
                    | IpcError::Encode(_)
                    | IpcError::Oversized { .. }),
                ) => {
                    // Our own message is wrong; sending it again would not fix it.
                    error!(error = %e, msg = ?o.msg, "dropping a message that cannot be sent");
                }
                Err(e) => return Err(e.into()),
            }
            self.outbox.pop_front();
        }
        if self.outbox.len() > MAX_OUTBOX {
            return Err(CheckerError::Backlog(self.outbox.len()));
        }
        Ok(Flow::Continue)
    }

    fn read_requests(&mut self) -> Result<Flow, CheckerError> {
        loop {
            match self.channel.recv::<ToChecker>() {
                Ok(Received { msg, fd: _ }) => {
                    // `recv` already refused an fd on ToChecker (it carries none).
                    if let Flow::Stop = self.handle(msg)? {
                        return Ok(Flow::Stop);
                    }
                }
                Err(IpcError::WouldBlock) => return Ok(Flow::Continue),
                Err(IpcError::Closed) => return Ok(Flow::Stop),
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn handle(&mut self, msg: ToChecker) -> Result<Flow, CheckerError> {
        match msg {
            ToChecker::Configure(c) => {
                let s = Settings::from_config(&c);
                self.tracker.set_fd_budget(fd_budget());
                let now = Instant::now();
                match &self.pool {
                    None => {
                        let waker = Arc::clone(&self.waker);
                        let notify = Arc::new(move || {
                            if let Err(e) = waker.wake() {
                                error!(error = %e, "cannot wake the event loop");
                            }
                        });
                        self.pool = Some(Pool::new(
                            Arc::clone(&self.prober),
                            s.max_in_flight,
                            self.results_tx.clone(),
                            notify,
                        ));
                        self.next_scan = Some(now);
                    }
                    Some(pool) => {
                        pool.set_max_workers(s.max_in_flight);
                        // A shorter interval takes effect now, not after the old one.
                        self.next_scan = self.next_scan.map(|t| t.min(now + s.interval));
                    }
                }
                info!(interval = ?s.interval, tur_timeout = ?s.tur_timeout, max_in_flight = s.max_in_flight, "configured");
                self.settings = Some(s);
            }
            ToChecker::Resync => {
                let reports = self.tracker.resync();
                debug!(paths = reports.len(), "resync");
                self.outbox.extend(reports);
            }
            ToChecker::Shutdown => return Ok(Flow::Stop),
        }
        Ok(Flow::Continue)
    }

    fn read_uevents(&mut self) {
        let Some(u) = &mut self.uevents else { return };
        match u.drain() {
            Ok(true) if self.settings.is_some() => {
                let at = Instant::now() + UEVENT_DEBOUNCE;
                self.rediscover_at = Some(self.rediscover_at.map_or(at, |t| t.min(at)));
            }
            Ok(_) => {}
            Err(e) => {
                warn!(error = %e, "uevent socket failed; rediscovering on the timer only");
                if let Some(mut u) = self.uevents.take() {
                    let _ = self.poll.registry().deregister(&mut u);
                }
            }
        }
    }

    fn drain_results(&mut self) {
        let now_ms = wall_ms();
        while let Ok(o) = self.results.try_recv() {
            let id = o.id;
            self.outbox.extend(self.tracker.apply_outcome(o, now_ms));
            if let Some(round) = &mut self.round {
                round.remove(&id);
            }
            self.maybe_scan_done();
        }
    }

    fn maybe_scan_done(&mut self) {
        if self.round.as_ref().is_some_and(HashSet::is_empty) {
            self.round = None;
            let paths = u32::try_from(self.tracker.len()).unwrap_or(u32::MAX);
            self.outbox.push_back(Outgoing {
                msg: CheckerMsg::ScanDone { paths },
                fd: None,
            });
        }
    }

    fn on_timers(&mut self) -> Result<(), CheckerError> {
        let Some(s) = self.settings else {
            return Ok(());
        };
        let now = Instant::now();
        if self.next_scan.is_some_and(|t| t <= now) {
            self.next_scan = Some(now + s.interval);
            self.rediscover_at = None;
            self.scan(now, s, false)?;
        } else if self.rediscover_at.is_some_and(|t| t <= now) {
            self.rediscover_at = None;
            self.scan(now, s, true)?;
        }
        let overdue = self.tracker.overdue(now, s.watchdog(), wall_ms());
        self.outbox.extend(overdue);
        Ok(())
    }

    /// A full round (rediscover, probe every path not in flight, then `ScanDone`), or after a
    /// uevent an early rediscovery that probes only new paths.
    fn scan(&mut self, now: Instant, s: Settings, only_new: bool) -> Result<(), CheckerError> {
        let found = discovery::discover(&self.roots.sysfs, &self.roots.dev);
        self.outbox.extend(self.tracker.apply_discovery(found));
        let jobs = if only_new {
            self.tracker.start_new_probes(now, s.tur_timeout)
        } else {
            self.tracker.start_probes(now, s.tur_timeout)
        };
        if self.tracker.starved > 0 {
            warn!(
                paths = self.tracker.starved,
                "paths not probed: out of file descriptors for them (RLIMIT_NOFILE)"
            );
        }
        let ids: HashSet<u64> = jobs.iter().map(|j| j.id).collect();
        if !only_new {
            if let Some(old) = self.round.replace(ids.clone()) {
                // Only hung paths can hold a round open past the interval; they stay in flight.
                debug!(
                    pending = old.len(),
                    "previous round still had probes in flight"
                );
            }
        }
        let Some(pool) = &self.pool else {
            return Ok(());
        };
        for job in jobs {
            let id = job.id;
            if let Err(e) = pool.submit(job) {
                self.tracker.abandon(id);
                return Err(e.into());
            }
        }
        if !only_new {
            self.maybe_scan_done();
        }
        Ok(())
    }
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests;

/// Fds the checker may spend on paths: its RLIMIT_NOFILE (set by its sandbox profile) less room
/// for its own (channel, epoll, uevent socket, sysfs files read during a scan).
fn fd_budget() -> Option<usize> {
    const OWN_FDS: u64 = 64;
    match nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
        Ok((soft, _)) if soft != nix::sys::resource::RLIM_INFINITY => {
            Some(soft.saturating_sub(OWN_FDS).max(1) as usize)
        }
        _ => None,
    }
}
