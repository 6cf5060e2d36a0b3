//! The audit log: append-only JSON Lines, mode 0600, one record per event, each carrying the
//! SHA-256 of the previous line, so an edited, removed or reordered line breaks the chain.
//! Records are fsynced before `append` returns: the `intent` before any deletion, the outcome
//! right after it.
//!
//! Tail truncation cannot be seen from the chain alone, so after each append the supervisor
//! also writes `audit.head` in the state directory (last seq and line hash, written to a temp
//! file and renamed). `verify` takes it as an optional anchor; at start, a log shorter than its
//! head is refused loudly rather than silently continued.
//!
//! A crash can leave a torn last line (no newline): it was never fsynced to completion, so no
//! decision was taken on it. Opening the log cuts it off and records a `recovered` event that
//! says how many bytes were dropped.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One line of the audit log: the event between its sequence/time and its hashes. Field order
/// is the on-disk order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    pub time: String,
    #[serde(flatten)]
    pub body: Event,
    pub policy_sha256: String,
    pub prev_sha256: String,
}

/// What the caller fills in; the log adds seq, time, policy hash and chain.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub event: Cow<'static, str>,
    /// Purge request id, unique across restarts.
    pub id: Option<u64>,
    pub dev: Option<String>,
    pub dev_t: Option<String>,
    pub hctl: Option<String>,
    pub wwid: Option<String>,
    pub map: Option<String>,
    pub reason: Option<String>,
    pub evidence: serde_json::Value,
}

pub struct AuditLog {
    file: File,
    path: PathBuf,
    head_path: PathBuf,
    seq: u64,
    prev: String,
    max_id: u64,
}

/// What opening an existing log found.
#[derive(Debug, Default)]
pub struct Recovered {
    /// `intent` records with no outcome record for the same request id.
    pub open_intents: Vec<Record>,
    /// Bytes of a torn last line that were cut off.
    pub torn_bytes: u64,
}

fn sha256_hex(line: &[u8]) -> String {
    mpsup_policy::hex(&Sha256::digest(line))
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// Events that close a request's intent.
pub fn is_outcome(event: &str) -> bool {
    matches!(
        event,
        "deleted" | "would-delete" | "failed" | "refused" | "cancelled" | "vanished"
    )
}

impl AuditLog {
    /// Opens (creating, 0600) the log, checks its chain against the head file, cuts a torn last
    /// line, and returns the intents still waiting for an outcome.
    pub fn open(path: &Path, state_dir: &Path) -> Result<(AuditLog, Recovered), String> {
        let shown = path.display();
        for dir in [path.parent(), Some(state_dir)].into_iter().flatten() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| format!("cannot open audit log {shown}: {e}"))?;
        let mut recovered = Recovered::default();
        let scan = scan(&mut file).map_err(|e| format!("audit log {shown}: {e}"))?;
        if let Some(problem) = scan.broken {
            return Err(format!(
                "audit log {shown} is damaged at line {}: {}; refusing to append to it",
                problem.0, problem.1
            ));
        }
        if scan.torn_bytes > 0 {
            file.set_len(scan.valid_len)
                .map_err(|e| format!("cannot cut torn line of {shown}: {e}"))?;
            recovered.torn_bytes = scan.torn_bytes;
        }
        let head_path = state_dir.join("audit.head");
        if let Some(head_seq) = read_head(&head_path)? {
            if head_seq > scan.seq {
                return Err(format!(
                    "audit log {shown} ends at seq {} but {} says seq {} was written: the log was truncated",
                    scan.seq,
                    head_path.display(),
                    head_seq
                ));
            }
        }
        recovered.open_intents = scan.open_intents;
        let mut log = AuditLog {
            file,
            path: path.to_path_buf(),
            head_path,
            seq: scan.seq,
            prev: scan.prev,
            max_id: scan.max_id,
        };
        if recovered.torn_bytes > 0 {
            let reason = format!(
                "cut {} bytes of a torn last line left by a crash",
                recovered.torn_bytes
            );
            log.append(
                Event {
                    event: "recovered".into(),
                    reason: Some(reason),
                    ..Event::default()
                },
                "",
            )?;
        }
        Ok((log, recovered))
    }

    /// The highest request id ever recorded; new ids continue above it.
    pub fn max_id(&self) -> u64 {
        self.max_id
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record and makes it durable (fdatasync) before returning it.
    pub fn append(&mut self, ev: Event, policy_sha256: &str) -> Result<Record, String> {
        let record = Record {
            seq: self.seq + 1,
            time: now_rfc3339(),
            body: ev,
            policy_sha256: policy_sha256.to_string(),
            prev_sha256: self.prev.clone(),
        };
        let mut line =
            serde_json::to_vec(&record).map_err(|e| format!("cannot encode audit record: {e}"))?;
        let hash = sha256_hex(&line);
        line.push(b'\n');
        // One write on an O_APPEND file: the line lands whole at the end or the call fails.
        self.file
            .write_all(&line)
            .map_err(|e| format!("cannot write audit log {}: {e}", self.path.display()))?;
        self.file
            .sync_data()
            .map_err(|e| format!("cannot fsync audit log {}: {e}", self.path.display()))?;
        self.seq = record.seq;
        self.prev = hash;
        self.max_id = self.max_id.max(record.body.id.unwrap_or(0));
        self.write_head()?;
        Ok(record)
    }

    fn write_head(&self) -> Result<(), String> {
        let text = format!("{} {}\n", self.seq, self.prev);
        let tmp = self.head_path.with_extension("head.tmp");
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_data()?;
            std::fs::rename(&tmp, &self.head_path)
        })();
        result.map_err(|e| format!("cannot write {}: {e}", self.head_path.display()))
    }

    /// The last `n` lines, oldest first (for `show audit`).
    pub fn tail(&self, n: usize) -> Result<Vec<String>, String> {
        let mut f = File::open(&self.path).map_err(|e| e.to_string())?;
        let len = f.seek(SeekFrom::End(0)).map_err(|e| e.to_string())?;
        // Records are small; read backwards in blocks until we have n lines.
        let mut buf = Vec::new();
        let mut pos = len;
        while pos > 0 && buf.iter().filter(|b| **b == b'\n').count() <= n {
            let step = pos.min(64 * 1024);
            pos -= step;
            let mut block = vec![0u8; step as usize];
            f.seek(SeekFrom::Start(pos)).map_err(|e| e.to_string())?;
            f.read_exact(&mut block).map_err(|e| e.to_string())?;
            block.extend_from_slice(&buf);
            buf = block;
        }
        let text = String::from_utf8_lossy(&buf);
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        Ok(lines[lines.len().saturating_sub(n)..].to_vec())
    }
}

