//! Frame encoding: `version: u16` then one message, bincode 2 (serde, standard config), at most
//! `MAX_FRAME` bytes, nothing after it.

use crate::error::IpcError;
use serde::{de::DeserializeOwned, Serialize};

/// Bumped whenever any message enum changes shape.
pub const PROTOCOL_VERSION: u16 = 1;
/// Largest frame either side sends or accepts.
pub const MAX_FRAME: usize = 64 * 1024;

type Config = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<MAX_FRAME>,
>;

fn config() -> Config {
    bincode::config::standard().with_limit::<MAX_FRAME>()
}

/// Encodes `msg` as one frame.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, IpcError> {
    let mut out = bincode::serde::encode_to_vec(PROTOCOL_VERSION, config())
        .map_err(|e| IpcError::Encode(e.to_string()))?;
    let body = bincode::serde::encode_to_vec(msg, config())
        .map_err(|e| IpcError::Encode(e.to_string()))?;
    out.extend_from_slice(&body);
    if out.len() > MAX_FRAME {
        return Err(IpcError::Oversized {
            len: out.len(),
            max: MAX_FRAME,
        });
    }
    Ok(out)
}

/// Decodes one frame; the version must match and every byte must be consumed.
pub fn decode<T: DeserializeOwned>(frame: &[u8]) -> Result<T, IpcError> {
    if frame.len() > MAX_FRAME {
        return Err(IpcError::Oversized {
            len: frame.len(),
            max: MAX_FRAME,
        });
    }
    let (version, used): (u16, usize) = bincode::serde::decode_from_slice(frame, config())
        .map_err(|e| IpcError::Decode(format!("version: {e}")))?;
    if version != PROTOCOL_VERSION {
        return Err(IpcError::Version {
            got: version,
            expected: PROTOCOL_VERSION,
        });
    }
    let rest = &frame[used..];
    let (msg, body_used): (T, usize) = bincode::serde::decode_from_slice(rest, config())
        .map_err(|e| IpcError::Decode(e.to_string()))?;
    if body_used != rest.len() {
        return Err(IpcError::TrailingBytes(rest.len() - body_used));
    }
    Ok(msg)
}
