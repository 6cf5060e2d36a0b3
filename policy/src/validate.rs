//! Range and consistency checks that serde cannot express. Each failure names the key path
//! (`purge.pause_fraction`, `device[2].wwid`) so the loader can point at its line.

use crate::schema::Policy;
use std::path::Path;
use std::time::Duration;

/// A failed check: the dotted key path and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub key: String,
    pub message: String,
}

fn invalid(key: &str, message: impl Into<String>) -> Invalid {
    Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

fn duration_in(key: &str, d: Duration, min: Duration, max: Duration) -> Result<(), Invalid> {
    if d < min || d > max {
        return Err(invalid(
            key,
            format!(
                "{} is out of range ({} to {})",
                humantime::format_duration(d),
                humantime::format_duration(min),
                humantime::format_duration(max)
            ),
        ));
    }
    Ok(())
}

fn count_in(key: &str, n: u32, min: u32, max: u32) -> Result<(), Invalid> {
    if n < min || n > max {
        return Err(invalid(
            key,
            format!("{n} is out of range ({min} to {max})"),
        ));
    }
    Ok(())
}

fn absolute(key: &str, p: &Path) -> Result<(), Invalid> {
    if !p.is_absolute() || p.as_os_str().is_empty() {
        return Err(invalid(
            key,
            format!("{} is not an absolute path", p.display()),
        ));
    }
    Ok(())
}

const MS: fn(u64) -> Duration = Duration::from_millis;
const SECS: fn(u64) -> Duration = Duration::from_secs;

/// Checks everything that does not depend on the host. Group lookup is done by the loader.
pub fn validate(p: &Policy) -> Result<(), Invalid> {
    let d = &p.daemon;
    absolute("daemon.socket", &d.socket)?;
    absolute("daemon.audit_log", &d.audit_log)?;
    absolute("daemon.state_dir", &d.state_dir)?;
    // A unix socket path must fit sockaddr_un.sun_path (108 bytes with the NUL).
    if d.socket.as_os_str().len() > 107 {
        return Err(invalid(
            "daemon.socket",
            "path longer than 107 bytes does not fit a unix socket address",
        ));
    }
    if d.socket_mode.0 & 0o600 != 0o600 {
        return Err(invalid(
            "daemon.socket_mode",
            "the owner needs read and write (0600 at least)",
        ));
    }
    if d.socket_mode.0 & 0o7000 != 0 {
        return Err(invalid(
            "daemon.socket_mode",
            "setuid, setgid and sticky bits make no sense on a socket",
        ));
    }
    if d.socket_mode.0 & 0o002 != 0 {
        return Err(invalid(
            "daemon.socket_mode",
            "a world-writable control socket lets anyone connect",
        ));
    }
    if d.admin_group.is_empty() || d.admin_group.len() > 32 {
        return Err(invalid("daemon.admin_group", "must be a group name"));
    }
    duration_in(
        "daemon.request_timeout",
        d.request_timeout,
        MS(100),
        SECS(60),
    )?;
    count_in("daemon.max_clients", d.max_clients, 1, 4096)?;

    let c = &p.checker;
    duration_in("checker.interval", c.interval, MS(100), SECS(3600))?;
    duration_in("checker.tur_timeout", c.tur_timeout, MS(100), SECS(600))?;
    count_in("checker.max_in_flight", c.max_in_flight, 1, 1024)?;

    let u = &p.purge;
    // A zero grace period is the flaw this project exists to fix: a flapping path must be seen
    // disconnected for a while before it is purged.
    duration_in("purge.delay", u.delay, SECS(1), SECS(7 * 86400))?;
    count_in("purge.confirmations", u.confirmations, 1, 16)?;
    duration_in(
        "purge.confirmation_interval",
        u.confirmation_interval,
        MS(100),
        SECS(60),
    )?;
    count_in("purge.max_per_minute", u.max_per_minute, 1, 10_000)?;
    if !(u.pause_fraction > 0.0 && u.pause_fraction <= 1.0) {
        return Err(invalid(
            "purge.pause_fraction",
            format!("{} is not in (0, 1]", u.pause_fraction),
        ));
    }
    duration_in("purge.pause_window", u.pause_window, SECS(1), SECS(86400))?;

    let s = &p.supervisor;
    count_in("supervisor.max_restarts", s.max_restarts, 0, 1000)?;
    duration_in(
        "supervisor.restart_window",
        s.restart_window,
        SECS(1),
        SECS(86400),
    )?;
    Ok(())
}