/// The sequence number recorded in the head file, if there is one.
fn read_head(path: &Path) -> Result<Option<u64>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => match text.split_whitespace().next().and_then(|s| s.parse().ok()) {
            Some(seq) => Ok(Some(seq)),
            None => Err(format!(
                "{} is not an audit head (\"SEQ SHA256\")",
                path.display()
            )),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

struct Scan {
    seq: u64,
    prev: String,
    max_id: u64,
    valid_len: u64,
    torn_bytes: u64,
    open_intents: Vec<Record>,
    /// First broken line (1-based) and why.
    broken: Option<(u64, String)>,
}

/// Reads the whole log, checking every line's chain link and sequence number.
fn scan(reader: &mut File) -> std::io::Result<Scan> {
    reader.seek(SeekFrom::Start(0))?;
    let mut s = Scan {
        seq: 0,
        prev: GENESIS.into(),
        max_id: 0,
        valid_len: 0,
        torn_bytes: 0,
        open_intents: Vec::new(),
        broken: None,
    };
    let mut r = BufReader::new(reader);
    let mut line = Vec::new();
    let mut lineno = 0u64;
    loop {
        line.clear();
        let n = r.read_until(b'\n', &mut line)? as u64;
        if n == 0 {
            break;
        }
        lineno += 1;
        if line.last() != Some(&b'\n') {
            s.torn_bytes = n;
            break;
        }
        line.pop();
        if let Err(why) = check_line(&line, &mut s) {
            s.broken = Some((lineno, why));
            break;
        }
        s.valid_len += n;
    }
    Ok(s)
}

fn check_line(line: &[u8], s: &mut Scan) -> Result<(), String> {
    let rec: Record =
        serde_json::from_slice(line).map_err(|e| format!("not an audit record: {e}"))?;
    if rec.prev_sha256 != s.prev {
        return Err(format!(
            "prev_sha256 does not match the previous line (seq {}): the log was edited",
            s.seq
        ));
    }
    if rec.seq != s.seq + 1 {
        return Err(format!("seq {} follows seq {}", rec.seq, s.seq));
    }
    s.seq = rec.seq;
    s.prev = sha256_hex(line);
    s.max_id = s.max_id.max(rec.body.id.unwrap_or(0));
    if rec.body.event == "intent" {
        s.open_intents.push(rec);
    } else if is_outcome(&rec.body.event) {
        s.open_intents.retain(|i| i.body.id != rec.body.id);
    }
    Ok(())
}

/// `mpsup audit verify`: checks the whole chain (and the head anchor if given). Ok is a summary
/// line; Err names the first broken line.
pub fn verify(path: &Path, head: Option<&Path>) -> Result<String, String> {
    let shown = path.display();
    let mut f = File::open(path).map_err(|e| format!("{shown}: {e}"))?;
    let s = scan(&mut f).map_err(|e| format!("{shown}: {e}"))?;
    if let Some((line, why)) = s.broken {
        return Err(format!("{shown}:{line}: {why}"));
    }
    if s.torn_bytes > 0 {
        return Err(format!(
            "{shown}:{}: torn last line ({} bytes without a newline)",
            s.seq + 1,
            s.torn_bytes
        ));
    }
    if let Some(head_path) = head {
        let text = std::fs::read_to_string(head_path)
            .map_err(|e| format!("{}: {e}", head_path.display()))?;
        let mut it = text.split_whitespace();
        let (seq, sha) = (it.next().and_then(|x| x.parse::<u64>().ok()), it.next());
        match (seq, sha) {
            (Some(seq), Some(sha)) if seq == s.seq && sha == s.prev => {}
            (Some(seq), _) if seq > s.seq => {
                return Err(format!(
                    "{shown}:{}: log ends at seq {} but the head says {seq}: truncated",
                    s.seq + 1,
                    s.seq
                ))
            }
            _ => {
                return Err(format!(
                    "{shown}: head {} does not match the log's last line",
                    head_path.display()
                ))
            }
        }
    }
    Ok(format!(
        "{shown}: ok: {} records, chain intact, last sha256 {}",
        s.seq, s.prev
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: &'static str, id: u64) -> Event {
        Event {
            event: event.into(),
            id: Some(id),
            dev: Some("sdc".into()),
            ..Event::default()
        }
    }

    #[test]
    fn a_chain_verifies_and_reopens_with_open_intents() {
        let dir = tempfile::tempdir().unwrap();
        let (log_path, state) = (dir.path().join("audit.jsonl"), dir.path().join("state"));
        let (mut log, rec) = AuditLog::open(&log_path, &state).unwrap();
        assert!(rec.open_intents.is_empty());
        log.append(ev("intent", 1), "p").unwrap();
        log.append(ev("deleted", 1), "p").unwrap();
        log.append(ev("intent", 2), "p").unwrap();
        drop(log);
        assert!(verify(&log_path, Some(&state.join("audit.head")))
            .unwrap()
            .contains("ok: 3 records"));
        let mode = std::fs::metadata(&log_path).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        let (log, rec) = AuditLog::open(&log_path, &state).unwrap();
        assert_eq!(rec.open_intents.len(), 1);
        assert_eq!(rec.open_intents[0].body.id, Some(2));
        assert_eq!(log.max_id(), 2);
    }

    #[test]
    fn edits_and_truncation_are_named_by_line() {
        let dir = tempfile::tempdir().unwrap();
        let (log_path, state) = (dir.path().join("a.jsonl"), dir.path().join("s"));
        let (mut log, _) = AuditLog::open(&log_path, &state).unwrap();
        for i in 1..=4 {
            log.append(ev("intent", i), "p").unwrap();
        }
        drop(log);
        let text = std::fs::read_to_string(&log_path).unwrap();
        // Edit line 2: line 3's link breaks.
        std::fs::write(&log_path, text.replacen("\"id\":2", "\"id\":9", 1)).unwrap();
        let e = verify(&log_path, None).unwrap_err();
        assert!(e.contains("a.jsonl:3: prev_sha256 does not match"), "{e}");
        // Drop the last line: only the head shows it.
        let lines: Vec<&str> = text.lines().collect();
        std::fs::write(&log_path, lines[..3].join("\n") + "\n").unwrap();
        assert!(verify(&log_path, None).is_ok());
        let e = verify(&log_path, Some(&state.join("audit.head"))).unwrap_err();
        assert!(
            e.contains("a.jsonl:4: log ends at seq 3 but the head says 4: truncated"),
            "{e}"
        );
        let e = AuditLog::open(&log_path, &state).err().unwrap();
        assert!(e.contains("was truncated"), "{e}");
    }

    #[test]
    fn a_torn_last_line_is_cut_and_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let (log_path, state) = (dir.path().join("a.jsonl"), dir.path().join("s"));
        let (mut log, _) = AuditLog::open(&log_path, &state).unwrap();
        log.append(ev("intent", 1), "p").unwrap();
        drop(log);
        let mut f = OpenOptions::new().append(true).open(&log_path).unwrap();
        f.write_all(b"{\"seq\":2,\"ti").unwrap();
        assert!(verify(&log_path, None)
            .unwrap_err()
            .contains("torn last line"));
        let (_log, rec) = AuditLog::open(&log_path, &state).unwrap();
        assert_eq!(rec.torn_bytes, 12);
        assert!(verify(&log_path, None).unwrap().contains("ok: 2 records"));
    }
}
