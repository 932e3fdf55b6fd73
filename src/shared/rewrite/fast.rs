//! A fast scanner for the plain subset of YAML that Kubernetes manifests
//! and Helm values are almost always written in: block mappings and
//! sequences by indentation, single-line plain and quoted scalars,
//! comments, `---` separators, and flow collections that open and close on
//! one line, and literal block scalars (`key: |`, `|-`, `|+`) as mapping
//! values. It yields the same events (and byte spans) as the full parser
//! for that subset, at several times its speed.
//!
//! Anything outside the subset (anchors, aliases, tags, multi-line plain
//! or quoted scalars, folded blocks, blocks with an indentation indicator
//! or as sequence items, flow collections across lines, escapes,
//! directives, tabs, complex keys, JSON documents) makes it give up and
//! return `None`; the caller then uses the full parser for that piece. It
//! never guesses.

use std::borrow::Cow;

use granit_parser::ScalarStyle;

/// One event, as the rewrite walker consumes it.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Ev<'t> {
    Scalar {
        value: Cow<'t, str>,
        start: usize,
        end: usize,
        style: ScalarStyle,
        line: usize,
    },
    MapStart,
    MapEnd,
    SeqStart,
    SeqEnd,
    /// Only from the full parser.
    Alias,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Map,
    Seq,
}

struct Open {
    indent: usize,
    kind: Kind,
}

/// A value announced by `key:` or `-` with nothing after it on its line:
/// a nested block follows, or it is null.
struct Pending {
    /// Indentation of the key or dash.
    indent: usize,
    /// Where the null scalar's zero-width span sits.
    at: usize,
    line: usize,
    /// Set for `key:` (a sequence may then start at the key's own indent).
    key: bool,
}

struct Scanner<'t, 's> {
    text: &'t str,
    out: &'s mut dyn FnMut(Ev<'t>),
    stack: Vec<Open>,
    pending: Option<Pending>,
    /// After a scalar value on a line, a deeper line would be its
    /// continuation (unsupported): the indent that must not be exceeded.
    scalar_indent: Option<usize>,
    /// The current document already has its root node.
    has_root: bool,
    /// The current document was opened by a `---` line.
    explicit: bool,
    /// A literal block scalar whose lines are being read.
    block: Option<Block<'t>>,
}

/// `|`, `|-` or `|+`: what happens to the final line breaks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Chomp {
    Clip,
    Strip,
    Keep,
}

/// A literal block scalar being read, line by line.
struct Block<'t> {
    /// Indentation of the mapping whose value it is; its lines must be
    /// indented more.
    parent: usize,
    chomp: Chomp,
    /// The block's indentation, from its first non-blank line.
    indent: Option<usize>,
    /// Most spaces on a blank line before the first non-blank one.
    lead_spaces: usize,
    /// Each line's content (`""` for an empty line).
    lines: Vec<&'t str>,
    /// The first content byte and its line.
    start: usize,
    line: usize,
}

/// Scans `text`, handing each event to `sink`; `None` when the text leaves
/// the supported subset (the events already handed over are then void).
pub(super) fn scan<'t>(text: &'t str, sink: &mut dyn FnMut(Ev<'t>)) -> Option<()> {
    let mut s = Scanner {
        text,
        out: sink,
        stack: Vec::new(),
        pending: None,
        scalar_indent: None,
        has_root: false,
        explicit: false,
        block: None,
    };
    // A lone CR is a line break too; only LF and CRLF are handled here.
    let b = text.as_bytes();
    if b.contains(&b'\r')
        && b.iter()
            .enumerate()
            .any(|(i, &c)| c == b'\r' && b.get(i + 1) != Some(&b'\n'))
    {
        return None;
    }
    let body = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut pos = text.len() - body.len();
    let mut line_no = 0;
    while pos < text.len() {
        line_no += 1;
        let end = text[pos..].find('\n').map_or(text.len(), |i| pos + i);
        let mut line_end = end;
        if line_end > pos && text.as_bytes()[line_end - 1] == b'\r' {
            line_end -= 1;
        }
        s.line(pos, line_end, line_no)?;
        pos = end + 1;
    }
    s.end_block(text.len())?;
    s.end_document()?;
    s.close_to(None)?;
    Some(())
}

fn is_blank_or_comment(rest: &str) -> bool {
    let t = rest.trim_start_matches(' ');
    t.is_empty() || t.starts_with('#')
}

