//! The policy.toml schema (DESIGN.md, policy.toml). Key names are fixed there: the lab and
//! users rely on them. Keys may be added, never renamed. Every key has a default, so an empty
//! file is a valid (and safe: nothing matches, nothing is purged) policy.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    pub daemon: Daemon,
    pub checker: Checker,
    pub purge: Purge,
    pub supervisor: Supervisor,
    pub sandbox: Sandbox,
    /// `[[device]]` rules, first match wins; a path no rule matches is never purged.
    #[serde(rename = "device")]
    pub devices: Vec<DeviceRule>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Daemon {
    pub socket: PathBuf,
    pub socket_mode: FileMode,
    pub admin_group: String,
    pub audit_log: PathBuf,
    pub state_dir: PathBuf,
    #[serde(with = "duration")]
    pub request_timeout: Duration,
    /// Control clients served at once; more wait in the kernel's accept backlog.
    pub max_clients: u32,
}

impl Default for Daemon {
    fn default() -> Self {
        Daemon {
            socket: "/run/mpsup/mpsup.sock".into(),
            socket_mode: FileMode(0o660),
            admin_group: "root".into(),
            audit_log: "/var/log/mpsup/audit.jsonl".into(),
            state_dir: "/var/lib/mpsup".into(),
            request_timeout: Duration::from_secs(4),
            max_clients: 64,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Checker {
    #[serde(with = "duration")]
    pub interval: Duration,
    #[serde(with = "duration")]
    pub tur_timeout: Duration,
    pub max_in_flight: u32,
}

impl Default for Checker {
    fn default() -> Self {
        Checker {
            interval: Duration::from_secs(5),
            tur_timeout: Duration::from_secs(30),
            max_in_flight: 64,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Purge {
    pub enabled: bool,
    pub dry_run: bool,
    #[serde(with = "duration")]
    pub delay: Duration,
    pub confirmations: u32,
    #[serde(with = "duration")]
    pub confirmation_interval: Duration,
    pub require_multipath: bool,
    pub allow_last_path: bool,
    pub max_per_minute: u32,
    pub pause_fraction: f64,
    #[serde(with = "duration")]
    pub pause_window: Duration,
}

impl Default for Purge {
    fn default() -> Self {
        Purge {
            enabled: true,
            dry_run: false,
            delay: Duration::from_secs(60),
            confirmations: 2,
            confirmation_interval: Duration::from_secs(1),
            require_multipath: true,
            allow_last_path: false,
            max_per_minute: 10,
            pause_fraction: 0.5,
            pause_window: Duration::from_secs(60),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnHelperCrash {
    Restart,
    Exit,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Supervisor {
    pub on_helper_crash: OnHelperCrash,
    pub max_restarts: u32,
    #[serde(with = "duration")]
    pub restart_window: Duration,
}

impl Default for Supervisor {
    fn default() -> Self {
        Supervisor {
            on_helper_crash: OnHelperCrash::Restart,
            max_restarts: 5,
            restart_window: Duration::from_secs(60),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sandbox {
    pub require_landlock: bool,
}

/// One `[[device]]` rule. Globs match sysfs vendor, model and WWID (trimmed). `purge` has no
/// default: a rule must say what it does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceRule {
    #[serde(default = "Glob::any")]
    pub vendor: Glob,
    #[serde(default = "Glob::any")]
    pub model: Glob,
    #[serde(default = "Glob::any")]
    pub wwid: Glob,
    pub purge: bool,
}

impl DeviceRule {
    /// A path without a WWID only matches `wwid = "*"`.
    pub fn matches(&self, vendor: &str, model: &str, wwid: Option<&str>) -> bool {
        self.vendor.matches(vendor.trim())
            && self.model.matches(model.trim())
            && match wwid {
                Some(w) => self.wwid.matches(w.trim()),
                None => self.wwid.0.as_str() == "*",
            }
    }
}

/// A shell glob (`*`, `?`, `[...]`), compiled when the policy is read.
#[derive(Clone, Debug, PartialEq)]
pub struct Glob(pub glob::Pattern);

impl Glob {
    pub fn any() -> Glob {
        Glob(glob::Pattern::new("*").unwrap_or_default())
    }
    pub fn matches(&self, s: &str) -> bool {
        self.0.matches(s)
    }
}

impl<'de> Deserialize<'de> for Glob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() {
            return Err(serde::de::Error::custom(
                "empty glob (use \"*\" to match anything)",
            ));
        }
        glob::Pattern::new(&s)
            .map(Glob)
            .map_err(|e| serde::de::Error::custom(format!("bad glob {s:?}: {e}")))
    }
}

impl Serialize for Glob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

/// A file mode written as an octal string, e.g. `"0660"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileMode(pub u32);

impl<'de> Deserialize<'de> for FileMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let bad = || serde::de::Error::custom(format!("{s:?} is not an octal mode like \"0660\""));
        if s.is_empty() || s.len() > 4 || !s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            return Err(bad());
        }
        u32::from_str_radix(&s, 8).map(FileMode).map_err(|_| bad())
    }
}

impl Serialize for FileMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{:04o}", self.0))
    }
}

/// Durations as humans write them ("30s", "1m 30s"), with humantime's reason on a bad one
/// (humantime-serde only says "expected a duration").
mod duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!(
                "bad duration {s:?}: {e} (write e.g. \"30s\", \"5m\")"
            ))
        })
    }

    pub fn serialize<S: Serializer>(v: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*v).to_string())
    }
}
