//! The helpers' sandboxes, for real: each test forks a child that applies a role's profile with
//! the very function the helper calls (`mpsup_policy::sandbox::apply`), tries something, and
//! exits with a code (or dies by a signal) the parent checks. Then the real daemon: every
//! helper's /proc status shows seccomp filter mode, no_new_privs and no capabilities, and
//! `show helpers json` reports it.
//!
//! Landlock is not skipped when missing: the child fails with `NO_LANDLOCK` and the test says
//! to run the lab scenario `sandbox` (kernel 6.12) instead.

mod common;

use common::Daemon;
use mpsup_policy::sandbox::{apply, restrict_filesystem, Role};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};
use std::os::unix::fs::OpenOptionsExt;

const OK: i32 = 0;
const APPLY_FAILED: i32 = 90;
const NO_LANDLOCK: i32 = 91;
/// A call that should have failed succeeded.
const ALLOWED: i32 = 92;
/// A call failed with another errno than expected (errno is added to this).
const OTHER_ERRNO: i32 = 100;

#[derive(Debug, PartialEq)]
enum End {
    Exit(i32),
    Signal(Signal),
}

/// Forks; the child puts itself in `helper`'s sandbox (the full profile, or only landlock) and
/// exits with what `f` returns. The parent returns how the child ended.
fn in_sandbox(helper: Role, full: bool, f: impl FnOnce() -> i32) -> End {
    // SAFETY: the child only applies the sandbox, runs `f` (plain syscalls, small allocations:
    // glibc keeps malloc usable after fork) and leaves with _exit, never returning into the
    // test harness.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            let r = if full {
                apply(helper, false)
            } else {
                restrict_filesystem(helper, false)
            };
            let code = match r {
                Err(_) => APPLY_FAILED,
                Ok(a) if a.landlock_abi.is_none() || !a.landlock_fully_enforced => NO_LANDLOCK,
                Ok(_) => f(),
            };
            // SAFETY: _exit ends the child without running the harness's destructors.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => match waitpid(child, None).expect("waitpid") {
            WaitStatus::Exited(_, code) => {
                assert_ne!(
                    code, APPLY_FAILED,
                    "{helper:?}: the sandbox could not be applied"
                );
                assert_ne!(
                    code, NO_LANDLOCK,
                    "landlock is missing or partial on this kernel: run `tests/vm/run sandbox`"
                );
                End::Exit(code)
            }
            WaitStatus::Signaled(_, sig, _) => End::Signal(sig),
            other => panic!("unexpected wait status {other:?}"),
        },
    }
}

fn errno_code(e: &std::io::Error) -> i32 {
    OTHER_ERRNO + e.raw_os_error().unwrap_or(0)
}

/// 0 if `r` failed with `errno`, else a code that says what happened.
fn expect_errno<T>(r: std::io::Result<T>, errno: i32) -> i32 {
    match r {
        Ok(_) => ALLOWED,
        Err(e) if e.raw_os_error() == Some(errno) => OK,
        Err(e) => errno_code(&e),
    }
}

fn expect_ok<T>(r: std::io::Result<T>) -> i32 {
    match r {
        Ok(_) => OK,
        Err(e) => errno_code(&e),
    }
}

fn open_write(path: &str) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

fn open_read(path: &str) -> std::io::Result<std::fs::File> {
    std::fs::File::open(path)
}

/// A writable sysfs file outside /sys/devices.
const SYSFS_OUTSIDE: &str = "/sys/kernel/mm/transparent_hugepage/enabled";
/// A writable sysfs attribute beneath /sys/devices that exists on every Linux host.
const SYSFS_DEVICES: &str = "/sys/devices/virtual/mem/null/uevent";

fn all_of(codes: &[i32]) -> i32 {
    codes.iter().copied().find(|c| *c != OK).unwrap_or(OK)
}

/// Runs `f` in the sandbox with a socketpair made before the sandbox (like the helpers' channel):
/// sending and receiving on it must work.
fn channel_works(helper: Role) -> End {
    use nix::sys::socket::{
        recvmsg, sendmsg, socketpair, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr,
    };
    use std::io::{IoSlice, IoSliceMut};
    use std::os::fd::AsRawFd;
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .expect("socketpair");
    in_sandbox(helper, true, move || {
        // the way the helpers' Channel talks: sendmsg/recvmsg
        let mut buf = [0u8; 8];
        let sent = sendmsg::<UnixAddr>(
            a.as_raw_fd(),
            &[IoSlice::new(b"ping")],
            &[],
            MsgFlags::empty(),
            None,
        );
        let mut iov = [IoSliceMut::new(&mut buf)];
        let got = sent.and_then(|_| {
            recvmsg::<UnixAddr>(b.as_raw_fd(), &mut iov, None, MsgFlags::empty()).map(|m| m.bytes)
        });
        match got {
            Ok(4) if &buf[..4] == b"ping" => OK,
            Ok(_) => ALLOWED,
            Err(e) => OTHER_ERRNO + e as i32,
        }
    })
}

