//! The request loop and the verification pipeline (crate docs: the steps and why each exists).

use crate::backend::Backend;
use crate::link::{Heard, Link};
use crate::sysfs::{self, Live};
use crate::PurgerError;
use mpsup_checker::pool::{run_job, Job};
use mpsup_checker::sgio::wwid_from_vpd83;
use mpsup_checker::Roots;
use mpsup_ipc::{
    DevT, DownReason, Hello, Message, PathIdentity, PathState, PurgeEvidence, PurgeOutcome,
    PurgeRequest, PurgerConfig, PurgerMsg, SandboxStatus, ToPurger, MAX_ATTR_LEN,
    MAX_CONFIRMATIONS,
};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// The kernel raises shorter SG_IO timeouts to 7 s anyway; below 1 s is a configuration error.
const MIN_TUR_TIMEOUT: Duration = Duration::from_secs(1);
/// Bounds on supervisor-provided durations (policy allows far less; this only keeps
/// arithmetic on instants from overflowing whatever the supervisor sends).
const MAX_TUR_TIMEOUT: Duration = Duration::from_secs(3600);
const MAX_CONFIRMATION_INTERVAL: Duration = Duration::from_secs(3600);
/// The ipc limit on a reason string.
const MAX_REASON: usize = MAX_ATTR_LEN * 4;
/// Re-checks of a deleted device's sysfs entry: the first delay, doubled up to the cap.
const FIRST_RECHECK_DELAY: Duration = Duration::from_millis(10);
const MAX_RECHECK_DELAY: Duration = Duration::from_millis(500);
/// What a purge request that was under way when `Shutdown` arrived reports.
pub const SHUTTING_DOWN: &str = "purger shutting down";
/// What a request reports when the policy changed while it was being verified.
pub const RECONFIGURED: &str =
    "the policy was reconfigured while this request was verified: not deleting under a policy \
     it was not verified against";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    Shutdown,
    Closed,
}

/// Why a helper routine did not finish: the supervisor wants us gone, or broke the protocol.
enum Interrupt {
    Stop(Stop),
    Error(PurgerError),
}

/// Why the pipeline did not reach `Intent`: a refusal (or `Vanished`), or an [`Interrupt`].
enum Halt {
    Outcome(PurgeOutcome),
    Stop(Stop),
    Error(PurgerError),
}

impl From<Interrupt> for Halt {
    fn from(i: Interrupt) -> Halt {
        match i {
            Interrupt::Stop(s) => Halt::Stop(s),
            Interrupt::Error(e) => Halt::Error(e),
        }
    }
}

impl From<PurgerError> for Interrupt {
    fn from(e: PurgerError) -> Interrupt {
        Interrupt::Error(e)
    }
}

impl From<PurgerError> for Halt {
    fn from(e: PurgerError) -> Halt {
        Halt::Error(e)
    }
}

fn refuse(why: impl Into<String>) -> Halt {
    Halt::Outcome(PurgeOutcome::Refused(why.into()))
}

/// Where a request is, for judging messages that arrive meanwhile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Steps 1-5: no intent sent yet.
    Verifying(u64),
    /// Step 6: `Intent` sent, waiting for `Decision`.
    AwaitingDecision(u64),
}

impl Phase {
    fn id(self) -> u64 {
        match self {
            Phase::Verifying(id) | Phase::AwaitingDecision(id) => id,
        }
    }
}

enum Flow {
    Continue,
    Stop,
}

pub struct Purger {
    link: Link,
    roots: Roots,
    backend: Backend,
    config: Option<PurgerConfig>,
    /// A `Configure` that changed the policy arrived while the current request was in progress.
    reconfigured: bool,
}

impl Purger {
    pub fn new(link: Link, roots: Roots, backend: Backend) -> Purger {
        Purger {
            link,
            roots,
            backend,
            config: None,
            reconfigured: false,
        }
    }

