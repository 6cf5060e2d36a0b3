//! One enum per direction per helper. Each message says whether it carries an fd and validates
//! its own contents; `Channel::recv` enforces both.

use crate::types::{valid_kernel_name, DevT, PathIdentity, PathState, TurEvidence, MAX_ATTR_LEN};
use serde::{Deserialize, Serialize};

/// Largest reply chunk the supervisor sends the listener in one frame; the listener joins
/// chunks up to the control protocol's 16 MiB reply limit.
pub const MAX_REPLY_CHUNK: usize = 60 * 1024;
/// Most TUR results the purger may attach as evidence.
pub const MAX_CONFIRMATIONS: usize = 16;

/// A message type on one of the helper channels.
pub trait Message: Serialize + serde::de::DeserializeOwned {
    /// Name for logs and errors.
    fn kind(&self) -> &'static str;
    /// Whether this message must (true) or must not (false) carry exactly one fd.
    fn carries_fd(&self) -> bool {
        false
    }
    /// Content checks beyond decoding.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

fn bounded(what: &str, s: &str, max: usize) -> Result<(), String> {
    if s.len() > max {
        Err(format!("{what} is {} bytes (max {max})", s.len()))
    } else {
        Ok(())
    }
}

/// What each helper says once it is set up and sandboxed, before it does any work.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub pid: u32,
    pub sandbox: SandboxStatus,
}

/// How far a helper's sandbox got; shown by `show helpers`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxStatus {
    pub no_new_privs: bool,
    pub seccomp: bool,
    /// Landlock ABI in force, `None` when the kernel has none.
    pub landlock_abi: Option<u8>,
    pub landlock_fully_enforced: bool,
    pub capabilities_dropped: bool,
}

// ---------------------------------------------------------------- checker

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckerConfig {
    pub interval_ms: u64,
    pub tur_timeout_ms: u64,
    pub max_in_flight: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToChecker {
    Configure(CheckerConfig),
    /// Re-report every path's current state (sent after a supervisor-side reset).
    Resync,
    Shutdown,
}

/// A path whose state changed (or that is new). Carries the path's open fd when `disconnected`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathReport {
    pub identity: PathIdentity,
    pub state: PathState,
    /// sysfs `device/state` (`running`, `offline`, `transport-offline`, ...).
    pub device_state: String,
    pub evidence: TurEvidence,
    /// Wall clock of the check, milliseconds since the Unix epoch.
    pub checked_at_ms: u64,
}

// Messages are built, sent and dropped one at a time, never stored in bulk: boxing the large
// variant would only add an allocation per report.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckerMsg {
    Ready(Hello),
    Path(PathReport),
    Gone { name: String, dev_t: DevT },
    ScanDone { paths: u32 },
}

impl Message for ToChecker {
    fn kind(&self) -> &'static str {
        match self {
            ToChecker::Configure(_) => "ToChecker::Configure",
            ToChecker::Resync => "ToChecker::Resync",
            ToChecker::Shutdown => "ToChecker::Shutdown",
        }
    }
}

impl Message for CheckerMsg {
    fn kind(&self) -> &'static str {
        match self {
            CheckerMsg::Ready(_) => "CheckerMsg::Ready",
            CheckerMsg::Path(_) => "CheckerMsg::Path",
            CheckerMsg::Gone { .. } => "CheckerMsg::Gone",
            CheckerMsg::ScanDone { .. } => "CheckerMsg::ScanDone",
        }
    }
    fn carries_fd(&self) -> bool {
        matches!(self, CheckerMsg::Path(r) if r.state == PathState::Disconnected)
    }
    fn validate(&self) -> Result<(), String> {
        match self {
            CheckerMsg::Path(r) => {
                r.identity.validate()?;
                r.evidence.validate()?;
                bounded("device_state", &r.device_state, 64)
            }
            CheckerMsg::Gone { name, .. } if !valid_kernel_name(name) => {
                Err(format!("bad device name {name:?}"))
            }
            _ => Ok(()),
        }
    }
}

