//! Runs the real `mpsup` binary as a daemon for integration tests and turns its log lines into
//! events the tests wait on (with a deadline; never a sleep).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_mpsup");
pub const WAIT: Duration = Duration::from_secs(20);

pub struct Daemon {
    pub child: Child,
    pub dir: tempfile::TempDir,
    lines: Receiver<String>,
    pub seen: Vec<String>,
}

/// A policy whose files all live in `dir`.
pub fn policy_in(dir: &Path, extra: &str) -> PathBuf {
    let text = format!(
        "[daemon]\nsocket = \"{d}/mpsup.sock\"\naudit_log = \"{d}/audit.jsonl\"\nstate_dir = \"{d}/state\"\n{extra}\n[[device]]\npurge = true\n",
        d = dir.display()
    );
    let path = dir.join("policy.toml");
    std::fs::write(&path, text).unwrap();
    path
}

impl Daemon {
    pub fn start(extra_policy: &str) -> Daemon {
        Daemon::start_in(tempfile::tempdir().unwrap(), extra_policy)
    }

    /// Starts a daemon whose files live in `dir` (which may hold a previous daemon's leftovers).
    pub fn start_in(dir: tempfile::TempDir, extra_policy: &str) -> Daemon {
        let policy = policy_in(dir.path(), extra_policy);
        let mut child = Command::new(BIN)
            .args(["--log-format", "plain", "-v", "--config"])
            .arg(&policy)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("daemon| {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Daemon {
            child,
            dir,
            lines,
            seen: Vec::new(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for a log line containing every one of `parts`; returns it.
    pub fn wait_for(&mut self, parts: &[&str]) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if parts.iter().all(|p| line.contains(p)) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no log line with {parts:?} within {WAIT:?}")
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("daemon exited before logging {parts:?}")
                }
            }
        }
    }

    /// Waits until all three helpers have said Ready; returns their pids by role.
    pub fn wait_ready(&mut self) -> Vec<(String, i32)> {
        let mut ready = Vec::new();
        while ready.len() < 3 {
            let line = self.wait_for(&["helper ready"]);
            ready.push((field(&line, "role"), field(&line, "pid").parse().unwrap()));
        }
        ready.sort();
        ready
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).unwrap();
    }

    /// Waits for the daemon to exit (bounded) and returns its exit code.
    pub fn wait_exit(&mut self) -> i32 {
        let deadline = Instant::now() + WAIT;
        // Drain log lines until the pipe closes: the daemon's exit closes it.
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!("daemon did not exit within {WAIT:?}"),
            }
        }
        self.child.wait().unwrap().code().unwrap_or(-1)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `key=value` from a plain-format log line.
pub fn field(line: &str, key: &str) -> String {
    let pat = format!(" {key}=");
    let start = line
        .find(&pat)
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
        + pat.len();
    line[start..].split_whitespace().next().unwrap().to_string()
}

/// The fds a process has open, by number.
pub fn open_fds(pid: i32) -> Vec<i32> {
    let mut fds: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().parse().unwrap())
        .collect();
    fds.sort();
    fds
}

pub fn alive(pid: i32) -> bool {
    // A zombie still has /proc/<pid>; count it as alive so a missed reap shows up.
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Waits (bounded) until process `pid` has exited, by polling its pidfd for readability: the
/// kernel's exit event, not a sleep. A pid already gone counts as exited.
pub fn wait_gone(pid: i32) {
    // SAFETY: pidfd_open takes plain integers and returns a new fd or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    if raw < 0 {
        return;
    }
    // SAFETY: pidfd_open just returned this fd; we own it.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    let mut fds = [nix::poll::PollFd::new(
        std::os::fd::AsFd::as_fd(&fd),
        nix::poll::PollFlags::POLLIN,
    )];
    let ready = nix::poll::poll(
        &mut fds,
        nix::poll::PollTimeout::try_from(WAIT.as_millis() as i32).unwrap(),
    )
    .unwrap();
    assert_eq!(ready, 1, "pid {pid} did not exit within {WAIT:?}");
}