impl<'t> Scanner<'t, '_> {
    fn line(&mut self, start: usize, end: usize, line: usize) -> Option<()> {
        let l = &self.text[start..end];
        let indent = l.len() - l.trim_start_matches(' ').len();
        let rest = &l[indent..];
        if self.block.is_some() {
            if self.block_line(start, l, indent, line)? {
                return Some(());
            }
            // Less indented: the block ended before this line's text.
            self.end_block(start + indent)?;
        }
        if rest.is_empty() || rest.starts_with('#') {
            return Some(());
        }
        if rest.starts_with('\t') || l.starts_with('%') {
            return None;
        }
        if indent == 0 && (rest.starts_with("---") || rest.starts_with("...")) {
            let after = &rest[3..];
            if after.is_empty() || after.starts_with(' ') {
                if !is_blank_or_comment(after) {
                    return None;
                }
                self.end_document()?;
                self.explicit = rest.starts_with("---");
                return self.close_to(None);
            }
        }
        if let Some(limit) = self.scalar_indent.take() {
            if indent > limit {
                return None; // a multi-line scalar
            }
        }
        let at = start + indent;
        let dash = rest == "-" || rest.starts_with("- ");
        if let Some(p) = self.pending.take() {
            let nested = indent > p.indent;
            let same_indent_seq = p.key
                && indent == p.indent
                && dash
                && self
                    .stack
                    .last()
                    .is_some_and(|o| o.indent == indent && o.kind == Kind::Map);
            if nested || same_indent_seq {
                return self.open(at, end, indent, line, dash);
            }
            if !p.key {
                return None; // a null sequence item: leave it to the parser
            }
            self.pending = Some(p);
        }
        self.close_to(Some(indent))?;
        let n = self.stack.len();
        if !dash
            && n >= 2
            && self.stack[n - 1].indent == indent
            && self.stack[n - 1].kind == Kind::Seq
            && self.stack[n - 2].indent == indent
            && self.stack[n - 2].kind == Kind::Map
        {
            // A sequence at its key's indent ends when the mapping goes on.
            self.stack.pop();
            (self.out)(Ev::SeqEnd);
        }
        let kind = if dash { Kind::Seq } else { Kind::Map };
        match self.stack.last() {
            None => self.open(at, end, indent, line, dash),
            Some(o) if o.indent == indent && o.kind == kind => {
                self.entry(at, end, indent, line, kind)
            }
            Some(_) => None,
        }
    }

    /// One line while a block is open: `true` when it belongs to the block.
    fn block_line(&mut self, start: usize, l: &'t str, spaces: usize, line: usize) -> Option<bool> {
        let b = self.block.as_mut()?;
        let blank = spaces == l.len();
        match b.indent {
            None if blank => {
                b.lead_spaces = b.lead_spaces.max(spaces);
                b.lines.push("");
                Some(true)
            }
            None => {
                if l.as_bytes()[spaces] == b'\t' || spaces <= b.parent || b.lead_spaces > spaces {
                    // A tab, an empty block, or a leading blank line
                    // deeper than the text: the parser decides.
                    return None;
                }
                b.indent = Some(spaces);
                b.start = start + spaces;
                b.line = line;
                b.lines.push(&l[spaces..]);
                Some(true)
            }
            Some(n) if blank => {
                b.lines.push(if spaces > n { &l[n..] } else { "" });
                Some(true)
            }
            Some(n) if spaces >= n => {
                b.lines.push(&l[n..]);
                Some(true)
            }
            Some(_) => Some(false),
        }
    }

    /// Ends the open block (if any) at `end`, emitting its scalar.
    fn end_block(&mut self, end: usize) -> Option<()> {
        let Some(b) = self.block.take() else {
            return Some(());
        };
        b.indent?;
        if b.chomp == Chomp::Keep && end == self.text.len() && !self.text.ends_with('\n') {
            return None; // the last line has no break to keep
        }
        let last = b.lines.iter().rposition(|l| !l.is_empty())?;
        let mut value = b.lines[..=last].join("\n");
        match b.chomp {
            Chomp::Strip => {}
            Chomp::Clip => value.push('\n'),
            Chomp::Keep => {
                for _ in last..b.lines.len() {
                    value.push('\n');
                }
            }
        }
        (self.out)(Ev::Scalar {
            value: Cow::Owned(value),
            start: b.start,
            end,
            style: ScalarStyle::Literal,
            line: b.line,
        });
        // A deeper line after the block would be invalid.
        self.scalar_indent = Some(b.parent);
        Some(())
    }

    /// A document ends. An explicit (`---`) document with no content is a
    /// null the parser reports with its own span: left to the parser.
    fn end_document(&mut self) -> Option<()> {
        if self.explicit && !self.has_root {
            return None;
        }
        self.has_root = false;
        self.explicit = false;
        Some(())
    }

    /// Emits the end events of every collection deeper than `indent`
    /// (`None`: all), resolving a pending null first.
    fn close_to(&mut self, indent: Option<usize>) -> Option<()> {
        if let Some(p) = self.pending.take() {
            if !p.key {
                return None; // a null sequence item: leave it to the parser
            }
            (self.out)(Ev::Scalar {
                value: Cow::Borrowed("~"),
                start: p.at,
                end: p.at,
                style: ScalarStyle::Plain,
                line: p.line,
            });
        }
        while let Some(top) = self.stack.last() {
            if indent.is_some_and(|i| top.indent <= i) {
                break;
            }
            let ev = match top.kind {
                Kind::Map => Ev::MapEnd,
                Kind::Seq => Ev::SeqEnd,
            };
            self.stack.pop();
            (self.out)(ev);
        }
        Some(())
    }

    /// Opens a block collection at `col` with this line's entry.
    fn open(&mut self, at: usize, end: usize, col: usize, line: usize, dash: bool) -> Option<()> {
        if self.stack.is_empty() {
            if self.has_root {
                return None; // a second root node: invalid, let the parser say so
            }
            self.has_root = true;
        }
        let kind = if dash { Kind::Seq } else { Kind::Map };
        if !dash && split_key(&self.text[at..end]).is_none() {
            // A lone scalar as a block value spanning lines, or a root
            // scalar: not handled.
            return None;
        }
        (self.out)(match kind {
            Kind::Map => Ev::MapStart,
            Kind::Seq => Ev::SeqStart,
        });
        self.stack.push(Open { indent: col, kind });
        self.entry(at, end, col, line, kind)
    }

    /// One entry of the open collection `kind` at `col`.
    fn entry(&mut self, at: usize, end: usize, col: usize, line: usize, kind: Kind) -> Option<()> {
        let rest = &self.text[at..end];
        match kind {
            Kind::Seq => {
                let after = &rest[1..];
                let pad = after.len() - after.trim_start_matches(' ').len();
                let inner = at + 1 + pad;
                if is_blank_or_comment(after) {
                    self.pending = Some(Pending {
                        indent: col,
                        at: at + 1,
                        line,
                        key: false,
                    });
                    return Some(());
                }
                let inner_col = col + 1 + pad;
                let inner_rest = &self.text[inner..end];
                if inner_rest == "-" || inner_rest.starts_with("- ") {
                    return None; // `- - x`: nested sequences on one line
                }
                if split_key(inner_rest).is_some() {
                    (self.out)(Ev::MapStart);
                    self.stack.push(Open {
                        indent: inner_col,
                        kind: Kind::Map,
                    });
                    return self.entry(inner, end, inner_col, line, Kind::Map);
                }
                self.value(inner, end, col, line)
            }
            Kind::Map => {
                let (key, key_end, value_at) = split_key(rest)?;
                let (kstart, kend) = (at, at + key_end);
                let (kvalue, kstyle) = scalar_text(&self.text[kstart..kend])?;
                (self.out)(Ev::Scalar {
                    value: kvalue,
                    start: kstart,
                    end: kend,
                    style: kstyle,
                    line,
                });
                let _ = key;
                let vat = at + value_at;
                if self.text.as_bytes().get(vat) == Some(&b'|') && vat < end {
                    return self.start_block(vat, end, col);
                }
                if is_blank_or_comment(&self.text[vat.min(end)..end]) {
                    self.pending = Some(Pending {
                        indent: col,
                        at: kend,
                        line,
                        key: true,
                    });
                    return Some(());
                }
                self.value(vat, end, col, line)
            }
        }
    }

    /// `|`, `|-` or `|+` (and a comment) at `at`: a literal block as the
    /// value of a key in the mapping at `col`.
    fn start_block(&mut self, at: usize, end: usize, col: usize) -> Option<()> {
        let header = &self.text[at + 1..end];
        let (chomp, rest) = match header.as_bytes().first() {
            Some(b'-') => (Chomp::Strip, &header[1..]),
            Some(b'+') => (Chomp::Keep, &header[1..]),
            _ => (Chomp::Clip, header),
        };
        if !(rest.is_empty() || rest.starts_with(' ') && is_blank_or_comment(rest)) {
            return None; // an indentation indicator, or text after it
        }
        self.block = Some(Block {
            parent: col,
            chomp,
            indent: None,
            lead_spaces: 0,
            lines: Vec::new(),
            start: 0,
            line: 0,
        });
        Some(())
    }

    /// A value on the rest of a line (after `key: ` or `- `).
    fn value(&mut self, at: usize, end: usize, col: usize, line: usize) -> Option<()> {
        let b = self.text.as_bytes();
        match b[at] {
            b'[' | b'{' => {
                let used = flow(self.text, at, end, line, self.out)?;
                if !is_blank_or_comment(&self.text[used..end]) {
                    return None;
                }
            }
            b'"' | b'\'' => {
                let close = quoted_end(self.text, at, end)?;
                if !is_blank_or_comment(&self.text[close..end]) {
                    return None;
                }
                let (value, style) = scalar_text(&self.text[at..close])?;
                (self.out)(Ev::Scalar {
                    value,
                    start: at,
                    end: close,
                    style,
                    line,
                });
            }
            b'&' | b'*' | b'!' | b'|' | b'>' | b'%' | b'@' | b'`' | b'?' => return None,
            b'-' if b.get(at + 1).is_none_or(|c| *c == b' ') => return None,
            _ => {
                let v_end = plain_end(self.text, at, end);
                let v = &self.text[at..v_end];
                if v.contains(": ") || v.ends_with(':') || v.contains(" #") {
                    return None;
                }
                (self.out)(Ev::Scalar {
                    value: Cow::Borrowed(v),
                    start: at,
                    end: v_end,
                    style: ScalarStyle::Plain,
                    line,
                });
            }
        }
        self.scalar_indent = Some(col);
        Some(())
    }
}

