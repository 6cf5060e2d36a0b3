//! Starting a helper: fork + exec of our own binary with a hidden role argument (the OpenBSD
//! bgpd pattern: a fresh address space, no inherited heap). The child gets its socketpair end
//! on fd 3 (and the listener its control socket on fd 4), /dev/null on stdin and stdout, our
//! stderr for logs, an empty environment, an empty signal mask, its own process group (a
//! terminal's ^C reaches only the supervisor, which stops the helpers in order), and SIGKILL
//! if the supervisor dies. Every other fd is marked close-on-exec before the exec.

use mpsup_ipc::{Role, HELPER_CHANNEL_FD, LISTENER_SOCKET_FD};
use nix::fcntl::{fcntl, FcntlArg};
use nix::unistd::Pid;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// How helpers are started. Tests substitute `exe` to run the real binary from target/.
#[derive(Clone, Debug)]
pub struct HelperCommand {
    pub exe: std::path::PathBuf,
    /// Arguments after `__helper <role>` (log level and format).
    pub extra_args: Vec<String>,
}

impl HelperCommand {
    pub fn current_exe(extra_args: Vec<String>) -> Self {
        // /proc/self/exe is resolved in the child to the very binary the supervisor runs, even if
        // a package upgrade replaced the file on disk meanwhile.
        HelperCommand {
            exe: "/proc/self/exe".into(),
            extra_args,
        }
    }
}

/// Lowest fd the supervisor uses for handing over, above the fixed target slots.
const HANDOVER_MIN_FD: i32 = 10;

/// Forks and execs one helper. `channel` is the child's end of its socketpair; `listen` is the
/// bound control socket (listener only). Both stay open in the parent until the caller drops them.
pub fn spawn_helper(
    cmd: &HelperCommand,
    role: Role,
    channel: BorrowedFd<'_>,
    listen: Option<BorrowedFd<'_>>,
) -> std::io::Result<Pid> {
    // Copy the fds above the target slots first, so the child's dup2 never has source == target
    // (dup2 onto itself would keep close-on-exec set).
    let channel = dup_high(channel)?;
    let listen = listen.map(dup_high).transpose()?;
    let (chan_raw, listen_raw) = (channel.as_raw_fd(), listen.as_ref().map(|l| l.as_raw_fd()));
    let parent = nix::unistd::getpid().as_raw();

    let mut command = Command::new(&cmd.exe);
    command
        .arg0("mpsup")
        .arg("__helper")
        .arg(role.as_str())
        .args(&cmd.extra_args)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    // SAFETY: the closure runs in the forked child before exec and only makes async-signal-safe
    // syscalls (dup2, close_range/fcntl, sigprocmask, setpgid, prctl, getppid); it allocates
    // nothing and touches no lock.
    unsafe {
        command.pre_exec(move || child_setup(chan_raw, listen_raw, parent));
    }
    let child = command.spawn()?;
    Ok(Pid::from_raw(child.id() as i32))
}

fn dup_high(fd: BorrowedFd<'_>) -> std::io::Result<OwnedFd> {
    let raw =
        fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(HANDOVER_MIN_FD)).map_err(std::io::Error::from)?;
    // SAFETY: F_DUPFD_CLOEXEC just returned this new fd; nothing else owns it.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) })
}

fn child_setup(channel: i32, listen: Option<i32>, parent: i32) -> std::io::Result<()> {
    let check = |r: libc::c_int| {
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    // SAFETY (all calls below): plain syscalls on integers we own in this single-threaded child.
    unsafe {
        check(libc::dup2(channel, HELPER_CHANNEL_FD))?;
        match listen {
            Some(l) => check(libc::dup2(l, LISTENER_SOCKET_FD))?,
            None => {
                libc::close(LISTENER_SOCKET_FD);
            }
        }
        mark_cloexec_from(LISTENER_SOCKET_FD + 1)?;
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        check(libc::sigprocmask(
            libc::SIG_SETMASK,
            &empty,
            std::ptr::null_mut(),
        ))?;
        check(libc::setpgid(0, 0))?;
        check(libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ))?;
        // The supervisor may have died between fork and prctl: then nobody will ever talk to us.
        if libc::getppid() != parent {
            return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
        }
    }
    Ok(())
}

/// Marks every fd from `first` up close-on-exec, so exec closes whatever the supervisor had open
/// (std's own exec-error pipe included, which must survive until the exec itself).
///
/// # Safety
/// Async-signal-safe; to be called in a forked child only.
unsafe fn mark_cloexec_from(first: i32) -> std::io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range only changes fd flags; available since Linux 5.11.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        )
    };
    if r == 0 {
        return Ok(());
    }
    // Older kernels: walk the table up to the soft limit.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: getrlimit writes into the struct we pass.
    let max = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur.min(1 << 20) as i32
    } else {
        1024
    };
    for fd in first..max {
        // SAFETY: fcntl on a closed fd fails with EBADF, which we ignore.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}
