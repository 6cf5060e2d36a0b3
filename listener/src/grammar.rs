//! The control command grammar: client text in, `ControlCommand` out. The supervisor never sees
//! text, so every rule about what a command may say lives here (DESIGN.md, Control socket
//! protocol). Words are case-sensitive and separated by any run of whitespace, like multipathd.

use mpsup_ipc::{valid_kernel_name, ControlCommand};
use std::fmt::Write as _;

/// Largest `N` in `show audit N`: enough for any realistic look-back, small enough that the
/// supervisor can bound the reply.
pub const MAX_AUDIT_LAST: u32 = 100_000;

/// The `show` subjects, in the order they are listed in error messages.
const SHOW_SUBJECTS: &str = "paths, purges, helpers, config, audit, stats";

/// Parses one request's text. The error is the reason alone; the server adds `error: `.
pub fn parse(text: &str) -> Result<ControlCommand, String> {
    let mut words = text.split_whitespace();
    let Some(first) = words.next() else {
        return Err("empty command".into());
    };
    let rest: Vec<&str> = words.collect();
    match first {
        "show" => parse_show(&rest),
        "purge" => match rest.as_slice() {
            ["path", dev] => parse_dev(dev).map(|dev| ControlCommand::PurgePath { dev }),
            ["path"] => Err("purge path: missing device name (e.g. purge path sdc)".into()),
            ["path", _, extra, ..] => Err(format!("purge path: unexpected {}", quote(extra))),
            [] => Err("purge: expected \"path <dev>\"".into()),
            [other, ..] => Err(format!(
                "purge: unknown object {} (expected \"path <dev>\")",
                quote(other)
            )),
        },
        "cancel" => match rest.as_slice() {
            ["purge", id] => parse_id(id).map(|id| ControlCommand::CancelPurge { id }),
            ["purge"] => Err("cancel purge: missing purge id".into()),
            ["purge", _, extra, ..] => Err(format!("cancel purge: unexpected {}", quote(extra))),
            [] => Err("cancel: expected \"purge <id>\"".into()),
            [other, ..] => Err(format!(
                "cancel: unknown object {} (expected \"purge <id>\")",
                quote(other)
            )),
        },
        "pause" => no_args("pause", &rest).map(|()| ControlCommand::Pause),
        "resume" => no_args("resume", &rest).map(|()| ControlCommand::Resume),
        "reconfigure" => no_args("reconfigure", &rest).map(|()| ControlCommand::Reconfigure),
        other => Err(format!("unknown command {}", quote(other))),
    }
}

fn parse_show(rest: &[&str]) -> Result<ControlCommand, String> {
    let Some((&subject, args)) = rest.split_first() else {
        return Err(format!("show: expected one of {SHOW_SUBJECTS}"));
    };
    let simple: fn(bool) -> ControlCommand = match subject {
        "paths" => |json| ControlCommand::ShowPaths { json },
        "purges" => |json| ControlCommand::ShowPurges { json },
        "helpers" => |json| ControlCommand::ShowHelpers { json },
        "config" => |json| ControlCommand::ShowConfig { json },
        "stats" => |json| ControlCommand::ShowStats { json },
        "audit" => return parse_show_audit(args),
        other => {
            return Err(format!(
                "show: unknown subject {} (expected one of {SHOW_SUBJECTS})",
                quote(other)
            ))
        }
    };
    match args {
        [] => Ok(simple(false)),
        ["json"] => Ok(simple(true)),
        [_, extra, ..] if args[0] == "json" => {
            Err(format!("show {subject}: unexpected {}", quote(extra)))
        }
        [other, ..] => Err(format!(
            "show {subject}: unexpected {} (only \"json\" may follow)",
            quote(other)
        )),
    }
}

/// `show audit [N] [json]`, in that order.
fn parse_show_audit(args: &[&str]) -> Result<ControlCommand, String> {
    let (last, args) = match args.split_first() {
        Some((&"json", _)) | None => (None, args),
        Some((n, tail)) => (Some(parse_audit_count(n)?), tail),
    };
    match args {
        [] => Ok(ControlCommand::ShowAudit { last, json: false }),
        ["json"] => Ok(ControlCommand::ShowAudit { last, json: true }),
        ["json", extra, ..] | [extra, ..] => Err(format!(
            "show audit: unexpected {} (usage: show audit [N] [json])",
            quote(extra)
        )),
    }
}

fn parse_audit_count(word: &str) -> Result<u32, String> {
    let bad = || format!("show audit: N must be a number from 1 to {MAX_AUDIT_LAST}");
    let n = parse_decimal(word).ok_or_else(bad)?;
    match u32::try_from(n) {
        Ok(n) if (1..=MAX_AUDIT_LAST).contains(&n) => Ok(n),
        _ => Err(bad()),
    }
}