    /// `Ready`, then requests one at a time until `Shutdown` or the supervisor goes away.
    pub fn run(mut self, sandbox: SandboxStatus) -> Result<(), PurgerError> {
        let hello = Hello {
            pid: std::process::id(),
            sandbox,
        };
        if !self.link.send(&PurgerMsg::Ready(hello))? {
            return Ok(());
        }
        loop {
            let r = match self.link.recv_until(None)? {
                Heard::Msg(r) => r,
                Heard::Closed => {
                    info!("supervisor closed the channel");
                    return Ok(());
                }
                Heard::Timeout => continue,
            };
            let kind = r.msg.kind();
            match r.msg {
                ToPurger::Configure(c) => {
                    debug!(?c, "configured");
                    self.config = Some(sanitize(c));
                }
                ToPurger::Shutdown => {
                    info!("shutting down");
                    return Ok(());
                }
                ToPurger::Purge(_) | ToPurger::Resolve(_) | ToPurger::Decision { .. }
                    if self.config.is_none() =>
                {
                    return Err(PurgerError::Protocol(format!("{kind} before Configure")));
                }
                ToPurger::Purge(req) => {
                    // Channel::recv already refused a Purge without its fd; never trust that
                    // with an unwrap.
                    let Some(fd) = r.fd else {
                        return Err(PurgerError::Protocol(format!(
                            "Purge for request {} without its fd",
                            req.id
                        )));
                    };
                    if let Flow::Stop = self.purge(req, fd)? {
                        return Ok(());
                    }
                }
                ToPurger::Resolve(req) => {
                    let outcome = self.resolve(&req);
                    info!(id = req.id, dev = %req.identity.name, dev_t = %req.identity.dev_t, ?outcome, "resolved");
                    if !self.send_outcome(req.id, outcome, PurgeEvidence::default())? {
                        return Ok(());
                    }
                }
                ToPurger::Decision { id, .. } => {
                    return Err(PurgerError::Protocol(format!(
                        "Decision for request {id} with no intent outstanding"
                    )));
                }
            }
        }
    }

    // ------------------------------------------------------------------ one request

    /// Steps 1-8 for one request. The fds (the passed one and our own) stay open until the
    /// outcome is sent: they pin the dev_t, so nothing seen at it meanwhile is a new device.
    fn purge(&mut self, req: PurgeRequest, passed: OwnedFd) -> Result<Flow, PurgerError> {
        let Some(cfg) = self.config.clone() else {
            return Err(PurgerError::Protocol("Purge before Configure".into()));
        };
        self.reconfigured = false;
        let id = req.id;
        let mut ev = PurgeEvidence::default();
        info!(id, dev = %req.identity.name, dev_t = %req.identity.dev_t, "verifying");
        let own = match self.verify(&req, &cfg, passed.as_fd(), &mut ev) {
            Ok(own) => own,
            Err(Halt::Outcome(o)) => return self.finish(&req, o, ev),
            Err(Halt::Stop(Stop::Shutdown)) => {
                info!(id, "shutdown during verification");
                let o = PurgeOutcome::Refused(SHUTTING_DOWN.into());
                self.send_outcome(id, o, ev)?;
                return Ok(Flow::Stop);
            }
            Err(Halt::Stop(Stop::Closed)) => return Ok(Flow::Stop),
            Err(Halt::Error(e)) => return Err(e),
        };
        // Step 6: permission. The supervisor fsyncs the intent record before it answers.
        let intent = PurgerMsg::Intent {
            id,
            evidence: ev.clone(),
        };
        if !self.link.send(&intent)? {
            return Ok(Flow::Stop);
        }
        info!(id, dev = %req.identity.name, "intent sent, awaiting the supervisor's decision");
        let proceed = match self.await_decision(id) {
            Ok(p) => p,
            // After `Intent` the supervisor's stage is Deleting or Aborting, and which one we
            // cannot know without its answer: say nothing, it requeues or resolves.
            Err(Interrupt::Stop(_)) => return Ok(Flow::Stop),
            Err(Interrupt::Error(e)) => return Err(e),
        };
        let outcome = if !proceed {
            PurgeOutcome::Aborted
        } else if self.reconfigured {
            PurgeOutcome::Refused(RECONFIGURED.into())
        } else {
            self.delete(&req.identity, &cfg)
        };
        let flow = self.finish(&req, outcome, ev);
        drop(own);
        drop(passed);
        flow
    }

