//! The purge request lifecycle (DESIGN.md, "Purge request lifecycle"), as a state machine with
//! no I/O: the daemon feeds it reports, purger messages and the clock, and carries out what it
//! returns (audit events to append, requests to send). Keeping it pure lets every transition
//! be unit-tested, and keeps the rules in one place.
//!
//! ```text
//! Disconnected seen -> Grace --(still disconnected after delay)--> Queued -> Verifying (purger)
//!    -> Intent (audit fsynced) -> Deleting -> Done | Failed | Refused | Vanished
//! any state before Deleting -> Cancelled
//! ```
//! One live request per dev_t; one request at the purger at a time (deletions are rare and the
//! brakes are simpler to reason about when serial). A purger crash puts its request back at the
//! head of the queue; the purger re-verifies from scratch, so a resent request is idempotent.

use crate::audit::Event;
use mpsup_ipc::{DevT, PathIdentity, PurgeEvidence, PurgeOutcome, TurEvidence};
use mpsup_policy::LoadedPolicy;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

/// Finished requests kept for `show purges`.
const HISTORY: usize = 256;
const RATE_WINDOW: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stage {
    Grace {
        until: Instant,
    },
    Queued,
    /// At the purger, before its `Intent`.
    Verifying,
    /// `Intent` recorded, the supervisor said Abort: waiting for the purger's `Aborted`.
    Aborting,
    /// `Intent` recorded, the supervisor said Proceed.
    Deleting,
    /// An intent from before a restart, to be resolved by the purger looking at the device.
    Resolving,
}

impl Stage {
    pub fn word(&self) -> &'static str {
        match self {
            Stage::Grace { .. } => "grace",
            Stage::Queued => "queued",
            Stage::Verifying => "verifying",
            Stage::Aborting => "aborting",
            Stage::Deleting => "deleting",
            Stage::Resolving => "resolving",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Request {
    pub id: u64,
    pub identity: PathIdentity,
    pub stage: Stage,
    pub created: SystemTime,
    pub manual: bool,
    /// Why the request must not proceed, once that was decided while the purger had it.
    pub cancel: Option<String>,
    /// The intent record is already in the log (a requeued request after a purger crash).
    pub intent_recorded: bool,
    pub checker_evidence: TurEvidence,
}

#[derive(Clone, Debug)]
pub struct Finished {
    pub id: u64,
    pub dev: String,
    pub dev_t: DevT,
    pub state: &'static str,
    pub reason: Option<String>,
    pub at: SystemTime,
}

/// What the daemon must send to the purger next.
#[derive(Debug, PartialEq, Eq)]
pub enum Dispatch {
    Purge { id: u64, identity: PathIdentity },
    Resolve { id: u64, identity: PathIdentity },
}

#[derive(Default)]
pub struct PurgeBook {
    live: BTreeMap<u64, Request>,
    by_dev: HashMap<DevT, u64>,
    history: VecDeque<Finished>,
    next_id: u64,
    in_flight: Option<u64>,
    pause: Option<String>,
    deletions: VecDeque<Instant>,
    disconnects: VecDeque<(Instant, DevT)>,
}

pub fn tur_json(t: &TurEvidence) -> Value {
    json!({
        "scsi_status": t.scsi_status,
        "host_status": t.host_status,
        "driver_status": t.driver_status,
        "errno": t.errno,
        "sense": t.sense.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" "),
        "duration_ms": t.duration_ms,
    })
}

fn purger_json(e: &PurgeEvidence) -> Value {
    json!({
        "confirmations": e.turs.iter().map(tur_json).collect::<Vec<_>>(),
        "holders": e.holders,
        "usable_paths_in_map": e.usable_paths_in_map,
    })
}

fn event_for(r: &Request, event: &'static str, reason: Option<String>, evidence: Value) -> Event {
    let id = &r.identity;
    Event {
        event: event.into(),
        id: Some(r.id),
        dev: Some(id.name.clone()),
        dev_t: Some(id.dev_t.to_string()),
        hctl: Some(id.hctl.to_string()),
        wwid: id.wwid.clone(),
        map: id.map.as_ref().map(|m| m.name.clone()),
        reason,
        evidence,
    }
}

impl PurgeBook {
    /// `first_id` continues above every id in the audit log, so ids never repeat.
    pub fn new(first_id: u64) -> Self {
        PurgeBook {
            next_id: first_id.max(1),
            ..PurgeBook::default()
        }
    }

