//! The mpsup purger helper: given a purge request (request id, dev_t, the identity the checker
//! saw) and the checker's open fd on the path, decide *independently* whether the path is a dead
//! SCSI path (TEST UNIT READY answering ILLEGAL REQUEST / LOGICAL UNIT NOT SUPPORTED, 05/25/00)
//! that may be deleted, ask the supervisor for permission, and delete it (DESIGN.md, "purger").
//!
//! # The fail-closed rule
//!
//! A wrong deletion is data loss; a missed one is a stale device until the next round. So every
//! step below either proves what it checks or stops the request with a reason a human can act
//! on ([`PurgeOutcome::Refused`]); anything unreadable, unexpected, ambiguous or interrupted
//! counts as "no". Nothing is written anywhere before the supervisor has recorded (fsynced)
//! the intent and answered `Decision { proceed: true }`, and the only write the purger ever
//! makes is `1` into one `delete` attribute.
//!
//! # The pipeline, and why each check exists
//!
//! 1. **`fstat` of the passed fd**: a block device whose `st_rdev` is the request's dev_t.
//!    The checker's fd is what pins the device: while it is open the kernel cannot give the
//!    dev_t (or the `sdX` name) to a new device. It must be an fd of *this* device.
//! 2. **`/sys/dev/block/MAJ:MIN`**: absent means the device is already gone
//!    ([`PurgeOutcome::Vanished`], which is also what a request re-sent after a purger restart
//!    gets once its device was deleted: the pipeline re-verifies from scratch, so a resent
//!    request is idempotent). Present, its identity (name, dev_t, H:C:T:L, vendor, model, WWID,
//!    read and normalised by the checker's own readers) must equal the request's; anything else
//!    is the name/dev_t-reuse case ("dev_t now belongs to another device"). A request whose WWID
//!    came from VPD 0x83 (sysfs has none) is re-verified by asking the device in step 3.
//! 3. **Open the devnode** `O_RDONLY|O_NONBLOCK|O_CLOEXEC` through the checker's
//!    [`Prober::open`], which refuses a non-block device or another `st_rdev`. The purger then
//!    holds its *own* fd, and every TUR it sends goes through it, never through the passed one.
//! 4. **Holders**. With `require_multipath`, the disk must be held by a dm device whose
//!    `dm/uuid` starts with `mpath-`. The map's other members (`holders/dm-N/slaves/*`) are
//!    each opened and sent a fresh TUR; those answering up, standby or transitioning are
//!    counted as usable (evidence). Unless `allow_last_path`, a path whose map has no other
//!    member path left (in any state) is refused ("last path of map X"): a map with no path and
//!    `queue_if_no_path` hangs every I/O on it. Dead siblings still count as paths, so when a
//!    LUN is unmapped from the whole host, all its paths but the last are purged. Holders of
//!    any other kind (LVM or md directly on the disk or a partition) have no other path at
//!    all, so they count as "last path" too. Without
//!    `require_multipath` and with no holder at all there is no map to protect and the
//!    last-path check is skipped. Evidence: every holder's name, and
//!    `usable_paths_in_map` (this path counts itself, so `1` means "no other").
//! 5. **Confirmations**: `confirmations` fresh TURs on the purger's own fd, spaced by
//!    `confirmation_interval`, each classified by the checker's [`classify`] table with its
//!    bounded UNIT ATTENTION retries; every one must say `disconnected`. A path that answers
//!    anything else even once ("path answered up on confirmation 2 of 2") is not dead. All
//!    TUR results go into the evidence.
//! 6. **Intent**: send [`PurgerMsg::Intent`] with the evidence and wait for the supervisor's
//!    `Decision`. It records the intent durably and checks the request was not cancelled
//!    meanwhile. `proceed: false` ends the request with [`PurgeOutcome::Aborted`].
//! 7. **Delete**: re-check step 2 at the last moment, resolve the scsi_device directory
//!    through the block device's `device` link (its last component must be the H:C:T:L and it
//!    must hold `delete`), and write `1` to `delete`. With `dry_run` everything up to the write
//!    happens and the outcome is [`PurgeOutcome::WouldDelete`]. The kernel removes the device
//!    synchronously (`sdev_store_delete()` -> `scsi_remove_device()` -> ... -> `sd_remove()` ->
//!    `del_gendisk()`, which removes `/sys/dev/block/MAJ:MIN` before the write returns), so the
//!    first look normally finds it gone: [`PurgeOutcome::Deleted`]. sysfs (kernfs) raises no
//!    inotify event when an entry is removed, so there is nothing to wait on should a kernel
//!    be slower: the entry is looked at a bounded number of times with a short, growing delay
//!    within [`Backend::removal_timeout`], after which the outcome is `Failed("still present
//!    after delete")`. A write error is `Failed` with the errno.
//! 8. **Resolve** (an intent from before a restart, no fd): look at `/sys/dev/block/MAJ:MIN`.
//!    Absent or another identity: `Vanished`; the same identity: `Failed("device still present;
//!    the deletion did not happen")`; unreadable: `Failed`. Never deletes.
//!
//! The passed fd and the purger's own fd stay open until the outcome is sent: while they are
//! open the dev_t cannot be reused, so whatever sysfs shows at it is still our device.
//!
//! # Protocol
//!
//! `Ready` first; then `Configure` before any request (else a protocol error). One request at
//! a time: a `Purge` (it must carry the checker's fd; `Channel::recv` enforces that) runs the
//! pipeline to its `Outcome`; a `Resolve` is answered at once. A `Decision` is legal only while
//! an intent is outstanding and only with that request's id; a second request meanwhile is a
//! protocol error. A protocol error ends the helper with `Err` (the supervisor restarts it).
//! `Shutdown`, or the supervisor closing the channel, ends it with `Ok`.
//!
//! The pipeline never stops listening: between steps it handles whatever arrived, and the
//! confirmation spacing and the wait for `Decision` are `poll(2)` on the channel with a
//! timeout, never a sleep, so `Shutdown` is heard promptly. `Shutdown` before the intent ends
//! the request with `Refused("purger shutting down")`; after the intent the supervisor's stage
//! (deleting or aborting) is unknown, so the purger exits without an outcome and the supervisor
//! requeues or resolves the request. A single TUR or open in progress cannot be interrupted
//! (SG_IO is synchronous and bounded by `tur_timeout`); `Shutdown` is seen when it returns.
//! A `Configure` while a request is in progress is legitimate (the supervisor reconfigures on
//! SIGHUP): it applies to later requests, and if it changed the policy, the current request is
//! refused rather than finished under a policy it was not verified against.
//!
//! # Seams
//!
//! Device and sysfs effects go through [`Backend`]: the checker's [`Prober`] (open, TUR, VPD),
//! an [`FdInspector`] (fstat) and a [`SysfsWriter`] (the `delete` write), so that the pipeline
//! is tested with fixture sysfs trees and fakes. sysfs is read with the checker's bounded
//! readers (`mpsup_checker::discovery`).
//!
//! [`Prober`]: mpsup_checker::sgio::Prober
//! [`Prober::open`]: mpsup_checker::sgio::Prober::open
//! [`classify`]: mpsup_checker::classify::classify
//! [`PurgeOutcome::Refused`]: mpsup_ipc::PurgeOutcome::Refused
//! [`PurgeOutcome::Vanished`]: mpsup_ipc::PurgeOutcome::Vanished
//! [`PurgeOutcome::Aborted`]: mpsup_ipc::PurgeOutcome::Aborted
//! [`PurgeOutcome::WouldDelete`]: mpsup_ipc::PurgeOutcome::WouldDelete
//! [`PurgeOutcome::Deleted`]: mpsup_ipc::PurgeOutcome::Deleted
//! [`PurgerMsg::Intent`]: mpsup_ipc::PurgerMsg::Intent