    /// Steps 1-5. Returns the purger's own fd on the device.
    fn verify(
        &mut self,
        req: &PurgeRequest,
        cfg: &PurgerConfig,
        passed: BorrowedFd<'_>,
        ev: &mut PurgeEvidence,
    ) -> Result<Arc<OwnedFd>, Halt> {
        let phase = Phase::Verifying(req.id);
        let want = &req.identity;

        // 1. The fd the checker opened is the block device the request names.
        let st = self
            .backend
            .fds
            .stat(passed)
            .map_err(|e| refuse(format!("cannot fstat the fd passed with the request: {e}")))?;
        if !st.block_device {
            return Err(refuse(
                "the fd passed with the request is not a block device",
            ));
        }
        if st.rdev != want.dev_t {
            return Err(refuse(format!(
                "the fd passed with the request is block device {}, not {}",
                st.rdev, want.dev_t
            )));
        }
        self.checkpoint(phase)?;

        // 2. sysfs still shows the same device at that dev_t.
        let live = self.check_identity(want).map_err(Halt::Outcome)?;
        self.checkpoint(phase)?;

        // 3. Our own fd, through the devnode, checked to be that dev_t (Prober::open).
        let devnode = self.roots.dev.join(&want.name);
        let own = self
            .backend
            .prober
            .open(&devnode, want.dev_t)
            .map_err(|e| refuse(open_failure(&devnode, want.dev_t, &e)))?;
        let own = Arc::new(own);
        let timeout = tur_timeout(cfg);
        if sysfs::wwid_missing_in_sysfs(want, &live) {
            self.check_vpd_wwid(&own, want, timeout)?;
        }
        self.checkpoint(phase)?;

        // 4. Holders: in a multipath map, and not its last usable path.
        self.check_holders(want, cfg, ev, timeout, phase)?;
        self.checkpoint(phase)?;

        // 5. Fresh TURs on our own fd, spaced, all disconnected.
        self.confirm(want, cfg, &own, ev, timeout, phase)?;
        self.checkpoint(phase)?;
        Ok(own)
    }

    /// Step 2 (and its last-moment repeat in step 7): the identity at the dev_t now.
    fn check_identity(&self, want: &PathIdentity) -> Result<PathIdentity, PurgeOutcome> {
        let dev_t = want.dev_t;
        match sysfs::read_live(&self.roots.sysfs, dev_t) {
            Ok(Live::Absent) => Err(PurgeOutcome::Vanished),
            Ok(Live::NotScsiDisk { name }) => Err(PurgeOutcome::Refused(format!(
                "dev_t {dev_t} now belongs to another device: {name}, which is not a SCSI disk"
            ))),
            Ok(Live::Disk(live)) => {
                let diff = sysfs::differences(want, &live);
                if diff.is_empty() {
                    Ok(live)
                } else {
                    Err(PurgeOutcome::Refused(format!(
                        "dev_t {dev_t} now belongs to another device: {}",
                        diff.join(", ")
                    )))
                }
            }
            Err(e) => Err(PurgeOutcome::Refused(format!(
                "cannot read the identity at {dev_t}: {e}"
            ))),
        }
    }

    /// The request's WWID came from VPD 0x83 (sysfs has none): ask the device again.
    fn check_vpd_wwid(
        &self,
        own: &OwnedFd,
        want: &PathIdentity,
        timeout: Duration,
    ) -> Result<(), Halt> {
        let expected = want.wwid.as_deref().unwrap_or_default();
        match self.backend.prober.vpd83(own.as_fd(), timeout) {
            Ok(page) => match wwid_from_vpd83(&page) {
                Some(w) if w == expected => Ok(()),
                Some(w) => Err(refuse(format!(
                    "dev_t {} now belongs to another device: VPD 0x83 WWID {w} (expected {expected})",
                    want.dev_t
                ))),
                None => Err(refuse(format!(
                    "WWID {expected} cannot be re-verified: sysfs shows none and VPD 0x83 names no logical unit"
                ))),
            },
            Err(e) => Err(refuse(format!(
                "WWID {expected} cannot be re-verified: sysfs shows none and INQUIRY VPD 0x83 failed: {e}"
            ))),
        }
    }

