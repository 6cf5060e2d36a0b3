//! Authorization with real credentials: a forked child drops to another uid/gid/groups *before*
//! it connects (SO_PEERCRED and SO_PEERGROUPS are recorded at connect time), sends its requests
//! and reports every byte it got back through a pipe. The tests run as root.

mod common;

use common::*;
use mpsup_ipc::{ControlCommand, ListenerConfig};
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

const NOBODY: u32 = 65534;

/// Runs `requests` on one connection as (uid, gid, groups) in a forked child and returns the
/// replies. The child sends everything, half-closes, reads until the listener closes, and writes
/// what it read to a pipe. Everything it needs is prepared before the fork, so the child only
/// makes system calls (the test process has other threads).
fn as_user(path: &Path, uid: u32, gid: u32, groups: &[u32], requests: &[&str]) -> ChildRun {
    // SAFETY: sockaddr_un is plain old data, valid all zero; it is filled within bounds below.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let p = path.as_os_str().as_encoded_bytes();
    assert!(p.len() < addr.sun_path.len());
    for (d, s) in addr.sun_path.iter_mut().zip(p) {
        *d = *s as libc::c_char;
    }
    let mut out: Vec<u8> = Vec::new();
    for r in requests {
        out.extend(frame(r.as_bytes()));
    }
    let mut buf = vec![0u8; 1 << 16];
    let (rd, wr) = nix::unistd::pipe().unwrap();
    // SAFETY: the child only makes system calls on memory allocated before the fork (no
    // allocation, no locks another thread could hold) and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: raw system calls on fds we own and buffers valid for the lengths passed.
        unsafe {
            let fail = |code: i32| -> ! { libc::_exit(code) };
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0 {
                fail(10);
            }
            if libc::setgid(gid) != 0 {
                fail(11);
            }
            if libc::setuid(uid) != 0 {
                fail(12);
            }
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
            if fd < 0 {
                fail(13);
            }
            if libc::connect(
                fd,
                (&addr as *const libc::sockaddr_un).cast(),
                std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
            ) != 0
            {
                fail(14);
            }
            let mut sent = 0;
            while sent < out.len() {
                let n = libc::write(fd, out[sent..].as_ptr().cast(), out.len() - sent);
                if n <= 0 {
                    fail(15);
                }
                sent += n as usize;
            }
            libc::shutdown(fd, libc::SHUT_WR);
            let mut got = 0;
            loop {
                let n = libc::read(fd, buf[got..].as_mut_ptr().cast(), buf.len() - got);
                if n <= 0 {
                    break;
                }
                got += n as usize;
            }
            let w = wr.as_raw_fd();
            let mut put = 0;
            while put < got {
                let n = libc::write(w, buf[put..].as_ptr().cast(), got - put);
                if n <= 0 {
                    fail(16);
                }
                put += n as usize;
            }
            libc::_exit(0);
        }
    }
    drop(wr);
    ChildRun { pid, rd }
}

struct ChildRun {
    pid: libc::pid_t,
    rd: OwnedFd,
}

impl ChildRun {
    /// Waits for the child (bounded by the listener's request timeout) and returns its replies.
    fn replies(self) -> Vec<String> {
        let mut f = std::fs::File::from(self.rd);
        let mut got = Vec::new();
        f.read_to_end(&mut got).unwrap();
        let mut status = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(self.pid, &mut status, 0) }, self.pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child failed with status {status:#x}"
        );
        replies(&got)
    }
}

fn admin_config(admin_gid: u32) -> ListenerConfig {
    ListenerConfig {
        request_timeout_ms: 10_000,
        admin_gid,
        max_clients: 8,
    }
}

#[test]
fn nobody_may_read_but_not_change() {
    let mut h = Harness::start(Some(admin_config(0)));
    let child = as_user(
        &h.path,
        NOBODY,
        NOBODY,
        &[],
        &["pause", "purge path sdc", "show paths"],
    );
    // The first message the supervisor sees is the read: neither admin command was forwarded.
    let (client, peer, command) = h.request();
    assert_eq!(command, ControlCommand::ShowPaths { json: false });
    assert_eq!((peer.uid, peer.gid), (NOBODY, NOBODY));
    assert_eq!(peer.pid, child.pid);
    h.reply(client, "paths\n");
    assert_eq!(
        child.replies(),
        [
            "error: permission denied: pause needs uid 0 or group 0\n",
            "error: permission denied: purge path needs uid 0 or group 0\n",
            "paths\n",
        ]
    );
    h.stop().unwrap();
}

#[test]
fn the_admin_group_as_primary_gid_may_change() {
    let mut h = Harness::start(Some(admin_config(4242)));
    let child = as_user(&h.path, NOBODY, 4242, &[], &["pause"]);
    let (client, peer, command) = h.request();
    assert_eq!(command, ControlCommand::Pause);
    assert_eq!((peer.uid, peer.gid), (NOBODY, 4242));
    h.reply(client, "paused\n");
    assert_eq!(child.replies(), ["paused\n"]);
    h.stop().unwrap();
}

#[test]
fn the_admin_group_as_supplementary_group_may_change() {
    let mut h = Harness::start(Some(admin_config(4242)));
    let child = as_user(&h.path, NOBODY, NOBODY, &[100, 4242, 7], &["resume"]);
    let (client, peer, command) = h.request();
    assert_eq!(command, ControlCommand::Resume);
    assert_eq!((peer.uid, peer.gid), (NOBODY, NOBODY));
    h.reply(client, "resumed\n");
    assert_eq!(child.replies(), ["resumed\n"]);

    // Other groups do not count.
    let child = as_user(&h.path, NOBODY, NOBODY, &[100, 4243], &["reconfigure"]);
    assert_eq!(
        child.replies(),
        ["error: permission denied: reconfigure needs uid 0 or group 4242\n"]
    );
    h.stop().unwrap();
}

#[test]
fn root_is_always_admin() {
    let mut h = Harness::start(Some(admin_config(4242)));
    let child = as_user(&h.path, 0, NOBODY, &[], &["cancel purge 3"]);
    let (client, peer, command) = h.request();
    assert_eq!(command, ControlCommand::CancelPurge { id: 3 });
    assert_eq!(peer.uid, 0);
    h.reply(client, "cancelled\n");
    assert_eq!(child.replies(), ["cancelled\n"]);
    h.stop().unwrap();
}
