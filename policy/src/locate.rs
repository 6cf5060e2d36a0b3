//! Maps between byte offsets in a policy file and dotted key paths, so every error can name
//! both the line and the key.

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// 1-based line and column of byte offset `pos`.
pub fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let pos = pos.min(text.len());
    let before = &text[..pos];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(pos, |nl| pos - nl - 1) + 1;
    (line, col)
}

/// The dotted path of the innermost key whose key or value covers `pos` (`purge.delay`,
/// `device[1].wwid`), or `None` when `pos` is outside every entry.
pub fn key_at(text: &str, pos: usize) -> Option<String> {
    let doc = DeTable::parse(text).ok()?;
    let mut path = Vec::new();
    walk_table(doc.get_ref(), pos, &mut path).then(|| join(&path))
}

fn join(path: &[String]) -> String {
    let mut out = String::new();
    for part in path {
        if !part.starts_with('[') && !out.is_empty() {
            out.push('.');
        }
        out.push_str(part);
    }
    out
}

fn covers(span: std::ops::Range<usize>, pos: usize) -> bool {
    span.start <= pos && pos < span.end.max(span.start + 1)
}

// A `[section]` table's span is its header only, so the search visits every entry rather than
// pruning by parent span. Policy files are small; this runs once per error.
fn walk_table(t: &DeTable<'_>, pos: usize, path: &mut Vec<String>) -> bool {
    for (k, v) in t.iter() {
        path.push(k.get_ref().to_string());
        if walk_value(v, pos, path) || covers(k.span(), pos) || covers(v.span(), pos) {
            return true;
        }
        path.pop();
    }
    false
}

fn walk_value(v: &Spanned<DeValue<'_>>, pos: usize, path: &mut Vec<String>) -> bool {
    match v.get_ref() {
        DeValue::Table(t) => walk_table(t, pos, path),
        DeValue::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                path.push(format!("[{i}]"));
                if walk_value(item, pos, path) || covers(item.span(), pos) {
                    return true;
                }
                path.pop();
            }
            false
        }
        _ => false,
    }
}

/// The byte offset of the key at dotted `path` (`device[2].wwid`), falling back to its nearest
/// existing parent, then to the start of the file (a key that was defaulted has no line).
pub fn span_of(text: &str, path: &str) -> usize {
    let Ok(doc) = DeTable::parse(text) else {
        return 0;
    };
    let mut best = 0;
    let mut table: Option<&DeTable<'_>> = Some(doc.get_ref());
    for part in split(path) {
        let Some(t) = table else { break };
        let (name, index) = part;
        let Some((k, v)) = t.iter().find(|(k, _)| k.get_ref().as_ref() == name) else {
            break;
        };
        best = k.span().start;
        table = match (v.get_ref(), index) {
            (DeValue::Table(inner), None) => Some(inner),
            (DeValue::Array(a), Some(i)) => match a.get(i) {
                Some(item) => {
                    best = item.span().start;
                    match item.get_ref() {
                        DeValue::Table(inner) => Some(inner),
                        _ => None,
                    }
                }
                None => None,
            },
            _ => None,
        };
    }
    best
}

/// `device[2].wwid` -> [("device", Some(2)), ("wwid", None)]
fn split(path: &str) -> Vec<(&str, Option<usize>)> {
    path.split('.')
        .map(|part| match part.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse().ok()),
            None => (part, None),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "[daemon]\nsocket = \"/x\"\n\n[[device]]\nvendor = \"A\"\npurge = true\n\n[[device]]\nwwid = \"w\"\npurge = false\n";

    #[test]
    fn offsets_become_lines_and_columns() {
        assert_eq!(line_col(DOC, 0), (1, 1));
        assert_eq!(line_col(DOC, DOC.find("socket").unwrap()), (2, 1));
        assert_eq!(line_col(DOC, DOC.find("\"/x\"").unwrap()), (2, 10));
    }

    #[test]
    fn keys_are_found_from_offsets() {
        assert_eq!(
            key_at(DOC, DOC.find("\"/x\"").unwrap()).as_deref(),
            Some("daemon.socket")
        );
        assert_eq!(
            key_at(DOC, DOC.find("wwid").unwrap()).as_deref(),
            Some("device[1].wwid")
        );
    }

    #[test]
    fn offsets_are_found_from_keys() {
        assert_eq!(span_of(DOC, "device[1].wwid"), DOC.find("wwid").unwrap());
        assert_eq!(span_of(DOC, "daemon.socket"), DOC.find("socket").unwrap());
        // a defaulted key points at its table
        assert_eq!(
            span_of(DOC, "daemon.state_dir"),
            DOC.find("daemon").unwrap()
        );
        assert_eq!(span_of(DOC, "checker.interval"), 0);
    }
}
