//! Every decoder the supervisor and helpers run on frames from another process must turn any
//! bytes into a message or a typed error, never a panic, hang or unbounded allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mpsup_ipc::*;

fuzz_target!(|data: &[u8]| {
    let _ = codec::decode::<CheckerMsg>(data).map(|m| m.validate());
    let _ = codec::decode::<ToChecker>(data).map(|m| m.validate());
    let _ = codec::decode::<PurgerMsg>(data).map(|m| m.validate());
    let _ = codec::decode::<ToPurger>(data).map(|m| m.validate());
    let _ = codec::decode::<ListenerMsg>(data).map(|m| m.validate());
    let _ = codec::decode::<ToListener>(data).map(|m| m.validate());
});
