//! The path table and the decision of what to tell the supervisor.
//!
//! Rules:
//! - A new path is reported at once (state `unknown`, or `offline`), then again when its first
//!   probe returns.
//! - A path is reported again when its state word/reason, its sysfs `device/state` or its
//!   identity (WWID found, map changed...) changes; otherwise nothing is sent.
//! - A path gone from sysfs is `CheckerMsg::Gone`. A name that now has another dev_t or
//!   H:C:T:L is another device: `Gone` for the old one, then a new path.
//! - Offline: while sysfs `device/state` is `offline` or `transport-offline` the path is
//!   reported `Offline` whatever its probe says. It is still probed (DESIGN.md), and the
//!   evidence of that probe goes along, but the kernel refuses I/O to an offline device
//!   (ENODEV/ENXIO), so a probe cannot tell more than sysfs does. When `device/state` changes
//!   the last probe result is stale and the state is `unknown` until the next probe returns.
//! - At most one probe per path is in flight; a late result still counts. A probe in flight
//!   longer than the watchdog limit is reported `Timeout` (errno ETIMEDOUT marks it as ours)
//!   while the worker keeps waiting for the kernel.
//! - `Disconnected` always goes with the path's open fd, the one its TUR used.

use crate::discovery::Discovered;
use crate::pool::{Job, Outcome};
use mpsup_ipc::{CheckerMsg, PathIdentity, PathReport, PathState, TurEvidence};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::error;

/// VPD 0x83 attempts per path before we accept that it has no WWID.
const MAX_VPD_ATTEMPTS: u8 = 3;

/// A message for the supervisor and the fd that must go with it.
#[derive(Debug)]
pub struct Outgoing {
    pub msg: CheckerMsg,
    pub fd: Option<Arc<OwnedFd>>,
}

#[derive(Debug)]
struct Entry {
    id: u64,
    found: Discovered,
    vpd_wwid: Option<String>,
    vpd_attempts: u8,
    probe_state: PathState,
    evidence: TurEvidence,
    checked_at_ms: u64,
    fd: Option<Arc<OwnedFd>>,
    in_flight: Option<Instant>,
    /// A probe result (or watchdog timeout) has been applied at least once.
    probed: bool,
    overdue: bool,
    last_reported: Option<(PathState, String, PathIdentity)>,
}

impl Entry {
    fn identity(&self) -> PathIdentity {
        let mut id = self.found.identity.clone();
        if id.wwid.is_none() {
            id.wwid.clone_from(&self.vpd_wwid);
        }
        id
    }

    fn state(&self) -> PathState {
        if is_offline(&self.found.device_state) {
            PathState::Offline
        } else {
            self.probe_state.clone()
        }
    }

    /// The report for the current view, if it differs from the last one sent (or `force`).
    fn report(&mut self, force: bool) -> Option<Outgoing> {
        let view = (
            self.state(),
            self.found.device_state.clone(),
            self.identity(),
        );
        if !force && self.last_reported.as_ref() == Some(&view) {
            return None;
        }
        let (state, device_state, identity) = view.clone();
        let fd = if state == PathState::Disconnected {
            match &self.fd {
                Some(fd) => Some(Arc::clone(fd)),
                None => {
                    // Cannot happen: Disconnected only comes from a TUR on this fd.
                    error!(dev = %identity.name, "disconnected without an open fd; not reported");
                    return None;
                }
            }
        } else {
            None
        };
        self.last_reported = Some(view);
        let report = PathReport {
            identity,
            state,
            device_state,
            evidence: self.evidence.clone(),
            checked_at_ms: self.checked_at_ms,
        };
        Some(Outgoing {
            msg: CheckerMsg::Path(report),
            fd,
        })
    }
}

pub fn is_offline(device_state: &str) -> bool {
    matches!(device_state, "offline" | "transport-offline")
}

#[derive(Debug, Default)]
pub struct Tracker {
    paths: BTreeMap<String, Entry>,
    /// id -> name, so a result finds its path without a scan.
    names: HashMap<u64, String>,
    /// Probes in flight the watchdog has not fired for, oldest first.
    watch: BTreeSet<(Instant, u64)>,
    next_id: u64,
    /// Most path fds (open or being opened) at once; `None` is unlimited. Past it, probes that
    /// need a new fd wait, so that discovery itself never runs out of fds (EMFILE would blind
    /// the checker to every path, not only the ones over the limit).
    fd_budget: Option<usize>,
    /// Probes held back by the budget in the last `start`.
    pub starved: usize,
}

