//! Device I/O: SG_IO TEST UNIT READY and INQUIRY VPD 0x83, behind the [`Prober`] trait so the
//! logic above it is tested with a fake and the real implementation is what ships.
//!
//! Kernel facts (checked against the kernel sources):
//! - `include/scsi/sg.h`: `struct sg_io_hdr` layout, `SG_IO` = 0x2285, `SG_DXFER_NONE` = -1,
//!   `SG_DXFER_FROM_DEV` = -3, `SG_INFO_OK_MASK` = 0x1. `timeout` is in milliseconds.
//! - `drivers/scsi/scsi_ioctl.c`, `scsi_cmd_allowed()`: TEST_UNIT_READY and INQUIRY are in the
//!   list "anybody who can open the device" may send, so an fd opened `O_RDONLY` works without
//!   CAP_SYS_RAWIO. `scsi_fill_sghdr_rq()`: a zero timeout means the device default and
//!   anything below `BLK_MIN_SG_TIMEOUT` (7 s) is raised to it. `sg_io()` sets
//!   `scmd->allowed = 0`: the midlayer does not retry our command, so what we see is what the
//!   device said.
//! - `drivers/scsi/sd.c`, `sd_ioctl()` and `sd_open()` call
//!   `scsi_block_when_processing_errors()`: both wait while the host is in error recovery and
//!   fail (ENODEV from the ioctl, ENXIO from open) once the device is offline. So open() can
//!   block too, which is why it runs on a pool worker, never on the event loop.

use mpsup_ipc::{DevT, TurEvidence, MAX_ATTR_LEN, MAX_SENSE_LEN};
use std::ffi::{c_int, c_uchar, c_uint, c_ushort, c_void};
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

/// The device operations the checker needs, and nothing more.
pub trait Prober: Send + Sync + 'static {
    /// Opens `devnode` read-only, non-blocking, close-on-exec, and checks that it is the block
    /// device `dev_t` (a name can be reused by another device between discovery and open).
    fn open(&self, devnode: &Path, dev_t: DevT) -> io::Result<OwnedFd>;
    /// One TEST UNIT READY with a kernel-enforced timeout. Never fails: errors are evidence.
    fn tur(&self, fd: BorrowedFd<'_>, timeout: Duration) -> TurEvidence;
    /// INQUIRY EVPD page 0x83, the bytes the device returned.
    fn vpd83(&self, fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<Vec<u8>>;
}

const SG_IO: u32 = 0x2285;
const SG_DXFER_NONE: c_int = -1;
const SG_DXFER_FROM_DEV: c_int = -3;
const TEST_UNIT_READY: u8 = 0x00;
const INQUIRY: u8 = 0x12;
/// Sense buffer size: the most SPC allows (additional length is one byte).
const SENSE_LEN: usize = MAX_SENSE_LEN;
/// VPD pages are at most 0xffff + 4 bytes; 0x83 is rarely over a few hundred. Bounded read.
const VPD_MAX: usize = 4096;
const VPD_FIRST: usize = 255;

/// `struct sg_io_hdr` from include/scsi/sg.h.
#[repr(C)]
struct SgIoHdr {
    interface_id: c_int,
    dxfer_direction: c_int,
    cmd_len: c_uchar,
    mx_sb_len: c_uchar,
    iovec_count: c_ushort,
    dxfer_len: c_uint,
    dxferp: *mut c_void,
    cmdp: *const c_uchar,
    sbp: *mut c_uchar,
    timeout: c_uint,
    flags: c_uint,
    pack_id: c_int,
    usr_ptr: *mut c_void,
    status: c_uchar,
    masked_status: c_uchar,
    msg_status: c_uchar,
    sb_len_wr: c_uchar,
    host_status: c_ushort,
    driver_status: c_ushort,
    resid: c_int,
    duration: c_uint,
    info: c_uint,
}

// The kernel copies exactly sizeof(struct sg_io_hdr): 88 bytes on LP64 (pahole), 64 on ILP32.
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<SgIoHdr>() == 88);
#[cfg(target_pointer_width = "32")]
const _: () = assert!(std::mem::size_of::<SgIoHdr>() == 64);

/// Raw result of one SG_IO call.
struct SgResult {
    evidence: TurEvidence,
    /// Data bytes actually transferred (dxfer_len - resid).
    transferred: usize,
}

fn timeout_ms(timeout: Duration) -> c_uint {
    // 0 would mean "device default"; u32::MAX is documented as "no timeout". Keep clear of both.
    let ms = timeout.as_millis().clamp(1, u128::from(u32::MAX - 1));
    ms as c_uint
}