const ALL: [Role; 3] = [Role::Checker, Role::Purger, Role::Listener];

#[test]
fn every_helper_can_use_its_channel() {
    for h in ALL {
        assert_eq!(channel_works(h), End::Exit(OK), "{h:?}");
    }
}

#[test]
fn no_helper_may_ptrace_mount_or_exec() {
    for h in ALL {
        let ptrace = in_sandbox(h, true, || {
            // SAFETY: PTRACE_TRACEME takes no pointers; it is expected to be fatal here.
            unsafe { libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) };
            ALLOWED
        });
        assert_eq!(ptrace, End::Signal(Signal::SIGSYS), "{h:?} ptrace");
        let mount = in_sandbox(h, true, || {
            // SAFETY: NUL-terminated strings, no data pointer; expected to be fatal here.
            let r = unsafe {
                libc::mount(
                    c"none".as_ptr(),
                    c"/tmp".as_ptr(),
                    c"tmpfs".as_ptr(),
                    0,
                    std::ptr::null(),
                )
            };
            if r == 0 {
                ALLOWED
            } else {
                OTHER_ERRNO
            }
        });
        assert_eq!(mount, End::Signal(Signal::SIGSYS), "{h:?} mount");
        let exec = in_sandbox(h, true, || {
            let e = std::process::Command::new("/bin/true").status();
            if e.is_ok() {
                ALLOWED
            } else {
                OTHER_ERRNO
            }
        });
        // std spawns through clone/clone3 + execve: either is fatal (clone3 gets ENOSYS in
        // the checker, then clone without CLONE_THREAD is killed).
        assert_eq!(exec, End::Signal(Signal::SIGSYS), "{h:?} exec");
        let execve = in_sandbox(h, true, || {
            let path = c"/bin/true";
            let argv = [path.as_ptr(), std::ptr::null()];
            let envp = [std::ptr::null()];
            // SAFETY: NUL-terminated path, argv and envp arrays ending in NULL.
            unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
            ALLOWED
        });
        assert_eq!(execve, End::Signal(Signal::SIGSYS), "{h:?} execve");
    }
}

#[test]
fn listener_sees_no_filesystem() {
    for full in [true, false] {
        for path in ["/dev/null", "/sys/class", SYSFS_DEVICES, "/etc/passwd"] {
            let end = in_sandbox(Role::Listener, full, || {
                expect_errno(open_read(path), libc::EACCES)
            });
            assert_eq!(
                end,
                End::Exit(OK),
                "listener open {path} (full profile: {full})"
            );
        }
    }
}

#[test]
fn checker_reads_sysfs_and_devices_and_writes_nothing() {
    let end = in_sandbox(Role::Checker, true, || {
        all_of(&[
            expect_ok(std::fs::read_dir("/sys/class").map(|d| d.count())),
            expect_ok(std::fs::read_to_string("/sys/devices/virtual/mem/null/dev")),
            expect_ok(open_read("/dev/null")),
            // the worker pool starts threads inside the sandbox
            match std::thread::spawn(|| 7).join() {
                Ok(7) => OK,
                _ => ALLOWED,
            },
        ])
    });
    assert_eq!(end, End::Exit(OK), "checker's own job");
    for path in [SYSFS_OUTSIDE, SYSFS_DEVICES, "/dev/null"] {
        let end = in_sandbox(Role::Checker, true, || {
            expect_errno(open_write(path), libc::EACCES)
        });
        assert_eq!(end, End::Exit(OK), "checker write {path}");
    }
    let end = in_sandbox(Role::Checker, true, || {
        expect_errno(open_read("/etc/passwd"), libc::EACCES)
    });
    assert_eq!(end, End::Exit(OK), "checker read /etc/passwd");
    let ioctl = in_sandbox(Role::Checker, true, || {
        let f = match open_read("/dev/null") {
            Ok(f) => f,
            Err(e) => return errno_code(&e),
        };
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD writes one c_int into `n`; expected to be fatal here.
        unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&f), libc::FIONREAD, &mut n) };
        ALLOWED
    });
    assert_eq!(
        ioctl,
        End::Signal(Signal::SIGSYS),
        "checker ioctl other than SG_IO"
    );
    let socket = in_sandbox(Role::Checker, true, || {
        let _ = std::net::UdpSocket::bind("127.0.0.1:0");
        ALLOWED
    });
    assert_eq!(socket, End::Signal(Signal::SIGSYS), "checker socket");
    // It may read its fd limit (to size its path-fd budget), never change it.
    let read_limit = in_sandbox(Role::Checker, true, || match nix::sys::resource::getrlimit(
        nix::sys::resource::Resource::RLIMIT_NOFILE,
    ) {
        Ok(_) => OK,
        Err(e) => OTHER_ERRNO + e as i32,
    });
    assert_eq!(read_limit, End::Exit(OK), "checker reads RLIMIT_NOFILE");
    let set_limit = in_sandbox(Role::Checker, true, || {
        let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, 64, 64);
        ALLOWED
    });
    assert_eq!(
        set_limit,
        End::Signal(Signal::SIGSYS),
        "checker sets RLIMIT_NOFILE"
    );
}

