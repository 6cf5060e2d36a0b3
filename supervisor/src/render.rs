//! Replies to `show ...` commands, as text for people and JSON for tools. The JSON shapes are
//! the ones DESIGN.md fixes; text mimics multipathd's `show paths` columns.

use crate::helpers::{Helper, HelperState};
use crate::paths::PathTable;
use crate::purge::PurgeBook;
use mpsup_ipc::{PathState, Role};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn time_of_ms(ms: u64) -> Option<String> {
    (ms > 0).then(|| {
        humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
    })
}

fn time_of(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Left-aligned columns, two spaces apart.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s: String = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}  "))
            .collect();
        s.truncate(s.trim_end().len());
        s + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out += &line(row.clone());
    }
    out
}

fn state_detail(state: &PathState) -> String {
    match state {
        PathState::Down(reason) => format!("down({reason:?})"),
        other => other.word().to_string(),
    }
}

pub fn paths(t: &PathTable, interval: Duration, json_out: bool) -> String {
    if json_out {
        let paths: Vec<Value> = t
            .iter()
            .map(|e| {
                let (r, id) = (&e.report, &e.report.identity);
                json!({
                    "dev": id.name, "dev_t": id.dev_t.to_string(), "hctl": id.hctl.to_string(),
                    "vendor": id.vendor, "model": id.model, "wwid": id.wwid,
                    "map": id.map.as_ref().map(|m| &m.name), "state": r.state.word(),
                    "device_state": r.device_state, "last_check": time_of_ms(r.checked_at_ms),
                    "evidence": crate::purge::tur_json(&r.evidence),
                })
            })
            .collect();
        return json!({ "paths": paths }).to_string() + "\n";
    }
    let rows: Vec<Vec<String>> = t
        .iter()
        .map(|e| {
            let (r, id) = (&e.report, &e.report.identity);
            let next = if r.checked_at_ms == 0 {
                "pending".to_string()
            } else {
                time_of_ms(r.checked_at_ms + interval.as_millis() as u64).unwrap_or_default()
            };
            vec![
                id.hctl.to_string(),
                id.name.clone(),
                id.dev_t.to_string(),
                state_detail(&r.state),
                r.device_state.clone(),
                id.wwid.clone().unwrap_or_else(|| "-".into()),
                id.map.as_ref().map_or("-".into(), |m| m.name.clone()),
                next,
            ]
        })
        .collect();
    table(
        &[
            "hctl",
            "dev",
            "dev_t",
            "chk_st",
            "dev_st",
            "wwid",
            "map",
            "next_check",
        ],
        &rows,
    )
}

pub fn purges(book: &PurgeBook, json_out: bool) -> String {
    let mut rows = Vec::new();
    let mut items = Vec::new();
    for r in book.live() {
        let (dev, dev_t) = (r.identity.name.clone(), r.identity.dev_t.to_string());
        items.push(json!({
            "id": r.id, "dev": dev, "dev_t": dev_t, "state": r.stage.word(), "live": true,
            "manual": r.manual, "since": time_of(r.created), "cancel": r.cancel,
        }));
        rows.push(vec![
            r.id.to_string(),
            dev,
            dev_t,
            r.stage.word().into(),
            time_of(r.created),
            r.cancel.clone().unwrap_or_default(),
        ]);
    }
    for f in book.history() {
        items.push(json!({
            "id": f.id, "dev": f.dev, "dev_t": f.dev_t.to_string(), "state": f.state, "live": false,
            "since": time_of(f.at), "reason": f.reason,
        }));
        rows.push(vec![
            f.id.to_string(),
            f.dev.clone(),
            f.dev_t.to_string(),
            f.state.into(),
            time_of(f.at),
            f.reason.clone().unwrap_or_default(),
        ]);
    }
    if json_out {
        return json!({ "purges": items, "paused": book.paused() }).to_string() + "\n";
    }
    let mut out = match book.paused() {
        Some(why) => format!("purging PAUSED: {why}\n"),
        None => String::new(),
    };
    out += &table(&["id", "dev", "dev_t", "state", "since", "note"], &rows);
    out
}