/// Splits `key: value` / `key:`; returns (key text, key end, value start),
/// offsets relative to `rest`. `None` when `rest` is not a simple key.
fn split_key(rest: &str) -> Option<(&str, usize, usize)> {
    let b = rest.as_bytes();
    let key_end = match b.first()? {
        b'"' | b'\'' => quoted_end(rest, 0, rest.len())?,
        b'[' | b'{' | b'&' | b'*' | b'!' | b'|' | b'>' | b'%' | b'@' | b'`' | b'?' | b'#'
        | b',' => return None,
        b'-' if b.get(1).is_none_or(|c| *c == b' ') => return None,
        _ => {
            let mut i = 0;
            loop {
                let c = *b.get(i)?;
                if c == b':' && b.get(i + 1).is_none_or(|n| *n == b' ') {
                    break i;
                }
                if c == b'#' && i > 0 && b[i - 1] == b' ' {
                    return None;
                }
                i += 1;
            }
        }
    };
    if b.get(key_end) != Some(&b':') {
        return None;
    }
    let key = rest[..key_end].trim_end_matches(' ');
    if key.is_empty() || key.len() != key_end && b[0] != b'"' && b[0] != b'\'' {
        // Trailing spaces before the colon change the span; leave it.
        return None;
    }
    let mut v = key_end + 1;
    while b.get(v) == Some(&b' ') {
        v += 1;
    }
    Some((key, key_end, v))
}