fn sg_io(fd: BorrowedFd<'_>, cdb: &[u8], data: Option<&mut [u8]>, timeout: Duration) -> SgResult {
    let mut sense = [0u8; SENSE_LEN];
    let (dir, ptr, len) = match data {
        Some(buf) => (
            SG_DXFER_FROM_DEV,
            buf.as_mut_ptr().cast::<c_void>(),
            buf.len(),
        ),
        None => (SG_DXFER_NONE, std::ptr::null_mut(), 0),
    };
    let mut hdr = SgIoHdr {
        interface_id: c_int::from(b'S'),
        dxfer_direction: dir,
        cmd_len: cdb.len() as c_uchar,
        mx_sb_len: SENSE_LEN as c_uchar,
        iovec_count: 0,
        dxfer_len: len as c_uint,
        dxferp: ptr,
        cmdp: cdb.as_ptr(),
        sbp: sense.as_mut_ptr(),
        timeout: timeout_ms(timeout),
        flags: 0,
        pack_id: 0,
        usr_ptr: std::ptr::null_mut(),
        status: 0,
        masked_status: 0,
        msg_status: 0,
        sb_len_wr: 0,
        host_status: 0,
        driver_status: 0,
        resid: 0,
        duration: 0,
        info: 0,
    };
    let start = Instant::now();
    // SAFETY: SG_IO takes a pointer to a `struct sg_io_hdr`, which `SgIoHdr` mirrors (size
    // asserted above). Every pointer in it (cdb, sense, data) refers to a live buffer of the
    // length we state, borrowed for the whole call; the ioctl is synchronous and the kernel
    // keeps no reference after it returns. `fd` is a valid open descriptor for the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), SG_IO as _, &mut hdr as *mut SgIoHdr) };
    let errno = (rc < 0).then(|| {
        io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    });
    let elapsed = start.elapsed();
    // Wall time, not hdr.duration: it also counts the wait for error recovery before dispatch.
    let duration_ms = u32::try_from(elapsed.as_millis()).unwrap_or(u32::MAX);
    if errno.is_some() {
        return SgResult {
            evidence: TurEvidence {
                errno,
                duration_ms,
                ..Default::default()
            },
            transferred: 0,
        };
    }
    let sb = usize::from(hdr.sb_len_wr).min(SENSE_LEN);
    // `info & SG_INFO_OK_MASK` is derived by the kernel from the fields below
    // (scsi_complete_sghdr_rq), so we classify the fields themselves and keep `info` out of it.
    let resid = usize::try_from(hdr.resid).unwrap_or(0);
    SgResult {
        evidence: TurEvidence {
            scsi_status: hdr.status,
            host_status: hdr.host_status,
            driver_status: hdr.driver_status,
            errno: None,
            sense: sense[..sb].to_vec(),
            duration_ms,
            unit_attention_retries: 0,
        },
        transferred: len.saturating_sub(resid),
    }
}

/// The shipping prober: real SG_IO on the sd block device.
#[derive(Clone, Copy, Debug, Default)]
pub struct SgIoProber;

impl Prober for SgIoProber {
    fn open(&self, devnode: &Path, dev_t: DevT) -> io::Result<OwnedFd> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
            .open(devnode)?;
        let meta = file.metadata()?;
        if !meta.file_type().is_block_device() {
            return Err(io::Error::from_raw_os_error(libc::ENOTBLK));
        }
        if DevT::from_raw(meta.rdev()) != dev_t {
            // The name now belongs to another device: this fd must never stand for the path.
            return Err(io::Error::from_raw_os_error(libc::ESTALE));
        }
        Ok(file.into())
    }

    fn tur(&self, fd: BorrowedFd<'_>, timeout: Duration) -> TurEvidence {
        sg_io(fd, &[TEST_UNIT_READY, 0, 0, 0, 0, 0], None, timeout).evidence
    }

    fn vpd83(&self, fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<Vec<u8>> {
        let page = inquiry_vpd(fd, 0x83, VPD_FIRST, timeout)?;
        // The page length says how much there is; ask again for all of it, bounded.
        let want = page
            .get(2..4)
            .map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])) + 4);
        if want > page.len() && page.len() >= VPD_FIRST {
            return inquiry_vpd(fd, 0x83, want.min(VPD_MAX), timeout);
        }
        Ok(page)
    }
}

