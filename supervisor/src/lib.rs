//! The mpsup supervisor: the only process that talks to every helper. It owns the policy, the
//! path table, (later) the purge lifecycle and the audit log, and the helpers' lives.
//!
//! One mio event loop over: a signalfd (SIGTERM/SIGINT stop, SIGHUP reload, SIGCHLD reap), one
//! SOCK_SEQPACKET channel per helper, and deadlines computed into the poll timeout (restarts,
//! hello and shutdown deadlines). Nothing polls and nothing sleeps.
//!
//! Trust: every frame from a helper is decoded, checked for its fd rule, validated, and checked
//! against the helper's phase (`Ready` first, exactly once). Anything else means the helper is
//! treated as compromised: killed with SIGKILL, logged, and restarted within the policy's budget.

pub mod audit;
mod control_socket;
mod daemon;
pub mod helpers;
pub mod paths;
mod privileges;
pub mod purge;
mod render;
mod signals;
pub mod spawn;

pub use daemon::{run, RunOptions};
pub use spawn::HelperCommand;

/// Exit codes of `mpsup --config`.
pub mod exit {
    /// Stopped on request.
    pub const OK: i32 = 0;
    /// Fail-stop: a helper crashed past its restart budget, or could not start.
    pub const FAILED: i32 = 1;
    /// The policy or the command line is invalid; nothing was started.
    pub const USAGE: i32 = 2;
}
