//! SCSI disk discovery from sysfs.
//!
//! Everything here is read from files the kernel (or, in a compromised or buggy system,
//! anybody who can fake a sysfs tree for us) controls, so every read is bounded and every
//! entry validated; a malformed entry is skipped with a warning, never fatal, so one odd device
//! cannot hide the others.

use crate::sgio::normalize_wwid;
use mpsup_ipc::{valid_kernel_name, DevT, Hctl, MapRef, PathIdentity};
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use tracing::warn;

/// No sysfs attribute we read is anywhere near this; a longer one is malformed.
pub const MAX_ATTR_READ: usize = 4096;
/// Longest `device/state` word we pass on (the ipc limit).
const MAX_STATE_LEN: usize = 64;

/// One SCSI block device as sysfs describes it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discovered {
    pub identity: PathIdentity,
    /// sysfs `device/state`: `running`, `offline`, `transport-offline`, `blocked`, ...
    pub device_state: String,
    pub devnode: PathBuf,
}

/// Scans `<sysfs>/class/block` for SCSI disks (entries with a `device/scsi_device` parent),
/// skipping partitions. Devnodes are `<dev>/<name>`. Sorted by name.
pub fn discover(sysfs: &Path, dev: &Path) -> Vec<Discovered> {
    let class = sysfs.join("class/block");
    let entries = match fs::read_dir(&class) {
        Ok(e) => e,
        Err(e) => {
            warn!(dir = %class.display(), error = %e, "cannot list block devices");
            return Vec::new();
        }
    };
    let mut names: Vec<String> = Vec::new();
    for entry in entries.flatten() {
        match entry.file_name().into_string() {
            Ok(n) if valid_kernel_name(&n) => names.push(n),
            Ok(n) => warn!(name = %n.escape_debug(), "skipping block device with an invalid name"),
            Err(n) => warn!(name = ?n, "skipping block device with a non-UTF-8 name"),
        }
    }
    names.sort();
    let mut found = Vec::with_capacity(names.len());
    for name in names {
        let base = class.join(&name);
        if base.join("partition").exists() || !base.join("device/scsi_device").is_dir() {
            continue;
        }
        match read_path(sysfs, &base, &name) {
            Ok(mut d) => {
                d.devnode = dev.join(&name);
                found.push(d);
            }
            Err(why) => warn!(device = %name, %why, "skipping malformed SCSI block device"),
        }
    }
    found
}

pub fn read_path(sysfs: &Path, base: &Path, name: &str) -> Result<Discovered, String> {
    let dev_t: DevT = read_text(&base.join("dev"))?.parse()?;
    let hctl = read_hctl(base)?;
    let device = base.join("device");
    let vendor = read_text(&device.join("vendor"))?;
    let model = read_text(&device.join("model"))?;
    // No VPD 0x83 in the kernel: the attribute is missing or its read fails. The caller may
    // fall back to its own INQUIRY.
    let wwid = read_bounded(&device.join("wwid"))
        .ok()
        .flatten()
        .and_then(|raw| normalize_wwid(&raw));
    let device_state = read_text(&device.join("state"))?;
    if device_state.len() > MAX_STATE_LEN
        || device_state.is_empty()
        || device_state.chars().any(char::is_control)
    {
        return Err(format!("bad device/state {device_state:?}"));
    }
    let map = read_holders(sysfs, base);
    let identity = PathIdentity {
        name: name.to_string(),
        dev_t,
        hctl,
        vendor,
        model,
        wwid,
        map,
    };
    identity.validate()?;
    Ok(Discovered {
        identity,
        device_state,
        devnode: PathBuf::new(),
    })
}

/// H:C:T:L from the one entry of `device/scsi_device/`, else from the `device` link's target.
fn read_hctl(base: &Path) -> Result<Hctl, String> {
    if let Ok(entries) = fs::read_dir(base.join("device/scsi_device")) {
        let names: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        if let [one] = names.as_slice() {
            if let Ok(h) = one.parse() {
                return Ok(h);
            }
        }
    }
    let link = fs::read_link(base.join("device")).map_err(|e| format!("device link: {e}"))?;
    let last = link
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or("device link has no name")?;
    last.parse()
}

