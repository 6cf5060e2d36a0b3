//! Property tests for the frame decoder: the bounded equivalent of the fuzz target in fuzz/
//! that CI runs on every submission.

use mpsup_ipc::*;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    /// Arbitrary bytes never panic any decoder; they decode or give a typed error.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = codec::decode::<CheckerMsg>(&bytes).map(|m| m.validate());
        let _ = codec::decode::<ToChecker>(&bytes).map(|m| m.validate());
        let _ = codec::decode::<PurgerMsg>(&bytes).map(|m| m.validate());
        let _ = codec::decode::<ToPurger>(&bytes).map(|m| m.validate());
        let _ = codec::decode::<ListenerMsg>(&bytes).map(|m| m.validate());
        let _ = codec::decode::<ToListener>(&bytes).map(|m| m.validate());
    }

    /// A valid frame with any single byte flipped or cut decodes to a typed error or to some
    /// message, never a panic; and the untouched frame always round-trips.
    #[test]
    fn mutated_frames_are_handled(pos in 0usize..64, val in any::<u8>(), cut in 0usize..64,
                                  name in "[a-z]{1,8}", minor in any::<u32>()) {
        let msg = CheckerMsg::Gone { name, dev_t: DevT { major: 8, minor } };
        let frame = codec::encode(&msg).unwrap();
        prop_assert_eq!(codec::decode::<CheckerMsg>(&frame).unwrap(), msg);
        let mut bad = frame.clone();
        let p = pos % bad.len();
        bad[p] = val;
        let _ = codec::decode::<CheckerMsg>(&bad);
        let _ = codec::decode::<CheckerMsg>(&frame[..cut.min(frame.len())]);
    }

    /// Length prefixes that claim huge collections are refused by the size limit, not allocated.
    #[test]
    fn huge_length_claims_are_bounded(len in (MAX_FRAME as u64)..u64::MAX) {
        // version 1, variant 1 (Reply), client 1, then a string length as a varint u64 (marker 253).
        let mut frame = vec![PROTOCOL_VERSION as u8, 1, 1, 253];
        frame.extend_from_slice(&len.to_le_bytes());
        prop_assert!(codec::decode::<ToListener>(&frame).is_err());
    }
}
