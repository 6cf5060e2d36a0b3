//! What the supervisor keeps after start: nothing. Everything that needs a privilege (binding
//! and chown'ing the control socket, creating the audit and state directories, raising
//! RLIMIT_NOFILE) happens before this runs. Afterwards it only reads its policy, appends to
//! files it owns as uid 0, and forks and signals its own children, none of which needs a
//! capability. Emptying the bounding set also means the helpers it execs start with none.

use caps::{CapSet, Capability};

/// Drops every capability (bounding, ambient, inheritable, permitted, effective) and sets
/// no_new_privs. Returns what could not be done; an unprivileged process cannot clear its
/// bounding set and has nothing to drop anyway.
pub fn drop_all() -> Result<(), String> {
    let privileged =
        caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP).unwrap_or(false);
    if privileged {
        for cap in caps::all() {
            caps::drop(None, CapSet::Bounding, cap)
                .map_err(|e| format!("bounding set ({cap}): {e}"))?;
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(|e| format!("ambient set: {e}"))?;
    caps::clear(None, CapSet::Inheritable).map_err(|e| format!("inheritable set: {e}"))?;
    caps::clear(None, CapSet::Effective).map_err(|e| format!("effective set: {e}"))?;
    caps::clear(None, CapSet::Permitted).map_err(|e| format!("permitted set: {e}"))?;
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS) takes integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(format!("no_new_privs: {}", std::io::Error::last_os_error()));
    }
    if !caps::read(None, CapSet::Permitted)
        .map_err(|e| e.to_string())?
        .is_empty()
    {
        return Err("permitted set not empty after clearing it".into());
    }
    Ok(())
}
