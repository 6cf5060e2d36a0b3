//! The purger helper: given a purge request, independently re-verify the path and delete it
//! (DESIGN.md, purger). This skeleton speaks the protocol: it says `Ready`, takes its
//! configuration, and exits on `Shutdown` or when the supervisor goes away. The verification
//! pipeline arrives with the purge lifecycle.

use mpsup_ipc::{Channel, Hello, IpcError, PurgerConfig, PurgerMsg, SandboxStatus, ToPurger};
use tracing::{debug, info};

pub fn run(mut channel: Channel) -> Result<(), IpcError> {
    let hello = Hello {
        pid: std::process::id(),
        sandbox: SandboxStatus::default(),
    };
    channel.send(&PurgerMsg::Ready(hello), None)?;
    let mut config: Option<PurgerConfig> = None;
    loop {
        let received = match channel.recv::<ToPurger>() {
            Ok(r) => r,
            Err(IpcError::Closed) => return Ok(()),
            Err(e) => return Err(e),
        };
        match received.msg {
            ToPurger::Configure(c) => {
                debug!(?c, "configured");
                config = Some(c);
            }
            ToPurger::Shutdown => {
                info!("shutting down");
                return Ok(());
            }
            ToPurger::Purge(_) | ToPurger::Resolve(_) | ToPurger::Decision { .. }
                if config.is_none() =>
            {
                return Err(IpcError::Invalid {
                    msg: "ToPurger",
                    why: "request before Configure".into(),
                })
            }
            ToPurger::Purge(req) | ToPurger::Resolve(req) => {
                // Fail closed until the verification pipeline exists: nothing is ever deleted.
                let outcome =
                    mpsup_ipc::PurgeOutcome::Refused("purger pipeline not implemented".into());
                let msg = PurgerMsg::Outcome {
                    id: req.id,
                    outcome,
                    evidence: Default::default(),
                };
                channel.send(&msg, None)?;
            }
            ToPurger::Decision { .. } => {
                return Err(IpcError::Invalid {
                    msg: "ToPurger::Decision",
                    why: "no intent outstanding".into(),
                })
            }
        }
    }
}
