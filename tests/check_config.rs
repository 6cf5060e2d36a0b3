//! `mpsup check-config` and `mpsup --config` on broken policies: one precise line, exit 2,
//! nothing started.

mod common;

use common::BIN;
use std::process::Command;

fn check(policy: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, policy).unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr)
        .unwrap()
        .replace(&path.display().to_string(), "FILE");
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        stderr,
    )
}

fn one_line_error(policy: &str, want: &str) {
    let (code, stdout, stderr) = check(policy);
    assert_eq!(code, 2, "{stderr}");
    assert!(stdout.is_empty());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(want),
        "got {stderr:?}, want prefix {want:?}"
    );
}

#[test]
fn unknown_key() {
    one_line_error(
        "[checker]\ninterval = \"5s\"\nintervall = \"5s\"\n",
        "FILE:3:1: checker.intervall: unknown field `intervall`",
    );
}

#[test]
fn wrong_type() {
    one_line_error(
        "[purge]\nenabled = \"yes\"\n",
        "FILE:2:11: purge.enabled: invalid type: string \"yes\", expected a boolean",
    );
}

#[test]
fn bad_duration() {
    one_line_error(
        "[purge]\ndelay = \"1 minute and a bit\"\n",
        "FILE:2:9: purge.delay: bad duration",
    );
}

#[test]
fn negative_number() {
    one_line_error(
        "[checker]\nmax_in_flight = -64\n",
        "FILE:2:17: checker.max_in_flight: invalid value: integer `-64`",
    );
}

#[test]
fn missing_file() {
    let out = Command::new(BIN)
        .args(["check-config", "/nonexistent/policy.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "/nonexistent/policy.toml: cannot read policy: No such file or directory (os error 2)\n"
    );
}

#[test]
fn a_valid_policy_prints_the_effective_policy() {
    let (code, stdout, _) =
        check("[purge]\ndelay = \"2m\"\n[[device]]\nvendor = \"LIO-ORG\"\npurge = true\n");
    assert_eq!(code, 0);
    assert!(stdout.contains("delay = \"2m\""), "{stdout}");
    assert!(
        stdout.contains("interval = \"5s\""),
        "defaults are filled in: {stdout}"
    );
}

#[test]
fn the_daemon_refuses_a_broken_policy_before_forking_anything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(
        &path,
        format!(
            "[daemon]\nsocket = \"{}/s\"\n[purge]\npause_fraction = 2.0\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr,
        format!(
            "{}:4:1: purge.pause_fraction: 2 is not in (0, 1]\n",
            path.display()
        )
    );
    assert!(
        !dir.path().join("s").exists(),
        "nothing may be bound or started"
    );
}