    pub fn live(&self) -> impl Iterator<Item = &Request> {
        self.live.values()
    }

    pub fn history(&self) -> impl Iterator<Item = &Finished> {
        self.history.iter()
    }

    pub fn paused(&self) -> Option<&str> {
        self.pause.as_deref()
    }

    pub fn in_flight(&self) -> Option<u64> {
        self.in_flight
    }

    pub fn request_for(&self, dev_t: DevT) -> Option<&Request> {
        self.by_dev.get(&dev_t).and_then(|id| self.live.get(id))
    }

    fn insert(
        &mut self,
        identity: PathIdentity,
        stage: Stage,
        manual: bool,
        evidence: TurEvidence,
    ) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.by_dev.insert(identity.dev_t, id);
        let created = SystemTime::now();
        self.live.insert(
            id,
            Request {
                id,
                identity,
                stage,
                created,
                manual,
                cancel: None,
                intent_recorded: false,
                checker_evidence: evidence,
            },
        );
        id
    }

    fn finish(&mut self, id: u64, state: &'static str, reason: Option<String>) -> Option<Request> {
        let r = self.live.remove(&id)?;
        if self.by_dev.get(&r.identity.dev_t) == Some(&id) {
            self.by_dev.remove(&r.identity.dev_t);
        }
        if self.in_flight == Some(id) {
            self.in_flight = None;
        }
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        let (dev, dev_t) = (r.identity.name.clone(), r.identity.dev_t);
        self.history.push_back(Finished {
            id,
            dev,
            dev_t,
            state,
            reason,
            at: SystemTime::now(),
        });
        Some(r)
    }

    /// An intent from the audit log with no outcome: resolve it before anything else.
    pub fn resume_open_intent(&mut self, id: u64, identity: PathIdentity) {
        self.next_id = self.next_id.max(id + 1);
        self.by_dev.insert(identity.dev_t, id);
        let created = SystemTime::now();
        let r = Request {
            id,
            identity,
            stage: Stage::Resolving,
            created,
            manual: false,
            cancel: None,
            intent_recorded: true,
            checker_evidence: TurEvidence::default(),
        };
        self.live.insert(id, r);
    }

