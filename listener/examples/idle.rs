//! Measures what an idle listener costs: runs it configured but with no clients for N seconds
//! (default 10) and prints the CPU time its thread used, from /proc/self/task/<tid>/stat.
//! Run under `strace -f -c` to count its system calls as well.
//!
//!     cargo run -p mpsup-listener --example idle -- 10

use mpsup_ipc::{Channel, ListenerConfig, ListenerMsg, ToListener};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::time::Duration;

fn cpu_ticks(tid: i32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
    // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    (f[11].parse().unwrap(), f[12].parse().unwrap())
}

fn main() {
    let secs: u64 = std::env::args().nth(1).map_or(10, |s| s.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let listen = UnixListener::bind(dir.path().join("mpsup.sock")).unwrap();
    let (mut sup, theirs) = Channel::pair().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        tx.send(nix::unistd::gettid().as_raw()).unwrap();
        mpsup_listener::run(theirs, OwnedFd::from(listen))
    });
    let tid = rx.recv().unwrap();
    assert!(matches!(
        sup.recv::<ListenerMsg>().unwrap().msg,
        ListenerMsg::Ready(_)
    ));
    let config = ListenerConfig {
        request_timeout_ms: 4000,
        admin_gid: 0,
        max_clients: 64,
    };
    sup.send(&ToListener::Configure(config), None).unwrap();
    let before = cpu_ticks(tid);
    std::thread::sleep(Duration::from_secs(secs));
    let after = cpu_ticks(tid);
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    println!(
        "listener thread {tid}, idle {secs} s: utime {} ticks, stime {} ticks (1 tick = 1/{hz} s)",
        after.0 - before.0,
        after.1 - before.1
    );
    sup.send(&ToListener::Shutdown, None).unwrap();
    thread.join().unwrap().unwrap();
}
