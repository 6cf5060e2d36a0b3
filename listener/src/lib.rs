//! The listener helper: owns the control socket (bound and listening, made by the supervisor,
//! found on fd 4) and serves `mpsup ctl` clients, talking to the supervisor only over its
//! channel (fd 3). `client` is the `mpsup ctl` side.
//!
//! # Modules
//! - [`grammar`]: command text to [`ControlCommand`](mpsup_ipc::ControlCommand), and which
//!   commands need admin rights.
//! - [`framing`]: the length-prefixed request/reply frames, as pure incremental decoders.
//! - `peer`: `SO_PEERCRED`/`SO_PEERGROUPS` and the admin decision.
//! - `server`: the event loop.
//!
//! # A client's life
//! ```text
//!  accept ──> Receive ──frame──> Parse ──ok──> AwaitSupervisor ──Reply{last}──> Send ──┐
//!               ^                  │ error (grammar, UTF-8,                            │
//!               │                  │ permission denied)                                │
//!               │                  └──────────────────────────> Send ─────────────────┤
//!               └──────────── reply sent: fresh deadline (keep-alive) <───────────────┘
//!   any state ── EOF / socket error / deadline / fatal frame error answered ──> Closed
//! ```
//! One deadline (`request_timeout_ms`) covers a whole request, from accept (or from the previous
//! reply's last byte) to the last byte of its reply. At the deadline, a client still in Receive or
//! AwaitSupervisor gets one non-blocking attempt at `error: timeout`, then is closed. A client
//! that leaves while the supervisor works on its request becomes `ListenerMsg::Abandoned`; a reply
//! for a client that is gone is dropped. Closed means the client is removed from the table, with
//! its fd, buffers, deadline and slot: a client that disconnects mid-request costs nothing.
//!
//! # Choices
//! - **Full**: at `max_clients` the listening socket is deregistered and connections wait in
//!   the kernel's listen backlog; a freed slot registers it again, and epoll reports any waiting
//!   connection at registration. The queue is first come, first served, so a client that keeps
//!   reconnecting cannot starve one already waiting (an immediate `error: busy` would let it
//!   win every freed slot). Slots free at the latest at their deadlines, so a waiting client
//!   is accepted within about one request timeout per `max_clients` connections queued ahead of
//!   it. `mpsup ctl` bounds its `connect()` with the same timeout as the rest of its exchange.
//! - **Several requests per connection**: allowed. After a reply is sent the client goes back to
//!   Receive with a fresh deadline. A frame whose length is 0 or over 4096 bytes is answered and
//!   the connection closed (the stream's framing is lost); a grammar, UTF-8 or permission error
//!   keeps the framing intact, so the connection stays usable. Replies go out in request order.
//! - **Who is admin**: uid 0, primary gid == `admin_gid`, or `admin_gid` among the supplementary
//!   groups, all as the kernel recorded them at `connect()`. Supplementary groups come from
//!   `SO_PEERGROUPS`, which works under the sandbox; only if that fails does the listener fall
//!   back, best effort, to `/proc/<pid>/status` (racy, and unavailable once `/proc` is hidden).
//!   Uid 0 and the primary gid always work. The decision is made at accept time, with the
//!   `admin_gid` then configured.
//!
//! # Never blocking, sleeping or spinning
//! Every fd is non-blocking (the channel and listening socket are switched at start, clients
//! are accepted with `SOCK_NONBLOCK`), and every read or write stops at `EAGAIN`. The only place
//! the process waits is `epoll_wait`, and its timeout is the earliest client deadline, or
//! infinite when there are no clients: an idle listener makes no system calls at all. Readiness
//! is edge-triggered, so each source is drained to `EAGAIN` when it fires (client reads stop at a
//! frame boundary instead; the one place that leaves bytes unread, a keep-alive client between
//! requests, reads again right after its reply, without waiting for an edge). A wakeup always
//! makes progress: an event is consumed, or a deadline has passed (mio rounds the timeout up, so
//! epoll never returns early) and that client is closed. Messages for the supervisor that the
//! channel cannot take wait in a queue bounded by the number of clients, flushed on the channel's
//! writable edge; nothing waits for the supervisor. Peer credentials are socket options, and the
//! `/proc` fallback reads from memory. There is no sleep anywhere.

pub mod client;
pub mod framing;
pub mod grammar;
mod peer;
mod server;

use mpsup_ipc::{Channel, Hello, IpcError, ListenerMsg, SandboxStatus};
use std::os::fd::OwnedFd;
use thiserror::Error;

pub use grammar::needs_admin;

/// Why the listener stopped other than by the supervisor's wish. Any of these makes the
/// supervisor treat the helper as crashed.
#[derive(Debug, Error)]
pub enum ListenerError {
    /// The channel broke or the supervisor sent something invalid.
    #[error("supervisor channel: {0}")]
    Ipc(#[from] IpcError),
    /// The supervisor's messages were valid but out of order.
    #[error("supervisor protocol: {0}")]
    Protocol(String),
    #[error("event loop: {0}")]
    Poll(std::io::Error),
    #[error("control socket: {0}")]
    Socket(std::io::Error),
    #[error("{0}")]
    Sandbox(String),
}

/// Puts the helper in its sandbox and says what was applied. Called once, after the event loop
/// is set up and before `Ready`; an `Err` stops the helper.
pub type Sandbox = Box<dyn FnOnce() -> Result<SandboxStatus, String>>;

/// Runs the listener until the supervisor says `Shutdown` or closes the channel (both `Ok`).
/// `listen` is the bound, listening control socket.
pub fn run(channel: Channel, listen: OwnedFd) -> Result<(), ListenerError> {
    run_sandboxed(channel, listen, Box::new(|| Ok(SandboxStatus::default())))
}

/// [`run`], sandboxed by `sandbox` between setup and loop.
pub fn run_sandboxed(
    channel: Channel,
    listen: OwnedFd,
    sandbox: Sandbox,
) -> Result<(), ListenerError> {
    let mut server = server::Server::new(channel, listen)?;
    let hello = Hello {
        pid: std::process::id(),
        sandbox: sandbox().map_err(ListenerError::Sandbox)?,
    };
    if server.send(ListenerMsg::Ready(hello))? == server::Flow::Stop {
        return Ok(());
    }
    server.run()
}