mod backend;
mod link;
mod pipeline;
pub mod sysfs;

pub use backend::{Backend, FdInspector, FdStat, Fstat, KernelSysfs, SysfsWriter, REMOVAL_TIMEOUT};
pub use pipeline::{describe, RECONFIGURED, SHUTTING_DOWN};

use mpsup_checker::Roots;
use mpsup_ipc::{Channel, IpcError};

#[derive(Debug, thiserror::Error)]
pub enum PurgerError {
    #[error("supervisor channel: {0}")]
    Ipc(#[from] IpcError),
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("waiting on the supervisor channel: {0}")]
    Poll(nix::errno::Errno),
    #[error("{0}")]
    Sandbox(String),
}

/// Puts the helper in its sandbox and says what was applied. Called once, before the loop and
/// `Ready`; an `Err` stops the helper.
pub type Sandbox = Box<dyn FnOnce() -> Result<mpsup_ipc::SandboxStatus, String>>;

/// The helper's main loop with the real backend (SG_IO, fstat, sysfs writes). Returns `Ok` on
/// `Shutdown` or when the supervisor closes the channel; a protocol violation or a channel
/// error is `Err` (the supervisor treats the helper as failed).
pub fn run(channel: Channel, roots: Roots) -> Result<(), PurgerError> {
    run_with(channel, roots, Backend::real())
}

/// [`run`] with another backend (tests).
pub fn run_with(channel: Channel, roots: Roots, backend: Backend) -> Result<(), PurgerError> {
    pipeline::Purger::new(link::Link::new(channel), roots, backend).run(Default::default())
}

/// [`run`], sandboxed by `sandbox` between setup and loop.
pub fn run_sandboxed(channel: Channel, roots: Roots, sandbox: Sandbox) -> Result<(), PurgerError> {
    let purger = pipeline::Purger::new(link::Link::new(channel), roots, Backend::real());
    let status = sandbox().map_err(PurgerError::Sandbox)?;
    purger.run(status)
}

#[cfg(test)]
mod tests;
