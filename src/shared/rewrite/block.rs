//! YAML embedded in block scalars: a ConfigMap's `data.images_digests: |`,
//! Argo CD's `spec.source.helm.values: |`. The rewriter reads such a
//! block's value as YAML of its own and maps each span it would change
//! back to the bytes of the outer file.
//!
//! Only literal blocks (`|`) are mapped: each line of their value is the
//! outer line without the block's indentation, byte for byte, so a span
//! inside one line of the value is a span of the outer file. Folded blocks
//! (`>`) and multi-line quoted strings join or unescape lines, so they are
//! not rewritten; the rewriter reports them when they look like YAML and
//! name a registry. [`map_lines`] checks its own result against the
//! parser's value and gives up on any difference.

/// Where each line of a literal block's value sits in the outer text.
#[derive(Debug)]
pub(super) struct BlockLines {
    /// (offset in the value, offset in the outer text, length) per line
    /// after the value's leading empty lines.
    lines: Vec<(usize, usize, usize)>,
    /// Empty lines before the first content line (each a `\n` in the value).
    pub(super) lead: usize,
}

impl BlockLines {
    /// The outer span of the value's span `start..end`, when both ends lie
    /// on one line.
    pub(super) fn outer(&self, start: usize, end: usize) -> Option<(usize, usize)> {
        let i = self
            .lines
            .partition_point(|l| l.0 <= start)
            .checked_sub(1)?;
        let (inner, outer, len) = *self.lines.get(i)?;
        (end >= start && end <= inner + len).then(|| (outer + start - inner, outer + end - inner))
    }
}

/// Maps the literal block whose first content byte is at `start` (the
/// parser's span start) and whose value is `value`, line by line. `None`
/// when the outer lines do not give exactly `value` (a tab in the
/// indentation, anything unexpected).
pub(super) fn map_lines(text: &str, start: usize, value: &str) -> Option<BlockLines> {
    let line_start = text.get(..start)?.rfind('\n').map_or(0, |i| i + 1);
    let prefix = text.get(line_start..start)?;
    if !prefix.bytes().all(|b| b == b' ') {
        return None;
    }
    let indent = prefix.len();
    let lead = value.len() - value.trim_start_matches('\n').len();
    let body = &value[lead..];
    let mut lines = Vec::new();
    let mut inner = lead;
    let mut pos = line_start;
    // The value's lines; the piece after its last `\n` is empty (or the
    // last line, when the block is stripped with `|-`).
    let mut pieces: Vec<&str> = body.split('\n').collect();
    if body.ends_with('\n') || body.is_empty() {
        pieces.pop();
    }
    for piece in pieces {
        let rest = text.get(pos..)?;
        let (raw, next) = match rest.find('\n') {
            Some(i) => (&rest[..i], pos + i + 1),
            None => (rest, text.len()),
        };
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if piece.is_empty() {
            // An empty line of the value: spaces up to the indentation.
            if raw.len() > indent || !raw.bytes().all(|b| b == b' ') {
                return None;
            }
            lines.push((inner, pos + raw.len(), 0));
        } else {
            let head = raw.get(..indent)?;
            if !head.bytes().all(|b| b == b' ') || raw.get(indent..)? != piece {
                return None;
            }
            lines.push((inner, pos + indent, piece.len()));
        }
        inner += piece.len() + 1;
        pos = next;
        if pos > text.len() {
            return None;
        }
    }
    Some(BlockLines { lines, lead })
}

/// Whether a block's text looks like YAML meant to be read: its first
/// line that is neither blank nor a comment is `KEY:` or `KEY: …` (a key
/// without spaces), a `- ` item, or a JSON object.
pub(super) fn looks_like_yaml(value: &str) -> bool {
    let Some(first) = value
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
    else {
        return false;
    };
    if first == "-" || first.starts_with("- ") || first.starts_with('{') {
        return true;
    }
    match first.find(':') {
        Some(i) => {
            let key = first[..i].trim_matches(['"', '\'']);
            let after = &first[i + 1..];
            !key.is_empty()
                && !key.contains(char::is_whitespace)
                && (after.is_empty() || after.starts_with([' ', '\t']))
        }
        None => false,
    }
}

