use thiserror::Error;

/// Every way a frame can be refused. Anything but `WouldBlock` and `Closed` from a helper means
/// the helper is treated as compromised (DESIGN.md, Messages).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum IpcError {
    #[error("would block")]
    WouldBlock,
    #[error("peer closed the channel")]
    Closed,
    #[error("socket error: {0}")]
    Io(nix::errno::Errno),
    #[error("frame of {len} bytes exceeds the {max} byte limit")]
    Oversized { len: usize, max: usize },
    #[error("datagram truncated (MSG_TRUNC): larger than {max} bytes")]
    Truncated { max: usize },
    #[error("control message truncated (MSG_CTRUNC)")]
    ControlTruncated,
    #[error("{0} file descriptors on one message (at most one)")]
    TooManyFds(usize),
    #[error("unexpected control message (level {level}, type {kind})")]
    UnexpectedControl { level: i32, kind: i32 },
    #[error("protocol version {got}, expected {expected}")]
    Version { got: u16, expected: u16 },
    #[error("undecodable frame: {0}")]
    Decode(String),
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    #[error("file descriptor attached to {0}, which carries none")]
    UnexpectedFd(&'static str),
    #[error("{0} arrived without its file descriptor")]
    MissingFd(&'static str),
    #[error("invalid {msg}: {why}")]
    Invalid { msg: &'static str, why: String },
    #[error("cannot encode message: {0}")]
    Encode(String),
}

impl IpcError {
    /// True when the error says nothing about the peer's honesty.
    pub fn is_benign(&self) -> bool {
        matches!(self, IpcError::WouldBlock | IpcError::Closed)
    }
}

impl From<nix::errno::Errno> for IpcError {
    fn from(e: nix::errno::Errno) -> Self {
        match e {
            nix::errno::Errno::EAGAIN => IpcError::WouldBlock,
            nix::errno::Errno::EPIPE | nix::errno::Errno::ECONNRESET => IpcError::Closed,
            other => IpcError::Io(other),
        }
    }
}
