//! The supervisor's path table: the last report the checker sent for each dev_t. A
//! `disconnected` path keeps the checker's open fd, which pins the device so its name and
//! dev_t cannot be reused while a purge may be pending.

use mpsup_ipc::{DevT, PathReport, PathState};
use std::collections::BTreeMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

pub struct PathEntry {
    pub report: PathReport,
    pub pin: Option<OwnedFd>,
    /// The checker instance that last reported this path.
    generation: u64,
}

#[derive(Default)]
pub struct PathTable {
    paths: BTreeMap<DevT, PathEntry>,
    /// Bumped when a new checker instance starts: it re-reports every path it finds, and a
    /// path it does not find by its first `ScanDone` is gone.
    generation: u64,
}

impl PathTable {
    /// True when `report` says nothing new: a path this table knows, reported `unknown` (a
    /// restarted checker announcing it before its first probe). Such a report is not allowed to
    /// overwrite a real state, or a checker crash would look like every path recovering.
    pub fn is_uninformative(&self, report: &PathReport) -> bool {
        report.state == PathState::Unknown
            && self.paths.get(&report.identity.dev_t).is_some_and(|e| {
                e.report.identity == report.identity && e.report.state != PathState::Unknown
            })
    }

    /// Marks a known path as seen by the current checker generation without changing it.
    pub fn touch(&mut self, dev_t: DevT) {
        let generation = self.generation;
        if let Some(e) = self.paths.get_mut(&dev_t) {
            e.generation = generation;
        }
    }

    /// Records a report. Returns the previous state, if the path was known.
    pub fn update(&mut self, report: PathReport, fd: Option<OwnedFd>) -> Option<PathState> {
        let dev_t = report.identity.dev_t;
        let pin = if report.state == PathState::Disconnected {
            fd
        } else {
            None
        };
        let generation = self.generation;
        self.paths
            .insert(
                dev_t,
                PathEntry {
                    report,
                    pin,
                    generation,
                },
            )
            .map(|old| old.report.state)
    }

    /// The checker's fd for a disconnected path, to hand to the purger.
    pub fn pin(&self, dev_t: DevT) -> Option<BorrowedFd<'_>> {
        self.paths
            .get(&dev_t)
            .and_then(|e| e.pin.as_ref())
            .map(|fd| fd.as_fd())
    }

    pub fn by_name(&self, name: &str) -> Option<&PathEntry> {
        self.paths.values().find(|e| e.report.identity.name == name)
    }

    /// A new checker instance is starting.
    pub fn new_generation(&mut self) {
        self.generation += 1;
    }

    /// After a checker's full round: forgets paths no report of this generation mentioned.
    pub fn drop_stale(&mut self) -> Vec<PathEntry> {
        let current = self.generation;
        let stale: Vec<DevT> = self
            .paths
            .iter()
            .filter(|(_, e)| e.generation < current)
            .map(|(d, _)| *d)
            .collect();
        stale
            .into_iter()
            .filter_map(|d| self.paths.remove(&d))
            .collect()
    }

    pub fn remove(&mut self, dev_t: DevT) -> Option<PathEntry> {
        self.paths.remove(&dev_t)
    }

    pub fn len(&self) -> usize {
        self.paths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &PathEntry> {
        self.paths.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mpsup_ipc::{PathIdentity, TurEvidence};

    fn report(minor: u32) -> PathReport {
        PathReport {
            identity: PathIdentity {
                name: format!("sd{minor}"),
                dev_t: DevT { major: 8, minor },
                hctl: "0:0:0:0".parse().unwrap(),
                vendor: "V".into(),
                model: "M".into(),
                wwid: None,
                map: None,
            },
            state: PathState::Up,
            device_state: "running".into(),
            evidence: TurEvidence::default(),
            checked_at_ms: 1,
        }
    }

    #[test]
    fn a_restarted_checker_forgets_paths_it_no_longer_finds() {
        let mut t = PathTable::default();
        t.update(report(0), None);
        t.update(report(16), None);
        t.new_generation();
        t.update(report(16), None);
        let gone: Vec<String> = t
            .drop_stale()
            .into_iter()
            .map(|e| e.report.identity.name)
            .collect();
        assert_eq!(gone, ["sd0"]);
        assert_eq!(t.len(), 1);
        assert!(t.drop_stale().is_empty());
    }
}

#[cfg(test)]
mod unknown_tests {
    use super::*;
    use mpsup_ipc::{PathIdentity, TurEvidence};

    fn report(state: PathState, name: &str) -> PathReport {
        PathReport {
            identity: PathIdentity {
                name: name.into(),
                dev_t: DevT {
                    major: 8,
                    minor: 16,
                },
                hctl: "0:0:0:0".parse().unwrap(),
                vendor: "V".into(),
                model: "M".into(),
                wwid: None,
                map: None,
            },
            state,
            device_state: "running".into(),
            evidence: TurEvidence::default(),
            checked_at_ms: 1,
        }
    }

    #[test]
    fn unknown_from_a_restarted_checker_does_not_hide_a_known_state() {
        let mut t = PathTable::default();
        assert!(
            !t.is_uninformative(&report(PathState::Unknown, "sdb")),
            "new path: recorded"
        );
        t.update(report(PathState::Disconnected, "sdb"), None);
        assert!(t.is_uninformative(&report(PathState::Unknown, "sdb")));
        // Another device at the same dev_t is news, whatever its state.
        assert!(!t.is_uninformative(&report(PathState::Unknown, "sdc")));
        // A restarted checker's unknown still counts as seeing the path.
        t.new_generation();
        t.touch(DevT {
            major: 8,
            minor: 16,
        });
        assert!(t.drop_stale().is_empty());
    }
}