// ---------------------------------------------------------------- purger

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgerConfig {
    pub confirmations: u32,
    pub confirmation_interval_ms: u64,
    pub tur_timeout_ms: u64,
    pub require_multipath: bool,
    pub allow_last_path: bool,
    pub dry_run: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeRequest {
    pub id: u64,
    pub identity: PathIdentity,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToPurger {
    Configure(PurgerConfig),
    /// Carries the checker's open fd for the path.
    Purge(PurgeRequest),
    /// The supervisor's answer to `Intent`.
    Decision {
        id: u64,
        proceed: bool,
    },
    /// An intent from before a restart has no outcome: look at the device (no fd, nothing is
    /// deleted) and answer `Vanished` (gone) or `Failed` (still there, so it was not deleted).
    Resolve(PurgeRequest),
    Shutdown,
}

/// What the purger saw, recorded in the audit log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeEvidence {
    pub turs: Vec<TurEvidence>,
    pub holders: Vec<String>,
    /// Usable paths left in the holding map, counting this one.
    pub usable_paths_in_map: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PurgeOutcome {
    Deleted,
    /// Dry run: every check passed, nothing was written.
    WouldDelete,
    /// The device was already gone (a resent request after a restart, or removed meanwhile).
    Vanished,
    /// A safety check said no.
    Refused(String),
    /// The deletion was attempted and did not complete.
    Failed(String),
    /// The supervisor answered `Decision { proceed: false }`.
    Aborted,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PurgerMsg {
    Ready(Hello),
    Intent {
        id: u64,
        evidence: PurgeEvidence,
    },
    Outcome {
        id: u64,
        outcome: PurgeOutcome,
        evidence: PurgeEvidence,
    },
}

impl PurgeEvidence {
    fn validate(&self) -> Result<(), String> {
        if self.turs.len() > MAX_CONFIRMATIONS || self.holders.len() > 64 {
            return Err("evidence too large".into());
        }
        for t in &self.turs {
            t.validate()?;
        }
        for h in &self.holders {
            if !valid_kernel_name(h) {
                return Err(format!("bad holder name {h:?}"));
            }
        }
        Ok(())
    }
}

impl Message for ToPurger {
    fn kind(&self) -> &'static str {
        match self {
            ToPurger::Configure(_) => "ToPurger::Configure",
            ToPurger::Purge(_) => "ToPurger::Purge",
            ToPurger::Decision { .. } => "ToPurger::Decision",
            ToPurger::Resolve(_) => "ToPurger::Resolve",
            ToPurger::Shutdown => "ToPurger::Shutdown",
        }
    }
    fn carries_fd(&self) -> bool {
        matches!(self, ToPurger::Purge(_))
    }
    fn validate(&self) -> Result<(), String> {
        match self {
            ToPurger::Purge(r) | ToPurger::Resolve(r) => r.identity.validate(),
            ToPurger::Configure(c) if c.confirmations as usize > MAX_CONFIRMATIONS => {
                Err(format!("{} confirmations", c.confirmations))
            }
            _ => Ok(()),
        }
    }
}

impl Message for PurgerMsg {
    fn kind(&self) -> &'static str {
        match self {
            PurgerMsg::Ready(_) => "PurgerMsg::Ready",
            PurgerMsg::Intent { .. } => "PurgerMsg::Intent",
            PurgerMsg::Outcome { .. } => "PurgerMsg::Outcome",
        }
    }
    fn validate(&self) -> Result<(), String> {
        match self {
            PurgerMsg::Ready(_) => Ok(()),
            PurgerMsg::Intent { evidence, .. } => evidence.validate(),
            PurgerMsg::Outcome {
                outcome, evidence, ..
            } => {
                if let PurgeOutcome::Refused(s) | PurgeOutcome::Failed(s) = outcome {
                    bounded("reason", s, MAX_ATTR_LEN * 4)?;
                }
                evidence.validate()
            }
        }
    }
}

// ---------------------------------------------------------------- listener

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerConfig {
    pub request_timeout_ms: u64,
    pub admin_gid: u32,
    pub max_clients: u32,
}

/// A parsed control command. The listener parses client text; the supervisor only ever sees this.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlCommand {
    ShowPaths { json: bool },
    ShowPurges { json: bool },
    ShowHelpers { json: bool },
    ShowConfig { json: bool },
    ShowAudit { last: Option<u32>, json: bool },
    ShowStats { json: bool },
    PurgePath { dev: String },
    CancelPurge { id: u64 },
    Pause,
    Resume,
    Reconfigure,
}

/// Peer credentials from SO_PEERCRED.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerCred {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ListenerMsg {
    Ready(Hello),
    Request {
        client: u64,
        peer: PeerCred,
        command: ControlCommand,
    },
    /// The client went away or hit its deadline; the supervisor may drop its reply.
    Abandoned {
        client: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToListener {
    Configure(ListenerConfig),
    /// One piece of a reply; `last` ends it.
    Reply {
        client: u64,
        chunk: String,
        last: bool,
    },
    Shutdown,
}

impl Message for ListenerMsg {
    fn kind(&self) -> &'static str {
        match self {
            ListenerMsg::Ready(_) => "ListenerMsg::Ready",
            ListenerMsg::Request { .. } => "ListenerMsg::Request",
            ListenerMsg::Abandoned { .. } => "ListenerMsg::Abandoned",
        }
    }
    fn validate(&self) -> Result<(), String> {
        match self {
            ListenerMsg::Request {
                command: ControlCommand::PurgePath { dev },
                ..
            } if !valid_kernel_name(dev) => Err(format!("bad device name {dev:?}")),
            _ => Ok(()),
        }
    }
}

impl Message for ToListener {
    fn kind(&self) -> &'static str {
        match self {
            ToListener::Configure(_) => "ToListener::Configure",
            ToListener::Reply { .. } => "ToListener::Reply",
            ToListener::Shutdown => "ToListener::Shutdown",
        }
    }
    fn validate(&self) -> Result<(), String> {
        match self {
            ToListener::Reply { chunk, .. } => bounded("reply chunk", chunk, MAX_REPLY_CHUNK),
            _ => Ok(()),
        }
    }
}
