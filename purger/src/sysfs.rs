//! What sysfs says about the device now: its identity at a dev_t, its holders, the other paths
//! of its multipath map, and its scsi_device directory. Reading only; the attribute readers
//! (bounded, validated) are the checker's, so both helpers see a device the same way.

use mpsup_checker::discovery::{read_path, read_text};
use mpsup_ipc::{valid_kernel_name, DevT, Hctl, PathIdentity};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// At most this many holders are accepted (the ipc limit on evidence).
pub const MAX_HOLDERS: usize = 64;
/// At most this many members of a map are probed; more only ever undercounts usable paths,
/// which errs towards refusing.
pub const MAX_SLAVES: usize = 64;

/// `<sysfs>/dev/block/MAJ:MIN`, the kernel's link from a dev_t to its block device.
pub fn dev_entry(sysfs: &Path, dev_t: DevT) -> PathBuf {
    sysfs.join("dev/block").join(dev_t.to_string())
}

/// What is at a dev_t now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Live {
    /// No block device has this dev_t.
    Absent,
    /// A block device that is not a whole SCSI disk (a partition, another driver's disk).
    NotScsiDisk { name: String },
    /// A SCSI disk, as the checker would read it.
    Disk(PathIdentity),
}

/// Reads the block device at `dev_t`. `Err` when something is there but cannot be read.
pub fn read_live(sysfs: &Path, dev_t: DevT) -> Result<Live, String> {
    let entry = dev_entry(sysfs, dev_t);
    let target = match fs::read_link(&entry) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Live::Absent),
        Err(e) => return Err(format!("{}: {e}", entry.display())),
    };
    // The link points at .../block/<name>: the kernel's name for the device.
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| valid_kernel_name(n))
        .ok_or_else(|| format!("{} points to {}", entry.display(), target.display()))?
        .to_string();
    if entry.join("partition").exists() || !entry.join("device/scsi_device").is_dir() {
        return Ok(Live::NotScsiDisk { name });
    }
    match read_path(sysfs, &entry, &name) {
        Ok(d) => Ok(Live::Disk(d.identity)),
        // Gone between the two reads: the device was removed meanwhile.
        Err(_) if !present(sysfs, dev_t)? => Ok(Live::Absent),
        Err(e) => Err(format!("identity of {name} ({dev_t}): {e}")),
    }
}

/// Whether `<sysfs>/dev/block/MAJ:MIN` exists.
pub fn present(sysfs: &Path, dev_t: DevT) -> Result<bool, String> {
    let entry = dev_entry(sysfs, dev_t);
    match fs::symlink_metadata(&entry) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(format!("{}: {e}", entry.display())),
    }
}

/// How `live` differs from `expected`, one phrase per field; empty when they are the same
/// device. Compared: name, dev_t, H:C:T:L, vendor, model, WWID (all normalised by the same
/// checker readers). One case is left to the caller: `expected` has a WWID and sysfs shows
/// none (the checker got it from VPD 0x83); see [`wwid_missing_in_sysfs`]. The holding map is
/// not identity (multipathd may rename or reload it).
pub fn differences(expected: &PathIdentity, live: &PathIdentity) -> Vec<String> {
    let mut d = Vec::new();
    if live.name != expected.name {
        d.push(format!("name {} (expected {})", live.name, expected.name));
    }
    if live.dev_t != expected.dev_t {
        d.push(format!(
            "dev_t {} (expected {})",
            live.dev_t, expected.dev_t
        ));
    }
    if live.hctl != expected.hctl {
        d.push(format!(
            "H:C:T:L {} (expected {})",
            live.hctl, expected.hctl
        ));
    }
    if live.vendor != expected.vendor {
        d.push(format!(
            "vendor {:?} (expected {:?})",
            live.vendor, expected.vendor
        ));
    }
    if live.model != expected.model {
        d.push(format!(
            "model {:?} (expected {:?})",
            live.model, expected.model
        ));
    }
    match (&expected.wwid, &live.wwid) {
        (Some(e), Some(l)) if e != l => d.push(format!("WWID {l} (expected {e})")),
        (None, Some(l)) => d.push(format!("WWID {l} (expected none)")),
        _ => {}
    }
    d
}

/// The request names a WWID and sysfs shows none: it can only be re-verified by asking the
/// device (VPD 0x83), as the checker did.
pub fn wwid_missing_in_sysfs(expected: &PathIdentity, live: &PathIdentity) -> bool {
    expected.wwid.is_some() && live.wwid.is_none()
}

/// A dm device holding the path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DmHolder {
    pub dm: String,
    pub name: String,
    pub uuid: String,
    /// The holder's sysfs directory, reached through the path's `holders/` link.
    pub dir: PathBuf,
}

