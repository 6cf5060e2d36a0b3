//! Binding the control socket before any helper exists, so the unprivileged listener never
//! needs to create files. A stale socket file (nobody accepting) is replaced; a live one means
//! another mpsup runs, and anything that is not a socket is never removed.

use nix::sys::stat::{umask, Mode, SFlag};
use std::io::ErrorKind;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

/// A bound control socket and the inode we created, so shutdown removes only our own file.
pub struct ControlSocket {
    pub fd: OwnedFd,
    ino: u64,
}

pub fn bind(path: &Path, mode: u32, gid: u32) -> Result<ControlSocket, String> {
    let shown = path.display();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match UnixStream::connect(path) {
            Ok(_) => {
                return Err(format!(
                    "{shown}: another process is serving this socket (is mpsup already running?)"
                ))
            }
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                tracing::info!(socket = %shown, "removing stale control socket");
                std::fs::remove_file(path)
                    .map_err(|e| format!("cannot remove stale {shown}: {e}"))?;
            }
            Err(e) => {
                return Err(format!(
                    "{shown}: cannot tell whether the socket is stale: {e}"
                ))
            }
        },
        Ok(_) => {
            return Err(format!(
                "{shown} exists and is not a socket; refusing to remove it"
            ))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{shown}: {e}")),
    }
    // Created 0600 whatever the inherited umask, then widened: never briefly too open.
    let old = umask(Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    umask(old);
    let listener = bound.map_err(|e| format!("cannot bind {shown}: {e}"))?;
    std::os::unix::fs::chown(path, None, Some(gid))
        .map_err(|e| format!("cannot chown {shown} to gid {gid}: {e}"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot chmod {shown}: {e}"))?;
    let ino = std::fs::symlink_metadata(path)
        .map_err(|e| format!("{shown}: {e}"))?
        .ino();
    Ok(ControlSocket {
        fd: listener.into(),
        ino,
    })
}

impl ControlSocket {
    /// Removes the socket file if it is still the one we bound.
    pub fn remove(&self, path: &Path) {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if meta.ino() == self.ino
                && SFlag::from_bits_truncate(meta.mode()).contains(SFlag::S_IFSOCK)
            {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}