    /// The checker says `identity` is disconnected. Starts a grace period if the policy allows
    /// purging it; may trip the self-pause brake. `known_paths` is the path table's size.
    pub fn on_disconnected(
        &mut self,
        identity: &PathIdentity,
        evidence: &TurEvidence,
        now: Instant,
        known_paths: usize,
        policy: &LoadedPolicy,
    ) -> Vec<Event> {
        let mut events = Vec::new();
        let p = &policy.policy.purge;
        // Brake: too many paths turning disconnected at once looks like a target-side outage.
        while self
            .disconnects
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > p.pause_window)
        {
            self.disconnects.pop_front();
        }
        if !self.disconnects.iter().any(|(_, d)| *d == identity.dev_t) {
            self.disconnects.push_back((now, identity.dev_t));
        }
        let fraction = self.disconnects.len() as f64 / known_paths.max(1) as f64;
        if self.pause.is_none() && fraction > p.pause_fraction {
            let reason = format!(
                "{} of {} known paths turned disconnected within {} (more than pause_fraction {})",
                self.disconnects.len(),
                known_paths,
                humantime::format_duration(p.pause_window),
                p.pause_fraction
            );
            events.push(self.set_pause(reason));
        }
        if self.by_dev.contains_key(&identity.dev_t) || !p.enabled {
            return events;
        }
        if !policy.purge_allowed_for(&identity.vendor, &identity.model, identity.wwid.as_deref()) {
            return events;
        }
        self.insert(
            identity.clone(),
            Stage::Grace {
                until: now + p.delay,
            },
            false,
            evidence.clone(),
        );
        events
    }

    fn set_pause(&mut self, reason: String) -> Event {
        self.pause = Some(reason.clone());
        Event {
            event: "paused".into(),
            reason: Some(reason),
            evidence: json!({}),
            ..Event::default()
        }
    }

    /// An admin `pause`.
    pub fn pause(&mut self, who: &str) -> Option<Event> {
        if self.pause.is_some() {
            return None;
        }
        Some(self.set_pause(format!("paused by {who}")))
    }

    /// An admin `resume`: lifts any pause, including the brake's.
    pub fn resume(&mut self, who: &str) -> Option<Event> {
        let was = self.pause.take()?;
        self.disconnects.clear();
        Some(Event {
            event: "resumed".into(),
            reason: Some(format!("resumed by {who}; was: {was}")),
            evidence: json!({}),
            ..Event::default()
        })
    }

    /// The path is no longer disconnected (or gone): cancel what has not reached the purger;
    /// mark what the purger has, so its intent is answered with Abort.
    pub fn on_not_disconnected(&mut self, dev_t: DevT, why: String) -> Option<Event> {
        let id = *self.by_dev.get(&dev_t)?;
        let r = self.live.get_mut(&id)?;
        match r.stage {
            Stage::Grace { .. } | Stage::Queued => {
                let r = self.finish(id, "cancelled", Some(why.clone()))?;
                Some(event_for(
                    &r,
                    "cancelled",
                    Some(why),
                    json!({ "checker": tur_json(&r.checker_evidence) }),
                ))
            }
            Stage::Verifying => {
                r.cancel.get_or_insert(why);
                None
            }
            Stage::Aborting | Stage::Deleting | Stage::Resolving => None,
        }
    }

    /// An admin `cancel purge <id>`.
    pub fn cancel(&mut self, id: u64, who: &str) -> Result<Option<Event>, String> {
        let r = self
            .live
            .get(&id)
            .ok_or_else(|| format!("no live purge request {id}"))?;
        match r.stage {
            Stage::Deleting => Err(format!(
                "request {id} is deleting already; it cannot be cancelled"
            )),
            Stage::Resolving => Err(format!(
                "request {id} resolves an intent from before a restart"
            )),
            _ => Ok(self.on_not_disconnected(r.identity.dev_t, format!("cancelled by {who}"))),
        }
    }

    /// An admin `purge path <dev>`: straight to the queue (the purger still re-verifies all).
    pub fn manual(
        &mut self,
        identity: &PathIdentity,
        evidence: &TurEvidence,
    ) -> Result<u64, String> {
        if let Some(r) = self.request_for(identity.dev_t) {
            return Err(format!(
                "{} already has request {} ({})",
                identity.name,
                r.id,
                r.stage.word()
            ));
        }
        Ok(self.insert(identity.clone(), Stage::Queued, true, evidence.clone()))
    }

    /// Moves expired grace periods to the queue.
    pub fn tick(&mut self, now: Instant) {
        for r in self.live.values_mut() {
            if matches!(r.stage, Stage::Grace { until } if until <= now) {
                r.stage = Stage::Queued;
            }
        }
    }

    /// The earliest grace expiry, for the event loop's timeout.
    pub fn next_deadline(&self) -> Option<Instant> {
        let grace = self.live.values().filter_map(|r| match r.stage {
            Stage::Grace { until } => Some(until),
            _ => None,
        });
        // When the rate brake holds queued work back, wake when the oldest deletion leaves the window.
        let rate = self.deletions.front().map(|t| *t + RATE_WINDOW);
        grace.chain(rate).min()
    }

    /// The next request for the purger, if one may go now. Resolutions go first and ignore the
    /// brakes (they delete nothing).
    pub fn dispatch(&mut self, now: Instant, max_per_minute: u32) -> Option<Dispatch> {
        if self.in_flight.is_some() {
            return None;
        }
        if let Some(r) = self.live.values().find(|r| r.stage == Stage::Resolving) {
            self.in_flight = Some(r.id);
            return Some(Dispatch::Resolve {
                id: r.id,
                identity: r.identity.clone(),
            });
        }
        if self.pause.is_some() {
            return None;
        }
        while self
            .deletions
            .front()
            .is_some_and(|t| now.duration_since(*t) >= RATE_WINDOW)
        {
            self.deletions.pop_front();
        }
        if self.deletions.len() >= max_per_minute as usize {
            return None;
        }
        let r = self.live.values_mut().find(|r| r.stage == Stage::Queued)?;
        r.stage = Stage::Verifying;
        self.in_flight = Some(r.id);
        Some(Dispatch::Purge {
            id: r.id,
            identity: r.identity.clone(),
        })
    }

    /// A dispatched request that cannot be sent after all (its pinned fd is gone): cancelled.
    pub fn abort_dispatch(&mut self, id: u64, why: String) -> Option<Event> {
        let r = self.finish(id, "cancelled", Some(why.clone()))?;
        Some(event_for(
            &r,
            "cancelled",
            Some(why),
            json!({ "checker": tur_json(&r.checker_evidence) }),
        ))
    }

    /// The purger's `Intent`. Returns the intent record to fsync (None when a requeued request
    /// already has one) and whether to proceed. Err is a protocol violation.
    pub fn on_intent(
        &mut self,
        id: u64,
        evidence: &PurgeEvidence,
        now: Instant,
    ) -> Result<(Option<Event>, bool), String> {
        if self.in_flight != Some(id) {
            return Err(format!(
                "Intent for request {id}, which the purger does not have"
            ));
        }
        let paused = self.pause.clone();
        let r = self
            .live
            .get_mut(&id)
            .ok_or_else(|| format!("Intent for unknown request {id}"))?;
        if r.stage != Stage::Verifying {
            return Err(format!(
                "Intent for request {id} in stage {}",
                r.stage.word()
            ));
        }
        let record = (!r.intent_recorded).then(|| {
            let evidence = json!({ "checker": tur_json(&r.checker_evidence), "purger": purger_json(evidence) });
            event_for(r, "intent", r.manual.then(|| "manual purge".to_string()), evidence)
        });
        r.intent_recorded = true;
        if r.cancel.is_none() {
            if let Some(why) = paused {
                r.cancel = Some(format!("purging paused: {why}"));
            }
        }
        let proceed = r.cancel.is_none();
        r.stage = if proceed {
            Stage::Deleting
        } else {
            Stage::Aborting
        };
        if proceed {
            self.deletions.push_back(now);
        }
        Ok((record, proceed))
    }

    /// The intent could not be made durable: the request must not proceed.
    pub fn intent_not_recorded(&mut self, id: u64, why: String) {
        if let Some(r) = self.live.get_mut(&id) {
            r.intent_recorded = false;
            r.cancel = Some(why);
            r.stage = Stage::Aborting;
            self.deletions.pop_back();
        }
    }

    /// The purger's `Outcome`. Returns the outcome record. Err is a protocol violation: an
    /// outcome the stage does not allow (above all, `Deleted` without a Proceed).
    pub fn on_outcome(
        &mut self,
        id: u64,
        outcome: &PurgeOutcome,
        evidence: &PurgeEvidence,
        dry_run: bool,
    ) -> Result<Event, String> {
        if self.in_flight != Some(id) {
            return Err(format!(
                "Outcome for request {id}, which the purger does not have"
            ));
        }
        let r = self
            .live
            .get(&id)
            .ok_or_else(|| format!("Outcome for unknown request {id}"))?;
        let legal = match (&r.stage, outcome) {
            (Stage::Deleting, PurgeOutcome::Deleted) => !dry_run,
            (Stage::Deleting, PurgeOutcome::WouldDelete) => dry_run,
            (Stage::Aborting, PurgeOutcome::Aborted) => true,
            (Stage::Resolving, PurgeOutcome::Vanished | PurgeOutcome::Failed(_)) => true,
            (
                Stage::Verifying | Stage::Deleting,
                PurgeOutcome::Refused(_) | PurgeOutcome::Failed(_) | PurgeOutcome::Vanished,
            ) => true,
            _ => false,
        };
        if !legal {
            return Err(format!(
                "Outcome {outcome:?} for request {id} in stage {}",
                r.stage.word()
            ));
        }
        let resolving = r.stage == Stage::Resolving;
        let (state, reason): (&'static str, Option<String>) = match outcome {
            PurgeOutcome::Deleted => ("deleted", None),
            PurgeOutcome::WouldDelete => ("would-delete", Some("dry run".into())),
            PurgeOutcome::Vanished if resolving => (
                "vanished",
                Some("resolved after a restart: the device is gone".into()),
            ),
            PurgeOutcome::Vanished => ("vanished", None),
            PurgeOutcome::Refused(why) => ("refused", Some(why.clone())),
            PurgeOutcome::Failed(why) if resolving => (
                "failed",
                Some(format!(
                    "resolved after a restart: the deletion did not happen ({why})"
                )),
            ),
            PurgeOutcome::Failed(why) => ("failed", Some(why.clone())),
            PurgeOutcome::Aborted => ("cancelled", r.cancel.clone()),
        };
        let r = self
            .finish(id, state, reason.clone())
            .ok_or("request vanished from the book")?;
        let evidence =
            json!({ "checker": tur_json(&r.checker_evidence), "purger": purger_json(evidence) });
        Ok(event_for(&r, state, reason, evidence))
    }

    /// The purger died: its request goes back to the queue head (same id, intent kept), to be
    /// re-verified from scratch by the next purger.
    pub fn on_purger_lost(&mut self) -> Option<u64> {
        let id = self.in_flight.take()?;
        let r = self.live.get_mut(&id)?;
        if r.stage != Stage::Resolving {
            if r.stage == Stage::Deleting {
                // The deletion may or may not have happened; the rate slot stays used.
            }
            r.stage = Stage::Queued;
        }
        Some(id)
    }

    /// Reconfigure: requests not yet at the purger are judged again under the new rules.
    pub fn rejudge(&mut self, policy: &LoadedPolicy) -> Vec<Event> {
        let doomed: Vec<(DevT, String)> = self
            .live
            .values()
            .filter(|r| matches!(r.stage, Stage::Grace { .. } | Stage::Queued) && !r.manual)
            .filter_map(|r| {
                let id = &r.identity;
                if !policy.policy.purge.enabled {
                    Some((id.dev_t, "purge.enabled is now false".to_string()))
                } else if !policy.purge_allowed_for(&id.vendor, &id.model, id.wwid.as_deref()) {
                    Some((
                        id.dev_t,
                        "no [[device]] rule allows it any more".to_string(),
                    ))
                } else {
                    None
                }
            })
            .collect();
        doomed
            .into_iter()
            .filter_map(|(d, why)| self.on_not_disconnected(d, format!("policy changed: {why}")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn policy(extra: &str) -> LoadedPolicy {
        let text = format!(
            "[purge]\ndelay = \"60s\"\n{extra}\n[[device]]\nvendor = \"LIO-ORG\"\npurge = true\n"
        );
        mpsup_policy::parse(&text, Path::new("t.toml")).unwrap()
    }

    fn path(name: &str, minor: u32, vendor: &str) -> PathIdentity {
        PathIdentity {
            name: name.into(),
            dev_t: DevT { major: 8, minor },
            hctl: format!("1:0:0:{minor}").parse().unwrap(),
            vendor: vendor.into(),
            model: "disk".into(),
            wwid: Some("naa.1".into()),
            map: None,
        }
    }

    fn ev() -> TurEvidence {
        TurEvidence::default()
    }

    #[test]
    fn grace_then_queue_then_intent_then_deleted() {
        let (p, t0) = (policy(""), Instant::now());
        let mut b = PurgeBook::new(1);
        let sdc = path("sdc", 32, "LIO-ORG");
        assert!(b.on_disconnected(&sdc, &ev(), t0, 10, &p).is_empty());
        assert_eq!(b.request_for(sdc.dev_t).unwrap().stage.word(), "grace");
        // Duplicates merge.
        b.on_disconnected(&sdc, &ev(), t0, 10, &p);
        assert_eq!(b.live().count(), 1);
        assert_eq!(b.dispatch(t0, 10), None, "nothing queued during grace");
        b.tick(t0 + Duration::from_secs(59));
        assert_eq!(b.dispatch(t0, 10), None);
        b.tick(t0 + Duration::from_secs(60));
        let Some(Dispatch::Purge { id, .. }) = b.dispatch(t0, 10) else {
            panic!("not dispatched")
        };
        assert_eq!(b.dispatch(t0, 10), None, "one at a time");
        let (record, proceed) = b.on_intent(id, &PurgeEvidence::default(), t0).unwrap();
        assert!(proceed);
        assert_eq!(record.unwrap().event, "intent");
        let out = b
            .on_outcome(id, &PurgeOutcome::Deleted, &PurgeEvidence::default(), false)
            .unwrap();
        assert_eq!(
            (out.event.as_ref(), out.dev.as_deref()),
            ("deleted", Some("sdc"))
        );
        assert!(b.request_for(sdc.dev_t).is_none());
        assert_eq!(b.history().last().unwrap().state, "deleted");
    }

    #[test]
    fn recovery_within_grace_cancels_and_unmatched_devices_never_start() {
        let (p, t0) = (policy(""), Instant::now());
        let mut b = PurgeBook::new(1);
        let sdc = path("sdc", 32, "LIO-ORG");
        b.on_disconnected(&sdc, &ev(), t0, 10, &p);
        let e = b
            .on_not_disconnected(sdc.dev_t, "path reported up again".into())
            .unwrap();
        assert_eq!(
            (e.event.as_ref(), e.reason.as_deref()),
            ("cancelled", Some("path reported up again"))
        );
        assert!(b.request_for(sdc.dev_t).is_none());
        b.on_disconnected(&path("sdd", 48, "IBM"), &ev(), t0, 10, &p);
        assert_eq!(b.live().count(), 0, "no rule matches IBM: never purged");
        let off = policy("enabled = false");
        b.on_disconnected(&sdc, &ev(), t0, 10, &off);
        assert_eq!(b.live().count(), 0);
    }

    #[test]
    fn a_cancel_while_verifying_turns_the_intent_into_an_abort() {
        let (p, t0) = (policy(""), Instant::now());
        let mut b = PurgeBook::new(1);
        let sdc = path("sdc", 32, "LIO-ORG");
        b.manual(&sdc, &ev()).unwrap();
        let Some(Dispatch::Purge { id, .. }) = b.dispatch(t0, 10) else {
            panic!()
        };
        assert!(b
            .on_not_disconnected(sdc.dev_t, "path reported up again".into())
            .is_none());
        let (record, proceed) = b.on_intent(id, &PurgeEvidence::default(), t0).unwrap();
        assert!(record.is_some(), "the intent is recorded even when aborted");
        assert!(!proceed);
        let err = b
            .on_outcome(id, &PurgeOutcome::Deleted, &PurgeEvidence::default(), false)
            .unwrap_err();
        assert!(
            err.contains("aborting"),
            "a deletion after Abort is a protocol violation: {err}"
        );
        let out = b
            .on_outcome(id, &PurgeOutcome::Aborted, &PurgeEvidence::default(), false)
            .unwrap();
        assert_eq!(
            (out.event.as_ref(), out.reason.as_deref()),
            ("cancelled", Some("path reported up again"))
        );
        let _ = p;
    }

    #[test]
    fn deleted_without_proceed_is_a_violation_and_dry_run_must_not_delete() {
        let t0 = Instant::now();
        let mut b = PurgeBook::new(1);
        b.manual(&path("sdc", 32, "LIO-ORG"), &ev()).unwrap();
        let Some(Dispatch::Purge { id, .. }) = b.dispatch(t0, 10) else {
            panic!()
        };
        assert!(b
            .on_outcome(id, &PurgeOutcome::Deleted, &PurgeEvidence::default(), false)
            .is_err());
        assert!(b
            .on_outcome(
                99,
                &PurgeOutcome::Refused("x".into()),
                &PurgeEvidence::default(),
                false
            )
            .is_err());
        b.on_intent(id, &PurgeEvidence::default(), t0).unwrap();
        assert!(b
            .on_outcome(id, &PurgeOutcome::Deleted, &PurgeEvidence::default(), true)
            .is_err());
        let out = b
            .on_outcome(
                id,
                &PurgeOutcome::WouldDelete,
                &PurgeEvidence::default(),
                true,
            )
            .unwrap();
        assert_eq!(out.event, "would-delete");
    }

    #[test]
    fn a_purger_crash_requeues_with_the_same_id_and_one_intent_record() {
        let t0 = Instant::now();
        let mut b = PurgeBook::new(7);
        b.manual(&path("sdc", 32, "LIO-ORG"), &ev()).unwrap();
        let Some(Dispatch::Purge { id, .. }) = b.dispatch(t0, 10) else {
            panic!()
        };
        assert_eq!(id, 7);
        let (first, proceed) = b.on_intent(id, &PurgeEvidence::default(), t0).unwrap();
        assert!(first.is_some() && proceed);
        assert_eq!(b.on_purger_lost(), Some(7));
        let Some(Dispatch::Purge { id: again, .. }) = b.dispatch(t0, 10) else {
            panic!("requeued")
        };
        assert_eq!(again, 7);
        let (second, _) = b.on_intent(again, &PurgeEvidence::default(), t0).unwrap();
        assert!(
            second.is_none(),
            "the intent is already durable; no second intent record"
        );
        let out = b
            .on_outcome(7, &PurgeOutcome::Vanished, &PurgeEvidence::default(), false)
            .unwrap();
        assert_eq!(out.event, "vanished");
    }

    #[test]
    fn the_rate_brake_holds_work_until_the_window_moves() {
        let t0 = Instant::now();
        let mut b = PurgeBook::new(1);
        for (i, name) in ["sdc", "sdd", "sde"].iter().enumerate() {
            b.manual(&path(name, 32 + 16 * i as u32, "LIO-ORG"), &ev())
                .unwrap();
        }
        for _ in 0..2 {
            let Some(Dispatch::Purge { id, .. }) = b.dispatch(t0, 2) else {
                panic!()
            };
            b.on_intent(id, &PurgeEvidence::default(), t0).unwrap();
            b.on_outcome(id, &PurgeOutcome::Deleted, &PurgeEvidence::default(), false)
                .unwrap();
        }
        assert_eq!(
            b.dispatch(t0 + Duration::from_secs(30), 2),
            None,
            "2 per minute used up"
        );
        assert_eq!(b.next_deadline(), Some(t0 + RATE_WINDOW));
        assert!(b.dispatch(t0 + Duration::from_secs(60), 2).is_some());
    }

    #[test]
    fn many_paths_disconnecting_at_once_pause_purging_until_resumed() {
        let (p, t0) = (policy("pause_fraction = 0.5"), Instant::now());
        let mut b = PurgeBook::new(1);
        assert!(b
            .on_disconnected(&path("sdc", 32, "LIO-ORG"), &ev(), t0, 4, &p)
            .is_empty());
        assert!(
            b.on_disconnected(&path("sdd", 48, "LIO-ORG"), &ev(), t0, 4, &p)
                .is_empty(),
            "2 of 4 is not more than half"
        );
        let events = b.on_disconnected(&path("sde", 64, "LIO-ORG"), &ev(), t0, 4, &p);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event, "paused");
        assert!(b.paused().unwrap().contains("3 of 4 known paths"));
        b.tick(t0 + Duration::from_secs(61));
        assert_eq!(
            b.dispatch(t0 + Duration::from_secs(61), 10),
            None,
            "paused: nothing dispatched"
        );
        assert_eq!(b.resume("uid 0").unwrap().event, "resumed");
        assert!(b.dispatch(t0 + Duration::from_secs(61), 10).is_some());
    }

    #[test]
    fn open_intents_are_resolved_first_even_when_paused() {
        let t0 = Instant::now();
        let mut b = PurgeBook::new(1);
        b.resume_open_intent(41, path("sdc", 32, "LIO-ORG"));
        b.pause("test");
        let Some(Dispatch::Resolve { id, .. }) = b.dispatch(t0, 10) else {
            panic!()
        };
        assert_eq!(id, 41);
        let out = b
            .on_outcome(
                41,
                &PurgeOutcome::Vanished,
                &PurgeEvidence::default(),
                false,
            )
            .unwrap();
        assert!(out.reason.unwrap().contains("resolved after a restart"));
        b.resume("t");
        b.manual(&path("sdd", 48, "LIO-ORG"), &ev()).unwrap();
        let Some(Dispatch::Purge { id, .. }) = b.dispatch(t0, 10) else {
            panic!()
        };
        assert_eq!(id, 42, "ids continue above resolved ones");
    }

    #[test]
    fn reconfigure_cancels_requests_the_new_rules_forbid() {
        let (p, t0) = (policy(""), Instant::now());
        let mut b = PurgeBook::new(1);
        b.on_disconnected(&path("sdc", 32, "LIO-ORG"), &ev(), t0, 10, &p);
        let stricter = mpsup_policy::parse(
            "[[device]]\nvendor = \"IBM\"\npurge = true\n",
            Path::new("t"),
        )
        .unwrap();
        let events = b.rejudge(&stricter);
        assert_eq!(events.len(), 1);
        assert!(events[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("policy changed"));
        assert_eq!(b.live().count(), 0);
    }
}