/// Everything that holds the disk or one of its partitions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Holders {
    /// Every holder name, sorted (the evidence).
    pub all: Vec<String>,
    /// Holders of the whole disk whose `dm/uuid` starts with `mpath-`.
    pub multipath: Vec<DmHolder>,
    /// Everything else: other dm targets (LVM, linear...), md, holders of partitions.
    pub other: Vec<String>,
}

/// Reads `<entry>/holders/` and the holders of each partition. Fails (rather than skipping)
/// on anything it cannot read or name: an unknown holder must never look like no holder.
pub fn read_holders(entry: &Path) -> Result<Holders, String> {
    let mut h = Holders::default();
    for name in list_names(&entry.join("holders"))? {
        let dir = entry.join("holders").join(&name);
        if name.starts_with("dm-") {
            let uuid = read_text(&dir.join("dm/uuid"))?;
            if uuid.starts_with("mpath-") {
                let map_name = read_text(&dir.join("dm/name"))?;
                h.multipath.push(DmHolder {
                    dm: name.clone(),
                    name: map_name,
                    uuid,
                    dir,
                });
                h.all.push(name);
                continue;
            }
        }
        h.other.push(name.clone());
        h.all.push(name);
    }
    // Partitions are subdirectories with a `partition` attribute; their holders (LVM on
    // sdc1, ...) use the disk just as much.
    let entries = fs::read_dir(entry).map_err(|e| format!("{}: {e}", entry.display()))?;
    for e in entries {
        let e = e.map_err(|e| format!("{}: {e}", entry.display()))?;
        let part = e.path();
        if part.join("partition").is_file() {
            for name in list_names(&part.join("holders"))? {
                h.other.push(name.clone());
                h.all.push(name);
            }
        }
    }
    h.all.sort();
    h.all.dedup();
    if h.all.len() > MAX_HOLDERS {
        return Err(format!("{} holders (at most {MAX_HOLDERS})", h.all.len()));
    }
    Ok(h)
}

/// One member of a map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slave {
    pub name: String,
    /// Its dev_t, or why it could not be read.
    pub dev_t: Result<DevT, String>,
}

/// `<holder>/slaves/*`, sorted by name, at most [`MAX_SLAVES`].
pub fn read_slaves(holder: &DmHolder) -> Result<Vec<Slave>, String> {
    let dir = holder.dir.join("slaves");
    let mut names = list_names(&dir)?;
    names.truncate(MAX_SLAVES);
    Ok(names
        .into_iter()
        .map(|name| {
            let dev_t = read_text(&dir.join(&name).join("dev")).and_then(|t| t.parse::<DevT>());
            Slave { name, dev_t }
        })
        .collect())
}

/// The scsi_device directory of the block device at `dev_t`: where its `device` link leads,
/// which must be the directory named after its H:C:T:L (the kernel names the scsi_device
/// `host:channel:id:lun`, scsi_sysfs.c `scsi_sysfs_device_initialize()`) and must hold a
/// `delete` attribute.
pub fn scsi_device_dir(sysfs: &Path, dev_t: DevT, hctl: Hctl) -> Result<PathBuf, String> {
    let link = dev_entry(sysfs, dev_t).join("device");
    let dir = fs::canonicalize(&link).map_err(|e| format!("{}: {e}", link.display()))?;
    let last = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if last != hctl.to_string() {
        return Err(format!(
            "the device link of {dev_t} leads to {}, not to the scsi_device {hctl}",
            dir.display()
        ));
    }
    match fs::symlink_metadata(dir.join("delete")) {
        Ok(m) if m.file_type().is_file() => Ok(dir),
        Ok(_) => Err(format!("{}/delete is not an attribute", dir.display())),
        Err(e) => Err(format!("{}/delete: {e}", dir.display())),
    }
}

/// Entry names of a directory, sorted; any name that is not a valid kernel name is an error.
fn list_names(dir: &Path) -> Result<Vec<String>, String> {
    let entries = fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut names = Vec::new();
    for e in entries {
        let e = e.map_err(|e| format!("{}: {e}", dir.display()))?;
        match e.file_name().into_string() {
            Ok(n) if valid_kernel_name(&n) => names.push(n),
            Ok(n) => return Err(format!("{}: odd entry {:?}", dir.display(), n)),
            Err(n) => return Err(format!("{}: non-UTF-8 entry {:?}", dir.display(), n)),
        }
        if names.len() > 4 * MAX_HOLDERS.max(MAX_SLAVES) {
            return Err(format!("{}: too many entries", dir.display()));
        }
    }
    names.sort();
    Ok(names)
}