    /// Step 4.
    fn check_holders(
        &mut self,
        want: &PathIdentity,
        cfg: &PurgerConfig,
        ev: &mut PurgeEvidence,
        timeout: Duration,
        phase: Phase,
    ) -> Result<(), Halt> {
        let entry = sysfs::dev_entry(&self.roots.sysfs, want.dev_t);
        let h = sysfs::read_holders(&entry)
            .map_err(|e| refuse(format!("cannot read the holders of {}: {e}", want.name)))?;
        ev.holders.clone_from(&h.all);
        match (h.multipath.as_slice(), h.other.is_empty()) {
            ([], _) if cfg.require_multipath => Err(refuse(if h.all.is_empty() {
                "not in a dm-multipath map (no holders)".to_string()
            } else {
                format!("not in a dm-multipath map (held by {})", h.all.join(", "))
            })),
            // No holder at all: there is no map whose last path this could be.
            ([], true) => Ok(()),
            ([], false) if cfg.allow_last_path => Ok(()),
            ([], false) => Err(refuse(format!(
                "held by {} (not dm-multipath), for which it is the only path",
                h.other.join(", ")
            ))),
            ([map], true) => self.check_last_path(want, map, cfg, ev, timeout, phase),
            ([map], false) => Err(refuse(format!(
                "held by {} besides the multipath map {} ({})",
                h.other.join(", "),
                map.name,
                map.dm
            ))),
            (maps, _) => Err(refuse(format!(
                "held by {} multipath maps ({})",
                maps.len(),
                h.all.join(", ")
            ))),
        }
    }

    /// Step 4, last-path rule. The map must keep at least one other member path that is still
    /// present (in any state): mpsup never leaves a map with no path, where `queue_if_no_path`
    /// would hang every I/O on it. A member need not answer: when a LUN is unmapped from the whole
    /// host every path is dead, and all but the last must still be purgeable. Each other member
    /// also gets a fresh TUR, and how many answer up/standby/transitioning is the evidence
    /// `usable_paths_in_map`.
    fn check_last_path(
        &mut self,
        want: &PathIdentity,
        map: &sysfs::DmHolder,
        cfg: &PurgerConfig,
        ev: &mut PurgeEvidence,
        timeout: Duration,
        phase: Phase,
    ) -> Result<(), Halt> {
        let slaves = sysfs::read_slaves(map).map_err(|e| {
            refuse(format!(
                "cannot list the paths of map {} ({}): {e}",
                map.name, map.dm
            ))
        })?;
        if !slaves.iter().any(|s| s.name == want.name) {
            return Err(refuse(format!(
                "map {} ({}) does not list {} among its paths",
                map.name, map.dm, want.name
            )));
        }
        // This path counts itself (PurgeEvidence::usable_paths_in_map): 1 means no other.
        let mut usable: u32 = 1;
        let mut others_present: u32 = 0;
        for s in slaves.iter().filter(|s| s.name != want.name) {
            self.checkpoint(phase)?;
            let dev_t = match &s.dev_t {
                Ok(d) if *d != want.dev_t => *d,
                Ok(_) => {
                    warn!(map = %map.name, path = %s.name, "map member claims our dev_t; not counted");
                    continue;
                }
                Err(e) => {
                    warn!(map = %map.name, path = %s.name, error = %e, "map member unreadable; not counted");
                    continue;
                }
            };
            others_present += 1;
            let out = run_job(
                &*self.backend.prober,
                Job {
                    id: 0,
                    devnode: self.roots.dev.join(&s.name),
                    dev_t,
                    fd: None,
                    timeout,
                    want_vpd: false,
                },
            );
            let ok = matches!(
                out.state,
                PathState::Up | PathState::Standby | PathState::Transitioning
            );
            debug!(map = %map.name, path = %s.name, state = out.state.word(), usable = ok, "map member probed");
            if ok {
                usable += 1;
            }
        }
        ev.usable_paths_in_map = Some(usable);
        if others_present == 0 && !cfg.allow_last_path {
            return Err(refuse(format!(
                "last path of map {} ({}): no other path left in the map",
                map.name, map.dm
            )));
        }
        Ok(())
    }