impl Tracker {
    pub fn new() -> Tracker {
        Tracker::default()
    }

    pub fn len(&self) -> usize {
        self.paths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Merges a full discovery: returns `Gone` for vanished paths and reports for new or
    /// changed ones.
    pub fn apply_discovery(&mut self, found: Vec<Discovered>) -> Vec<Outgoing> {
        let mut out = Vec::new();
        let fresh: BTreeMap<String, Discovered> = found
            .into_iter()
            .map(|d| (d.identity.name.clone(), d))
            .collect();
        let gone: Vec<String> = self
            .paths
            .iter()
            .filter(|(name, e)| {
                fresh.get(*name).is_none_or(|d| {
                    e.found.identity.dev_t != d.identity.dev_t
                        || e.found.identity.hctl != d.identity.hctl
                })
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            if let Some(old) = self.paths.remove(&name) {
                self.forget(&old);
                let dev_t = old.found.identity.dev_t;
                out.push(Outgoing {
                    msg: CheckerMsg::Gone { name, dev_t },
                    fd: None,
                });
            }
        }
        for (name, d) in fresh {
            match self.paths.get_mut(&name) {
                Some(e) => {
                    if e.found.device_state != d.device_state {
                        e.probe_state = PathState::Unknown;
                    }
                    if e.found.identity.wwid != d.identity.wwid {
                        // sysfs now has a WWID (or another one): it wins over our VPD reading.
                        e.vpd_wwid = None;
                        e.vpd_attempts = 0;
                    }
                    e.found = d;
                }
                None => {
                    self.next_id += 1;
                    let e = Entry {
                        id: self.next_id,
                        found: d,
                        vpd_wwid: None,
                        vpd_attempts: 0,
                        probe_state: PathState::Unknown,
                        evidence: TurEvidence::default(),
                        checked_at_ms: 0,
                        fd: None,
                        in_flight: None,
                        probed: false,
                        overdue: false,
                        last_reported: None,
                    };
                    self.names.insert(e.id, name.clone());
                    self.paths.insert(name, e);
                }
            }
        }
        out.extend(self.paths.values_mut().filter_map(|e| e.report(false)));
        out
    }

    /// Drops the indexes of a removed entry.
    fn forget(&mut self, e: &Entry) {
        self.names.remove(&e.id);
        if let (Some(since), false) = (e.in_flight, e.overdue) {
            self.watch.remove(&(since, e.id));
        }
    }

    fn entry(&mut self, id: u64) -> Option<&mut Entry> {
        let name = self.names.get(&id)?;
        self.paths.get_mut(name)
    }

    /// Starts a probe for every path that has none in flight.
    pub fn start_probes(&mut self, now: Instant, timeout: Duration) -> Vec<Job> {
        self.start(now, timeout, false)
    }

    /// Starts a probe for every path never probed yet (after an early rediscovery).
    pub fn start_new_probes(&mut self, now: Instant, timeout: Duration) -> Vec<Job> {
        self.start(now, timeout, true)
    }

    pub fn set_fd_budget(&mut self, budget: Option<usize>) {
        self.fd_budget = budget;
    }

    fn start(&mut self, now: Instant, timeout: Duration, only_new: bool) -> Vec<Job> {
        let mut jobs = Vec::new();
        // Fds held, plus opens already handed to workers.
        let mut used = self
            .paths
            .values()
            .filter(|e| e.fd.is_some() || e.in_flight.is_some())
            .count();
        self.starved = 0;
        for e in self.paths.values_mut() {
            if e.in_flight.is_some() || (only_new && e.probed) {
                continue;
            }
            if e.fd.is_none() {
                if self.fd_budget.is_some_and(|b| used >= b) {
                    self.starved += 1;
                    continue;
                }
                used += 1;
            }
            e.in_flight = Some(now);
            e.overdue = false;
            self.watch.insert((now, e.id));
            let want_vpd = e.found.identity.wwid.is_none()
                && e.vpd_wwid.is_none()
                && e.vpd_attempts < MAX_VPD_ATTEMPTS;
            jobs.push(Job {
                id: e.id,
                devnode: e.found.devnode.clone(),
                dev_t: e.found.identity.dev_t,
                fd: e.fd.clone(),
                timeout,
                want_vpd,
            });
        }
        jobs
    }

    /// Ends the in-flight mark of a path; returns the entry.
    fn land(&mut self, id: u64) -> Option<&mut Entry> {
        let name = self.names.get(&id)?;
        let e = self.paths.get_mut(name)?;
        if let (Some(since), false) = (e.in_flight.take(), e.overdue) {
            self.watch.remove(&(since, id));
        }
        e.overdue = false;
        Some(e)
    }

    /// A job could not be queued: the path is no longer in flight.
    pub fn abandon(&mut self, id: u64) {
        self.land(id);
    }

    /// Applies a probe result. A result for a path that has gone (or whose name now belongs
    /// to another device) is dropped, and its fd with it.
    pub fn apply_outcome(&mut self, o: Outcome, now_ms: u64) -> Option<Outgoing> {
        let e = self.land(o.id)?;
        e.probed = true;
        // ENODEV/ENXIO on an fd we already held: the device behind it is dead (deleted, or
        // offline). Drop the fd so the next probe reopens the name and sees what is there now.
        let dead_fd = matches!(o.evidence.errno, Some(libc::ENODEV) | Some(libc::ENXIO));
        e.fd = if dead_fd { None } else { o.fd };
        e.probe_state = o.state;
        e.evidence = o.evidence;
        e.checked_at_ms = now_ms;
        if o.vpd_tried {
            e.vpd_attempts = e.vpd_attempts.saturating_add(1);
            if o.vpd_wwid.is_some() {
                e.vpd_wwid = o.vpd_wwid;
            }
        }
        e.report(false)
    }

    /// Reports `Timeout` for probes in flight longer than `limit` (once per probe).
    pub fn overdue(&mut self, now: Instant, limit: Duration, now_ms: u64) -> Vec<Outgoing> {
        let mut out = Vec::new();
        while let Some(&(since, id)) = self.watch.first() {
            if now.duration_since(since) < limit {
                break;
            }
            self.watch.pop_first();
            let Some(e) = self.entry(id) else { continue };
            e.overdue = true;
            e.probed = true;
            e.probe_state = PathState::Timeout;
            let waited = u32::try_from(now.duration_since(since).as_millis()).unwrap_or(u32::MAX);
            e.evidence = TurEvidence {
                errno: Some(libc::ETIMEDOUT),
                duration_ms: waited,
                ..Default::default()
            };
            e.checked_at_ms = now_ms;
            out.extend(e.report(false));
        }
        out
    }

    /// When the next probe becomes overdue, if any is in flight.
    pub fn next_overdue(&self, limit: Duration) -> Option<Instant> {
        self.watch.first().map(|&(since, _)| since + limit)
    }

    /// Every path's current state, whether or not it changed.
    pub fn resync(&mut self) -> Vec<Outgoing> {
        self.paths
            .values_mut()
            .filter_map(|e| e.report(true))
            .collect()
    }

    /// Ids with a probe in flight (for tests and diagnostics).
    pub fn in_flight(&self) -> Vec<u64> {
        self.paths
            .values()
            .filter(|e| e.in_flight.is_some())
            .map(|e| e.id)
            .collect()
    }

    pub fn id_of(&self, name: &str) -> Option<u64> {
        self.paths.get(name).map(|e| e.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mpsup_ipc::{DevT, DownReason, MapRef};
    use std::path::PathBuf;

    fn found(name: &str, minor: u32, state: &str) -> Discovered {
        Discovered {
            identity: PathIdentity {
                name: name.into(),
                dev_t: DevT { major: 8, minor },
                hctl: format!("1:0:0:{minor}").parse().unwrap(),
                vendor: "LIO-ORG".into(),
                model: "disk0".into(),
                wwid: Some(format!("naa.{minor}")),
                map: None,
            },
            device_state: state.into(),
            devnode: PathBuf::from(format!("/dev/{name}")),
        }
    }

    fn null_fd() -> Arc<OwnedFd> {
        Arc::new(std::fs::File::open("/dev/null").unwrap().into())
    }

    fn outcome(id: u64, state: PathState, fd: Option<Arc<OwnedFd>>) -> Outcome {
        Outcome {
            id,
            fd,
            evidence: TurEvidence {
                duration_ms: 3,
                ..Default::default()
            },
            state,
            vpd_tried: false,
            vpd_wwid: None,
        }
    }

    fn states(out: &[Outgoing]) -> Vec<(String, &'static str)> {
        out.iter()
            .map(|o| match &o.msg {
                CheckerMsg::Path(r) => (r.identity.name.clone(), r.state.word()),
                CheckerMsg::Gone { name, .. } => (name.clone(), "gone"),
                m => panic!("unexpected {m:?}"),
            })
            .collect()
    }

    #[test]
    fn new_paths_are_reported_then_only_changes() {
        let mut t = Tracker::new();
        let out = t.apply_discovery(vec![
            found("sdc", 32, "running"),
            found("sdd", 48, "offline"),
        ]);
        assert_eq!(
            states(&out),
            [("sdc".into(), "unknown"), ("sdd".into(), "offline")]
        );
        // Same view again: nothing.
        assert!(t
            .apply_discovery(vec![
                found("sdc", 32, "running"),
                found("sdd", 48, "offline")
            ])
            .is_empty());

        let id = t.id_of("sdc").unwrap();
        let jobs = t.start_probes(Instant::now(), Duration::from_secs(30));
        assert_eq!(jobs.len(), 2);
        let out = t
            .apply_outcome(outcome(id, PathState::Up, Some(null_fd())), 1)
            .unwrap();
        assert_eq!(states(&[out]), [("sdc".into(), "up")]);
        // Unchanged result: nothing.
        t.start_probes(Instant::now(), Duration::from_secs(30));
        assert!(t
            .apply_outcome(outcome(id, PathState::Up, Some(null_fd())), 2)
            .is_none());
        // A changed down reason is a change.
        t.apply_outcome(outcome(id, PathState::Down(DownReason::Errno(5)), None), 3)
            .unwrap();
        assert!(t
            .apply_outcome(outcome(id, PathState::Down(DownReason::Errno(6)), None), 4)
            .is_some());
    }

    #[test]
    fn disconnected_carries_the_fd_of_its_tur() {
        let mut t = Tracker::new();
        t.apply_discovery(vec![found("sdc", 32, "running")]);
        let id = t.id_of("sdc").unwrap();
        t.start_probes(Instant::now(), Duration::from_secs(30));
        let fd = null_fd();
        let out = t
            .apply_outcome(outcome(id, PathState::Disconnected, Some(fd.clone())), 1)
            .unwrap();
        assert!(matches!(&out.msg, CheckerMsg::Path(r) if r.state == PathState::Disconnected));
        assert!(Arc::ptr_eq(out.fd.as_ref().unwrap(), &fd));
        // The next probe reuses it.
        let jobs = t.start_probes(Instant::now(), Duration::from_secs(30));
        assert!(Arc::ptr_eq(jobs[0].fd.as_ref().unwrap(), &fd));
        // Resync re-sends it with the fd.
        let out = t.resync();
        assert_eq!(out.len(), 1);
        assert!(out[0].fd.is_some());
    }

    #[test]
    fn vanished_and_replaced_paths() {
        let mut t = Tracker::new();
        t.apply_discovery(vec![
            found("sdc", 32, "running"),
            found("sdd", 48, "running"),
        ]);
        let old_sdd = t.id_of("sdd").unwrap();
        t.start_probes(Instant::now(), Duration::from_secs(30));
        // sdc vanished; sdd's name now belongs to another device (new dev_t).
        let out = t.apply_discovery(vec![found("sdd", 64, "running")]);
        let got = states(&out);
        assert_eq!(
            got,
            [
                ("sdc".into(), "gone"),
                ("sdd".into(), "gone"),
                ("sdd".into(), "unknown")
            ]
        );
        assert!(matches!(
            out[1].msg,
            CheckerMsg::Gone {
                dev_t: DevT {
                    major: 8,
                    minor: 48
                },
                ..
            }
        ));
        // The old device's late result is dropped, not applied to the new one.
        assert!(t
            .apply_outcome(
                outcome(old_sdd, PathState::Disconnected, Some(null_fd())),
                5
            )
            .is_none());
        assert_ne!(t.id_of("sdd"), Some(old_sdd));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn one_probe_in_flight_per_path_and_late_results_count() {
        let mut t = Tracker::new();
        t.apply_discovery(vec![
            found("sdc", 32, "running"),
            found("sdd", 48, "running"),
        ]);
        let now = Instant::now();
        assert_eq!(t.start_probes(now, Duration::from_secs(30)).len(), 2);
        let sdd = t.id_of("sdd").unwrap();
        t.apply_outcome(outcome(sdd, PathState::Up, Some(null_fd())), 1);
        // Next round: sdc is still in flight and is not queued again.
        let jobs = t.start_probes(now, Duration::from_secs(30));
        assert_eq!(jobs.iter().map(|j| j.id).collect::<Vec<_>>(), [sdd]);
        let sdc = t.id_of("sdc").unwrap();
        let out = t
            .apply_outcome(outcome(sdc, PathState::Disconnected, Some(null_fd())), 9)
            .unwrap();
        assert!(
            matches!(out.msg, CheckerMsg::Path(ref r) if r.state == PathState::Disconnected && r.checked_at_ms == 9)
        );
    }

    #[test]
    fn watchdog_reports_timeout_once_then_the_real_answer() {
        let mut t = Tracker::new();
        t.apply_discovery(vec![found("sdc", 32, "running")]);
        let id = t.id_of("sdc").unwrap();
        let start = Instant::now();
        t.start_probes(start, Duration::from_secs(30));
        let limit = Duration::from_secs(40);
        assert_eq!(t.next_overdue(limit), Some(start + limit));
        assert!(t
            .overdue(start + Duration::from_secs(39), limit, 1)
            .is_empty());
        let out = t.overdue(start + limit, limit, 2);
        assert_eq!(states(&out), [("sdc".into(), "timeout")]);
        match &out[0].msg {
            CheckerMsg::Path(r) => assert_eq!(r.evidence.errno, Some(libc::ETIMEDOUT)),
            _ => unreachable!(),
        }
        assert!(t.overdue(start + limit * 2, limit, 3).is_empty());
        assert_eq!(t.next_overdue(limit), None);
        // Still in flight: not requeued.
        assert!(t
            .start_probes(start + limit, Duration::from_secs(30))
            .is_empty());
        let out = t
            .apply_outcome(outcome(id, PathState::Up, Some(null_fd())), 4)
            .unwrap();
        assert_eq!(states(&[out]), [("sdc".into(), "up")]);
    }

    #[test]
    fn offline_wins_and_returning_online_is_unknown_until_probed() {
        let mut t = Tracker::new();
        t.apply_discovery(vec![found("sdc", 32, "running")]);
        let id = t.id_of("sdc").unwrap();
        t.start_probes(Instant::now(), Duration::from_secs(30));
        t.apply_outcome(outcome(id, PathState::Disconnected, Some(null_fd())), 1);
        let out = t.apply_discovery(vec![found("sdc", 32, "transport-offline")]);
        assert_eq!(states(&out), [("sdc".into(), "offline")]);
        // Still probed while offline; its ENODEV changes nothing visible.
        assert_eq!(
            t.start_probes(Instant::now(), Duration::from_secs(30))
                .len(),
            1
        );
        let mut o = outcome(
            id,
            PathState::Down(DownReason::Errno(libc::ENODEV)),
            Some(null_fd()),
        );
        o.evidence.errno = Some(libc::ENODEV);
        assert!(t.apply_outcome(o, 2).is_none());
        // The dead fd was dropped: the next probe reopens.
        assert!(t.start_probes(Instant::now(), Duration::from_secs(30))[0]
            .fd
            .is_none());
        t.abandon(id);
        // Back to running: the old "disconnected" must not resurface.
        let out = t.apply_discovery(vec![found("sdc", 32, "running")]);
        assert_eq!(states(&out), [("sdc".into(), "unknown")]);
    }

    #[test]
    fn identity_changes_are_reported_and_vpd_fills_a_missing_wwid() {
        let mut t = Tracker::new();
        let mut d = found("sdc", 32, "running");
        d.identity.wwid = None;
        t.apply_discovery(vec![d.clone()]);
        let jobs = t.start_probes(Instant::now(), Duration::from_secs(30));
        assert!(jobs[0].want_vpd);
        let mut o = outcome(jobs[0].id, PathState::Up, Some(null_fd()));
        o.vpd_tried = true;
        o.vpd_wwid = Some("naa.600140".into());
        let out = t.apply_outcome(o, 1).unwrap();
        match &out.msg {
            CheckerMsg::Path(r) => assert_eq!(r.identity.wwid.as_deref(), Some("naa.600140")),
            _ => unreachable!(),
        }
        assert!(!t.start_probes(Instant::now(), Duration::from_secs(30))[0].want_vpd);
        // Joining a multipath map is a change the supervisor must hear about.
        d.identity.map = Some(MapRef {
            dm: "dm-0".into(),
            name: "mpatha".into(),
            uuid: "mpath-3600140".into(),
        });
        let out = t.apply_discovery(vec![d]);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn removed_paths_leave_no_watchdog_behind() {
        let mut t = Tracker::new();
        t.apply_discovery(vec![
            found("sdc", 32, "running"),
            found("sdd", 48, "running"),
        ]);
        let start = Instant::now();
        t.start_probes(start, Duration::from_secs(30));
        t.apply_discovery(vec![found("sdd", 48, "running")]);
        let limit = Duration::from_secs(40);
        // Only sdd's probe is still watched; sdc's vanished with it.
        assert_eq!(t.in_flight(), [t.id_of("sdd").unwrap()]);
        assert_eq!(
            states(&t.overdue(start + limit, limit, 1)),
            [("sdd".into(), "timeout")]
        );
        assert_eq!(t.next_overdue(limit), None);
        assert!(t.names.len() == 1 && t.watch.is_empty());
    }

    #[test]
    fn early_rediscovery_probes_only_new_paths() {
        let mut t = Tracker::new();
        t.apply_discovery(vec![found("sdc", 32, "running")]);
        let jobs = t.start_probes(Instant::now(), Duration::from_secs(30));
        t.apply_outcome(outcome(jobs[0].id, PathState::Up, Some(null_fd())), 1);
        t.apply_discovery(vec![
            found("sdc", 32, "running"),
            found("sde", 64, "running"),
        ]);
        let jobs = t.start_new_probes(Instant::now(), Duration::from_secs(30));
        assert_eq!(
            jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
            [t.id_of("sde").unwrap()]
        );
    }

    #[test]
    fn vpd_attempts_are_bounded() {
        let mut t = Tracker::new();
        let mut d = found("sdc", 32, "running");
        d.identity.wwid = None;
        t.apply_discovery(vec![d]);
        for i in 0..MAX_VPD_ATTEMPTS {
            let jobs = t.start_probes(Instant::now(), Duration::from_secs(30));
            assert!(jobs[0].want_vpd, "attempt {i}");
            let mut o = outcome(jobs[0].id, PathState::Up, Some(null_fd()));
            o.vpd_tried = true;
            t.apply_outcome(o, 1);
        }
        assert!(!t.start_probes(Instant::now(), Duration::from_secs(30))[0].want_vpd);
    }

    #[test]
    fn the_fd_budget_holds_back_probes_that_need_a_new_fd() {
        let mut t = Tracker::new();
        t.set_fd_budget(Some(2));
        t.apply_discovery(vec![
            found("sda", 0, "running"),
            found("sdb", 16, "running"),
            found("sdc", 32, "running"),
        ]);
        let now = Instant::now();
        let jobs = t.start_probes(now, Duration::from_secs(1));
        assert_eq!(jobs.len(), 2, "two opens fit the budget");
        assert_eq!(t.starved, 1);
        // Results come back with their fds: the budget is full, the third path still waits.
        for j in &jobs {
            t.apply_outcome(outcome(j.id, PathState::Up, Some(null_fd())), 1);
        }
        let again = t.start_probes(now, Duration::from_secs(1));
        assert_eq!(again.len(), 2, "paths holding fds keep being probed");
        assert!(again.iter().all(|j| j.fd.is_some()));
        assert_eq!(t.starved, 1);
        // Without a budget everything is probed.
        t.set_fd_budget(None);
        for j in &again {
            t.apply_outcome(outcome(j.id, PathState::Up, None), 1);
        }
        assert_eq!(t.start_probes(now, Duration::from_secs(1)).len(), 3);
        assert_eq!(t.starved, 0);
    }
}
