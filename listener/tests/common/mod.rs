//! Test harness: the listener's `run()` in a thread, the test playing the supervisor on the
//! other end of a real channel, and clients on a real control socket in a tempdir. Every wait is
//! a wait for readability (or EOF) with a generous timeout, never a sleep.

#![allow(dead_code)]

use mpsup_ipc::{Channel, ListenerConfig, ListenerMsg, ToListener, MAX_REPLY_CHUNK};
use mpsup_listener::ListenerError;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

/// How long a test waits for something that should happen promptly before failing.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub fn config(request_timeout_ms: u64, max_clients: u32) -> ListenerConfig {
    ListenerConfig {
        request_timeout_ms,
        admin_gid: 0,
        max_clients,
    }
}

pub struct Harness {
    pub sup: Channel,
    pub path: PathBuf,
    pub listener_pid: u32,
    /// `run`'s result, sent by its thread when it returns.
    done: mpsc::Receiver<Result<(), ListenerError>>,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// Starts the listener and, with `Some`, configures it.
    pub fn start(config: Option<ListenerConfig>) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        // Let the unprivileged children of the permission tests reach the socket.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("mpsup.sock");
        let listen = UnixListener::bind(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
        let (sup, theirs) = Channel::pair().unwrap();
        let (tx, done) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(mpsup_listener::run(theirs, OwnedFd::from(listen)));
        });
        let mut h = Harness {
            sup,
            path,
            listener_pid: 0,
            done,
            _dir: dir,
        };
        match h.recv() {
            ListenerMsg::Ready(hello) => h.listener_pid = hello.pid,
            other => panic!("expected Ready first, got {other:?}"),
        }
        assert_eq!(h.listener_pid, std::process::id());
        if let Some(c) = config {
            h.tell(ToListener::Configure(c));
        }
        h
    }

    pub fn tell(&self, msg: ToListener) {
        self.sup.send(&msg, None).unwrap();
    }

    /// The next message from the listener, within `PATIENCE`.
    pub fn recv(&mut self) -> ListenerMsg {
        self.recv_within(PATIENCE)
            .unwrap_or_else(|| panic!("no message from the listener within {PATIENCE:?}"))
    }

    /// The next message, if one arrives within `within`.
    pub fn recv_within(&mut self, within: Duration) -> Option<ListenerMsg> {
        if !readable_within(self.sup.as_fd(), within) {
            return None;
        }
        Some(self.sup.recv::<ListenerMsg>().unwrap().msg)
    }

    /// Expects a Request and returns its client id and command.
    pub fn request(&mut self) -> (u64, mpsup_ipc::PeerCred, mpsup_ipc::ControlCommand) {
        match self.recv() {
            ListenerMsg::Request {
                client,
                peer,
                command,
            } => (client, peer, command),
            other => panic!("expected a Request, got {other:?}"),
        }
    }

    /// Answers a client with `body`, split into chunks of at most `chunk` bytes.
    pub fn reply_chunked(&self, client: u64, body: &str, chunk: usize) {
        assert!(chunk <= MAX_REPLY_CHUNK && chunk > 0);
        let bytes = body.as_bytes();
        let mut start = 0;
        loop {
            let end = (start + chunk).min(bytes.len());
            let last = end == bytes.len();
            self.tell(ToListener::Reply {
                client,
                chunk: body[start..end].to_string(),
                last,
            });
            if last {
                return;
            }
            start = end;
        }
    }

    pub fn reply(&self, client: u64, body: &str) {
        self.reply_chunked(client, body, MAX_REPLY_CHUNK);
    }

    /// Shuts the listener down and returns what `run` returned.
    pub fn stop(mut self) -> Result<(), ListenerError> {
        self.tell(ToListener::Shutdown);
        self.join()
    }

    /// Waits for `run` to return (after the test made it stop some other way).
    pub fn join(&mut self) -> Result<(), ListenerError> {
        self.done
            .recv_timeout(PATIENCE)
            .expect("listener did not stop")
    }

    pub fn connect(&self) -> UnixStream {
        let s = UnixStream::connect(&self.path).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        s.set_write_timeout(Some(PATIENCE)).unwrap();
        s
    }
}

pub fn readable_within(fd: std::os::fd::BorrowedFd<'_>, within: Duration) -> bool {
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    let timeout = PollTimeout::try_from(within).unwrap();
    poll(&mut fds, timeout).unwrap() > 0
}

pub fn frame(text: &[u8]) -> Vec<u8> {
    let mut f = (text.len() as u32).to_le_bytes().to_vec();
    f.extend_from_slice(text);
    f
}

pub fn send_request(s: &mut UnixStream, text: &str) {
    s.write_all(&frame(text.as_bytes())).unwrap();
}

/// Reads one reply frame.
pub fn read_reply(s: &mut UnixStream) -> String {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
    s.read_exact(&mut body).unwrap();
    String::from_utf8(body).unwrap()
}

/// Reads until the listener closes the connection (EOF, or ECONNRESET when it closed with our
/// bytes unread) and returns what came before; fails if it stays open for `PATIENCE`.
pub fn read_to_close(s: &mut UnixStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return got,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => panic!("connection not closed: {e}"),
        }
    }
}

/// Splits a byte stream into reply bodies.
pub fn replies(mut bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let len = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
        out.push(String::from_utf8(bytes[4..4 + len].to_vec()).unwrap());
        bytes = &bytes[4 + len..];
    }
    out
}
