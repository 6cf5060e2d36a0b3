//! Who is on the other end of a control connection, and whether they may change anything.
//!
//! The kernel records the peer's credentials when it calls `connect()`; `SO_PEERCRED` gives the
//! uid, gid and pid, `SO_PEERGROUPS` (Linux 4.13+) the supplementary groups, both from that same
//! snapshot, so a process that changes identity or exits afterwards cannot confuse us. Only when
//! `SO_PEERGROUPS` is missing do we fall back to `/proc/<pid>/status`, which is best effort: it
//! races with pid reuse and the sandboxed listener may not see `/proc` at all. Uid 0 and a primary
//! gid equal to the admin group never depend on either, so they always work.

use mpsup_ipc::PeerCred;
use nix::sys::socket::{getsockopt, sockopt};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

/// Most supplementary groups Linux allows (NGROUPS_MAX); bounds the `SO_PEERGROUPS` buffer.
const NGROUPS_MAX: usize = 65536;

/// `SO_PEERCRED` of an accepted connection.
pub fn credentials(fd: BorrowedFd<'_>) -> io::Result<PeerCred> {
    let c = getsockopt(&fd, sockopt::PeerCredentials).map_err(io::Error::from)?;
    Ok(PeerCred {
        pid: c.pid(),
        uid: c.uid(),
        gid: c.gid(),
    })
}

/// Whether this peer may run commands that change state: uid 0, primary gid `admin_gid`, or
/// `admin_gid` among its supplementary groups.
pub fn is_admin(fd: BorrowedFd<'_>, peer: &PeerCred, admin_gid: u32) -> bool {
    if peer.uid == 0 || peer.gid == admin_gid {
        return true;
    }
    match supplementary_groups(fd) {
        Ok(groups) => groups.contains(&admin_gid),
        Err(e) => {
            tracing::debug!(error = %e, pid = peer.pid, "SO_PEERGROUPS failed, trying /proc");
            proc_groups(peer.pid).is_some_and(|g| g.contains(&admin_gid))
        }
    }
}

/// The peer's supplementary groups as of its `connect()`.
pub fn supplementary_groups(fd: impl AsFd) -> io::Result<Vec<u32>> {
    let fd = fd.as_fd();
    let mut groups: Vec<libc::gid_t> = vec![0; 32];
    loop {
        let room = std::mem::size_of_val(groups.as_slice());
        let mut len = room as libc::socklen_t;
        // SAFETY: `groups` is valid for `len` bytes; the kernel writes at most `len` bytes into it
        // and stores the length used (or, with ERANGE, the length needed) in `len`. nix has no
        // wrapper for SO_PEERGROUPS.
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let len = len as usize;
        if rc == 0 {
            groups.truncate(len.min(room) / std::mem::size_of::<libc::gid_t>());
            return Ok(groups);
        }
        let err = io::Error::last_os_error();
        let needed = len / std::mem::size_of::<libc::gid_t>();
        if err.raw_os_error() == Some(libc::ERANGE) && len > room && needed <= NGROUPS_MAX {
            groups.resize(needed, 0);
            continue;
        }
        return Err(err);
    }
}

/// Best effort: the `Groups:` line of `/proc/<pid>/status`. procfs reads are served from memory
/// and never wait on a device or a peer, so this does not block the event loop.
pub fn proc_groups(pid: i32) -> Option<Vec<u32>> {
    if pid <= 0 {
        return None;
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_groups_line(&status)
}

fn parse_groups_line(status: &str) -> Option<Vec<u32>> {
    let line = status.lines().find_map(|l| l.strip_prefix("Groups:"))?;
    line.split_whitespace().map(|g| g.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn groups_line() {
        let status = "Name:\tx\nGid:\t5\t5\t5\t5\nGroups:\t4 24 27 \nNgid:\t0\n";
        assert_eq!(parse_groups_line(status), Some(vec![4, 24, 27]));
        assert_eq!(parse_groups_line("Groups:\n"), Some(vec![]));
        assert_eq!(parse_groups_line("Groups:\tx\n"), None);
        assert_eq!(parse_groups_line("Uid:\t0\n"), None);
    }

    #[test]
    fn own_credentials_and_groups() {
        let (a, _b) = UnixStream::pair().unwrap();
        let cred = credentials(a.as_fd()).unwrap();
        assert_eq!(cred.pid, std::process::id() as i32);
        assert_eq!(cred.uid, nix::unistd::getuid().as_raw());
        let mut ours: Vec<u32> = nix::unistd::getgroups()
            .unwrap()
            .into_iter()
            .map(|g| g.as_raw())
            .collect();
        let mut theirs = supplementary_groups(&a).unwrap();
        ours.sort_unstable();
        theirs.sort_unstable();
        assert_eq!(theirs, ours);
        let mut from_proc = proc_groups(cred.pid).unwrap();
        from_proc.sort_unstable();
        assert_eq!(from_proc, ours);
    }
}
