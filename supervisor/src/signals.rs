//! Signals as events: the ones the supervisor handles are blocked and read from a signalfd
//! in the event loop, so no handler ever runs in an async context.

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

pub const HANDLED: [Signal; 4] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGCHLD,
];

/// Blocks the handled signals for this (single-threaded) process and returns a non-blocking
/// signalfd for them. Helpers get an empty mask back in `spawn`.
pub fn signal_fd() -> nix::Result<SignalFd> {
    let mut set = SigSet::empty();
    for s in HANDLED {
        set.add(s);
    }
    set.thread_block()?;
    SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
}