fn inquiry_vpd(
    fd: BorrowedFd<'_>,
    page: u8,
    alloc: usize,
    timeout: Duration,
) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; alloc];
    let len = alloc.to_be_bytes();
    let n = len.len();
    let cdb = [INQUIRY, 0x01, page, len[n - 2], len[n - 1], 0];
    let r = sg_io(fd, &cdb, Some(&mut buf), timeout);
    let e = &r.evidence;
    if let Some(errno) = e.errno {
        return Err(io::Error::from_raw_os_error(errno));
    }
    if e.scsi_status & 0xfe != 0 || e.host_status != 0 {
        return Err(io::Error::other(format!(
            "INQUIRY VPD {page:#04x}: status {:#04x} host {:#04x} sense {:02x?}",
            e.scsi_status, e.host_status, e.sense
        )));
    }
    buf.truncate(r.transferred.min(alloc));
    Ok(buf)
}

/// The WWID the kernel would show in `device/wwid` for this VPD 0x83 page, or `None`.
///
/// Mirrors `scsi_vpd_lun_id()` and `designator_prio()` in drivers/scsi/scsi_lib.c, as called by
/// `sdev_show_wwid()` (buffer PAGE_SIZE, so nothing is truncated): only designators whose
/// association is the LU count; preference SCSI name string > NAA IEEE Registered Extended >
/// EUI-64 16 > EUI-64 12 > NAA Registered > NAA Extended > EUI-64 8 > NAA locally assigned =
/// T10 vendor ID; a later designator of equal priority replaces an earlier one. Formats:
/// `naa.` / `eui.` + lowercase hex (`%phN`), `t10.` + the bytes (`%pE`), a name string as is.
/// Where we cannot reproduce the kernel's bytes exactly (a T10 ID with non-printable bytes,
/// non-UTF-8) we return `None` rather than a near miss: the WWID is an identity check.
pub fn wwid_from_vpd83(page: &[u8]) -> Option<String> {
    // Peripheral qualifier 0: an LU is connected at this address.
    if page.len() < 4 || page[1] != 0x83 || page[0] >> 5 != 0 {
        return None;
    }
    let end = page
        .len()
        .min(4 + usize::from(u16::from_be_bytes([page[2], page[3]])));
    let page = &page[..end];

    let mut cur_prio = 0u8;
    let mut cur_size = 0u8;
    let mut id: Option<Id> = None;
    let mut off = 4;
    // Bounds as in the kernel's hardened walk: stop at a header or body that does not fit.
    while page.len().saturating_sub(off) >= 4 {
        let d = &page[off..];
        let dlen = usize::from(d[3]);
        if dlen > d.len() - 4 {
            break;
        }
        off += 4 + dlen;
        let body = &d[4..4 + dlen];
        let prio = designator_prio(d);
        if prio == 0 || cur_prio > prio {
            continue;
        }
        match d[1] & 0x0f {
            0x1 => {
                if cur_size > d[3] {
                    continue;
                }
                cur_prio = prio;
                cur_size = d[3];
                id = Some(Id::T10(body));
            }
            0x2 => {
                cur_prio = prio;
                cur_size = d[3];
                // designator_prio() only admits lengths 8, 12 and 16.
                id = Some(Id::Hex("eui.", body));
            }
            0x3 => {
                cur_prio = prio;
                cur_size = d[3];
                // The kernel only formats 8 and 16 byte NAA; other lengths keep the old string.
                if dlen == 8 || dlen == 16 {
                    id = Some(Id::Hex("naa.", body));
                }
            }
            0x8 => {
                if cur_size > d[3] {
                    continue;
                }
                cur_prio = prio;
                cur_size = d[3];
                id = Some(Id::Name(body));
            }
            _ => {}
        }
    }
    let text: Vec<u8> = match id? {
        Id::Hex(prefix, b) => {
            let mut s = String::from(prefix);
            for x in b {
                s.push_str(&format!("{x:02x}"));
            }
            s.into_bytes()
        }
        Id::T10(b) => {
            // %pE passes printable bytes through and escapes the rest; only the printable
            // ASCII case is unambiguous, so anything else yields no WWID.
            if !b.iter().all(|&c| (0x20..0x7f).contains(&c)) {
                return None;
            }
            [b"t10.".as_slice(), b].concat()
        }
        Id::Name(b) => b.to_vec(),
    };
    // It goes into a PathIdentity: a WWID the supervisor would refuse is no WWID.
    normalize_wwid(&text).filter(|w| w.len() <= MAX_ATTR_LEN && !w.chars().any(char::is_control))
}

