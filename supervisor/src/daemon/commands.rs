//! The supervisor's side of control commands: the listener has parsed and authorized them;
//! here they are carried out and answered. Replies go back in chunks through an outbox that
//! drains as the listener's socket takes them, so a 16 MiB reply never blocks the loop.

use super::Daemon;
use crate::render;
use mio::Interest;
use mpsup_ipc::{ControlCommand, IpcError, PathState, PeerCred, Role, ToListener, MAX_REPLY_CHUNK};
use tracing::{info, warn};

/// Default number of records for `show audit`.
const AUDIT_TAIL: u32 = 20;

impl Daemon {
    pub(super) fn on_command(
        &mut self,
        command: ControlCommand,
        peer: PeerCred,
    ) -> Result<String, String> {
        let who = format!("uid {} (pid {})", peer.uid, peer.pid);
        let interval = self.policy.policy.checker.interval;
        match command {
            ControlCommand::ShowPaths { json } => Ok(render::paths(&self.paths, interval, json)),
            ControlCommand::ShowPurges { json } => Ok(render::purges(&self.book, json)),
            ControlCommand::ShowHelpers { json } => Ok(render::helpers(&self.helpers, json)),
            ControlCommand::ShowStats { json } => Ok(render::stats(
                &self.stats,
                &self.paths,
                &self.book,
                &self.helpers,
                json,
            )),
            ControlCommand::ShowConfig { json } => Ok(if json {
                let v = serde_json::json!({
                    "path": self.policy.path, "sha256": self.policy.sha256, "policy": self.policy.policy,
                    "warnings": self.policy.warnings,
                });
                v.to_string() + "\n"
            } else {
                format!(
                    "# {} (sha256 {})\n{}",
                    self.policy.path.display(),
                    self.policy.sha256,
                    self.policy.to_toml()
                )
            }),
            ControlCommand::ShowAudit { last, json } => {
                let lines = self.audit.tail(last.unwrap_or(AUDIT_TAIL) as usize)?;
                Ok(if json {
                    let records: Vec<serde_json::Value> = lines
                        .iter()
                        .filter_map(|l| serde_json::from_str(l).ok())
                        .collect();
                    serde_json::json!({ "audit": records }).to_string() + "\n"
                } else {
                    lines.iter().map(|l| format!("{l}\n")).collect()
                })
            }
            ControlCommand::PurgePath { dev } => self.manual_purge(&dev, &who),
            ControlCommand::CancelPurge { id } => {
                let ev = self.book.cancel(id, &who)?;
                if let Some(ev) = ev {
                    self.audit(ev);
                    Ok(format!("cancelled purge request {id}\n"))
                } else {
                    // At the purger: its intent will be answered with Abort.
                    Ok(format!(
                        "purge request {id} is being verified; it will be aborted at its intent\n"
                    ))
                }
            }
            ControlCommand::Pause => match self.book.pause(&who) {
                Some(ev) => {
                    self.audit(ev);
                    info!(%who, "purging paused");
                    Ok("purging paused\n".into())
                }
                None => Ok("purging was already paused\n".into()),
            },
            ControlCommand::Resume => match self.book.resume(&who) {
                Some(ev) => {
                    self.audit(ev);
                    info!(%who, "purging resumed");
                    self.try_dispatch();
                    Ok("purging resumed\n".into())
                }
                None => Ok("purging was not paused\n".into()),
            },
            ControlCommand::Reconfigure => self.reload_policy(),
        }
    }

    /// `purge path <dev>`: through the same lifecycle, brakes, rules and purger checks as an
    /// automatic purge, minus the grace period. Only a path the checker says is disconnected
    /// (and whose fd is pinned) qualifies.
    fn manual_purge(&mut self, dev: &str, who: &str) -> Result<String, String> {
        let p = &self.policy;
        if !p.policy.purge.enabled {
            return Err("purging is disabled by policy (purge.enabled = false)".into());
        }
        let entry = self
            .paths
            .by_name(dev)
            .ok_or_else(|| format!("no known SCSI path named {dev}"))?;
        let (id, report) = (&entry.report.identity, &entry.report);
        if report.state != PathState::Disconnected || entry.pin.is_none() {
            return Err(format!(
                "{dev} is {}; only disconnected paths can be purged",
                report.state.word()
            ));
        }
        if !p.purge_allowed_for(&id.vendor, &id.model, id.wwid.as_deref()) {
            return Err(format!("no [[device]] rule allows purging {dev}"));
        }
        let (identity, evidence) = (id.clone(), report.evidence.clone());
        let request = self.book.manual(&identity, &evidence)?;
        info!(%who, dev, request, "manual purge queued");
        self.try_dispatch();
        Ok(format!("purge request {request} queued for {dev}\n"))
    }

    /// Queues a reply (or `error: ...`) for a client, in chunks.
    pub(super) fn reply(&mut self, client: u64, reply: Result<String, String>) {
        let body = match reply {
            Ok(body) => body,
            Err(e) => format!("error: {e}\n"),
        };
        let mut rest = body.as_str();
        loop {
            let mut cut = rest.len().min(MAX_REPLY_CHUNK);
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            let (chunk, tail) = rest.split_at(cut);
            let last = tail.is_empty();
            self.listener_outbox.push_back(ToListener::Reply {
                client,
                chunk: chunk.to_string(),
                last,
            });
            if last {
                break;
            }
            rest = tail;
        }
        self.flush_listener();
    }

    /// Sends queued reply chunks until the listener's socket is full; asks for a writable
    /// event then, and drops that interest once the outbox is empty.
    pub(super) fn flush_listener(&mut self) {
        let registry = self.poll.registry();
        let super::HelperState::Running { channel, .. } =
            &mut self.helpers[Role::Listener as usize].state
        else {
            self.listener_outbox.clear();
            return;
        };
        while let Some(msg) = self.listener_outbox.front() {
            match channel.send(msg, None) {
                Ok(()) => {
                    self.listener_outbox.pop_front();
                }
                Err(IpcError::WouldBlock) => {
                    let _ = registry.reregister(
                        channel,
                        super::token_of(Role::Listener),
                        Interest::READABLE | Interest::WRITABLE,
                    );
                    return;
                }
                Err(e) => {
                    warn!("cannot send reply to the listener: {e}");
                    self.listener_outbox.clear();
                    return;
                }
            }
        }
        let _ = registry.reregister(channel, super::token_of(Role::Listener), Interest::READABLE);
    }
}
