//! Slots, deadlines and clients that misbehave: silent clients, a full listener, clients that
//! leave mid-request, and a supervisor that never answers.

mod common;

use common::*;
use mpsup_ipc::{ControlCommand, ListenerMsg};
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use std::io::Write;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// 500 idle clients plus the listener's 500 ends live in this one process.
fn raise_fd_limit() {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let want = 4096.min(hard);
    if soft < want {
        setrlimit(Resource::RLIMIT_NOFILE, want, hard).unwrap();
    }
}

#[test]
fn five_hundred_silent_clients_do_not_stop_a_real_one_and_are_closed_at_their_deadline() {
    raise_fd_limit();
    let timeout = Duration::from_millis(1000);
    let mut h = Harness::start(Some(config(timeout.as_millis() as u64, 600)));
    let started = Instant::now();
    let mut idle: Vec<_> = (0..500).map(|_| h.connect()).collect();
    // Half of them even send half a header.
    for s in idle.iter_mut().step_by(2) {
        s.write_all(&[9, 0]).unwrap();
    }

    let mut s = h.connect();
    send_request(&mut s, "show paths");
    let (client, _, command) = h.request();
    assert_eq!(command, ControlCommand::ShowPaths { json: false });
    h.reply(client, "served\n");
    assert_eq!(read_reply(&mut s), "served\n");
    assert!(
        started.elapsed() < timeout,
        "the real client waited for the silent ones ({:?})",
        started.elapsed()
    );

    // Each silent client is told and closed at its deadline, not before.
    for s in &mut idle {
        assert_eq!(replies(&read_to_close(s)), ["error: timeout\n"]);
    }
    assert!(started.elapsed() >= timeout);
    // None of them reached the supervisor.
    assert_eq!(h.recv_within(Duration::ZERO), None);
    h.stop().unwrap();
}

#[test]
fn when_full_new_clients_wait_in_the_backlog_until_a_slot_frees() {
    let timeout = Duration::from_millis(400);
    let mut h = Harness::start(Some(config(timeout.as_millis() as u64, 2)));
    let mut a = h.connect();
    let mut b = h.connect();
    let queued_at = Instant::now();
    let mut c = h.connect(); // accepted by the kernel into the backlog, not by the listener
    send_request(&mut c, "show stats");
    // The silent pair holds both slots until their deadline; then c is accepted and served.
    let (client, _, command) = h.request();
    assert!(queued_at.elapsed() >= timeout - Duration::from_millis(50));
    assert_eq!(command, ControlCommand::ShowStats { json: false });
    h.reply(client, "stats\n");
    assert_eq!(read_reply(&mut c), "stats\n");
    assert_eq!(replies(&read_to_close(&mut a)), ["error: timeout\n"]);
    assert_eq!(replies(&read_to_close(&mut b)), ["error: timeout\n"]);
    h.stop().unwrap();
}

#[test]
fn a_client_leaving_mid_frame_frees_its_slot_at_once() {
    // One slot and a long timeout: the next client is served only if the slot is freed by the
    // disconnect itself, not by the deadline.
    let mut h = Harness::start(Some(config(60_000, 1)));
    let started = Instant::now();
    let mut a = h.connect();
    let f = frame(b"show paths");
    a.write_all(&f[..6]).unwrap();
    drop(a);
    let mut b = h.connect();
    send_request(&mut b, "show config");
    // Nothing was forwarded for `a`, so no Abandoned either: the first message is b's request.
    let (client, _, command) = h.request();
    assert_eq!(command, ControlCommand::ShowConfig { json: false });
    h.reply(client, "config\n");
    assert_eq!(read_reply(&mut b), "config\n");
    assert!(started.elapsed() < Duration::from_secs(30));
    h.stop().unwrap();
}

#[test]
fn a_client_leaving_while_the_supervisor_works_is_abandoned() {
    let mut h = Harness::start(Some(config(60_000, 1)));
    let mut a = h.connect();
    send_request(&mut a, "purge path sdc");
    let (gone, _, command) = h.request();
    assert_eq!(command, ControlCommand::PurgePath { dev: "sdc".into() });
    drop(a);
    assert_eq!(h.recv(), ListenerMsg::Abandoned { client: gone });
    // A late reply for it is dropped, and its slot (the only one) serves the next client.
    h.reply(gone, "too late\n");
    let mut b = h.connect();
    send_request(&mut b, "show purges");
    let (client, _, command) = h.request();
    assert_ne!(client, gone);
    assert_eq!(command, ControlCommand::ShowPurges { json: false });
    h.reply(client, "purges\n");
    assert_eq!(read_reply(&mut b), "purges\n");
    h.stop().unwrap();
}

#[test]
fn a_silent_supervisor_means_error_timeout_at_the_deadline() {
    let timeout = Duration::from_millis(300);
    let mut h = Harness::start(Some(config(timeout.as_millis() as u64, 4)));
    let started = Instant::now();
    let mut s = h.connect();
    send_request(&mut s, "show helpers");
    let (client, _, _) = h.request();
    // Never answered: the client hears `error: timeout` and EOF once the deadline passes...
    assert!(readable_within(s.as_fd(), 10 * timeout));
    assert_eq!(replies(&read_to_close(&mut s)), ["error: timeout\n"]);
    assert!(started.elapsed() >= timeout);
    // ...and the supervisor learns it may drop the work.
    assert_eq!(h.recv(), ListenerMsg::Abandoned { client });
    h.stop().unwrap();
}

#[test]
fn a_keep_alive_connection_gets_a_fresh_deadline_per_request() {
    let timeout = Duration::from_millis(400);
    let mut h = Harness::start(Some(config(timeout.as_millis() as u64, 4)));
    let mut s = h.connect();
    send_request(&mut s, "show paths");
    let (client, _, _) = h.request();
    // Answer late in the first deadline...
    assert_eq!(h.recv_within(timeout / 2), None);
    h.reply(client, "one\n");
    assert_eq!(read_reply(&mut s), "one\n");
    let replied = Instant::now();
    // ...and the idle connection then lives a full timeout from that reply.
    assert_eq!(replies(&read_to_close(&mut s)), ["error: timeout\n"]);
    assert!(replied.elapsed() >= timeout - Duration::from_millis(20));
    h.stop().unwrap();
}