/// The first registry host a text names, if any: a `HOST/…` token whose
/// host has a dot and an alphabetic top label, a port, or is `localhost`;
/// or the value of a key naming a registry (`registry:`,
/// `image_repository_server:`, `imageRegistry:`).
pub(super) fn registry_mention(text: &str) -> Option<String> {
    for line in text.lines() {
        let t = line.trim().trim_start_matches("- ").trim_start();
        if let Some((k, v)) = t.split_once(':') {
            let k = k.trim_matches(['"', '\'']).to_ascii_lowercase();
            // The first word (a folded block joins lines).
            let v = v
                .split_whitespace()
                .next()
                .unwrap_or("")
                .trim_matches(['"', '\'']);
            if (k.ends_with("registry") || k == "image_repository_server") && is_host(v) {
                return Some(v.to_owned());
            }
        }
        for token in line.split(|c: char| {
            c.is_whitespace()
                || matches!(
                    c,
                    '"' | '\'' | ',' | '[' | ']' | '{' | '}' | '=' | '(' | ')'
                )
        }) {
            let token = token.split_once("://").map_or(token, |(_, rest)| rest);
            if let Some((host, rest)) = token.split_once('/') {
                if !rest.is_empty() && is_host(host) {
                    return Some(token.to_owned());
                }
            }
        }
    }
    None
}

/// `localhost[:PORT]`, `HOST:PORT`, or a dotted name whose last label is
/// alphabetic (`docker.io`, `gitlab-registry.matrix.org`).
fn is_host(s: &str) -> bool {
    let (name, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return false;
    }
    let labels: Vec<&str> = name.split('.').collect();
    let ok_labels = labels
        .iter()
        .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if !ok_labels {
        return false;
    }
    name == "localhost"
        || port.is_some() && !name.is_empty()
        || labels.len() >= 2
            && labels
                .last()
                .is_some_and(|l| l.len() >= 2 && l.bytes().all(|b| b.is_ascii_alphabetic()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_and_spans() {
        let text = "data:\n  d: |\n\n    a:\n      b: c\r\n\n    e: f\nx: 1\n";
        let start = text.find("    a:").unwrap() + 4;
        let value = "\na:\n  b: c\n\ne: f\n";
        let m = map_lines(text, start, value).unwrap();
        assert_eq!(m.lead, 1);
        let inner = value.find('c').unwrap();
        let (s, e) = m.outer(inner, inner + 1).unwrap();
        assert_eq!(&text[s..e], "c");
        let inner = value.find('f').unwrap();
        let (s, e) = m.outer(inner - 3, inner + 1).unwrap();
        assert_eq!(&text[s..e], "e: f");
        // A span across lines has no single outer span.
        assert!(m
            .outer(value.find('b').unwrap(), value.find('e').unwrap())
            .is_none());
        // A value that the outer lines do not give.
        assert!(map_lines(text, start, "\na:\n  b: X\n").is_none());
        let tabbed = "d: |\n\ta: 1\n";
        assert!(map_lines(tabbed, 6, "a: 1\n").is_none());
    }

    #[test]
    fn what_looks_like_yaml() {
        for y in [
            "a: 1\n",
            "# c\n\nadminbot:\n  x: 1\n",
            "- name: x\n",
            "{\"a\": 1}",
            "\"k\": v",
        ] {
            assert!(looks_like_yaml(y), "{y:?}");
        }
        for n in [
            "",
            "set -ex\n",
            "docker pull nginx:1.27\nimage: x\n",
            "echo hi: there\n",
            "[[ -f x ]]\n",
        ] {
            assert!(!looks_like_yaml(n), "{n:?}");
        }
    }

    #[test]
    fn registry_mentions() {
        assert_eq!(
            registry_mention("a:\n  image_repository_server: gitlab-registry.matrix.org\n")
                .as_deref(),
            Some("gitlab-registry.matrix.org")
        );
        assert_eq!(
            registry_mention("x: [quay.io/org/app:1]").as_deref(),
            Some("quay.io/org/app:1")
        );
        assert!(registry_mention("image: localhost:5000/app").is_some());
        assert!(registry_mention("a: nginx:1.27\nb: v1.2/x\nc: see docs\n").is_none());
        assert!(registry_mention("registry: \"\"\n").is_none());
    }
}