/// The holding dm map: one whose uuid says dm-multipath if there is one, else the first dm
/// holder. A holder we cannot read is left out (a path then looks unmapped, which blocks a
/// purge under `require_multipath`: the safe direction).
fn read_holders(sysfs: &Path, base: &Path) -> Option<MapRef> {
    let entries = fs::read_dir(base.join("holders")).ok()?;
    let mut dms: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("dm-") && valid_kernel_name(n))
        .collect();
    dms.sort();
    let mut maps = Vec::new();
    for dm in dms {
        let dir = sysfs.join("class/block").join(&dm).join("dm");
        match (read_text(&dir.join("name")), read_text(&dir.join("uuid"))) {
            (Ok(name), Ok(uuid)) => maps.push(MapRef { dm, name, uuid }),
            (Err(e), _) | (_, Err(e)) => warn!(holder = %dm, why = %e, "cannot read dm holder"),
        }
    }
    let mpath = maps.iter().position(|m| m.uuid.starts_with("mpath-"));
    match mpath {
        Some(i) => Some(maps.swap_remove(i)),
        None => maps.into_iter().next(),
    }
}

/// A whole attribute, at most [`MAX_ATTR_READ`] bytes; `None` if it does not exist.
fn read_bounded(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut buf = Vec::new();
    file.take(MAX_ATTR_READ as u64 + 1).read_to_end(&mut buf)?;
    if buf.len() > MAX_ATTR_READ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "attribute too long",
        ));
    }
    Ok(Some(buf))
}

