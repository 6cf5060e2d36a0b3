//! Every control command through the real daemon and the real `mpsup ctl`.

mod common;

use common::*;
use nix::sys::signal::Signal;
use std::process::Command;

fn ctl(d: &Daemon, words: &str) -> (i32, String) {
    let out = Command::new(BIN)
        .arg("ctl")
        .arg("--socket")
        .arg(d.dir.path().join("mpsup.sock"))
        .args(words.split_whitespace())
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap() + &String::from_utf8(out.stderr).unwrap();
    (out.status.code().unwrap(), text)
}

fn json(d: &Daemon, words: &str) -> serde_json::Value {
    let (code, text) = ctl(d, words);
    assert_eq!(code, 0, "{words}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{words}: not JSON ({e}): {text}"))
}

#[test]
fn every_command_answers_and_changes_are_audited() {
    let mut d = Daemon::start("");
    d.wait_ready();

    let helpers = json(&d, "show helpers json");
    let list = helpers["helpers"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    for h in list {
        assert_eq!(h["state"], "running", "{h}");
        assert!(h["pid"].as_i64().unwrap() > 1);
        assert_eq!(h["restarts"], 0);
    }
    assert!(json(&d, "show paths json")["paths"].is_array());
    assert!(json(&d, "show purges json")["purges"].is_array());
    assert_eq!(
        json(&d, "show config json")["policy"]["checker"]["interval"],
        "5s"
    );
    assert!(json(&d, "show stats json")["stats"]["paths"].is_number());

    let (code, text) = ctl(&d, "show stats");
    assert_eq!(code, 0);
    assert!(
        text.contains("# TYPE mpsup_paths gauge") && text.contains("mpsup_purging_paused 0"),
        "{text}"
    );
    let (code, text) = ctl(&d, "show helpers");
    assert_eq!(code, 0);
    assert!(
        text.starts_with("role") && text.contains("checker") && text.contains("running"),
        "{text}"
    );

    assert_eq!(ctl(&d, "pause"), (0, "purging paused\n".into()));
    assert_eq!(ctl(&d, "pause"), (0, "purging was already paused\n".into()));
    let (_, purges) = ctl(&d, "show purges");
    assert!(
        purges.starts_with("purging PAUSED: paused by uid 0"),
        "{purges}"
    );
    assert_eq!(ctl(&d, "resume"), (0, "purging resumed\n".into()));
    assert_eq!(ctl(&d, "reconfigure"), (0, "policy unchanged\n".into()));

    let (code, text) = ctl(&d, "cancel purge 99");
    assert_eq!(
        (code, text.as_str()),
        (1, "error: no live purge request 99\n")
    );
    let (code, text) = ctl(&d, "purge path sdzz");
    assert_eq!(
        (code, text.as_str()),
        (1, "error: no known SCSI path named sdzz\n")
    );
    let (code, text) = ctl(&d, "frobnicate");
    assert_eq!(code, 1);
    assert!(text.starts_with("error: unknown command"), "{text}");

    let audit = json(&d, "show audit 10 json");
    let events: Vec<&str> = audit["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["paused", "resumed"]);

    d.signal(Signal::SIGTERM);
    assert_eq!(d.wait_exit(), 0);
    let verify = Command::new(BIN)
        .args(["audit", "verify"])
        .arg(d.dir.path().join("audit.jsonl"))
        .arg("--head")
        .arg(d.dir.path().join("state/audit.head"))
        .output()
        .unwrap();
    assert_eq!(
        verify.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(String::from_utf8_lossy(&verify.stdout).contains("ok: 2 records"));
}

#[test]
fn ctl_without_a_daemon_exits_2_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("ctl")
        .arg("--socket")
        .arg(dir.path().join("none.sock"))
        .args(["show", "paths"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("mpsup ctl: cannot connect to"));
}

#[test]
fn a_valid_reconfigure_takes_effect_without_restarting_helpers() {
    let mut d = Daemon::start("");
    let before = d.wait_ready();
    let policy = d.dir.path().join("policy.toml");
    let text = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(&policy, format!("{text}\n[checker]\ninterval = \"2s\"\n")).unwrap();
    let (code, reply) = ctl(&d, "reconfigure");
    assert_eq!(code, 0, "{reply}");
    assert!(reply.starts_with("new policy in force"), "{reply}");
    assert_eq!(
        json(&d, "show config json")["policy"]["checker"]["interval"],
        "2s"
    );
    let after: Vec<(String, i32)> = {
        let h = json(&d, "show helpers json");
        let mut v: Vec<(String, i32)> = h["helpers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h["role"].as_str().unwrap().to_string(),
                    h["pid"].as_i64().unwrap() as i32,
                )
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(after, before, "no helper was restarted");
    std::fs::write(&policy, "[checker]\ninterval = 5\n").unwrap();
    let (code, reply) = ctl(&d, "reconfigure");
    assert_eq!(code, 1);
    assert!(reply.contains("checker.interval: invalid type"), "{reply}");
    assert_eq!(
        json(&d, "show config json")["policy"]["checker"]["interval"],
        "2s",
        "the old policy stays"
    );
    let audit = json(&d, "show audit json");
    assert_eq!(audit["audit"][0]["event"], "policy-change");
    d.signal(Signal::SIGTERM);
    assert_eq!(d.wait_exit(), 0);
}
