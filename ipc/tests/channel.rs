//! The transport rules, exercised on real socketpairs with real fds.

use mpsup_ipc::*;
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::stat::fstat;
use std::os::fd::AsFd;

fn sample_identity() -> PathIdentity {
    PathIdentity {
        name: "sdc".into(),
        dev_t: DevT {
            major: 8,
            minor: 32,
        },
        hctl: "1:0:0:1".parse().unwrap(),
        vendor: "LIO-ORG".into(),
        model: "disk0".into(),
        wwid: Some("naa.6001405deadbeef".into()),
        map: None,
    }
}

fn disconnected_report() -> CheckerMsg {
    CheckerMsg::Path(PathReport {
        identity: sample_identity(),
        state: PathState::Disconnected,
        device_state: "running".into(),
        evidence: TurEvidence {
            scsi_status: 2,
            sense: vec![0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x25, 0],
            ..Default::default()
        },
        checked_at_ms: 1,
    })
}

#[test]
fn an_fd_arrives_as_the_same_open_file_and_close_on_exec() {
    let (a, mut b) = Channel::pair().unwrap();
    let file = tempfile::tempfile().unwrap();
    a.send(&disconnected_report(), Some(file.as_fd())).unwrap();
    let got = b.recv::<CheckerMsg>().unwrap();
    assert_eq!(got.msg, disconnected_report());
    let fd = got.fd.expect("fd attached");
    let (want, have) = (fstat(&file).unwrap(), fstat(&fd).unwrap());
    assert_eq!((want.st_dev, want.st_ino), (have.st_dev, have.st_ino));
    let flags = FdFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFD).unwrap());
    assert!(
        flags.contains(FdFlag::FD_CLOEXEC),
        "received fd must be close-on-exec"
    );
}

#[test]
fn messages_without_fds_round_trip() {
    let (a, mut b) = Channel::pair().unwrap();
    let msg = ToChecker::Configure(CheckerConfig {
        interval_ms: 5000,
        tur_timeout_ms: 30000,
        max_in_flight: 64,
    });
    a.send(&msg, None).unwrap();
    let got = b.recv::<ToChecker>().unwrap();
    assert_eq!(got.msg, msg);
    assert!(got.fd.is_none());
}

#[test]
fn sender_refuses_to_break_the_fd_rule() {
    let (a, _b) = Channel::pair().unwrap();
    let file = tempfile::tempfile().unwrap();
    assert_eq!(
        a.send(&ToChecker::Resync, Some(file.as_fd())),
        Err(IpcError::UnexpectedFd("ToChecker::Resync"))
    );
    assert_eq!(
        a.send(&disconnected_report(), None),
        Err(IpcError::MissingFd("CheckerMsg::Path"))
    );
}

#[test]
fn an_fd_on_a_message_that_carries_none_is_rejected_and_closed() {
    let (a, mut b) = Channel::pair().unwrap();
    let file = tempfile::tempfile().unwrap();
    let frame = codec::encode(&ToChecker::Resync).unwrap();
    a.send_raw(&frame, Some(file.as_fd())).unwrap();
    assert_eq!(
        b.recv::<ToChecker>().unwrap_err(),
        IpcError::UnexpectedFd("ToChecker::Resync")
    );
}

#[test]
fn a_message_that_needs_an_fd_without_one_is_rejected() {
    let (a, mut b) = Channel::pair().unwrap();
    a.send_raw(&codec::encode(&disconnected_report()).unwrap(), None)
        .unwrap();
    assert_eq!(
        b.recv::<CheckerMsg>().unwrap_err(),
        IpcError::MissingFd("CheckerMsg::Path")
    );
}

