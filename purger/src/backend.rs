//! The purger's effects on the system, behind small traits so that the pipeline is tested with
//! fixture sysfs trees and fakes while the real implementations are what ships.
//!
//! - [`Prober`] (from the checker): open a devnode checking its `st_rdev`, TEST UNIT READY,
//!   INQUIRY VPD 0x83.
//! - [`FdInspector`]: `fstat(2)` of the fd the supervisor passed.
//! - [`SysfsWriter`]: the one write the purger ever makes, `1` into a `delete` attribute.

use mpsup_checker::sgio::{Prober, SgIoProber};
use mpsup_ipc::DevT;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::fd::BorrowedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// What `fstat(2)` says about an fd, as far as the purger cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdStat {
    /// `S_ISBLK(st_mode)`.
    pub block_device: bool,
    /// `st_rdev` (meaningful for device files only).
    pub rdev: DevT,
}

/// Looks at an fd the purger did not open itself.
pub trait FdInspector: Send + Sync + 'static {
    fn stat(&self, fd: BorrowedFd<'_>) -> io::Result<FdStat>;
}

/// The real `fstat(2)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fstat;

impl FdInspector for Fstat {
    fn stat(&self, fd: BorrowedFd<'_>) -> io::Result<FdStat> {
        use nix::sys::stat::{fstat, SFlag};
        let st = fstat(fd).map_err(io::Error::from)?;
        let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
        Ok(FdStat {
            block_device: kind == SFlag::S_IFBLK,
            // st_rdev is dev_t (u64 on Linux); the cast is the identity there.
            #[allow(clippy::useless_conversion)]
            rdev: DevT::from_raw(u64::from(st.st_rdev)),
        })
    }
}

/// Writes one sysfs attribute. The purger's only write; the pipeline calls it with the
/// `delete` attribute of a fully re-verified scsi_device and the value `1`.
pub trait SysfsWriter: Send + Sync + 'static {
    fn write_attr(&self, path: &Path, value: &[u8]) -> io::Result<()>;
}

/// The real writer: opens the existing attribute write-only (never creates a file, never
/// follows a symlink in the last component) and hands the kernel the value in one `write(2)`,
/// which is what a sysfs `store` method receives as one buffer.
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelSysfs;

impl SysfsWriter for KernelSysfs {
    fn write_attr(&self, path: &Path, value: &[u8]) -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NOCTTY)
            .open(path)?;
        let n = file.write(value)?;
        if n != value.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short write: {n} of {} bytes", value.len()),
            ));
        }
        Ok(())
    }
}

/// Everything the pipeline does to the system, and how long it gives the kernel to make a
/// deleted device disappear from sysfs.
#[derive(Clone)]
pub struct Backend {
    pub prober: Arc<dyn Prober>,
    pub fds: Arc<dyn FdInspector>,
    pub writer: Arc<dyn SysfsWriter>,
    /// After a successful `delete` write, how long `/sys/dev/block/MAJ:MIN` may take to go
    /// away before the outcome is `Failed` (the kernel removes it before the write returns;
    /// this only covers a kernel that would not).
    pub removal_timeout: Duration,
}

/// Default for [`Backend::removal_timeout`].
pub const REMOVAL_TIMEOUT: Duration = Duration::from_secs(5);

impl Backend {
    /// The shipping backend: SG_IO, fstat(2), and real sysfs writes.
    pub fn real() -> Backend {
        Backend {
            prober: Arc::new(SgIoProber),
            fds: Arc::new(Fstat),
            writer: Arc::new(KernelSysfs),
            removal_timeout: REMOVAL_TIMEOUT,
        }
    }
}

impl Default for Backend {
    fn default() -> Self {
        Backend::real()
    }
}
