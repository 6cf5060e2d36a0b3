//! Requests end to end over real sockets: grammar, forwarding, replies, framing errors and the
//! supervisor side of the protocol.

mod common;

use common::*;
use mpsup_ipc::{ControlCommand, ToListener, MAX_REPLY_CHUNK};
use mpsup_listener::ListenerError;
use std::io::Write;
use std::os::fd::AsFd;
use std::time::Duration;

#[test]
fn every_command_reaches_the_supervisor_parsed() {
    use ControlCommand::*;
    let cases: Vec<(&str, ControlCommand)> = vec![
        ("show paths", ShowPaths { json: false }),
        ("show paths json", ShowPaths { json: true }),
        ("show purges", ShowPurges { json: false }),
        ("show purges json", ShowPurges { json: true }),
        ("show helpers", ShowHelpers { json: false }),
        ("show helpers json", ShowHelpers { json: true }),
        ("show config", ShowConfig { json: false }),
        ("show config json", ShowConfig { json: true }),
        ("show stats", ShowStats { json: false }),
        ("show stats json", ShowStats { json: true }),
        (
            "show audit",
            ShowAudit {
                last: None,
                json: false,
            },
        ),
        (
            "show audit json",
            ShowAudit {
                last: None,
                json: true,
            },
        ),
        (
            "show audit 20",
            ShowAudit {
                last: Some(20),
                json: false,
            },
        ),
        (
            "  show   audit 5\tjson\n",
            ShowAudit {
                last: Some(5),
                json: true,
            },
        ),
        ("purge path sdc", PurgePath { dev: "sdc".into() }),
        ("purge path /dev/sdd", PurgePath { dev: "sdd".into() }),
        ("cancel purge 42", CancelPurge { id: 42 }),
        ("pause", Pause),
        ("resume", Resume),
        ("reconfigure", Reconfigure),
    ];
    let mut h = Harness::start(Some(config(10_000, 16)));
    let mut seen = Vec::new();
    for (text, want) in cases {
        let mut s = h.connect();
        send_request(&mut s, text);
        let (client, peer, command) = h.request();
        assert_eq!(command, want, "{text:?}");
        assert_eq!(peer.uid, 0);
        assert_eq!(peer.pid as u32, std::process::id());
        assert!(!seen.contains(&client), "client id {client} reused");
        seen.push(client);
        h.reply(client, &format!("ok {text}\n"));
        assert_eq!(read_reply(&mut s), format!("ok {text}\n"));
    }
    h.stop().unwrap();
}

