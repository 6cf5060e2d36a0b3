//! The supervisor and its three helpers as real processes.

mod common;

use common::*;
use nix::sys::signal::Signal;
use std::os::fd::{FromRawFd, OwnedFd};

#[test]
fn four_processes_start_with_only_their_fds_and_stop_on_sigterm() {
    let mut d = Daemon::start("");
    let helpers = d.wait_ready();
    let roles: Vec<&str> = helpers.iter().map(|(r, _)| r.as_str()).collect();
    let supervisor_targets: Vec<String> = open_fds(d.pid())
        .into_iter()
        .filter(|fd| *fd > 2)
        .map(|fd| fd_target(d.pid(), fd))
        .collect();
    assert!(supervisor_targets
        .iter()
        .any(|t| t == "anon_inode:[signalfd]"));
    assert_eq!(roles, ["checker", "listener", "purger"]);
    for (role, pid) in &helpers {
        let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
        assert!(
            cmdline.starts_with(&format!("mpsup\0__helper\0{role}\0")),
            "{cmdline:?}"
        );
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        assert!(
            status.contains(&format!("PPid:\t{}\n", d.pid())),
            "{role} is not the supervisor's child"
        );
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        assert!(environ.is_empty(), "{role} inherited an environment");
        assert_eq!(fd_target(*pid, 0), "/dev/null");
        assert_eq!(fd_target(*pid, 1), "/dev/null");
        assert!(
            fd_target(*pid, 3).starts_with("socket:["),
            "{role}: fd 3 is its channel"
        );
        // Nothing the supervisor holds leaks into a helper: not its epoll or signalfd, not the
        // other helpers' channels, and the control socket only into the listener.
        let control = fd_target(d.pid(), control_fd(d.pid(), &d));
        for fd in open_fds(*pid).into_iter().filter(|fd| *fd > 2) {
            let target = fd_target(*pid, fd);
            if fd == 4 && role == "listener" {
                assert_eq!(target, control, "listener's fd 4 is the control socket");
                continue;
            }
            // Sockets and pipes have unique inodes; anonymous inodes (epoll, eventfd) share one
            // name, so of those only the supervisor's signalfd is recognisable.
            let comparable = target.starts_with("socket:[")
                || target.starts_with("pipe:[")
                || target.ends_with("[signalfd]");
            assert!(
                !(comparable && supervisor_targets.contains(&target)),
                "{role} inherited fd {fd} -> {target}"
            );
        }
    }
    d.signal(Signal::SIGTERM);
    assert_eq!(d.wait_exit(), 0);
    for (role, pid) in &helpers {
        assert!(!alive(*pid), "{role} (pid {pid}) outlived the supervisor");
    }
    assert!(
        !d.dir.path().join("mpsup.sock").exists(),
        "control socket left behind"
    );
}

fn fd_target(pid: i32, fd: i32) -> String {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// The supervisor's fd for the bound control socket: the socket whose inode the socket file has.
fn control_fd(pid: i32, d: &Daemon) -> i32 {
    let sock = d.dir.path().join("mpsup.sock");
    assert!(std::fs::metadata(&sock).is_ok());
    // /proc/net/unix maps the path to the socket inode.
    let table = std::fs::read_to_string("/proc/net/unix").unwrap();
    let inode = table
        .lines()
        .find(|l| l.ends_with(&*sock.to_string_lossy()))
        .and_then(|l| l.split_whitespace().nth(6))
        .unwrap()
        .to_string();
    open_fds(pid)
        .into_iter()
        .find(|fd| fd_target(pid, *fd) == format!("socket:[{inode}]"))
        .unwrap()
}

/// Runs a daemon expected to refuse to start, to its exit.
fn run_to_exit(policy: &std::path::Path) -> std::process::Output {
    std::process::Command::new(BIN)
        .arg("--config")
        .arg(policy)
        .output()
        .unwrap()
}

/// Steals a helper's end of its socketpair (pidfd_getfd, as root) and speaks for it.
fn steal_channel(pid: i32) -> OwnedFd {
    // SAFETY: plain syscalls with integer arguments; the returned fds are checked and owned.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0) as i32;
        assert!(
            pidfd >= 0,
            "pidfd_open: {}",
            std::io::Error::last_os_error()
        );
        let fd = libc::syscall(libc::SYS_pidfd_getfd, pidfd, 3, 0) as i32;
        assert!(fd >= 0, "pidfd_getfd: {}", std::io::Error::last_os_error());
        libc::close(pidfd);
        OwnedFd::from_raw_fd(fd)
    }
}

