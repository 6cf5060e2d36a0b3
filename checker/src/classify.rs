//! The TEST UNIT READY classification table (DESIGN.md, "TUR classification") as one pure
//! function of the raw SG_IO result.
//!
//! Kernel facts this relies on (checked against the kernel sources):
//! - `drivers/scsi/scsi_ioctl.c`, `scsi_complete_sghdr_rq()`: `status` is the full SAM status
//!   byte (`result & 0xff`), `host_status` is the host byte, `driver_status` is only ever
//!   `DRIVER_SENSE` (0x08, on CHECK CONDITION) on current kernels, and sense is copied only when
//!   the midlayer has some (`sb_len_wr`).
//! - `include/scsi/scsi_status.h`, `enum scsi_host_status`: the DID_* values below.
//! - Older kernels and the sg driver also report DRIVER_* codes 0x01..0x07 in the low nibble of
//!   `driver_status`, with SUGGEST_* flags in the high nibble (DRIVER_MASK 0x0f).

use crate::sense::{self, key, Sense};
use mpsup_ipc::{DownReason, PathState, TurEvidence};

/// SAM status codes (full byte, SAM-5 table 43).
pub mod status {
    pub const GOOD: u8 = 0x00;
    pub const CHECK_CONDITION: u8 = 0x02;
    pub const CONDITION_MET: u8 = 0x04;
    pub const BUSY: u8 = 0x08;
    pub const INTERMEDIATE: u8 = 0x10;
    pub const INTERMEDIATE_CONDITION_MET: u8 = 0x14;
    pub const RESERVATION_CONFLICT: u8 = 0x18;
    pub const COMMAND_TERMINATED: u8 = 0x22;
    pub const TASK_SET_FULL: u8 = 0x28;
}

/// Host byte values, `include/scsi/scsi_status.h` `enum scsi_host_status`.
pub mod host {
    pub const DID_OK: u16 = 0x00;
    pub const DID_NO_CONNECT: u16 = 0x01;
    pub const DID_BUS_BUSY: u16 = 0x02;
    pub const DID_TIME_OUT: u16 = 0x03;
    pub const DID_BAD_TARGET: u16 = 0x04;
    pub const DID_ERROR: u16 = 0x07;
    pub const DID_TRANSPORT_DISRUPTED: u16 = 0x0e;
    pub const DID_TRANSPORT_FAILFAST: u16 = 0x0f;
    pub const DID_TRANSPORT_MARGINAL: u16 = 0x14;
}

/// Driver byte values (low nibble of `driver_status`).
pub mod driver {
    pub const MASK: u16 = 0x0f;
    pub const OK: u16 = 0x00;
    pub const TIMEOUT: u16 = 0x06;
    pub const SENSE: u16 = 0x08;
}

/// What one TUR said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Final(PathState),
    /// UNIT ATTENTION or a deferred error: the TUR itself was not answered; send it again
    /// (the caller bounds the retries).
    Retry,
}

/// Classifies one TUR result. Precedence: errno, then host byte, then driver byte without
/// sense, then SCSI status and sense. The first layer that failed is the one that speaks: a
/// transport error says nothing about the LU, so it can never read as `disconnected`.
pub fn classify(ev: &TurEvidence) -> Verdict {
    if let Some(errno) = ev.errno {
        return Verdict::Final(match errno {
            libc::ENOTTY | libc::EINVAL => PathState::Unsupported,
            e => PathState::Down(DownReason::Errno(e)),
        });
    }
    match ev.host_status {
        host::DID_OK => {}
        host::DID_TIME_OUT => return Verdict::Final(PathState::Timeout),
        h => return Verdict::Final(PathState::Down(DownReason::HostByte(h))),
    }
    let sense = sense::decode(&ev.sense);
    match ev.driver_status & driver::MASK {
        driver::OK | driver::SENSE => {}
        driver::TIMEOUT => return Verdict::Final(PathState::Timeout),
        d if sense.is_none() => return Verdict::Final(PathState::Down(DownReason::Driver(d))),
        _ => {}
    }
    // Bit 0 is reserved/obsolete; the kernel masks it too (scsi_status_is_check_condition).
    match ev.scsi_status & 0xfe {
        status::RESERVATION_CONFLICT => Verdict::Final(PathState::Up),
        status::GOOD
        | status::CONDITION_MET
        | status::INTERMEDIATE
        | status::INTERMEDIATE_CONDITION_MET => {
            Verdict::Final(match sense {
                // Sense alongside GOOD is informational at best; an error key with it means
                // the device is confused: not up, and never disconnected.
                Some(s) if !matches!(s.key, key::NO_SENSE | key::RECOVERED_ERROR) => {
                    PathState::Down(DownReason::Sense {
                        key: s.key,
                        asc: s.asc,
                        ascq: s.ascq,
                    })
                }
                _ => PathState::Up,
            })
        }
        status::CHECK_CONDITION | status::COMMAND_TERMINATED => match sense {
            Some(s) => classify_sense(s),
            None => Verdict::Final(PathState::Down(DownReason::Status(ev.scsi_status))),
        },
        _ => Verdict::Final(PathState::Down(DownReason::Status(ev.scsi_status))),
    }
}