#[test]
fn more_than_one_fd_is_rejected() {
    let (a, mut b) = Channel::pair().unwrap();
    let (f1, f2) = (tempfile::tempfile().unwrap(), tempfile::tempfile().unwrap());
    let raw = [
        std::os::fd::AsRawFd::as_raw_fd(&f1),
        std::os::fd::AsRawFd::as_raw_fd(&f2),
    ];
    let frame = codec::encode(&disconnected_report()).unwrap();
    let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&raw)];
    nix::sys::socket::sendmsg::<()>(
        std::os::fd::AsRawFd::as_raw_fd(&a),
        &[std::io::IoSlice::new(&frame)],
        &cmsg,
        nix::sys::socket::MsgFlags::empty(),
        None,
    )
    .unwrap();
    assert_eq!(b.recv::<CheckerMsg>().unwrap_err(), IpcError::TooManyFds(2));
}

#[test]
fn an_oversized_datagram_is_truncated_and_rejected() {
    let (a, mut b) = Channel::pair().unwrap();
    // The sender's own encoder refuses this too; send_raw bypasses it to play a hostile peer.
    a.send_raw(&vec![0u8; MAX_FRAME + 100], None).unwrap();
    assert_eq!(
        b.recv::<ToChecker>().unwrap_err(),
        IpcError::Truncated { max: MAX_FRAME }
    );
    // The channel stays usable: the next frame is read from its own boundary.
    a.send(&ToChecker::Resync, None).unwrap();
    assert_eq!(b.recv::<ToChecker>().unwrap().msg, ToChecker::Resync);
}

#[test]
fn the_encoder_refuses_frames_over_the_limit() {
    let huge = ToListener::Reply {
        client: 1,
        chunk: "x".repeat(MAX_FRAME),
        last: true,
    };
    assert!(matches!(
        codec::encode(&huge),
        Err(IpcError::Oversized { .. })
    ));
}

#[test]
fn a_truncated_frame_is_undecodable() {
    let (a, mut b) = Channel::pair().unwrap();
    let frame = codec::encode(&disconnected_report()).unwrap();
    a.send_raw(&frame[..frame.len() / 2], None).unwrap();
    assert!(matches!(
        b.recv::<CheckerMsg>().unwrap_err(),
        IpcError::Decode(_)
    ));
}

#[test]
fn trailing_bytes_are_rejected() {
    let (a, mut b) = Channel::pair().unwrap();
    let mut frame = codec::encode(&ToChecker::Shutdown).unwrap();
    frame.extend_from_slice(b"junk");
    a.send_raw(&frame, None).unwrap();
    assert_eq!(
        b.recv::<ToChecker>().unwrap_err(),
        IpcError::TrailingBytes(4)
    );
}

#[test]
fn a_wrong_protocol_version_is_rejected() {
    let (a, mut b) = Channel::pair().unwrap();
    let mut frame = codec::encode(&ToChecker::Shutdown).unwrap();
    frame[0] = frame[0].wrapping_add(1); // varint u16 below 251 is one byte
    a.send_raw(&frame, None).unwrap();
    assert!(matches!(
        b.recv::<ToChecker>().unwrap_err(),
        IpcError::Version { .. }
    ));
}

#[test]
fn a_well_formed_message_with_hostile_contents_is_invalid() {
    let (a, mut b) = Channel::pair().unwrap();
    let msg = CheckerMsg::Gone {
        name: "../../etc/passwd".into(),
        dev_t: DevT { major: 8, minor: 0 },
    };
    a.send_raw(&codec::encode(&msg).unwrap(), None).unwrap();
    assert!(matches!(
        b.recv::<CheckerMsg>().unwrap_err(),
        IpcError::Invalid { .. }
    ));
}

#[test]
fn peer_close_is_reported_as_closed() {
    let (a, mut b) = Channel::pair().unwrap();
    drop(a);
    assert_eq!(b.recv::<ToChecker>().unwrap_err(), IpcError::Closed);
}

#[test]
fn nonblocking_receive_says_would_block() {
    let (_a, mut b) = Channel::pair().unwrap();
    b.set_nonblocking(true).unwrap();
    assert_eq!(b.recv::<ToChecker>().unwrap_err(), IpcError::WouldBlock);
}