#[test]
fn a_reply_in_many_chunks_arrives_whole() {
    let mut h = Harness::start(Some(config(10_000, 4)));
    let body: String = (0..200_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    for chunk in [1000, 7, MAX_REPLY_CHUNK] {
        let mut s = h.connect();
        send_request(&mut s, "show paths json");
        let (client, _, _) = h.request();
        if chunk == 7 {
            // Keep this one small: 7-byte chunks of 200 KB would be 28k messages.
            h.reply_chunked(client, &body[..700], chunk);
            assert_eq!(read_reply(&mut s), body[..700]);
        } else {
            h.reply_chunked(client, &body, chunk);
            assert_eq!(read_reply(&mut s), body);
        }
    }
    // Empty chunks and an empty last chunk are fine.
    let mut s = h.connect();
    send_request(&mut s, "show stats");
    let (client, _, _) = h.request();
    for (chunk, last) in [
        ("", false),
        ("x", false),
        ("", false),
        ("y\n", false),
        ("", true),
    ] {
        h.tell(ToListener::Reply {
            client,
            chunk: chunk.into(),
            last,
        });
    }
    assert_eq!(read_reply(&mut s), "xy\n");
    h.stop().unwrap();
}

#[test]
fn a_reply_over_16_mib_becomes_an_error() {
    let mut h = Harness::start(Some(config(30_000, 4)));
    let mut s = h.connect();
    send_request(&mut s, "show audit");
    let (client, _, _) = h.request();
    let chunk = "z".repeat(MAX_REPLY_CHUNK);
    let chunks = 16 * 1024 * 1024 / MAX_REPLY_CHUNK + 1;
    for i in 0..=chunks {
        h.tell(ToListener::Reply {
            client,
            chunk: chunk.clone(),
            last: i == chunks,
        });
    }
    assert_eq!(read_reply(&mut s), "error: reply too large\n");
    // The connection is still good for another request.
    send_request(&mut s, "show paths");
    let (again, _, _) = h.request();
    assert_eq!(again, client);
    h.reply(client, "fine\n");
    assert_eq!(read_reply(&mut s), "fine\n");
    h.stop().unwrap();
}

#[test]
fn several_requests_on_one_connection_even_pipelined() {
    let mut h = Harness::start(Some(config(10_000, 4)));
    let mut s = h.connect();
    let mut both = frame(b"show paths");
    both.extend(frame(b"show purges"));
    s.write_all(&both).unwrap();
    let (client, _, first) = h.request();
    assert_eq!(first, ControlCommand::ShowPaths { json: false });
    // The second request is not read, let alone forwarded, before the first is answered.
    assert_eq!(h.recv_within(Duration::from_millis(200)), None);
    h.reply(client, "one\n");
    let (client2, _, second) = h.request();
    assert_eq!(
        (client2, second),
        (client, ControlCommand::ShowPurges { json: false })
    );
    h.reply(client, "two\n");
    assert_eq!(read_reply(&mut s), "one\n");
    assert_eq!(read_reply(&mut s), "two\n");
    h.stop().unwrap();
}

#[test]
fn bad_frames_get_clean_errors() {
    let mut h = Harness::start(Some(config(10_000, 4)));

    // Fatal framing errors: answered, then the connection is closed.
    for (bytes, want) in [
        (
            0u32.to_le_bytes().to_vec(),
            "error: empty request (length 0)\n",
        ),
        (
            u32::MAX.to_le_bytes().to_vec(),
            "error: request length 4294967295 exceeds the 4096 byte limit\n",
        ),
        (
            frame(&[b'x'; 4097]),
            "error: request length 4097 exceeds the 4096 byte limit\n",
        ),
    ] {
        let mut s = h.connect();
        s.write_all(&bytes).unwrap();
        assert_eq!(replies(&read_to_close(&mut s)), [want]);
    }

    // Errors that keep the framing: answered, and the connection still serves.
    for (bytes, want) in [
        (frame(&[0xff, 0xfe, b'a']), "error: request is not UTF-8\n"),
        (
            frame(b"frobnicate"),
            "error: unknown command \"frobnicate\"\n",
        ),
        (
            frame(b"show audit 0"),
            "error: show audit: N must be a number from 1 to 100000\n",
        ),
        (frame(b"   "), "error: empty command\n"),
        (
            frame(b"purge path ../sda"),
            "error: purge path: \"../sda\" is not a device name (e.g. sdc or /dev/sdc)\n",
        ),
    ] {
        let mut s = h.connect();
        s.write_all(&bytes).unwrap();
        assert_eq!(read_reply(&mut s), want);
        send_request(&mut s, "show helpers");
        let (client, _, command) = h.request();
        assert_eq!(command, ControlCommand::ShowHelpers { json: false });
        h.reply(client, "ok\n");
        assert_eq!(read_reply(&mut s), "ok\n");
    }
    h.stop().unwrap();
}

#[test]
fn nothing_is_accepted_before_configure() {
    let mut h = Harness::start(None);
    let mut s = h.connect(); // lands in the backlog
    send_request(&mut s, "show paths");
    assert_eq!(h.recv_within(Duration::from_millis(300)), None);
    assert!(!readable_within(s.as_fd(), Duration::ZERO));
    h.tell(ToListener::Configure(config(10_000, 4)));
    let (client, _, command) = h.request();
    assert_eq!(command, ControlCommand::ShowPaths { json: false });
    h.reply(client, "late but fine\n");
    assert_eq!(read_reply(&mut s), "late but fine\n");
    h.stop().unwrap();
}

#[test]
fn supervisor_closing_the_channel_is_a_clean_stop() {
    let mut h = Harness::start(Some(config(10_000, 4)));
    let mut s = h.connect();
    send_request(&mut s, "show paths");
    let _ = h.request();
    // Drop our end of the channel: the supervisor is gone.
    let dead = std::mem::replace(&mut h.sup, mpsup_ipc::Channel::pair().unwrap().0);
    drop(dead);
    h.join().unwrap();
    // The waiting client is told and closed, not left hanging.
    assert_eq!(
        replies(&read_to_close(&mut s)),
        ["error: listener shutting down\n"]
    );
}

#[test]
fn reply_before_configure_is_a_protocol_error() {
    let mut h = Harness::start(None);
    h.tell(ToListener::Reply {
        client: 1,
        chunk: "x".into(),
        last: true,
    });
    assert!(matches!(h.join(), Err(ListenerError::Protocol(_))));
}

#[test]
fn a_garbled_channel_frame_is_an_error() {
    let mut h = Harness::start(Some(config(10_000, 4)));
    h.sup.send_raw(b"\xff\xffnot bincode", None).unwrap();
    assert!(matches!(h.join(), Err(ListenerError::Ipc(_))));
}

#[test]
fn replies_for_unknown_clients_are_dropped() {
    let mut h = Harness::start(Some(config(10_000, 4)));
    h.reply(12345, "nobody asked\n");
    let mut s = h.connect();
    send_request(&mut s, "show paths");
    let (client, _, _) = h.request();
    h.reply(client, "answer\n");
    assert_eq!(read_reply(&mut s), "answer\n");
    h.stop().unwrap();
}

#[test]
fn mpsup_ctl_client_round_trip() {
    let mut h = Harness::start(Some(config(10_000, 4)));
    let path = h.path.clone();
    let ctl = std::thread::spawn(move || {
        mpsup_listener::client::request(&path, "show audit 3 json", Duration::from_secs(10))
    });
    let (client, _, command) = h.request();
    assert_eq!(
        command,
        ControlCommand::ShowAudit {
            last: Some(3),
            json: true
        }
    );
    h.reply_chunked(client, "{\"audit\":[]}\n", 5);
    assert_eq!(ctl.join().unwrap().unwrap(), "{\"audit\":[]}\n");
    h.stop().unwrap();
}

#[test]
fn absurd_timeouts_from_the_supervisor_do_not_break_the_loop() {
    let mut h = Harness::start(Some(mpsup_ipc::ListenerConfig {
        request_timeout_ms: u64::MAX,
        admin_gid: 0,
        max_clients: 0,
    }));
    let mut s = h.connect();
    send_request(&mut s, "show paths");
    let (client, _, _) = h.request();
    h.reply(client, "ok\n");
    assert_eq!(read_reply(&mut s), "ok\n");
    h.stop().unwrap();
}