    /// Step 5.
    fn confirm(
        &mut self,
        want: &PathIdentity,
        cfg: &PurgerConfig,
        own: &Arc<OwnedFd>,
        ev: &mut PurgeEvidence,
        timeout: Duration,
        phase: Phase,
    ) -> Result<(), Halt> {
        let n = cfg.confirmations.clamp(1, MAX_CONFIRMATIONS as u32);
        let interval = Duration::from_millis(cfg.confirmation_interval_ms);
        for k in 1..=n {
            if k > 1 {
                self.pause(interval, phase)?;
            }
            let out = run_job(
                &*self.backend.prober,
                Job {
                    id: 0,
                    devnode: self.roots.dev.join(&want.name),
                    dev_t: want.dev_t,
                    fd: Some(Arc::clone(own)),
                    timeout,
                    want_vpd: false,
                },
            );
            debug!(dev = %want.name, k, n, state = out.state.word(), "confirmation");
            ev.turs.push(out.evidence);
            if out.state != PathState::Disconnected {
                return Err(refuse(format!(
                    "path answered {} on confirmation {k} of {n}",
                    describe(&out.state)
                )));
            }
        }
        Ok(())
    }

    /// Step 7 after `Decision { proceed: true }`.
    fn delete(&self, want: &PathIdentity, cfg: &PurgerConfig) -> PurgeOutcome {
        // The last-moment check: the device may have been removed (or, were the pin ever
        // to fail, replaced) while the supervisor was recording the intent.
        if let Err(o) = self.check_identity(want) {
            return o;
        }
        let dir = match sysfs::scsi_device_dir(&self.roots.sysfs, want.dev_t, want.hctl) {
            Ok(d) => d,
            Err(e) => return PurgeOutcome::Refused(e),
        };
        if cfg.dry_run {
            info!(dev = %want.name, attr = %dir.join("delete").display(), "dry run: not deleting");
            return PurgeOutcome::WouldDelete;
        }
        let attr = dir.join("delete");
        info!(dev = %want.name, dev_t = %want.dev_t, attr = %attr.display(), "deleting");
        if let Err(e) = self.backend.writer.write_attr(&attr, b"1") {
            return PurgeOutcome::Failed(format!("writing 1 to {}: {e}", attr.display()));
        }
        self.wait_removed(want.dev_t)
    }

