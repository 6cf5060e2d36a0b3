//! Domain types that cross process boundaries. Each carries its own `validate` so a receiver
//! can reject a well-formed frame whose contents are nonsense (a compromised helper).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Longest sysfs string we accept from a helper (vendor, model, map names...).
pub const MAX_ATTR_LEN: usize = 256;
/// Longest sense buffer SPC allows (additional length is one byte).
pub const MAX_SENSE_LEN: usize = 252;

/// A block device number, as the kernel's `MAJ:MIN`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DevT {
    pub major: u32,
    pub minor: u32,
}

impl DevT {
    pub fn from_raw(raw: u64) -> Self {
        // Same bit layout as glibc's gnu_dev_major/minor.
        let major = (((raw >> 32) & 0xffff_f000) | ((raw >> 8) & 0x0000_0fff)) as u32;
        let minor = (((raw >> 12) & 0xffff_ff00) | (raw & 0x0000_00ff)) as u32;
        DevT { major, minor }
    }

    pub fn to_raw(self) -> u64 {
        let (ma, mi) = (u64::from(self.major), u64::from(self.minor));
        ((ma & 0xffff_f000) << 32)
            | ((ma & 0x0000_0fff) << 8)
            | ((mi & 0xffff_ff00) << 12)
            | (mi & 0xff)
    }
}

impl fmt::Display for DevT {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

impl FromStr for DevT {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ma, mi) = s
            .trim()
            .split_once(':')
            .ok_or_else(|| format!("not MAJ:MIN: {s:?}"))?;
        Ok(DevT {
            major: ma.parse().map_err(|_| format!("bad major in {s:?}"))?,
            minor: mi.parse().map_err(|_| format!("bad minor in {s:?}"))?,
        })
    }
}

/// SCSI address host:channel:target:lun.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Hctl {
    pub host: u32,
    pub channel: u32,
    pub target: u32,
    pub lun: u64,
}

impl fmt::Display for Hctl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}:{}",
            self.host, self.channel, self.target, self.lun
        )
    }
}

impl FromStr for Hctl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.trim().split(':').collect();
        let bad = || format!("not H:C:T:L: {s:?}");
        if parts.len() != 4 {
            return Err(bad());
        }
        Ok(Hctl {
            host: parts[0].parse().map_err(|_| bad())?,
            channel: parts[1].parse().map_err(|_| bad())?,
            target: parts[2].parse().map_err(|_| bad())?,
            lun: parts[3].parse().map_err(|_| bad())?,
        })
    }
}

/// What the checker's TEST UNIT READY said about a path (DESIGN.md, TUR classification).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PathState {
    /// Not probed yet.
    Unknown,
    Up,
    Down(DownReason),
    Standby,
    Transitioning,
    /// ILLEGAL REQUEST, LOGICAL UNIT NOT SUPPORTED (05/25/00): the only state that can start a purge.
    Disconnected,
    /// The TUR did not complete within `tur_timeout`. Never purged.
    Timeout,
    /// The device refused SG_IO (ENOTTY/EINVAL).
    Unsupported,
    /// sysfs `device/state` is `offline` or `transport-offline`.
    Offline,
}

impl PathState {
    /// The classification word used in `show paths` and JSON.
    pub fn word(&self) -> &'static str {
        match self {
            PathState::Unknown => "unknown",
            PathState::Up => "up",
            PathState::Down(_) => "down",
            PathState::Standby => "standby",
            PathState::Transitioning => "transitioning",
            PathState::Disconnected => "disconnected",
            PathState::Timeout => "timeout",
            PathState::Unsupported => "unsupported",
            PathState::Offline => "offline",
        }
    }
}

/// Why a path is `down`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DownReason {
    /// open() or ioctl() failed with this errno.
    Errno(i32),
    /// The host byte named a transport failure (DID_NO_CONNECT, DID_BAD_TARGET, DID_TRANSPORT_*...).
    HostByte(u16),
    /// Sense data other than the states above.
    Sense { key: u8, asc: u8, ascq: u8 },
    /// A SCSI status other than GOOD/RESERVATION CONFLICT/CHECK CONDITION.
    Status(u8),
    /// UNIT ATTENTION kept coming back past the retry bound.
    UnitAttentionStorm,
    /// Driver byte set without sense.
    Driver(u16),
}

