//! Start-up of a helper process (`mpsup __helper <role>`), run right after the supervisor's
//! exec: adopt the fds the supervisor placed on fixed numbers, check they are what they must
//! be, close anything else, and hand over to the role's crate, which calls back into
//! [`sandbox`] after its own setup and before its loop (profiles: `mpsup_policy::sandbox`).

use mpsup_ipc::{Channel, Role, SandboxStatus, HELPER_CHANNEL_FD, LISTENER_SOCKET_FD};
use mpsup_policy::sandbox as profiles;
use nix::sys::socket::{getsockopt, sockopt};
use std::os::fd::{FromRawFd, OwnedFd};

fn adopt(raw: i32, want: nix::sys::socket::SockType) -> Result<OwnedFd, String> {
    // Check before owning: a closed or foreign fd must not be wrapped.
    // SAFETY: fcntl(F_GETFD) only queries whether `raw` is open.
    if unsafe { libc::fcntl(raw, libc::F_GETFD) } < 0 {
        return Err(format!(
            "fd {raw} is not open: not started by the mpsup supervisor?"
        ));
    }
    // SAFETY: the supervisor dup2'd this fd into our table for us before exec; nothing else in
    // this fresh process refers to it, so we become its only owner.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    match getsockopt(&fd, sockopt::SockType) {
        Ok(t) if t == want => {}
        Ok(t) => return Err(format!("fd {raw} is a {t:?} socket, expected {want:?}")),
        Err(e) => return Err(format!("fd {raw} is not a socket: {e}")),
    }
    nix::fcntl::fcntl(
        &fd,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .map_err(|e| format!("fd {raw}: {e}"))?;
    Ok(fd)
}

/// Closes every fd above the ones this role uses (the supervisor marked them close-on-exec;
/// this makes the helper's own guarantee independent of that).
fn close_strays(first: i32) {
    // SAFETY: close_range closes only fds this process owns and nobody has adopted yet.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            0,
        )
    };
}

/// The hook the role's crate calls once, after its setup and before its loop: applies the role's
/// profile (the same `mpsup_policy::sandbox::apply` the tests call) and reports what it got.
/// An error (a mandatory part failed) stops the helper with a non-zero exit.
fn sandbox(
    role: Role,
    require_landlock: bool,
) -> Box<dyn FnOnce() -> Result<SandboxStatus, String>> {
    Box::new(move || {
        let a = profiles::apply(role, require_landlock).map_err(|e| e.to_string())?;
        for w in &a.warnings {
            tracing::warn!("sandbox: {w}");
        }
        tracing::debug!(
            seccomp = a.seccomp,
            no_new_privs = a.no_new_privs,
            capabilities_dropped = a.capabilities_dropped,
            landlock_abi = ?a.landlock_abi,
            landlock_fully_enforced = a.landlock_fully_enforced,
            "sandbox applied"
        );
        Ok(SandboxStatus {
            no_new_privs: a.no_new_privs,
            seccomp: a.seccomp,
            landlock_abi: a.landlock_abi,
            landlock_fully_enforced: a.landlock_fully_enforced,
            capabilities_dropped: a.capabilities_dropped,
        })
    })
}

pub fn main(role: Role, require_landlock: bool) -> i32 {
    let listen_fd = if role == Role::Listener {
        Some(LISTENER_SOCKET_FD)
    } else {
        None
    };
    close_strays(listen_fd.unwrap_or(HELPER_CHANNEL_FD) + 1);
    let channel = match adopt(HELPER_CHANNEL_FD, nix::sys::socket::SockType::SeqPacket) {
        Ok(fd) => Channel::from_fd(fd),
        Err(e) => {
            tracing::error!("{e}");
            return 1;
        }
    };
    let result = match role {
        Role::Checker => mpsup_checker::run_sandboxed(
            channel,
            mpsup_checker::Roots::default(),
            sandbox(role, require_landlock),
        )
        .map_err(|e| e.to_string()),
        Role::Purger => mpsup_purger::run_sandboxed(
            channel,
            Default::default(),
            sandbox(role, require_landlock),
        )
        .map_err(|e| e.to_string()),
        Role::Listener => match adopt(LISTENER_SOCKET_FD, nix::sys::socket::SockType::Stream) {
            Ok(listen) => {
                mpsup_listener::run_sandboxed(channel, listen, sandbox(role, require_landlock))
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("stopping: {e}");
            1
        }
    }
}