    /// The kernel removes the device before the `delete` write returns, so the first look
    /// normally settles it. sysfs (kernfs) raises no inotify event when an entry goes away,
    /// so a kernel that did not would leave nothing to wait on: look again a bounded number of
    /// times, with a growing delay, inside `removal_timeout`.
    fn wait_removed(&self, dev_t: DevT) -> PurgeOutcome {
        let start = Instant::now();
        let deadline = start + self.backend.removal_timeout;
        let mut delay = FIRST_RECHECK_DELAY;
        loop {
            match sysfs::present(&self.roots.sysfs, dev_t) {
                Ok(false) => return PurgeOutcome::Deleted,
                Ok(true) => {}
                Err(e) => {
                    return PurgeOutcome::Failed(format!(
                        "cannot tell whether {dev_t} is gone after delete: {e}"
                    ))
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return PurgeOutcome::Failed(format!(
                    "still present after delete: {} remained for {} ms",
                    sysfs::dev_entry(&self.roots.sysfs, dev_t).display(),
                    now.duration_since(start).as_millis()
                ));
            }
            std::thread::sleep(delay.min(deadline - now));
            delay = (delay * 2).min(MAX_RECHECK_DELAY);
        }
    }

    /// Step 8: an intent from before a restart. Looks, never deletes. Only `Vanished` and
    /// `Failed` are answers here; whatever cannot be told apart errs towards `Failed` ("the
    /// deletion is not known to have happened").
    fn resolve(&self, req: &PurgeRequest) -> PurgeOutcome {
        let want = &req.identity;
        match sysfs::read_live(&self.roots.sysfs, want.dev_t) {
            Ok(Live::Absent | Live::NotScsiDisk { .. }) => PurgeOutcome::Vanished,
            Ok(Live::Disk(live)) if !sysfs::differences(want, &live).is_empty() => {
                PurgeOutcome::Vanished
            }
            Ok(Live::Disk(_)) => {
                PurgeOutcome::Failed("device still present; the deletion did not happen".into())
            }
            Err(e) => PurgeOutcome::Failed(format!(
                "cannot read the device ({e}); the deletion is not known to have happened"
            )),
        }
    }

    // ------------------------------------------------------------------ the channel meanwhile

    /// Handles whatever the supervisor sent without waiting (between steps).
    fn checkpoint(&mut self, phase: Phase) -> Result<(), Halt> {
        self.listen_until(Instant::now(), phase)
    }

    /// Waits `d` (the confirmation spacing) while listening to the supervisor.
    fn pause(&mut self, d: Duration, phase: Phase) -> Result<(), Halt> {
        let now = Instant::now();
        let deadline = now
            .checked_add(d)
            .unwrap_or(now + MAX_CONFIRMATION_INTERVAL);
        self.listen_until(deadline, phase)
    }

    fn listen_until(&mut self, deadline: Instant, phase: Phase) -> Result<(), Halt> {
        loop {
            match self.link.recv_until(Some(deadline))? {
                Heard::Timeout => break,
                Heard::Closed => return Err(Halt::Stop(Stop::Closed)),
                Heard::Msg(r) => {
                    // Before the intent no Decision is legal, so this never yields one.
                    self.mid_request(r.msg, phase)?;
                    if self.reconfigured {
                        return Err(refuse(RECONFIGURED));
                    }
                }
            }
        }
        if self.reconfigured {
            return Err(refuse(RECONFIGURED));
        }
        Ok(())
    }

    /// Step 6: waits (in poll, without a deadline: the supervisor owns the timers) for the
    /// `Decision` on this request.
    fn await_decision(&mut self, id: u64) -> Result<bool, Interrupt> {
        let phase = Phase::AwaitingDecision(id);
        loop {
            match self.link.recv_until(None)? {
                Heard::Timeout => {}
                Heard::Closed => return Err(Interrupt::Stop(Stop::Closed)),
                Heard::Msg(r) => {
                    if let Some(proceed) = self.mid_request(r.msg, phase)? {
                        return Ok(proceed);
                    }
                }
            }
        }
    }

    /// A message that arrived while a request is in progress. `Some(proceed)` for the awaited
    /// Decision. `Configure` is legitimate (the supervisor reconfigures on SIGHUP): it applies
    /// to later requests, and one that changes the policy makes this request refuse.
    fn mid_request(&mut self, msg: ToPurger, phase: Phase) -> Result<Option<bool>, Interrupt> {
        let current = phase.id();
        match msg {
            ToPurger::Shutdown => Err(Interrupt::Stop(Stop::Shutdown)),
            ToPurger::Configure(c) => {
                debug!(?c, "configured");
                let c = sanitize(c);
                if self.config.as_ref() != Some(&c) {
                    info!(
                        id = current,
                        "policy changed while a request is in progress"
                    );
                    self.reconfigured = true;
                }
                self.config = Some(c);
                Ok(None)
            }
            ToPurger::Decision { id, proceed } => match phase {
                Phase::AwaitingDecision(want) if id == want => Ok(Some(proceed)),
                Phase::AwaitingDecision(want) => Err(Interrupt::Error(PurgerError::Protocol(
                    format!("Decision for request {id} while waiting for request {want}'s"),
                ))),
                Phase::Verifying(_) => Err(Interrupt::Error(PurgerError::Protocol(format!(
                    "Decision for request {id} before the intent of request {current}"
                )))),
            },
            ToPurger::Purge(r) | ToPurger::Resolve(r) => {
                Err(Interrupt::Error(PurgerError::Protocol(format!(
                    "request {} while request {current} is in progress",
                    r.id
                ))))
            }
        }
    }

    // ------------------------------------------------------------------ outcomes

    fn finish(
        &self,
        req: &PurgeRequest,
        outcome: PurgeOutcome,
        ev: PurgeEvidence,
    ) -> Result<Flow, PurgerError> {
        info!(id = req.id, dev = %req.identity.name, dev_t = %req.identity.dev_t, ?outcome, "purge outcome");
        Ok(if self.send_outcome(req.id, outcome, ev)? {
            Flow::Continue
        } else {
            Flow::Stop
        })
    }

    fn send_outcome(
        &self,
        id: u64,
        outcome: PurgeOutcome,
        evidence: PurgeEvidence,
    ) -> Result<bool, PurgerError> {
        let outcome = match outcome {
            PurgeOutcome::Refused(s) => PurgeOutcome::Refused(bounded(s)),
            PurgeOutcome::Failed(s) => PurgeOutcome::Failed(bounded(s)),
            o => o,
        };
        self.link.send(&PurgerMsg::Outcome {
            id,
            outcome,
            evidence,
        })
    }
}

/// Keeps supervisor-provided numbers in ranges the pipeline can work with; the supervisor
/// validated them already, a change here is logged.
fn sanitize(c: PurgerConfig) -> PurgerConfig {
    let mut s = c.clone();
    s.confirmations = s.confirmations.clamp(1, MAX_CONFIRMATIONS as u32);
    s.confirmation_interval_ms = s
        .confirmation_interval_ms
        .min(MAX_CONFIRMATION_INTERVAL.as_millis() as u64);
    s.tur_timeout_ms = s.tur_timeout_ms.clamp(
        MIN_TUR_TIMEOUT.as_millis() as u64,
        MAX_TUR_TIMEOUT.as_millis() as u64,
    );
    if s != c {
        warn!(?c, ?s, "purger configuration clamped");
    }
    s
}

fn tur_timeout(cfg: &PurgerConfig) -> Duration {
    Duration::from_millis(cfg.tur_timeout_ms).clamp(MIN_TUR_TIMEOUT, MAX_TUR_TIMEOUT)
}

fn open_failure(devnode: &Path, dev_t: DevT, e: &io::Error) -> String {
    let node = devnode.display();
    match e.raw_os_error() {
        Some(libc::ESTALE) => {
            format!("{node} is no longer block device {dev_t}: the name belongs to another device")
        }
        Some(libc::ENOTBLK) => format!("{node} is not a block device"),
        Some(libc::ENOENT) => format!("{node} does not exist"),
        _ => format!("cannot open {node}: {e}"),
    }
}

/// The classification word, with the detail that made it so.
pub fn describe(s: &PathState) -> String {
    match s {
        PathState::Down(r) => match r {
            DownReason::Errno(e) => format!(
                "down (errno {e}: {})",
                nix::errno::Errno::from_raw(*e).desc()
            ),
            DownReason::HostByte(h) => format!("down (host byte {h:#04x})"),
            DownReason::Sense { key, asc, ascq } => {
                format!("down (sense {key:x}/{asc:02x}/{ascq:02x})")
            }
            DownReason::Status(st) => format!("down (SCSI status {st:#04x})"),
            DownReason::UnitAttentionStorm => "down (UNIT ATTENTION past the retry bound)".into(),
            DownReason::Driver(d) => format!("down (driver byte {d:#04x})"),
        },
        other => other.word().to_string(),
    }
}

/// A reason cut to the ipc limit, at a character boundary.
fn bounded(mut s: String) -> String {
    if s.len() > MAX_REASON {
        let mut end = MAX_REASON - 3;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("...");
    }
    s
}