#[test]
fn purger_writes_only_beneath_sys_devices_and_opens_no_socket() {
    let end = in_sandbox(Role::Purger, true, || {
        all_of(&[
            expect_ok(std::fs::read_dir("/sys/class").map(|d| d.count())),
            expect_ok(open_read("/dev/null")),
            // the `delete` attributes live beneath /sys/devices; `uevent` stands in for them
            expect_ok(open_write(SYSFS_DEVICES)),
        ])
    });
    assert_eq!(end, End::Exit(OK), "purger's own job");
    for path in [SYSFS_OUTSIDE, "/dev/null"] {
        let end = in_sandbox(Role::Purger, true, || {
            expect_errno(open_write(path), libc::EACCES)
        });
        assert_eq!(end, End::Exit(OK), "purger write {path}");
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let new_file = tmp.path().join("x");
    let end = in_sandbox(Role::Purger, true, move || {
        expect_errno(std::fs::File::create(&new_file), libc::EACCES)
    });
    assert_eq!(end, End::Exit(OK), "purger create a file");
    let socket = in_sandbox(Role::Purger, true, || {
        let _ = std::os::unix::net::UnixDatagram::unbound();
        ALLOWED
    });
    assert_eq!(socket, End::Signal(Signal::SIGSYS), "purger socket");
    let thread = in_sandbox(Role::Purger, true, || {
        let _ = std::thread::spawn(|| 1).join();
        ALLOWED
    });
    assert_eq!(
        thread,
        End::Signal(Signal::SIGSYS),
        "purger starting a thread"
    );
}

fn status_field(pid: i32, key: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("{key} missing in /proc/{pid}/status"))
}

#[test]
fn the_running_helpers_are_sandboxed_and_the_supervisor_holds_no_capability() {
    let mut d = Daemon::start("");
    let helpers = d.wait_ready();
    // The supervisor keeps nothing after start: no capability in any set, no_new_privs.
    let sup = d.pid();
    assert_eq!(status_field(sup, "NoNewPrivs"), "1", "supervisor");
    for caps in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(
            status_field(sup, caps),
            "0000000000000000",
            "supervisor {caps}"
        );
    }
    for (role, pid) in &helpers {
        assert_eq!(status_field(*pid, "Seccomp"), "2", "{role}");
        assert_eq!(status_field(*pid, "NoNewPrivs"), "1", "{role}");
        for caps in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            assert_eq!(
                status_field(*pid, caps),
                "0000000000000000",
                "{role} {caps}"
            );
        }
        // every thread (the checker's workers start after Configure) carries the filter
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks") {
            let task = task.expect("task").file_name();
            let text = std::fs::read_to_string(format!(
                "/proc/{pid}/task/{}/status",
                task.to_string_lossy()
            ))
            .unwrap_or_default();
            if !text.is_empty() {
                assert!(text.contains("\nSeccomp:\t2\n"), "{role} task {task:?}");
            }
        }
    }
    let sock = d.dir.path().join("mpsup.sock");
    let out = std::process::Command::new(common::BIN)
        .args(["ctl", "--socket"])
        .arg(&sock)
        .args(["show", "helpers", "json"])
        .output()
        .expect("ctl");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let list = v["helpers"].as_array().expect("helpers");
    assert_eq!(list.len(), 3);
    for h in list {
        let s = &h["sandbox"];
        assert_eq!(s["seccomp"], true, "{h}");
        assert_eq!(s["no_new_privs"], true, "{h}");
        assert_eq!(s["capabilities_dropped"], true, "{h}");
        // the truth about landlock on this kernel
        let abi = landlock_abi();
        assert_eq!(s["landlock_abi"].as_u64(), abi, "{h}");
        assert_eq!(
            s["landlock_fully_enforced"],
            abi.is_some_and(|a| a >= 6),
            "{h}"
        );
    }
    // the checker's workers have run a round under the filter without being killed
    d.wait_for(&["checker round done"]);
}

/// The kernel's landlock ABI, asked directly.
fn landlock_abi() -> Option<u64> {
    // SAFETY: landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION) reads nothing.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32,
        )
    };
    u64::try_from(v).ok().filter(|v| *v > 0)
}