/// A required text attribute, UTF-8, trimmed.
pub fn read_text(path: &Path) -> Result<String, String> {
    let raw = read_bounded(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .ok_or_else(|| format!("{}: missing", path.display()))?;
    let s = String::from_utf8(raw).map_err(|_| format!("{}: not UTF-8", path.display()))?;
    Ok(s.trim().to_string())
}

#[cfg(test)]
pub(crate) mod fixture {
    //! A fake sysfs tree with the same shape (and relative symlinks) as the real one.
    use std::fs;
    use std::os::unix::fs::symlink;
    use std::path::{Path, PathBuf};

    pub struct Sysfs {
        pub dir: tempfile::TempDir,
    }

    pub struct Disk<'a> {
        pub name: &'a str,
        pub hctl: &'a str,
        pub dev: &'a str,
        pub wwid: Option<&'a str>,
        pub state: &'a str,
        pub holder: Option<&'a str>,
    }

    impl Sysfs {
        pub fn new() -> Sysfs {
            let dir = tempfile::tempdir().unwrap();
            fs::create_dir_all(dir.path().join("class/block")).unwrap();
            Sysfs { dir }
        }

        pub fn root(&self) -> &Path {
            self.dir.path()
        }

        pub fn sdev_dir(&self, hctl: &str) -> PathBuf {
            let host = hctl.split(':').next().unwrap();
            let t: Vec<&str> = hctl.split(':').collect();
            self.root().join(format!(
                "devices/platform/host{host}/session{host}/target{}:{}:{}/{hctl}",
                t[0], t[1], t[2]
            ))
        }

        /// /sys/devices/.../H:C:T:L/{vendor,model,wwid,state,scsi_device/H:C:T:L}
        /// /sys/devices/.../H:C:T:L/block/NAME/{dev,device->../../../H:C:T:L,holders/}
        /// /sys/class/block/NAME -> ../../devices/.../block/NAME
        pub fn add_disk(&self, d: &Disk) {
            let sdev = self.sdev_dir(d.hctl);
            fs::create_dir_all(sdev.join("scsi_device").join(d.hctl)).unwrap();
            fs::write(sdev.join("vendor"), "LIO-ORG \n").unwrap();
            fs::write(sdev.join("model"), "disk0           \n").unwrap();
            fs::write(sdev.join("state"), format!("{}\n", d.state)).unwrap();
            if let Some(w) = d.wwid {
                fs::write(sdev.join("wwid"), format!("{w}\n")).unwrap();
            }
            let blk = sdev.join("block").join(d.name);
            fs::create_dir_all(blk.join("holders")).unwrap();
            fs::write(blk.join("dev"), format!("{}\n", d.dev)).unwrap();
            symlink(format!("../../../{}", d.hctl), blk.join("device")).unwrap();
            let rel = blk.strip_prefix(self.root()).unwrap();
            symlink(
                Path::new("../..").join(rel),
                self.root().join("class/block").join(d.name),
            )
            .unwrap();
            if let Some(dm) = d.holder {
                self.add_dm(dm, "mpatha", "mpath-36001405abc");
                let depth = rel.components().count();
                let up = "../".repeat(depth + 1);
                symlink(
                    format!("{up}devices/virtual/block/{dm}"),
                    blk.join("holders").join(dm),
                )
                .unwrap();
            }
        }

        pub fn add_dm(&self, dm: &str, name: &str, uuid: &str) {
            let dir = self.root().join("devices/virtual/block").join(dm);
            if dir.exists() {
                return;
            }
            fs::create_dir_all(dir.join("dm")).unwrap();
            fs::write(dir.join("dev"), "253:0\n").unwrap();
            fs::write(dir.join("dm/name"), format!("{name}\n")).unwrap();
            fs::write(dir.join("dm/uuid"), format!("{uuid}\n")).unwrap();
            symlink(
                format!("../../devices/virtual/block/{dm}"),
                self.root().join("class/block").join(dm),
            )
            .unwrap();
        }

        pub fn add_partition(&self, disk: &str, hctl: &str, part: &str) {
            let dir = self.sdev_dir(hctl).join("block").join(disk).join(part);
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("dev"), "8:33\n").unwrap();
            fs::write(dir.join("partition"), "1\n").unwrap();
            // Partitions have a `device` too, via the parent disk in real sysfs; give them one.
            fs::create_dir_all(dir.join("device/scsi_device").join(hctl)).unwrap();
            let rel = dir.strip_prefix(self.root()).unwrap();
            symlink(
                Path::new("../..").join(rel),
                self.root().join("class/block").join(part),
            )
            .unwrap();
        }

        pub fn block(&self, name: &str) -> PathBuf {
            self.root().join("class/block").join(name)
        }

        pub fn remove_disk(&self, name: &str, hctl: &str) {
            fs::remove_file(self.block(name)).unwrap();
            fs::remove_dir_all(self.sdev_dir(hctl)).unwrap();
        }
    }

    pub fn disk<'a>(name: &'a str, hctl: &'a str, dev: &'a str) -> Disk<'a> {
        Disk {
            name,
            hctl,
            dev,
            wwid: Some("naa.6001405abc"),
            state: "running",
            holder: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::{disk, Disk, Sysfs};
    use super::*;

    fn names(found: &[Discovered]) -> Vec<&str> {
        found.iter().map(|d| d.identity.name.as_str()).collect()
    }

    #[test]
    fn reads_a_multipath_member_like_the_real_tree() {
        let s = Sysfs::new();
        s.add_disk(&Disk {
            holder: Some("dm-0"),
            ..disk("sdc", "1:0:0:0", "8:32")
        });
        let found = discover(s.root(), Path::new("/dev"));
        assert_eq!(found.len(), 1, "{found:?}");
        let d = &found[0];
        assert_eq!(
            d.identity,
            PathIdentity {
                name: "sdc".into(),
                dev_t: DevT {
                    major: 8,
                    minor: 32
                },
                hctl: "1:0:0:0".parse().unwrap(),
                vendor: "LIO-ORG".into(),
                model: "disk0".into(),
                wwid: Some("naa.6001405abc".into()),
                map: Some(MapRef {
                    dm: "dm-0".into(),
                    name: "mpatha".into(),
                    uuid: "mpath-36001405abc".into()
                }),
            }
        );
        assert_eq!(d.device_state, "running");
        assert_eq!(d.devnode, Path::new("/dev/sdc"));
    }

    #[test]
    fn skips_partitions_dm_devices_and_non_scsi() {
        let s = Sysfs::new();
        s.add_disk(&disk("sdc", "1:0:0:0", "8:32"));
        s.add_partition("sdc", "1:0:0:0", "sdc1");
        s.add_dm("dm-3", "vg-lv", "LVM-abc");
        let loop0 = s.root().join("devices/virtual/block/loop0");
        fs::create_dir_all(&loop0).unwrap();
        fs::write(loop0.join("dev"), "7:0\n").unwrap();
        std::os::unix::fs::symlink("../../devices/virtual/block/loop0", s.block("loop0")).unwrap();
        assert_eq!(names(&discover(s.root(), Path::new("/dev"))), ["sdc"]);
    }

    #[test]
    fn missing_wwid_is_none_and_offline_is_read() {
        let s = Sysfs::new();
        s.add_disk(&Disk {
            wwid: None,
            state: "transport-offline",
            ..disk("sdd", "2:0:0:1", "8:48")
        });
        let found = discover(s.root(), Path::new("/dev"));
        assert_eq!(found[0].identity.wwid, None);
        assert_eq!(found[0].device_state, "transport-offline");
    }

    #[test]
    fn nul_padded_wwid_is_cut_like_vpd_parsing() {
        let s = Sysfs::new();
        s.add_disk(&disk("sdc", "1:0:0:0", "8:32"));
        fs::write(s.sdev_dir("1:0:0:0").join("wwid"), b"iqn.2003-01.x\0\0\0\n").unwrap();
        assert_eq!(
            discover(s.root(), Path::new("/dev"))[0]
                .identity
                .wwid
                .as_deref(),
            Some("iqn.2003-01.x")
        );
    }

    #[test]
    fn malformed_entries_are_skipped_not_fatal() {
        let s = Sysfs::new();
        s.add_disk(&disk("sda", "0:0:0:0", "8:0"));
        s.add_disk(&disk("sdb", "0:0:0:1", "garbage"));
        s.add_disk(&disk("sdc", "0:0:0:2", "8:32"));
        fs::write(s.sdev_dir("0:0:0:2").join("vendor"), "LIO\x1b[31m\n").unwrap();
        s.add_disk(&disk("sdd", "0:0:0:3", "8:48"));
        fs::write(
            s.sdev_dir("0:0:0:3").join("model"),
            vec![b'x'; MAX_ATTR_READ + 1],
        )
        .unwrap();
        s.add_disk(&disk("sde", "0:0:0:4", "8:64"));
        fs::write(s.sdev_dir("0:0:0:4").join("model"), b"\xff\xfe\n").unwrap();
        s.add_disk(&disk("sdf", "0:0:0:5", "8:80"));
        fs::remove_file(s.sdev_dir("0:0:0:5").join("state")).unwrap();
        s.add_disk(&disk("sdg", "0:0:0:6", "8:96"));
        fs::write(s.sdev_dir("0:0:0:6").join("state"), "x".repeat(100)).unwrap();
        s.add_disk(&disk("sdh", "0:0:0:7", "8:112"));
        assert_eq!(
            names(&discover(s.root(), Path::new("/dev"))),
            ["sda", "sdh"]
        );
    }

    #[test]
    fn hctl_falls_back_to_the_device_link() {
        let s = Sysfs::new();
        s.add_disk(&disk("sdc", "3:0:2:7", "8:32"));
        fs::remove_dir_all(s.sdev_dir("3:0:2:7").join("scsi_device/3:0:2:7")).unwrap();
        let found = discover(s.root(), Path::new("/dev"));
        assert_eq!(found[0].identity.hctl, "3:0:2:7".parse().unwrap());
    }

    #[test]
    fn prefers_the_multipath_holder() {
        let s = Sysfs::new();
        s.add_disk(&Disk {
            holder: Some("dm-1"),
            ..disk("sdc", "1:0:0:0", "8:32")
        });
        // Another dm holder sorted first that is not multipath.
        s.add_dm("dm-0", "linear", "LVM-xyz");
        let blk = s.sdev_dir("1:0:0:0").join("block/sdc/holders");
        std::os::unix::fs::symlink(
            "../../../../../../../../devices/virtual/block/dm-0",
            blk.join("dm-0"),
        )
        .unwrap();
        let found = discover(s.root(), Path::new("/dev"));
        assert_eq!(found[0].identity.map.as_ref().unwrap().dm, "dm-1");
    }

    #[test]
    fn no_sysfs_is_no_paths() {
        assert!(discover(Path::new("/nonexistent/sys"), Path::new("/dev")).is_empty());
    }
}