/// The raw facts behind a classification, kept as audit evidence.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurEvidence {
    pub scsi_status: u8,
    pub host_status: u16,
    pub driver_status: u16,
    pub errno: Option<i32>,
    pub sense: Vec<u8>,
    pub duration_ms: u32,
    pub unit_attention_retries: u8,
}

impl TurEvidence {
    pub fn validate(&self) -> Result<(), String> {
        if self.sense.len() > MAX_SENSE_LEN {
            return Err(format!("sense buffer of {} bytes", self.sense.len()));
        }
        Ok(())
    }
}

/// Who a path is, as read from sysfs. The purger compares this against the live device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathIdentity {
    /// Kernel block device name, e.g. `sdc`.
    pub name: String,
    pub dev_t: DevT,
    pub hctl: Hctl,
    pub vendor: String,
    pub model: String,
    /// `device/wwid` or the VPD 0x83 designator; `None` when the device offers neither.
    pub wwid: Option<String>,
    /// Holding dm-multipath map, if any.
    pub map: Option<MapRef>,
}

/// A dm device holding a path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapRef {
    /// `dm-N`
    pub dm: String,
    /// `dm/name`, e.g. `mpatha`
    pub name: String,
    /// `dm/uuid`, e.g. `mpath-36001405...`
    pub uuid: String,
}

/// A kernel block device name: short, ASCII alphanumeric with `-`, `_`, `!`, `.`, `:`.
pub fn valid_kernel_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_!.:".contains(&b))
}

fn check_attr(what: &str, s: &str) -> Result<(), String> {
    if s.len() > MAX_ATTR_LEN {
        return Err(format!("{what} is {} bytes long", s.len()));
    }
    if s.chars().any(|c| c.is_control()) {
        return Err(format!("{what} has control characters"));
    }
    Ok(())
}

impl PathIdentity {
    pub fn validate(&self) -> Result<(), String> {
        if !valid_kernel_name(&self.name) {
            return Err(format!("bad device name {:?}", self.name));
        }
        check_attr("vendor", &self.vendor)?;
        check_attr("model", &self.model)?;
        if let Some(w) = &self.wwid {
            check_attr("wwid", w)?;
        }
        if let Some(m) = &self.map {
            if !valid_kernel_name(&m.dm) {
                return Err(format!("bad dm name {:?}", m.dm));
            }
            check_attr("map name", &m.name)?;
            check_attr("map uuid", &m.uuid)?;
        }
        Ok(())
    }
}

/// The three helper processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    Checker,
    Purger,
    Listener,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Checker, Role::Purger, Role::Listener];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Checker => "checker",
            Role::Purger => "purger",
            Role::Listener => "listener",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown helper role {s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_t_round_trips_through_the_kernel_encoding() {
        for (ma, mi) in [(8, 0), (8, 16), (259, 1), (65, 1048575), (4095, 255)] {
            let d = DevT {
                major: ma,
                minor: mi,
            };
            assert_eq!(DevT::from_raw(d.to_raw()), d);
        }
        // sdb: 8:16 is 0x810 in the classic encoding.
        assert_eq!(
            DevT::from_raw(0x810),
            DevT {
                major: 8,
                minor: 16
            }
        );
    }

    #[test]
    fn text_forms_parse_and_reject_garbage() {
        assert_eq!(
            "8:16".parse::<DevT>(),
            Ok(DevT {
                major: 8,
                minor: 16
            })
        );
        assert!("8".parse::<DevT>().is_err());
        assert!("8:x".parse::<DevT>().is_err());
        let h: Hctl = "2:0:1:5".parse().unwrap();
        assert_eq!(h.to_string(), "2:0:1:5");
        assert!("2:0:1".parse::<Hctl>().is_err());
    }

    #[test]
    fn identity_validation_rejects_hostile_strings() {
        let mut id = PathIdentity {
            name: "sdc".into(),
            dev_t: DevT {
                major: 8,
                minor: 32,
            },
            hctl: "1:0:0:0".parse().unwrap(),
            vendor: "LIO-ORG".into(),
            model: "disk0".into(),
            wwid: Some("naa.6001405abc".into()),
            map: None,
        };
        assert!(id.validate().is_ok());
        id.name = "../../etc".into();
        assert!(id.validate().is_err());
        id.name = "sdc".into();
        id.vendor = "x\n".into();
        assert!(id.validate().is_err());
        id.vendor = "v".repeat(MAX_ATTR_LEN + 1);
        assert!(id.validate().is_err());
    }
}