enum Id<'a> {
    Hex(&'static str, &'a [u8]),
    T10(&'a [u8]),
    Name(&'a [u8]),
}

fn designator_prio(d: &[u8]) -> u8 {
    // Association other than the LU (target port, target device).
    if d[1] & 0x30 != 0 || d[3] == 0 {
        return 0;
    }
    match d[1] & 0x0f {
        0x8 => 9,
        0x3 => match d.get(4).map(|b| b >> 4) {
            Some(6) => 8,
            Some(5) => 5,
            Some(4) => 4,
            Some(3) => 1,
            _ => 0,
        },
        0x2 => match d[3] {
            16 => 7,
            12 => 6,
            8 => 3,
            _ => 0,
        },
        0x1 => 1,
        _ => 0,
    }
}

/// The one normal form for a WWID, whether read from sysfs or built from VPD 0x83: cut at the
/// first NUL (a SCSI name string is NUL-padded and sysfs shows the padding), valid UTF-8,
/// surrounding whitespace trimmed, not empty.
pub fn normalize_wwid(raw: &[u8]) -> Option<String> {
    let raw = raw.split(|&b| b == 0).next().unwrap_or_default();
    let s = std::str::from_utf8(raw).ok()?.trim();
    (!s.is_empty()).then(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(designators: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = designators.concat();
        let mut p = vec![0x00, 0x83];
        p.extend_from_slice(&(body.len() as u16).to_be_bytes());
        p.extend(body);
        p
    }

    fn desig(code_set: u8, assoc_type: u8, body: &[u8]) -> Vec<u8> {
        let mut d = vec![code_set, assoc_type, 0, body.len() as u8];
        d.extend_from_slice(body);
        d
    }

    const NAA6: [u8; 16] = [
        0x60, 0x01, 0x40, 0x5a, 0xbc, 0xde, 0xf0, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0,
        0x01,
    ];

    /// What LIO answers: NAA 6 (LU), T10 vendor ID (LU), relative target port, TPG, and a
    /// SCSI name string for the target port.
    fn lio_page() -> Vec<u8> {
        page(&[
            desig(0x01, 0x03, &NAA6),
            desig(0x02, 0x01, b"LIO-ORG disk0           6001405abcdef012"),
            desig(0x01, 0x14, &[0, 0, 0, 1]),
            desig(0x01, 0x15, &[0, 0, 0, 0]),
            desig(
                0x03,
                0x18,
                b"iqn.2003-01.org.linux-iscsi.t:tgt,t,0x0001\0\0",
            ),
        ])
    }

    #[test]
    fn lio_page_gives_the_naa_wwid() {
        assert_eq!(
            wwid_from_vpd83(&lio_page()).as_deref(),
            Some("naa.6001405abcdef0123456789abcdef001")
        );
    }

    #[test]
    fn kernel_preference_order() {
        let eui16 = desig(0x01, 0x02, &[0x11; 16]);
        let eui8 = desig(0x01, 0x02, &[0x22; 8]);
        let naa5 = desig(0x01, 0x03, &[0x50, 1, 2, 3, 4, 5, 6, 7]);
        let t10 = desig(0x02, 0x01, b"VENDOR  serial");
        let name = desig(0x03, 0x08, b"naa.600140512345678\0");
        assert_eq!(
            wwid_from_vpd83(&page(std::slice::from_ref(&t10))).as_deref(),
            Some("t10.VENDOR  serial")
        );
        assert_eq!(
            wwid_from_vpd83(&page(&[t10.clone(), eui8.clone()])).as_deref(),
            Some("eui.2222222222222222")
        );
        assert_eq!(
            wwid_from_vpd83(&page(&[eui8.clone(), naa5.clone()])).as_deref(),
            Some("naa.5001020304050607")
        );
        // EUI-64 16 bytes outranks NAA Registered (5) but not NAA Registered Extended (6).
        assert_eq!(
            wwid_from_vpd83(&page(&[naa5.clone(), eui16.clone()])).as_deref(),
            Some("eui.11111111111111111111111111111111")
        );
        let naa6 = desig(0x01, 0x03, &NAA6);
        assert_eq!(
            wwid_from_vpd83(&page(&[naa6.clone(), eui16])).as_deref(),
            Some("naa.6001405abcdef0123456789abcdef001")
        );
        // A LU SCSI name string beats everything, shown up to its NUL padding.
        assert_eq!(
            wwid_from_vpd83(&page(&[naa6, name])).as_deref(),
            Some("naa.600140512345678")
        );
    }

    #[test]
    fn hostile_and_odd_pages() {
        assert_eq!(wwid_from_vpd83(&[]), None);
        assert_eq!(wwid_from_vpd83(&[0, 0x83]), None);
        assert_eq!(wwid_from_vpd83(&[0, 0x80, 0, 0]), None, "wrong page");
        let mut pq3 = lio_page();
        pq3[0] = 0x7f;
        assert_eq!(wwid_from_vpd83(&pq3), None, "no LU at this address");
        // Designator length running past the page: stop, do not read beyond.
        let mut p = page(&[desig(0x01, 0x03, &NAA6)]);
        p[7] = 200;
        assert_eq!(wwid_from_vpd83(&p), None);
        // Page length larger than the buffer: only the bytes present are read.
        let mut p = lio_page();
        p[2] = 0xff;
        assert_eq!(
            wwid_from_vpd83(&p).as_deref(),
            Some("naa.6001405abcdef0123456789abcdef001")
        );
        // Page length shorter than the buffer: trailing bytes are not designators.
        let mut p = page(&[desig(0x02, 0x01, b"V1")]);
        p.extend(desig(0x01, 0x03, &NAA6));
        assert_eq!(wwid_from_vpd83(&p).as_deref(), Some("t10.V1"));
        // T10 ID with control characters: the kernel escapes them; we decline.
        assert_eq!(wwid_from_vpd83(&page(&[desig(0x02, 0x01, b"V\x01")])), None);
        // A 255-byte T10 ID makes a 259-byte WWID, over the ipc limit: no WWID.
        assert_eq!(
            wwid_from_vpd83(&page(&[desig(0x02, 0x01, &[b'A'; 255])])),
            None
        );
        // A name string with a control character inside.
        assert_eq!(
            wwid_from_vpd83(&page(&[desig(0x03, 0x08, b"iqn.a\x1bb\0\0\0")])),
            None
        );
        // Zero-length and target-port designators are ignored.
        assert_eq!(
            wwid_from_vpd83(&page(&[desig(0x01, 0x03, &[]), desig(0x01, 0x13, &NAA6)])),
            None
        );
    }

    proptest::proptest! {
        #[test]
        fn any_page_parses_without_panicking(p in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            if let Some(w) = wwid_from_vpd83(&p) {
                proptest::prop_assert!(!w.is_empty() && w.len() <= MAX_ATTR_LEN && !w.chars().any(char::is_control));
            }
        }
    }

    #[test]
    fn normal_form() {
        assert_eq!(
            normalize_wwid(b"naa.6001405abc\n").as_deref(),
            Some("naa.6001405abc")
        );
        assert_eq!(normalize_wwid(b"iqn.x\0\0\0\n").as_deref(), Some("iqn.x"));
        assert_eq!(normalize_wwid(b"  \n"), None);
        assert_eq!(normalize_wwid(b"\xff\xfe"), None);
    }

    /// The real ioctl path, on things that are not SCSI devices: the kernel must refuse SG_IO
    /// with ENOTTY, which classifies as `unsupported`, and the evidence says so.
    #[test]
    fn real_sg_io_on_non_scsi_fds_is_refused() {
        let f = tempfile::tempfile().unwrap();
        let ev = SgIoProber.tur(std::os::fd::AsFd::as_fd(&f), Duration::from_secs(1));
        assert_eq!(ev.errno, Some(libc::ENOTTY));
        assert_eq!(
            crate::classify::classify(&ev),
            crate::classify::Verdict::Final(mpsup_ipc::PathState::Unsupported)
        );
        let null = std::fs::File::open("/dev/null").unwrap();
        let ev = SgIoProber.tur(std::os::fd::AsFd::as_fd(&null), Duration::from_secs(1));
        assert_eq!(ev.errno, Some(libc::ENOTTY));
        assert!(SgIoProber
            .vpd83(std::os::fd::AsFd::as_fd(&null), Duration::from_secs(1))
            .is_err());
    }

    #[test]
    fn real_open_refuses_non_block_devices_and_wrong_dev_t() {
        let err = SgIoProber
            .open(Path::new("/dev/null"), DevT { major: 1, minor: 3 })
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOTBLK));
        let err = SgIoProber
            .open(Path::new("/nonexistent/sdz"), DevT { major: 8, minor: 0 })
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    }

    #[test]
    fn timeouts_stay_clear_of_the_special_values() {
        assert_eq!(timeout_ms(Duration::ZERO), 1);
        assert_eq!(timeout_ms(Duration::from_secs(30)), 30_000);
        assert_eq!(timeout_ms(Duration::from_secs(u64::MAX)), u32::MAX - 1);
    }
}