/// The value and style of a single-line scalar's source text (quotes
/// included). `None` for escapes the fast path does not decode.
fn scalar_text(src: &str) -> Option<(Cow<'_, str>, ScalarStyle)> {
    if let Some(inner) = src.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        if inner.contains('\\') {
            return None;
        }
        return Some((Cow::Borrowed(inner), ScalarStyle::DoubleQuoted));
    }
    if let Some(inner) = src.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        let v = if inner.contains("''") {
            Cow::Owned(inner.replace("''", "'"))
        } else {
            Cow::Borrowed(inner)
        };
        return Some((v, ScalarStyle::SingleQuoted));
    }
    if src.is_empty() || src.ends_with(' ') {
        return None;
    }
    Some((Cow::Borrowed(src), ScalarStyle::Plain))
}

/// The byte after the closing quote of the quoted scalar at `at`.
fn quoted_end(text: &str, at: usize, end: usize) -> Option<usize> {
    let b = text.as_bytes();
    let q = b[at];
    let mut i = at + 1;
    while i < end {
        if b[i] == b'\\' && q == b'"' {
            return None;
        }
        if b[i] == q {
            if q == b'\'' && b.get(i + 1) == Some(&b'\'') && i + 1 < end {
                i += 2;
                continue;
            }
            return Some(i + 1);
        }
        i += 1;
    }
    None // closes on a later line
}

