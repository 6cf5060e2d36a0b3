//! The listener helper: owns the control socket (bound by the supervisor, passed on fd 4) and
//! serves `mpsup ctl` clients. This skeleton speaks the protocol with the supervisor; the
//! client state machine arrives with the control-socket issue. `client` is the `mpsup ctl` side.

pub mod client;

use mpsup_ipc::{Channel, Hello, IpcError, ListenerMsg, SandboxStatus, ToListener};
use std::os::fd::OwnedFd;
use tracing::{debug, info};

pub fn run(mut channel: Channel, _listen: OwnedFd) -> Result<(), IpcError> {
    let hello = Hello {
        pid: std::process::id(),
        sandbox: SandboxStatus::default(),
    };
    channel.send(&ListenerMsg::Ready(hello), None)?;
    loop {
        let received = match channel.recv::<ToListener>() {
            Ok(r) => r,
            Err(IpcError::Closed) => return Ok(()),
            Err(e) => return Err(e),
        };
        match received.msg {
            ToListener::Configure(c) => debug!(?c, "configured"),
            ToListener::Reply { client, .. } => {
                debug!(client, "reply for a client we do not serve yet")
            }
            ToListener::Shutdown => {
                info!("shutting down");
                return Ok(());
            }
        }
    }
}
