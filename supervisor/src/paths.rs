//! The supervisor's path table: the last report the checker sent for each dev_t. A
//! `disconnected` path keeps the checker's open fd, which pins the device so its name and
//! dev_t cannot be reused while a purge may be pending.

use mpsup_ipc::{DevT, PathReport, PathState};
use std::collections::BTreeMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

pub struct PathEntry {
    pub report: PathReport,
    pub pin: Option<OwnedFd>,
}

#[derive(Default)]
pub struct PathTable {
    paths: BTreeMap<DevT, PathEntry>,
}

impl PathTable {
    /// Records a report. Returns the previous state, if the path was known.
    pub fn update(&mut self, report: PathReport, fd: Option<OwnedFd>) -> Option<PathState> {
        let dev_t = report.identity.dev_t;
        let pin = if report.state == PathState::Disconnected {
            fd
        } else {
            None
        };
        self.paths
            .insert(dev_t, PathEntry { report, pin })
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
