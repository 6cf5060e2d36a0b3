//! Policy files as users write them: the shipped example, and broken ones that must each give
//! one precise line.

use mpsup_policy::*;
use std::path::Path;
use std::time::Duration;

fn err(text: &str) -> String {
    parse(text, Path::new("p.toml")).unwrap_err().to_string()
}

#[test]
fn the_shipped_example_is_valid_and_equals_the_defaults_where_it_restates_them() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/policy.toml");
    let loaded = load(&path).unwrap();
    assert_eq!(loaded.policy.checker.interval, Duration::from_secs(5));
    assert_eq!(loaded.policy.purge.confirmations, 2);
    assert_eq!(loaded.policy.devices.len(), 1);
    assert_eq!(loaded.sha256.len(), 64);
}

#[test]
fn an_empty_file_is_the_defaults_and_warns_that_nothing_is_purged() {
    let loaded = parse("", Path::new("p.toml")).unwrap();
    assert_eq!(loaded.policy, Policy::default());
    assert!(loaded
        .warnings
        .iter()
        .any(|w| w.contains("no [[device]] rule")));
    assert!(!loaded.purge_allowed_for("LIO-ORG", "disk", Some("naa.1")));
}

#[test]
fn unknown_key_names_line_column_and_key() {
    assert_eq!(
        err("[purge]\ndelay = \"60s\"\nfrobnicate = 1\n"),
        "p.toml:3:1: purge.frobnicate: unknown field `frobnicate`, expected one of `enabled`, `dry_run`, `delay`, `confirmations`, `confirmation_interval`, `require_multipath`, `allow_last_path`, `max_per_minute`, `pause_fraction`, `pause_window`"
    );
}

#[test]
fn wrong_type_names_the_key() {
    let e = err("[checker]\nmax_in_flight = \"many\"\n");
    assert!(
        e.starts_with("p.toml:2:17: checker.max_in_flight: invalid type: string \"many\""),
        "{e}"
    );
}

#[test]
fn bad_duration_names_the_key() {
    let e = err("[checker]\ninterval = \"5 fortnights\"\n");
    assert!(e.starts_with("p.toml:2:12: checker.interval: "), "{e}");
    assert!(e.contains("unknown time unit"), "{e}");
}

#[test]
fn negative_number_names_the_key() {
    let e = err("[purge]\nmax_per_minute = -3\n");
    assert!(
        e.starts_with("p.toml:2:18: purge.max_per_minute: invalid value: integer `-3`"),
        "{e}"
    );
}

#[test]
fn range_errors_point_at_the_key_line() {
    assert_eq!(
        err("[purge]\n\npause_fraction = 1.5\n"),
        "p.toml:3:1: purge.pause_fraction: 1.5 is not in (0, 1]"
    );
    assert_eq!(
        err("[purge]\ndelay = \"0s\"\n"),
        "p.toml:2:1: purge.delay: 0s is out of range (1s to 7days)"
    );
    assert_eq!(
        err("[daemon]\nsocket_mode = \"0666\"\n"),
        "p.toml:2:1: daemon.socket_mode: a world-writable control socket lets anyone connect"
    );
}

#[test]
fn device_rules_are_checked_and_matched_first_wins() {
    let e = err("[[device]]\npurge = true\n[[device]]\nwwid = \"[\"\npurge = true\n");
    assert!(e.starts_with("p.toml:4:8: device[1].wwid: bad glob"), "{e}");
    let e = err("[[device]]\nvendor = \"X\"\n");
    assert!(e.contains("missing field `purge`"), "{e}");

    let p = parse(
        "[[device]]\nvendor = \"LIO-ORG\"\nwwid = \"naa.keep*\"\npurge = false\n[[device]]\nvendor = \"LIO-ORG\"\npurge = true\n",
        Path::new("p.toml"),
    )
    .unwrap();
    assert!(!p.purge_allowed_for("LIO-ORG ", "disk0", Some("naa.keep123")));
    assert!(p.purge_allowed_for("LIO-ORG", "disk0", Some("naa.other")));
    assert!(
        !p.purge_allowed_for("IBM", "2145", Some("naa.other")),
        "no rule matches: never purge"
    );
}

#[test]
fn a_group_that_does_not_exist_is_refused() {
    let e = err("[daemon]\nadmin_group = \"no-such-group-mpsup\"\n");
    assert_eq!(
        e,
        "p.toml:2:1: daemon.admin_group: no group named \"no-such-group-mpsup\" on this host"
    );
}

#[test]
fn a_missing_file_says_so() {
    let e = load(Path::new("/nonexistent/mpsup.toml"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "/nonexistent/mpsup.toml: cannot read policy: No such file or directory (os error 2)"
    );
}

#[test]
fn syntax_errors_have_a_position() {
    let e = err("[purge\n");
    assert!(e.starts_with("p.toml:1:"), "{e}");
}

#[test]
fn the_effective_policy_round_trips() {
    let p = parse(
        "[purge]\ndelay = \"90s\"\n[[device]]\nvendor = \"LIO*\"\npurge = true\n",
        Path::new("p.toml"),
    )
    .unwrap();
    let again = parse(&p.to_toml(), Path::new("q.toml")).unwrap();
    assert_eq!(again.policy, p.policy);
}