/// `sdc` or `/dev/sdc`: the supervisor gets the kernel name, which ipc validates again.
fn parse_dev(word: &str) -> Result<String, String> {
    let name = word.strip_prefix("/dev/").unwrap_or(word);
    if valid_kernel_name(name) {
        Ok(name.to_string())
    } else {
        Err(format!(
            "purge path: {} is not a device name (e.g. sdc or /dev/sdc)",
            quote(word)
        ))
    }
}

fn parse_id(word: &str) -> Result<u64, String> {
    parse_decimal(word).ok_or_else(|| {
        format!(
            "cancel purge: {} is not a purge id (a number from 0 to {})",
            quote(word),
            u64::MAX
        )
    })
}

/// Plain ASCII decimal digits only: no sign, no `0x`, no `_`, as `u64::from_str` would take `+5`.
fn parse_decimal(word: &str) -> Option<u64> {
    if word.is_empty() || !word.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    word.parse().ok()
}

fn no_args(command: &str, rest: &[&str]) -> Result<(), String> {
    match rest.first() {
        None => Ok(()),
        Some(extra) => Err(format!(
            "{command}: takes no arguments, got {}",
            quote(extra)
        )),
    }
}

/// Quotes client text for an error message: escaped (no control characters reach the user's
/// terminal) and cut short (a 4 KiB word is not worth echoing).
fn quote(word: &str) -> String {
    const MAX: usize = 64;
    let mut cut = word;
    if word.len() > MAX {
        let mut end = MAX;
        while !word.is_char_boundary(end) {
            end -= 1;
        }
        cut = &word[..end];
    }
    let mut out = format!("{cut:?}");
    if cut.len() < word.len() {
        out.pop();
        let _ = write!(out, "...\"");
    }
    out
}

/// Whether a command changes anything, and so needs uid 0 or the admin group.
pub fn needs_admin(command: &ControlCommand) -> bool {
    match command {
        ControlCommand::ShowPaths { .. }
        | ControlCommand::ShowPurges { .. }
        | ControlCommand::ShowHelpers { .. }
        | ControlCommand::ShowConfig { .. }
        | ControlCommand::ShowAudit { .. }
        | ControlCommand::ShowStats { .. } => false,
        ControlCommand::PurgePath { .. }
        | ControlCommand::CancelPurge { .. }
        | ControlCommand::Pause
        | ControlCommand::Resume
        | ControlCommand::Reconfigure => true,
    }
}