pub fn helpers(list: &[Helper], json_out: bool) -> String {
    let describe = |h: &Helper| -> (Option<i32>, Value, String) {
        match &h.state {
            HelperState::Running {
                hello: Some(hello), ..
            } => {
                let s = &hello.sandbox;
                let text = format!(
                    "nnp={} seccomp={} landlock={} caps_dropped={}",
                    s.no_new_privs,
                    s.seccomp,
                    match s.landlock_abi {
                        Some(abi) if s.landlock_fully_enforced => format!("abi{abi}"),
                        Some(abi) => format!("abi{abi}(partial)"),
                        None => "none".into(),
                    },
                    s.capabilities_dropped
                );
                let v = json!({
                    "no_new_privs": s.no_new_privs, "seccomp": s.seccomp, "landlock_abi": s.landlock_abi,
                    "landlock_fully_enforced": s.landlock_fully_enforced, "capabilities_dropped": s.capabilities_dropped,
                });
                (h.pid().map(|p| p.as_raw()), v, text)
            }
            _ => (h.pid().map(|p| p.as_raw()), Value::Null, "-".into()),
        }
    };
    if json_out {
        let items: Vec<Value> = list
            .iter()
            .map(|h| {
                let (pid, sandbox, _) = describe(h);
                json!({ "role": h.role.as_str(), "pid": pid, "state": h.state_word(), "restarts": h.total_restarts, "sandbox": sandbox })
            })
            .collect();
        return json!({ "helpers": items }).to_string() + "\n";
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|h| {
            let (pid, _, sandbox) = describe(h);
            vec![
                h.role.to_string(),
                pid.map_or("-".into(), |p| p.to_string()),
                h.state_word().into(),
                h.total_restarts.to_string(),
                sandbox,
            ]
        })
        .collect();
    table(&["role", "pid", "state", "restarts", "sandbox"], &rows)
}

/// Counters the supervisor keeps for `show stats`.
#[derive(Default)]
pub struct Stats {
    /// Audit events written, by event word.
    pub audit_events: BTreeMap<String, u64>,
    pub protocol_violations: BTreeMap<Role, u64>,
    pub control_requests: u64,
}

pub fn stats(
    s: &Stats,
    t: &PathTable,
    book: &PurgeBook,
    list: &[Helper],
    json_out: bool,
) -> String {
    let mut by_state: BTreeMap<&str, u64> = BTreeMap::new();
    for e in t.iter() {
        *by_state.entry(e.report.state.word()).or_default() += 1;
    }
    if json_out {
        let restarts: BTreeMap<&str, u32> = list
            .iter()
            .map(|h| (h.role.as_str(), h.total_restarts))
            .collect();
        let violations: BTreeMap<&str, u64> = s
            .protocol_violations
            .iter()
            .map(|(r, n)| (r.as_str(), *n))
            .collect();
        return json!({ "stats": {
            "paths": t.len(), "paths_by_state": by_state, "purges_live": book.live().count(),
            "purging_paused": book.paused().is_some(), "audit_events": s.audit_events,
            "helper_restarts": restarts, "protocol_violations": violations, "control_requests": s.control_requests,
        }})
        .to_string()
            + "\n";
    }
    let mut out = String::new();
    out += "# HELP mpsup_paths Known SCSI paths by checker state.\n# TYPE mpsup_paths gauge\n";
    for state in [
        "unknown",
        "up",
        "down",
        "standby",
        "transitioning",
        "disconnected",
        "timeout",
        "unsupported",
        "offline",
    ] {
        out += &format!(
            "mpsup_paths{{state=\"{state}\"}} {}\n",
            by_state.get(state).copied().unwrap_or(0)
        );
    }
    out += "# HELP mpsup_purge_requests_live Purge requests not finished yet.\n# TYPE mpsup_purge_requests_live gauge\n";
    out += &format!("mpsup_purge_requests_live {}\n", book.live().count());
    out += "# HELP mpsup_purging_paused 1 while purging is paused.\n# TYPE mpsup_purging_paused gauge\n";
    out += &format!(
        "mpsup_purging_paused {}\n",
        u8::from(book.paused().is_some())
    );
    out += "# HELP mpsup_audit_events_total Audit records written, by event.\n# TYPE mpsup_audit_events_total counter\n";
    for (event, n) in &s.audit_events {
        out += &format!("mpsup_audit_events_total{{event=\"{event}\"}} {n}\n");
    }
    out += "# HELP mpsup_helper_restarts_total Helper restarts.\n# TYPE mpsup_helper_restarts_total counter\n";
    for h in list {
        out += &format!(
            "mpsup_helper_restarts_total{{role=\"{}\"}} {}\n",
            h.role, h.total_restarts
        );
    }
    out += "# HELP mpsup_protocol_violations_total Helpers killed for breaking the protocol.\n# TYPE mpsup_protocol_violations_total counter\n";
    for role in Role::ALL {
        out += &format!(
            "mpsup_protocol_violations_total{{role=\"{role}\"}} {}\n",
            s.protocol_violations.get(&role).copied().unwrap_or(0)
        );
    }
    out += "# HELP mpsup_control_requests_total Control requests served.\n# TYPE mpsup_control_requests_total counter\n";
    out += &format!("mpsup_control_requests_total {}\n", s.control_requests);
    out
}
