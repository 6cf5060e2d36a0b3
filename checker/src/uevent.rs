//! Kernel uevents (NETLINK_KOBJECT_UEVENT) as a hint to rediscover early when block or SCSI
//! devices come and go. Only a hint: the content is never trusted beyond "something changed",
//! the periodic scan stays the source of truth, and without the socket the timer alone works.

use nix::sys::socket::{
    bind, recvfrom, socket, AddressFamily, NetlinkAddr, SockFlag, SockProtocol, SockType,
};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

/// Multicast group of kernel-originated uevents (udev re-broadcasts on group 2).
const KERNEL_GROUP: u32 = 1;

pub struct Uevents {
    fd: OwnedFd,
    buf: Vec<u8>,
}

impl Uevents {
    pub fn open() -> io::Result<Uevents> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Datagram,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkKObjectUEvent,
        )?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, KERNEL_GROUP))?;
        Ok(Uevents {
            fd,
            buf: vec![0; 8192],
        })
    }

    /// Reads every pending message; true if any concerns block or SCSI devices, or if the
    /// kernel dropped messages (ENOBUFS) so we cannot know.
    pub fn drain(&mut self) -> io::Result<bool> {
        let mut relevant = false;
        loop {
            match recvfrom::<NetlinkAddr>(self.fd.as_raw_fd(), &mut self.buf) {
                Ok((n, from)) => {
                    // Only the kernel (port id 0) speaks on this group; ignore anyone else.
                    if from.is_some_and(|a| a.pid() == 0)
                        && concerns_storage(&self.buf[..n.min(self.buf.len())])
                    {
                        relevant = true;
                    }
                }
                Err(nix::errno::Errno::EAGAIN) => return Ok(relevant),
                Err(nix::errno::Errno::ENOBUFS) => relevant = true,
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl mio::event::Source for Uevents {
    fn register(&mut self, r: &mio::Registry, t: mio::Token, i: mio::Interest) -> io::Result<()> {
        mio::unix::SourceFd(&self.fd.as_raw_fd()).register(r, t, i)
    }
    fn reregister(&mut self, r: &mio::Registry, t: mio::Token, i: mio::Interest) -> io::Result<()> {
        mio::unix::SourceFd(&self.fd.as_raw_fd()).reregister(r, t, i)
    }
    fn deregister(&mut self, r: &mio::Registry) -> io::Result<()> {
        mio::unix::SourceFd(&self.fd.as_raw_fd()).deregister(r)
    }
}

/// A kernel uevent is `ACTION@DEVPATH\0KEY=VALUE\0...`.
fn concerns_storage(msg: &[u8]) -> bool {
    msg.split(|&b| b == 0)
        .any(|kv| kv == b"SUBSYSTEM=block" || kv == b"SUBSYSTEM=scsi")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_block_and_scsi_events() {
        let add = b"add@/devices/platform/host1/session1/target1:0:0/1:0:0:2/block/sde\0ACTION=add\0DEVPATH=/devices/x\0SUBSYSTEM=block\0MAJOR=8\0MINOR=64\0DEVNAME=sde\0SEQNUM=4711\0";
        assert!(concerns_storage(add));
        assert!(concerns_storage(
            b"remove@/devices/x/1:0:0:2\0ACTION=remove\0SUBSYSTEM=scsi\0"
        ));
        assert!(!concerns_storage(
            b"change@/devices/system/cpu/cpu0\0ACTION=change\0SUBSYSTEM=cpu\0"
        ));
        assert!(!concerns_storage(b"SUBSYSTEM=blockx\0"));
        assert!(!concerns_storage(b""));
    }

    #[test]
    fn the_socket_opens_or_fails_cleanly() {
        // Containers may forbid netlink; either outcome is acceptable, a panic is not.
        if let Ok(mut u) = Uevents::open() {
            assert!(u.drain().is_ok());
        }
    }
}