/// The end of a block plain scalar: before ` #` or trailing spaces.
fn plain_end(text: &str, at: usize, end: usize) -> usize {
    let b = text.as_bytes();
    let mut e = end;
    let mut i = at;
    while i < end {
        if b[i] == b'#' && i > at && b[i - 1] == b' ' {
            e = i;
            break;
        }
        i += 1;
    }
    while e > at && b[e - 1] == b' ' {
        e -= 1;
    }
    e
}

/// Parses a flow collection that closes on this line; returns the byte
/// after it.
fn flow<'t>(
    text: &'t str,
    at: usize,
    end: usize,
    line: usize,
    out: &mut dyn FnMut(Ev<'t>),
) -> Option<usize> {
    let b = text.as_bytes();
    let (is_map, close) = match b[at] {
        b'{' => (true, b'}'),
        _ => (false, b']'),
    };
    out(if is_map { Ev::MapStart } else { Ev::SeqStart });
    let mut i = at + 1;
    let skip = |i: &mut usize| {
        while *i < end && b[*i] == b' ' {
            *i += 1;
        }
    };
    skip(&mut i);
    if i < end && b[i] == close {
        out(if is_map { Ev::MapEnd } else { Ev::SeqEnd });
        return Some(i + 1);
    }
    loop {
        skip(&mut i);
        if i >= end {
            return None;
        }
        // One entry: for maps `key: value`, for sequences a value.
        if is_map {
            let (kstart, kend) = flow_scalar_span(text, i, end, true)?;
            let (k, ks) = scalar_text(&text[kstart..kend])?;
            out(Ev::Scalar {
                value: k,
                start: kstart,
                end: kend,
                style: ks,
                line,
            });
            i = kend;
            if b.get(i) != Some(&b':') {
                return None;
            }
            i += 1;
            if b.get(i) != Some(&b' ') {
                return None;
            }
            skip(&mut i);
        }
        if i >= end {
            return None;
        }
        match b[i] {
            b'{' | b'[' => {
                i = flow(text, i, end, line, out)?;
            }
            b',' | b'}' | b']' => return None, // empty values: leave them
            _ => {
                let (vstart, vend) = flow_scalar_span(text, i, end, false)?;
                let (v, vs) = scalar_text(&text[vstart..vend])?;
                out(Ev::Scalar {
                    value: v,
                    start: vstart,
                    end: vend,
                    style: vs,
                    line,
                });
                i = vend;
            }
        }
        skip(&mut i);
        match b.get(i) {
            Some(b',') => {
                i += 1;
                skip(&mut i);
                if i < end && b[i] == close {
                    return None; // trailing comma: leave it
                }
            }
            Some(c) if *c == close => {
                out(if is_map { Ev::MapEnd } else { Ev::SeqEnd });
                return Some(i + 1);
            }
            _ => return None,
        }
    }
}

/// The span of one flow scalar starting at `at`.
fn flow_scalar_span(text: &str, at: usize, end: usize, key: bool) -> Option<(usize, usize)> {
    let b = text.as_bytes();
    match b[at] {
        b'"' | b'\'' => Some((at, quoted_end(text, at, end)?)),
        b'&' | b'*' | b'!' | b'|' | b'>' | b'%' | b'@' | b'`' | b'?' | b'#' | b'{' | b'[' => None,
        b'-' if b.get(at + 1).is_none_or(|c| *c == b' ') => None,
        _ => {
            let mut i = at;
            while i < end {
                let c = b[i];
                if matches!(c, b',' | b'[' | b']' | b'{' | b'}') {
                    break;
                }
                if c == b':'
                    && b.get(i + 1)
                        .is_none_or(|n| matches!(n, b' ' | b',' | b']' | b'}'))
                {
                    if key {
                        break;
                    }
                    return None;
                }
                if c == b'#' && b[i - 1] == b' ' {
                    return None;
                }
                i += 1;
            }
            let mut e = i;
            while e > at && b[e - 1] == b' ' {
                e -= 1;
            }
            (e > at).then_some((at, e))
        }
    }
}
