//! Issue 8: each helper SIGKILLed in turn while clients keep the control socket busy. Every
//! helper is back within a second, the supervisor's view (`show helpers`) says so, and no
//! client ever gets a partial or garbled reply: a request either completes or fails cleanly.

mod common;

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One `show helpers json` over the raw protocol: Ok(body) or Err(why it failed cleanly).
fn show_helpers(sock: &std::path::Path) -> Result<String, String> {
    let mut s = UnixStream::connect(sock).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let cmd = b"show helpers json";
    let mut frame = (cmd.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(cmd);
    s.write_all(&frame).map_err(|e| format!("write: {e}"))?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len)
        .map_err(|e| format!("no reply: {e}"))?;
    let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
    // A reply that starts must arrive whole: a short one is a failure of the test.
    s.read_exact(&mut body)
        .expect("a reply that began was cut short");
    Ok(String::from_utf8(body).expect("reply is UTF-8"))
}

#[test]
fn each_helper_killed_under_load_is_back_within_a_second() {
    let mut d = Daemon::start("");
    let mut pids = d.wait_ready();
    let sock = d.dir.path().join("mpsup.sock");

    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (stop, sock) = (stop.clone(), sock.clone());
        std::thread::spawn(move || {
            let (mut ok, mut failed) = (0u32, 0u32);
            while !stop.load(Ordering::Relaxed) {
                match show_helpers(&sock) {
                    Ok(body) if body.starts_with("error: ") => failed += 1,
                    Ok(body) => {
                        let v: serde_json::Value =
                            serde_json::from_str(&body).expect("whole JSON reply");
                        assert_eq!(v["helpers"].as_array().unwrap().len(), 3);
                        ok += 1;
                    }
                    Err(_) => failed += 1,
                }
            }
            (ok, failed)
        })
    };

    for role in ["checker", "purger", "listener"] {
        let old = pids.iter().find(|(r, _)| r == role).unwrap().1;
        let killed = Instant::now();
        kill(Pid::from_raw(old), Signal::SIGKILL).unwrap();
        let line = d.wait_for(&["helper ready", &format!("role={role}")]);
        let back = killed.elapsed();
        let new: i32 = field(&line, "pid").parse().unwrap();
        assert_ne!(new, old);
        eprintln!(
            "MEASURED {role}: SIGKILL to Ready of its successor in {} ms",
            back.as_millis()
        );
        assert!(
            back < Duration::from_secs(1),
            "{role} took {back:?} to come back"
        );
        pids.retain(|(r, _)| r != role);
        pids.push((role.to_string(), new));
    }

    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = load.join().unwrap();
    eprintln!(
        "MEASURED load: {ok} requests answered, {failed} failed cleanly while helpers restarted"
    );
    assert!(ok > 0);

    let v: serde_json::Value = serde_json::from_str(&show_helpers(&sock).unwrap()).unwrap();
    for h in v["helpers"].as_array().unwrap() {
        assert_eq!(h["state"], "running", "{h}");
        assert_eq!(h["restarts"], 1, "{h}");
        let want = pids
            .iter()
            .find(|(r, _)| r == h["role"].as_str().unwrap())
            .unwrap()
            .1;
        assert_eq!(h["pid"], want);
    }
    d.signal(Signal::SIGTERM);
    assert_eq!(d.wait_exit(), 0);
}

#[test]
fn on_helper_crash_exit_fail_stops_at_the_first_crash() {
    let mut d = Daemon::start("[supervisor]\non_helper_crash = \"exit\"\n");
    let pids = d.wait_ready();
    let checker = pids.iter().find(|(r, _)| r == "checker").unwrap().1;
    kill(Pid::from_raw(checker), Signal::SIGKILL).unwrap();
    d.wait_for(&[
        "fail-stop",
        "the checker died and on_helper_crash = \"exit\"",
    ]);
    assert_eq!(d.wait_exit(), 1);
    for (role, pid) in &pids {
        wait_gone(*pid);
        assert!(!alive(*pid), "{role} outlived the fail-stop");
    }
}
