//! The supervisor channel as the purger uses it: send, and wait for the next message until a
//! deadline with `poll(2)`, so that every pause in the pipeline still hears `Shutdown`.

use crate::PurgerError;
use mpsup_ipc::{Channel, IpcError, PurgerMsg, Received, ToPurger};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::os::fd::AsFd;
use std::time::Instant;

/// What a wait produced.
// One at a time, moved straight into a match: boxing the message would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Heard {
    /// The deadline passed with nothing to read.
    Timeout,
    Msg(Received<ToPurger>),
    /// The supervisor closed its end.
    Closed,
}

pub struct Link {
    channel: Channel,
}

impl Link {
    pub fn new(channel: Channel) -> Link {
        Link { channel }
    }

    /// Sends one message. `Ok(false)` when the supervisor has gone away.
    pub fn send(&self, msg: &PurgerMsg) -> Result<bool, PurgerError> {
        match self.channel.send(msg, None) {
            Ok(()) => Ok(true),
            Err(IpcError::Closed) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The next message, waiting at most until `deadline` (`None`: for as long as it takes;
    /// a deadline already past: only what is there now). Sleeps in `poll(2)`, never spins.
    pub fn recv_until(&mut self, deadline: Option<Instant>) -> Result<Heard, PurgerError> {
        loop {
            let timeout = match deadline {
                None => PollTimeout::NONE,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    // Round up, so that a wait never ends (and loops) just before its deadline.
                    let ms = left.as_nanos().div_ceil(1_000_000);
                    PollTimeout::try_from(ms.min(i32::MAX as u128)).unwrap_or(PollTimeout::MAX)
                }
            };
            let mut fds = [PollFd::new(self.channel.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, timeout) {
                Ok(0) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Ok(Heard::Timeout);
                    }
                }
                Ok(_) => {
                    return match self.channel.recv::<ToPurger>() {
                        Ok(r) => Ok(Heard::Msg(r)),
                        Err(IpcError::Closed) => Ok(Heard::Closed),
                        // A spurious wakeup on a non-blocking socket: wait again.
                        Err(IpcError::WouldBlock) => continue,
                        Err(e) => Err(e.into()),
                    };
                }
                Err(Errno::EINTR) => {}
                Err(e) => return Err(PurgerError::Poll(e)),
            }
        }
    }
}
