//! IPC between the mpsup supervisor and its helpers (DESIGN.md, Messages).
//!
//! Transport: `SOCK_SEQPACKET` socketpairs, one datagram per message, at most one fd per message
//! (SCM_RIGHTS, received with `MSG_CMSG_CLOEXEC` and owned at once). Encoding: a protocol version
//! then one bincode 2 (serde) value, 64 KiB at most, no trailing bytes. Every failure is a typed
//! [`IpcError`]; a receiver treats anything but `WouldBlock`/`Closed` as a compromised peer.

mod channel;
pub mod codec;
mod error;
pub mod messages;
pub mod types;

pub use channel::{Channel, RawFrame, Received};
pub use codec::{MAX_FRAME, PROTOCOL_VERSION};
pub use error::IpcError;
pub use messages::*;
pub use types::*;

/// The fd on which every helper finds its end of the supervisor socketpair.
pub const HELPER_CHANNEL_FD: i32 = 3;
/// The fd on which the listener finds the bound control socket.
pub const LISTENER_SOCKET_FD: i32 = 4;
