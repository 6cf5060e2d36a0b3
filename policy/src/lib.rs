//! mpsup's policy: the policy.toml schema, its validation, and the helpers' sandbox profiles
//! ([`sandbox`]). Loading either yields a complete, validated [`LoadedPolicy`] or one
//! [`PolicyError`] that names the file, line, column and key; nothing is half-applied.

mod locate;
pub mod sandbox;
pub mod schema;
mod validate;

pub use schema::*;
pub use validate::{validate, Invalid};

use sha2::{Digest, Sha256};
use std::fmt;
use std::path::{Path, PathBuf};

/// Policy files larger than this are refused before parsing.
pub const MAX_POLICY_BYTES: u64 = 1024 * 1024;

/// A policy that parsed and passed every check, with what was resolved on this host.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedPolicy {
    pub policy: Policy,
    pub path: PathBuf,
    /// SHA-256 of the file's bytes, hex; recorded in every audit record.
    pub sha256: String,
    /// `daemon.admin_group` resolved on this host.
    pub admin_gid: u32,
    /// Things that are valid but probably not what the admin meant.
    pub warnings: Vec<String>,
}

/// Why a policy was refused. `Display` is one line, ready for a terminal or a control reply.
#[derive(Debug)]
pub enum PolicyError {
    Read {
        file: PathBuf,
        error: std::io::Error,
    },
    TooLarge {
        file: PathBuf,
        len: u64,
    },
    At {
        file: PathBuf,
        line: usize,
        col: usize,
        key: Option<String>,
        message: String,
    },
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyError::Read { file, error } => {
                write!(f, "{}: cannot read policy: {error}", file.display())
            }
            PolicyError::TooLarge { file, len } => {
                write!(
                    f,
                    "{}: policy is {len} bytes, more than {MAX_POLICY_BYTES}",
                    file.display()
                )
            }
            PolicyError::At {
                file,
                line,
                col,
                key,
                message,
            } => {
                write!(f, "{}:{line}:{col}: ", file.display())?;
                if let Some(k) = key {
                    write!(f, "{k}: ")?;
                }
                write!(f, "{message}")
            }
        }
    }
}

impl std::error::Error for PolicyError {}

/// Reads and validates the policy at `path`.
pub fn load(path: &Path) -> Result<LoadedPolicy, PolicyError> {
    let read_err = |error| PolicyError::Read {
        file: path.to_path_buf(),
        error,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if meta.len() > MAX_POLICY_BYTES {
        return Err(PolicyError::TooLarge {
            file: path.to_path_buf(),
            len: meta.len(),
        });
    }
    let bytes = std::fs::read(path).map_err(read_err)?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let (line, col) = locate::line_col(
            &String::from_utf8_lossy(e.as_bytes()),
            e.utf8_error().valid_up_to(),
        );
        PolicyError::At {
            file: path.to_path_buf(),
            line,
            col,
            key: None,
            message: "not valid UTF-8".into(),
        }
    })?;
    parse(&text, path)
}

/// Parses and validates policy text; `file` is only used in messages.
pub fn parse(text: &str, file: &Path) -> Result<LoadedPolicy, PolicyError> {
    let at = |pos: usize, key: Option<String>, message: String| {
        let (line, col) = locate::line_col(text, pos);
        PolicyError::At {
            file: file.to_path_buf(),
            line,
            col,
            key,
            message: message.replace('\n', "; "),
        }
    };
    let policy: Policy = toml::from_str(text).map_err(|e| {
        let pos = e.span().map_or(0, |s| s.start);
        at(
            pos,
            locate::key_at(text, pos),
            e.message().trim().to_string(),
        )
    })?;
    let key_error = |inv: Invalid| at(locate::span_of(text, &inv.key), Some(inv.key), inv.message);
    validate(&policy).map_err(key_error)?;
    let admin_gid = resolve_group(&policy.daemon.admin_group).map_err(|message| {
        key_error(Invalid {
            key: "daemon.admin_group".into(),
            message,
        })
    })?;

    let mut warnings = Vec::new();
    if policy.devices.is_empty() {
        warnings.push("no [[device]] rule: no path will ever be purged".to_string());
    }
    if policy.purge.delay < policy.checker.interval * 2 {
        warnings.push(format!(
            "purge.delay ({}) is under two checker intervals: a path may be purged after one bad check",
            humantime::format_duration(policy.purge.delay)
        ));
    }
    Ok(LoadedPolicy {
        sha256: hex(&Sha256::digest(text.as_bytes())),
        policy,
        path: file.to_path_buf(),
        admin_gid,
        warnings,
    })
}

fn resolve_group(name: &str) -> Result<u32, String> {
    match nix::unistd::Group::from_name(name) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => Err(format!("no group named {name:?} on this host")),
        Err(e) => Err(format!("cannot look up group {name:?}: {e}")),
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl LoadedPolicy {
    /// The effective policy, every default filled in, as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(&self.policy)
            .unwrap_or_else(|e| format!("# cannot render policy: {e}\n"))
    }

    /// The first `[[device]]` rule matching a path decides; no match means never purge.
    pub fn purge_allowed_for(&self, vendor: &str, model: &str, wwid: Option<&str>) -> bool {
        self.policy
            .devices
            .iter()
            .find(|r| r.matches(vendor, model, wwid))
            .is_some_and(|r| r.purge)
    }
}
