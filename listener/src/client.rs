//! `mpsup ctl`: one request, one reply, over the control socket. Framing both ways: u32
//! little-endian length, then that many bytes of UTF-8.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

pub const MAX_REQUEST: usize = 4096;
pub const MAX_REPLY: usize = 16 * 1024 * 1024;

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
    let mut s = UnixStream::connect(socket)
        .map_err(|e| CtlError::Connect(format!("cannot connect to {}: {e}", socket.display())))?;
    let io = |e: std::io::Error| CtlError::Protocol(e.to_string());
    s.set_read_timeout(Some(timeout)).map_err(io)?;
    s.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut frame = (command.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(command.as_bytes());
    s.write_all(&frame).map_err(io)?;
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
    s.read_exact(&mut body)
        .map_err(|e| CtlError::Protocol(format!("short reply: {e}")))?;
    String::from_utf8(body).map_err(|_| CtlError::Protocol("reply is not UTF-8".into()))
}
