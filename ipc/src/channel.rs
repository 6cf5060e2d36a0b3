//! One end of a `SOCK_SEQPACKET` socketpair: one datagram per message, at most one fd per
//! message passed with SCM_RIGHTS and received close-on-exec.

use crate::codec::{self, MAX_FRAME};
use crate::error::IpcError;
use crate::Message;
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Room for a few fds, so that a peer sending too many is reported as such rather than as a
/// truncated control message.
const FD_SLOTS: usize = 4;

/// A message and the fd that came with it.
#[derive(Debug)]
pub struct Received<T> {
    pub msg: T,
    pub fd: Option<OwnedFd>,
}

/// A raw datagram before decoding (used by tests and by the typed `recv`).
#[derive(Debug)]
pub struct RawFrame {
    pub len: usize,
    pub fd: Option<OwnedFd>,
}

pub struct Channel {
    fd: OwnedFd,
    buf: Vec<u8>,
}

impl Channel {
    /// A connected pair, both ends close-on-exec and blocking.
    pub fn pair() -> Result<(Channel, Channel), IpcError> {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        Ok((Channel::from_fd(a), Channel::from_fd(b)))
    }

    pub fn from_fd(fd: OwnedFd) -> Channel {
        Channel {
            fd,
            buf: vec![0; MAX_FRAME],
        }
    }

    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    pub fn set_nonblocking(&self, on: bool) -> Result<(), IpcError> {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        let flags = OFlag::from_bits_truncate(fcntl(&self.fd, FcntlArg::F_GETFL)?);
        let flags = if on {
            flags | OFlag::O_NONBLOCK
        } else {
            flags & !OFlag::O_NONBLOCK
        };
        fcntl(&self.fd, FcntlArg::F_SETFL(flags))?;
        Ok(())
    }

    /// Sends one encoded message, checking the message's own fd rule first.
    pub fn send<T: Message>(&self, msg: &T, fd: Option<BorrowedFd<'_>>) -> Result<(), IpcError> {
        match (msg.carries_fd(), fd.is_some()) {
            (false, true) => return Err(IpcError::UnexpectedFd(msg.kind())),
            (true, false) => return Err(IpcError::MissingFd(msg.kind())),
            _ => {}
        }
        let frame = codec::encode(msg)?;
        self.send_raw(&frame, fd)
    }

    /// Sends bytes as one datagram, unchecked. Public for tests that forge bad frames.
    pub fn send_raw(&self, frame: &[u8], fd: Option<BorrowedFd<'_>>) -> Result<(), IpcError> {
        let raw: [RawFd; 1];
        let mut cmsgs = Vec::with_capacity(1);
        if let Some(fd) = fd {
            raw = [fd.as_raw_fd()];
            cmsgs.push(ControlMessage::ScmRights(&raw));
        }
        let iov = [IoSlice::new(frame)];
        let sent = sendmsg::<()>(
            self.fd.as_raw_fd(),
            &iov,
            &cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        )?;
        if sent != frame.len() {
            // SEQPACKET is all-or-nothing; a short send means the kernel did something unexpected.
            return Err(IpcError::Io(nix::errno::Errno::EMSGSIZE));
        }
        Ok(())
    }

    /// Receives and validates one message: decoding, fd rule, then the message's own checks.
    pub fn recv<T: Message>(&mut self) -> Result<Received<T>, IpcError> {
        let raw = self.recv_raw()?;
        let msg: T = codec::decode(&self.buf[..raw.len])?;
        match (msg.carries_fd(), raw.fd.is_some()) {
            (false, true) => return Err(IpcError::UnexpectedFd(msg.kind())),
            (true, false) => return Err(IpcError::MissingFd(msg.kind())),
            _ => {}
        }
        msg.validate().map_err(|why| IpcError::Invalid {
            msg: msg.kind(),
            why,
        })?;
        Ok(Received { msg, fd: raw.fd })
    }

    /// Receives one datagram into the internal buffer, enforcing the transport rules.
    pub fn recv_raw(&mut self) -> Result<RawFrame, IpcError> {
        let mut cmsg_buf = nix::cmsg_space!([RawFd; FD_SLOTS]);
        let mut iov = [IoSliceMut::new(&mut self.buf)];
        let msg = recvmsg::<()>(
            self.fd.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg_buf),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        // Take ownership of every received fd before judging anything, so that all of them are
        // closed on every error path.
        let mut fds: Vec<OwnedFd> = Vec::new();
        let mut unexpected = None;
        for cmsg in msg.cmsgs()? {
            match cmsg {
                ControlMessageOwned::ScmRights(raw) => {
                    for r in raw {
                        // SAFETY: the kernel has just installed `r` in our fd table for this
                        // message; nothing else refers to it, so we are its only owner.
                        fds.push(unsafe { OwnedFd::from_raw_fd(r) });
                    }
                }
                ControlMessageOwned::Unknown(u) => {
                    unexpected = Some((u.cmsg_header.cmsg_level, u.cmsg_header.cmsg_type));
                }
                _ => unexpected = Some((-1, -1)),
            }
        }
        let (len, flags) = (msg.bytes, msg.flags);
        if flags.contains(MsgFlags::MSG_TRUNC) {
            return Err(IpcError::Truncated { max: MAX_FRAME });
        }
        if flags.contains(MsgFlags::MSG_CTRUNC) {
            return Err(IpcError::ControlTruncated);
        }
        if let Some((level, kind)) = unexpected {
            return Err(IpcError::UnexpectedControl { level, kind });
        }
        if fds.len() > 1 {
            return Err(IpcError::TooManyFds(fds.len()));
        }
        // A zero-length read on SEQPACKET is end of stream. A peer that sends an empty datagram
        // looks the same; both end with the peer's channel torn down, which is what we want.
        if len == 0 && fds.is_empty() {
            return Err(IpcError::Closed);
        }
        Ok(RawFrame { len, fd: fds.pop() })
    }
}

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Channel {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl mio::event::Source for Channel {
    fn register(
        &mut self,
        r: &mio::Registry,
        t: mio::Token,
        i: mio::Interest,
    ) -> std::io::Result<()> {
        mio::unix::SourceFd(&self.fd.as_raw_fd()).register(r, t, i)
    }
    fn reregister(
        &mut self,
        r: &mio::Registry,
        t: mio::Token,
        i: mio::Interest,
    ) -> std::io::Result<()> {
        mio::unix::SourceFd(&self.fd.as_raw_fd()).reregister(r, t, i)
    }
    fn deregister(&mut self, r: &mio::Registry) -> std::io::Result<()> {
        mio::unix::SourceFd(&self.fd.as_raw_fd()).deregister(r)
    }
}