fn classify_sense(s: Sense) -> Verdict {
    // A deferred error reports an earlier command's failure; SPC says the command that got
    // it was not processed, so this TUR has not been answered yet.
    if s.deferred() {
        return Verdict::Retry;
    }
    Verdict::Final(match (s.key, s.asc, s.ascq) {
        (key::UNIT_ATTENTION, _, _) => return Verdict::Retry,
        (key::NOT_READY, 0x04, 0x0b) => PathState::Standby,
        (key::NOT_READY, 0x04, 0x0a) => PathState::Transitioning,
        (key::ILLEGAL_REQUEST, 0x25, 0x00) => PathState::Disconnected,
        // SPC: RECOVERED ERROR means the command completed, after some recovery.
        (key::RECOVERED_ERROR, _, _) => PathState::Up,
        (key, asc, ascq) => PathState::Down(DownReason::Sense { key, asc, ascq }),
    })
}

/// The state to report once the retry budget is spent.
pub fn exhausted(v: Verdict) -> PathState {
    match v {
        Verdict::Final(s) => s,
        Verdict::Retry => PathState::Down(DownReason::UnitAttentionStorm),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sense::tests::fixed;

    fn ev(st: u8, host: u16, drv: u16, sense: &[u8]) -> TurEvidence {
        TurEvidence {
            scsi_status: st,
            host_status: host,
            driver_status: drv,
            errno: None,
            sense: sense.to_vec(),
            duration_ms: 1,
            unit_attention_retries: 0,
        }
    }

    fn cc(sense: &[u8]) -> TurEvidence {
        ev(status::CHECK_CONDITION, 0, driver::SENSE, sense)
    }

    fn fin(s: PathState) -> Verdict {
        Verdict::Final(s)
    }

    fn down(r: DownReason) -> Verdict {
        Verdict::Final(PathState::Down(r))
    }

    #[test]
    fn the_design_table() {
        let lio = [
            0x70, 0, 5, 0, 0, 0, 0, 0x0a, 0, 0, 0, 0, 0x25, 0, 0, 0, 0, 0,
        ];
        let errno = |e| TurEvidence {
            errno: Some(e),
            ..Default::default()
        };
        let cases: Vec<(&str, TurEvidence, Verdict)> = vec![
            ("ENOTTY", errno(libc::ENOTTY), fin(PathState::Unsupported)),
            ("EINVAL", errno(libc::EINVAL), fin(PathState::Unsupported)),
            (
                "ENODEV (offline sdev)",
                errno(libc::ENODEV),
                down(DownReason::Errno(libc::ENODEV)),
            ),
            ("EIO", errno(libc::EIO), down(DownReason::Errno(libc::EIO))),
            ("GOOD", ev(0, 0, 0, &[]), fin(PathState::Up)),
            (
                "RESERVATION CONFLICT",
                ev(0x18, 0, 0, &[]),
                fin(PathState::Up),
            ),
            (
                "DID_NO_CONNECT",
                ev(0, 0x01, 0, &[]),
                down(DownReason::HostByte(0x01)),
            ),
            (
                "DID_BAD_TARGET",
                ev(0, 0x04, 0, &[]),
                down(DownReason::HostByte(0x04)),
            ),
            (
                "DID_TRANSPORT_DISRUPTED",
                ev(0, 0x0e, 0, &[]),
                down(DownReason::HostByte(0x0e)),
            ),
            (
                "DID_TRANSPORT_FAILFAST",
                ev(0, 0x0f, 0, &[]),
                down(DownReason::HostByte(0x0f)),
            ),
            (
                "DID_TRANSPORT_MARGINAL",
                ev(0, 0x14, 0, &[]),
                down(DownReason::HostByte(0x14)),
            ),
            (
                "DID_ERROR",
                ev(0, host::DID_ERROR, 0, &[]),
                down(DownReason::HostByte(0x07)),
            ),
            ("DID_TIME_OUT", ev(0, 0x03, 0, &[]), fin(PathState::Timeout)),
            (
                "DRIVER_TIMEOUT (old kernels)",
                ev(0, 0, 0x06, &[]),
                fin(PathState::Timeout),
            ),
            (
                "DRIVER_ERROR without sense",
                ev(0, 0, 0x04, &[]),
                down(DownReason::Driver(0x04)),
            ),
            ("LIO unmapped LUN", cc(&lio), fin(PathState::Disconnected)),
            (
                "unmapped LUN, descriptor",
                cc(&[0x72, 5, 0x25, 0, 0, 0, 0, 0]),
                fin(PathState::Disconnected),
            ),
            (
                "unmapped LUN, COMMAND TERMINATED",
                ev(0x22, 0, 0x08, &lio),
                fin(PathState::Disconnected),
            ),
            (
                "ALUA standby",
                cc(&fixed(2, 4, 0x0b)),
                fin(PathState::Standby),
            ),
            (
                "ALUA transitioning",
                cc(&fixed(2, 4, 0x0a)),
                fin(PathState::Transitioning),
            ),
            ("UA power on", cc(&fixed(6, 0x29, 0)), Verdict::Retry),
            ("UA LUNs changed", cc(&fixed(6, 0x3f, 0x0e)), Verdict::Retry),
            (
                "deferred error",
                cc(&{
                    let mut b = fixed(5, 0x25, 0);
                    b[0] = 0x71;
                    b
                }),
                Verdict::Retry,
            ),
            (
                "medium error",
                cc(&fixed(3, 0x11, 0)),
                down(DownReason::Sense {
                    key: 3,
                    asc: 0x11,
                    ascq: 0,
                }),
            ),
            (
                "NOT READY becoming ready",
                cc(&fixed(2, 4, 1)),
                down(DownReason::Sense {
                    key: 2,
                    asc: 4,
                    ascq: 1,
                }),
            ),
            (
                "ILLEGAL REQUEST other ASC",
                cc(&fixed(5, 0x20, 0)),
                down(DownReason::Sense {
                    key: 5,
                    asc: 0x20,
                    ascq: 0,
                }),
            ),
            (
                "recovered error",
                cc(&fixed(1, 0x17, 1)),
                fin(PathState::Up),
            ),
            (
                "CHECK CONDITION, no sense",
                cc(&[]),
                down(DownReason::Status(0x02)),
            ),
            (
                "CHECK CONDITION, truncated sense",
                cc(&lio[..8]),
                down(DownReason::Status(0x02)),
            ),
            (
                "CHECK CONDITION, garbage sense",
                cc(&[0xde, 0xad, 0xbe, 0xef]),
                down(DownReason::Status(0x02)),
            ),
            ("BUSY", ev(0x08, 0, 0, &[]), down(DownReason::Status(0x08))),
            (
                "TASK SET FULL",
                ev(0x28, 0, 0, &[]),
                down(DownReason::Status(0x28)),
            ),
            (
                "GOOD with error sense is not up",
                ev(0, 0, 0, &lio),
                down(DownReason::Sense {
                    key: 5,
                    asc: 0x25,
                    ascq: 0,
                }),
            ),
            (
                "GOOD with NO SENSE",
                ev(0, 0, 0, &fixed(0, 0, 0)),
                fin(PathState::Up),
            ),
            // A transport failure with stale sense must never read as disconnected.
            (
                "host byte wins over sense",
                ev(0x02, 0x01, 0x08, &lio),
                down(DownReason::HostByte(0x01)),
            ),
            (
                "errno wins over everything",
                TurEvidence {
                    errno: Some(libc::EIO),
                    ..cc(&lio)
                },
                down(DownReason::Errno(libc::EIO)),
            ),
            (
                "SUGGEST bits ignored",
                ev(0x02, 0, 0x18, &lio),
                fin(PathState::Disconnected),
            ),
        ];
        for (name, e, want) in cases {
            assert_eq!(classify(&e), want, "{name}");
        }
    }

    #[test]
    fn retry_budget_spent_is_a_storm() {
        assert_eq!(
            exhausted(Verdict::Retry),
            PathState::Down(DownReason::UnitAttentionStorm)
        );
        assert_eq!(exhausted(Verdict::Final(PathState::Up)), PathState::Up);
    }

    proptest::proptest! {
        #[test]
        fn only_05_25_00_under_check_condition_is_disconnected(
            st in proptest::prelude::any::<u8>(),
            h in 0u16..0x20,
            d in proptest::prelude::any::<u16>(),
            sense in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
        ) {
            let e = ev(st, h, d, &sense);
            if classify(&e) == Verdict::Final(PathState::Disconnected) {
                let s = crate::sense::decode(&sense).unwrap();
                proptest::prop_assert_eq!((s.key, s.asc, s.ascq), (5, 0x25, 0));
                proptest::prop_assert!(!s.deferred());
                proptest::prop_assert_eq!(h, 0);
                proptest::prop_assert!(st & 0xfe == 0x02 || st & 0xfe == 0x22);
            }
        }
    }
}