fn garbage_gets_the_helper_killed_and_replaced(role: &str, frame: &[u8], why: &str) {
    let mut d = Daemon::start("");
    let helpers = d.wait_ready();
    let old = helpers.iter().find(|(r, _)| r == role).unwrap().1;
    let stolen = mpsup_ipc::Channel::from_fd(steal_channel(old));
    stolen.send_raw(frame, None).unwrap();
    let line = d.wait_for(&["protocol violation", &format!("role={role}")]);
    assert!(line.contains(why), "{line}");
    d.wait_for(&["killed by SIGKILL", &format!("pid={old}")]);
    let ready = d.wait_for(&["helper ready", &format!("role={role}")]);
    let new: i32 = field(&ready, "pid").parse().unwrap();
    assert_ne!(new, old);
    assert!(!alive(old));
    let stats = mpsup_listener::client::request(
        &d.dir.path().join("mpsup.sock"),
        "show stats",
        std::time::Duration::from_secs(10),
    )
    .unwrap();
    for r in ["checker", "purger", "listener"] {
        let want = format!(
            "mpsup_protocol_violations_total{{role=\"{r}\"}} {}\n",
            u8::from(r == role)
        );
        assert!(stats.contains(&want), "want {want:?} in {stats}");
    }
    // The supervisor kept running throughout and still stops cleanly.
    d.signal(Signal::SIGTERM);
    assert_eq!(d.wait_exit(), 0);
}

#[test]
fn a_checker_that_writes_garbage_is_killed_and_restarted() {
    garbage_gets_the_helper_killed_and_replaced("checker", b"\x01\xffgarbage", "undecodable frame");
}

#[test]
fn a_purger_that_sends_an_outcome_for_no_request_is_killed() {
    use mpsup_ipc::*;
    let frame = codec::encode(&PurgerMsg::Outcome {
        id: 7,
        outcome: PurgeOutcome::Deleted,
        evidence: Default::default(),
    })
    .unwrap();
    garbage_gets_the_helper_killed_and_replaced(
        "purger",
        &frame,
        "Outcome for request 7, which the purger does not have",
    );
}

#[test]
fn a_listener_that_says_ready_twice_is_killed() {
    use mpsup_ipc::*;
    let frame = codec::encode(&ListenerMsg::Ready(Hello {
        pid: 1,
        sandbox: Default::default(),
    }))
    .unwrap();
    garbage_gets_the_helper_killed_and_replaced("listener", &frame, "second Ready");
}

#[test]
fn a_crash_loop_exhausts_the_budget_and_the_supervisor_fail_stops() {
    let mut d = Daemon::start("[supervisor]\nmax_restarts = 2\nrestart_window = \"60s\"\n");
    let helpers = d.wait_ready();
    let mut pid = helpers.iter().find(|(r, _)| r == "purger").unwrap().1;
    for _ in 0..2 {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).unwrap();
        let line = d.wait_for(&["helper ready", "role=purger"]);
        pid = field(&line, "pid").parse().unwrap();
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    d.wait_for(&["fail-stop", "the purger crashed more than 2 times"]);
    assert_eq!(d.wait_exit(), 1);
    let audit = std::fs::read_to_string(d.dir.path().join("audit.jsonl")).unwrap();
    let last = audit.lines().last().unwrap();
    assert!(
        last.contains("\"event\":\"supervisor-stop\"")
            && last.contains("crashed more than 2 times"),
        "{last}"
    );
}

#[test]
fn sighup_with_a_broken_policy_keeps_the_old_one() {
    let mut d = Daemon::start("");
    d.wait_ready();
    let policy = d.dir.path().join("policy.toml");
    let good = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(&policy, format!("{good}\n[checker]\ninterval = \"soon\"\n")).unwrap();
    d.signal(Signal::SIGHUP);
    let line = d.wait_for(&["reload refused"]);
    assert!(line.contains("checker.interval: bad duration"), "{line}");
    std::fs::write(
        &policy,
        format!("{good}\n[purge]\nconfirmation_interval = \"3s\"\n"),
    )
    .unwrap();
    d.signal(Signal::SIGHUP);
    d.wait_for(&["reload: new policy in force"]);
    d.wait_for(&["purger", "configured", "confirmation_interval_ms: 3000"]);
    d.signal(Signal::SIGTERM);
    assert_eq!(d.wait_exit(), 0);
}

#[test]
fn a_live_control_socket_is_not_stolen_and_a_stale_one_is_replaced() {
    let mut first = Daemon::start("");
    let helpers = first.wait_ready();
    // A second daemon on the same socket must refuse to start.
    let policy = first.dir.path().join("policy.toml");
    let out = run_to_exit(&policy);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is mpsup already running?"));
    // A stale socket (its server gone: SIGKILL, no cleanup) is replaced.
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    // Its listener holds the listening socket until PDEATHSIG has killed it.
    for (_, pid) in &helpers {
        wait_gone(*pid);
    }
    let dir = std::mem::replace(&mut first.dir, tempfile::tempdir().unwrap());
    assert!(dir.path().join("mpsup.sock").exists());
    let mut second = Daemon::start_in(dir, "");
    second.wait_for(&["removing stale control socket"]);
    second.wait_ready();
    second.signal(Signal::SIGTERM);
    assert_eq!(second.wait_exit(), 0);
}

#[test]
fn something_else_at_the_socket_path_is_never_removed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mpsup.sock"), "precious").unwrap();
    let policy = policy_in(dir.path(), "");
    let out = run_to_exit(&policy);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("exists and is not a socket; refusing to remove it"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("mpsup.sock")).unwrap(),
        "precious"
    );
}
