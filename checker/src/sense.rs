//! SCSI sense data decoding (SPC-4 4.5), fixed and descriptor formats.
//!
//! Follows the kernel's `scsi_normalize_sense()` (drivers/scsi/scsi_common.c) for which bytes
//! count: the fixed format's additional-length byte (`b[7]`) cuts the buffer short, and a field
//! that lies beyond the end is absent. Unlike the kernel we refuse to guess: a buffer that does
//! not carry all of sense key, ASC and ASCQ is "no usable sense" (`None`), because the one
//! answer that can lead to a deletion (05/25/00) must be read in full.

/// Sense key values used by the classifier (SPC-4 table 50).
pub mod key {
    pub const NO_SENSE: u8 = 0x0;
    pub const RECOVERED_ERROR: u8 = 0x1;
    pub const NOT_READY: u8 = 0x2;
    pub const MEDIUM_ERROR: u8 = 0x3;
    pub const ILLEGAL_REQUEST: u8 = 0x5;
    pub const UNIT_ATTENTION: u8 = 0x6;
}

/// The parts of a sense buffer the classifier needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sense {
    /// Response code with the VALID bit masked off: 0x70..=0x73.
    pub response_code: u8,
    pub key: u8,
    pub asc: u8,
    pub ascq: u8,
}

impl Sense {
    /// 0x71/0x73: the error belongs to an earlier command, not to the one just sent.
    pub fn deferred(&self) -> bool {
        self.response_code == 0x71 || self.response_code == 0x73
    }

    pub fn descriptor_format(&self) -> bool {
        self.response_code >= 0x72
    }
}

/// Decodes `buf` (exactly the bytes the device wrote, `sb_len_wr`), or `None` when it holds no
/// usable sense: empty, an unknown response code, or too short for key/ASC/ASCQ.
pub fn decode(buf: &[u8]) -> Option<Sense> {
    let first = *buf.first()?;
    // Bit 7 of byte 0 is the fixed format's VALID (INFORMATION field) bit, not part of the code.
    let response_code = first & 0x7f;
    match response_code {
        0x70 | 0x71 => {
            // Fixed format: 8 header bytes, then b[7] more. Bytes past that are not sense data
            // even if the device wrote them (some pad to the allocation length).
            let additional = usize::from(*buf.get(7)?);
            let len = buf.len().min(8 + additional);
            let usable = &buf[..len];
            Some(Sense {
                response_code,
                key: usable.get(2)? & 0x0f,
                asc: *usable.get(12)?,
                ascq: *usable.get(13)?,
            })
        }
        0x72 | 0x73 => Some(Sense {
            response_code,
            key: buf.get(1)? & 0x0f,
            asc: *buf.get(2)?,
            ascq: *buf.get(3)?,
        }),
        // 0x74..=0x7e are reserved, 0x7f is vendor specific: nothing we can read safely.
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    /// A fixed-format sense buffer with key, ASC and ASCQ (shared with classify's tests).
    pub(crate) fn fixed(k: u8, asc: u8, ascq: u8) -> Vec<u8> {
        let mut b = vec![0u8; 18];
        b[0] = 0x70;
        b[2] = k;
        b[7] = 0x0a;
        b[12] = asc;
        b[13] = ascq;
        b
    }

    fn desc(k: u8, asc: u8, ascq: u8) -> Vec<u8> {
        vec![0x72, k, asc, ascq, 0, 0, 0, 0]
    }

    /// (key, ASC, ASCQ)
    type Kcq = (u8, u8, u8);

    /// (name, buffer, expected decode)
    fn table() -> Vec<(&'static str, Vec<u8>, Option<Kcq>)> {
        vec![
            (
                "LIO unmapped LUN, fixed",
                hex("70 00 05 00 00 00 00 0a 00 00 00 00 25 00 00 00 00 00"),
                Some((5, 0x25, 0)),
            ),
            (
                "LIO unmapped LUN, descriptor",
                hex("72 05 25 00 00 00 00 00"),
                Some((5, 0x25, 0)),
            ),
            ("ALUA standby", fixed(2, 4, 0x0b), Some((2, 4, 0x0b))),
            ("ALUA transitioning", fixed(2, 4, 0x0a), Some((2, 4, 0x0a))),
            ("UA power on / reset", fixed(6, 0x29, 0), Some((6, 0x29, 0))),
            (
                "UA reported LUNs changed",
                fixed(6, 0x3f, 0x0e),
                Some((6, 0x3f, 0x0e)),
            ),
            (
                "UA reported LUNs changed, descriptor",
                desc(6, 0x3f, 0x0e),
                Some((6, 0x3f, 0x0e)),
            ),
            ("medium error", fixed(3, 0x11, 0), Some((3, 0x11, 0))),
            (
                "VALID bit set",
                {
                    let mut b = fixed(5, 0x25, 0);
                    b[0] = 0xf0;
                    b
                },
                Some((5, 0x25, 0)),
            ),
            (
                "key byte carries FILEMARK/EOM/ILI bits",
                {
                    let mut b = fixed(5, 0x25, 0);
                    b[2] = 0xe5;
                    b
                },
                Some((5, 0x25, 0)),
            ),
            (
                "truncated fixed, 8 bytes",
                hex("70 00 05 00 00 00 00 0a"),
                None,
            ),
            (
                "fixed, additional length too small for ASC",
                {
                    let mut b = fixed(5, 0x25, 0);
                    b[7] = 4; // ends at byte 11
                    b
                },
                None,
            ),
            (
                "fixed, additional length covers ASC only",
                {
                    let mut b = fixed(5, 0x25, 0);
                    b[7] = 5; // ends at byte 12: ASCQ is not sense data
                    b
                },
                None,
            ),
            (
                "fixed, exactly 14 bytes",
                hex("70 00 05 00 00 00 00 06 00 00 00 00 25 00"),
                Some((5, 0x25, 0)),
            ),
            ("descriptor, 3 bytes", hex("72 05 25"), None),
            ("empty", vec![], None),
            ("one byte", vec![0x70], None),
            (
                "reserved response code",
                hex("74 05 25 00 00 00 00 00"),
                None,
            ),
            (
                "vendor response code",
                hex("7f 05 25 00 00 00 00 0a 00 00 00 00 25 00"),
                None,
            ),
            (
                "garbage",
                hex("de ad be ef 01 02 03 04 05 06 07 08 09 0a"),
                None,
            ),
            ("all zeros", vec![0; 18], None),
        ]
    }

    #[test]
    fn decodes_the_table() {
        for (name, buf, want) in table() {
            let got = decode(&buf).map(|s| (s.key, s.asc, s.ascq));
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn deferred_and_format_flags() {
        let mut b = fixed(6, 0x29, 0);
        b[0] = 0x71;
        let s = decode(&b).unwrap();
        assert!(s.deferred() && !s.descriptor_format());
        let s = decode(&[0x73, 5, 0x25, 0]).unwrap();
        assert!(s.deferred() && s.descriptor_format());
        assert!(!decode(&desc(5, 0x25, 0)).unwrap().deferred());
    }

    proptest! {
        #[test]
        fn any_bytes_decode_without_panicking(buf in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Some(s) = decode(&buf) {
                prop_assert!(s.key <= 0x0f);
                prop_assert!((0x70..=0x73).contains(&s.response_code));
            }
        }

        #[test]
        fn truncating_a_fixed_buffer_before_ascq_loses_it(cut in 0usize..14) {
            let b = fixed(5, 0x25, 0);
            prop_assert_eq!(decode(&b[..cut]), None);
        }
    }
}
