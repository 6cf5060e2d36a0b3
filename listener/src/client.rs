//! `mpsup ctl`: one request, one reply, over the control socket. Framing both ways: u32
//! little-endian length, then that many bytes (see [`crate::framing`]).
//!
//! `timeout` bounds the whole exchange, connecting included: when the listener is full, a
//! connection waits in the socket's backlog, and a blocking `connect()` on a Unix socket waits
//! for room there for at most `SO_SNDTIMEO`.

use crate::framing::request_frame;
use nix::sys::socket::{
    connect, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, UnixAddr,
};
use nix::sys::time::TimeVal;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

pub use crate::framing::{MAX_REPLY, MAX_REQUEST};

#[derive(Debug)]
pub enum CtlError {
    /// Could not reach the daemon (exit 2).
    Connect(String),
    /// Reached it, but the exchange failed (exit 2).
    Protocol(String),
}

/// Sends `command` and returns the reply body.
pub fn request(socket: &Path, command: &str, timeout: Duration) -> Result<String, CtlError> {
    if command.len() > MAX_REQUEST {
        return Err(CtlError::Protocol(format!(
            "command is {} bytes, at most {MAX_REQUEST}",
            command.len()
        )));
    }
    let deadline = Instant::now() + timeout;
    let mut s = connect_within(socket, timeout)
        .map_err(|e| CtlError::Connect(format!("cannot connect to {}: {e}", socket.display())))?;
    let io = |e: std::io::Error| CtlError::Protocol(e.to_string());
    // What is left of the one timeout (never zero, which would mean "no timeout").
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    s.set_write_timeout(Some(left())).map_err(io)?;
    s.write_all(&request_frame(command)).map_err(io)?;
    s.set_read_timeout(Some(left())).map_err(io)?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len)
        .map_err(|e| CtlError::Protocol(format!("no reply: {e}")))?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_REPLY {
        return Err(CtlError::Protocol(format!(
            "reply of {len} bytes exceeds {MAX_REPLY}"
        )));
    }
    let mut body = vec![0u8; len];
    s.set_read_timeout(Some(left())).map_err(io)?;
    s.read_exact(&mut body)
        .map_err(|e| CtlError::Protocol(format!("short reply: {e}")))?;
    String::from_utf8(body).map_err(|_| CtlError::Protocol("reply is not UTF-8".into()))
}

/// A blocking connect that gives up after `timeout` if the listener's backlog stays full.
fn connect_within(path: &Path, timeout: Duration) -> std::io::Result<UnixStream> {
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let timeout = timeout.max(Duration::from_millis(1));
    let secs = timeout.as_secs().min(i32::MAX as u64) as libc::time_t;
    let micros = timeout.subsec_micros() as libc::suseconds_t;
    setsockopt(&fd, sockopt::SendTimeout, &TimeVal::new(secs, micros))?;
    let addr = UnixAddr::new(path)?;
    connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr).map_err(|e| {
        if e == nix::errno::Errno::EAGAIN {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "timed out waiting for the daemon to accept",
            )
        } else {
            e.into()
        }
    })?;
    Ok(UnixStream::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn connect_gives_up_when_the_backlog_is_full() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        // A listener that never accepts, with the smallest backlog: fill it, then one more
        // connect must time out instead of hanging.
        let listener = UnixListener::bind(&path).unwrap();
        nix::sys::socket::listen(&listener, nix::sys::socket::Backlog::new(0).unwrap()).unwrap();
        let mut held = 0;
        let started = Instant::now();
        let err = loop {
            match request(&path, "show paths", Duration::from_millis(100)) {
                Err(CtlError::Connect(e)) => break e,
                Err(CtlError::Protocol(_)) => held += 1,
                Ok(r) => panic!("nobody answers, yet got {r:?}"),
            }
            assert!(held < 64, "the backlog never filled");
        };
        assert!(err.contains("timed out"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(30));
    }

    #[test]
    fn oversized_commands_are_refused_locally() {
        let e = request(
            Path::new("/nonexistent"),
            &"x".repeat(5000),
            Duration::from_secs(1),
        );
        assert!(matches!(e, Err(CtlError::Protocol(_))));
    }
}