/// The command's words without arguments, for messages such as "permission denied".
pub fn name(command: &ControlCommand) -> &'static str {
    match command {
        ControlCommand::ShowPaths { .. } => "show paths",
        ControlCommand::ShowPurges { .. } => "show purges",
        ControlCommand::ShowHelpers { .. } => "show helpers",
        ControlCommand::ShowConfig { .. } => "show config",
        ControlCommand::ShowAudit { .. } => "show audit",
        ControlCommand::ShowStats { .. } => "show stats",
        ControlCommand::PurgePath { .. } => "purge path",
        ControlCommand::CancelPurge { .. } => "cancel purge",
        ControlCommand::Pause => "pause",
        ControlCommand::Resume => "resume",
        ControlCommand::Reconfigure => "reconfigure",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ControlCommand::*;

    fn ok(text: &str) -> ControlCommand {
        match parse(text) {
            Ok(c) => c,
            Err(e) => panic!("{text:?} should parse, got error {e:?}"),
        }
    }

    fn err(text: &str) -> String {
        match parse(text) {
            Ok(c) => panic!("{text:?} should fail, parsed as {c:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn show_subjects_with_and_without_json() {
        type Make = fn(bool) -> ControlCommand;
        let cases: [(&str, Make); 5] = [
            ("paths", |json| ShowPaths { json }),
            ("purges", |json| ShowPurges { json }),
            ("helpers", |json| ShowHelpers { json }),
            ("config", |json| ShowConfig { json }),
            ("stats", |json| ShowStats { json }),
        ];
        for (word, make) in cases {
            assert_eq!(ok(&format!("show {word}")), make(false));
            assert_eq!(ok(&format!("show {word} json")), make(true));
            assert_eq!(ok(&format!("  show\t{word}\n json \r\n")), make(true));
            assert!(err(&format!("show {word} xml")).contains("unexpected \"xml\""));
            assert!(err(&format!("show {word} json json")).contains("unexpected \"json\""));
        }
    }

    #[test]
    fn show_audit_forms() {
        assert_eq!(
            ok("show audit"),
            ShowAudit {
                last: None,
                json: false
            }
        );
        assert_eq!(
            ok("show audit json"),
            ShowAudit {
                last: None,
                json: true
            }
        );
        assert_eq!(
            ok("show audit 10"),
            ShowAudit {
                last: Some(10),
                json: false
            }
        );
        assert_eq!(
            ok("show audit 1 json"),
            ShowAudit {
                last: Some(1),
                json: true
            }
        );
        assert_eq!(
            ok("show audit 100000"),
            ShowAudit {
                last: Some(100_000),
                json: false
            }
        );
        let range = "show audit: N must be a number from 1 to 100000";
        for bad in [
            "0",
            "100001",
            "-1",
            "+5",
            "1e3",
            "ten",
            "0x10",
            "99999999999999999999999",
        ] {
            assert_eq!(err(&format!("show audit {bad}")), range, "{bad}");
        }
        assert!(err("show audit json 10").contains("unexpected \"10\""));
        assert!(err("show audit 5 6").contains("unexpected \"6\""));
        assert!(err("show audit 5 json x").contains("unexpected \"x\""));
    }

    #[test]
    fn purge_path() {
        assert_eq!(ok("purge path sdc"), PurgePath { dev: "sdc".into() });
        assert_eq!(ok("purge path /dev/sdc"), PurgePath { dev: "sdc".into() });
        assert_eq!(
            ok(" purge  path   nvme0n1 "),
            PurgePath {
                dev: "nvme0n1".into()
            }
        );
        assert!(err("purge path").contains("missing device name"));
        assert!(err("purge").contains("expected \"path <dev>\""));
        assert!(err("purge disk sdc").contains("unknown object \"disk\""));
        assert!(err("purge path sdc sdd").contains("unexpected \"sdd\""));
        for bad in [
            "/dev/",
            "..",
            ".",
            "/dev/../sda",
            "sd/c",
            "/sys/block/sdc",
            "sd\u{1b}c",
        ] {
            assert!(
                err(&format!("purge path {bad}")).contains("is not a device name"),
                "{bad:?}"
            );
        }
        assert!(err(&format!("purge path {}", "a".repeat(65))).contains("not a device name"));
    }

    #[test]
    fn cancel_purge() {
        assert_eq!(ok("cancel purge 7"), CancelPurge { id: 7 });
        assert_eq!(ok("cancel purge 0"), CancelPurge { id: 0 });
        assert_eq!(
            ok("cancel purge 18446744073709551615"),
            CancelPurge { id: u64::MAX }
        );
        for bad in ["18446744073709551616", "-1", "+1", "x", "1.5"] {
            assert!(
                err(&format!("cancel purge {bad}")).contains("is not a purge id"),
                "{bad}"
            );
        }
        assert!(err("cancel purge").contains("missing purge id"));
        assert!(err("cancel").contains("expected \"purge <id>\""));
        assert!(err("cancel path 3").contains("unknown object \"path\""));
        assert!(err("cancel purge 3 4").contains("unexpected \"4\""));
    }

    #[test]
    fn bare_commands() {
        assert_eq!(ok("pause"), Pause);
        assert_eq!(ok("resume\n"), Resume);
        assert_eq!(ok("\treconfigure"), Reconfigure);
        assert_eq!(err("pause now"), "pause: takes no arguments, got \"now\"");
        assert!(err("resume 1").contains("takes no arguments"));
        assert!(err("reconfigure x").contains("takes no arguments"));
    }

    #[test]
    fn unknown_empty_and_case() {
        assert_eq!(err("frobnicate"), "unknown command \"frobnicate\"");
        assert_eq!(err(""), "empty command");
        assert_eq!(err(" \t\n "), "empty command");
        assert_eq!(err("Show paths"), "unknown command \"Show\"");
        assert!(err("show Paths").contains("unknown subject \"Paths\""));
        assert!(err("show").contains("expected one of paths"));
        assert!(err("PAUSE").contains("unknown command"));
    }

    #[test]
    fn quoting_escapes_and_truncates() {
        assert_eq!(err("\u{1b}[2J"), "unknown command \"\\u{1b}[2J\"");
        let long = "é".repeat(100);
        let e = err(&long);
        assert!(e.ends_with("...\""), "{e}");
        assert!(e.len() < 100, "{e}");
    }

    #[test]
    fn admin_commands() {
        for c in [
            PurgePath { dev: "sdc".into() },
            CancelPurge { id: 1 },
            Pause,
            Resume,
            Reconfigure,
        ] {
            assert!(needs_admin(&c), "{c:?}");
        }
        for c in [
            ShowPaths { json: false },
            ShowPurges { json: true },
            ShowHelpers { json: false },
            ShowConfig { json: false },
            ShowAudit {
                last: Some(3),
                json: false,
            },
            ShowStats { json: true },
        ] {
            assert!(!needs_admin(&c), "{c:?}");
        }
    }

    #[test]
    fn names_parse_back() {
        for text in ["show paths", "show audit", "pause", "resume", "reconfigure"] {
            assert_eq!(name(&ok(text)), text);
        }
        assert_eq!(name(&ok("purge path sdc")), "purge path");
        assert_eq!(name(&ok("cancel purge 1")), "cancel purge");
    }
}
