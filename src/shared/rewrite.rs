//! Rewriting image references in YAML and JSON so they point at the
//! air-gapped registry, changing only the bytes of the values concerned.
//!
//! The text is walked with `granit-parser` events (a maintained fork of
//! `saphyr-parser` that also accepts the dedented closing brackets real
//! compose files use), whose spans give each scalar's exact byte range.
//! Every replacement keeps the
//! scalar's quoting style, so comments, key order, indentation, anchors,
//! block scalars and document separators survive byte for byte.
//!
//! Understood forms:
//! - `image: REF` strings anywhere (Pods, Deployments, CronJobs, compose…);
//! - Helm's split form under an `image:` key: `registry`, `repository` (or
//!   `image`), `tag`, `digest`;
//! - kustomize `images:` entries: `name`, `newName`, `newTag`, `digest`;
//! - `image_repository_server`/`_path`, `image_tag`, `image_digest` maps;
//! - all of these inside literal block scalars whose text is YAML (a
//!   ConfigMap's `data.images_digests: |`, Argo CD's `helm.values: |`),
//!   rewritten in place with the block's indentation kept.
//!
//! Values built from templates or variables (`{{ }}`, `${}`) are reported
//! and left alone. This module computes edits and a report; reading and
//! writing files belongs to the caller.

use std::borrow::Cow;

use granit_parser::{Event, Parser, ScalarStyle, Span};

mod block;
mod fast;
mod files;
mod overrides;
use fast::Ev;
pub use files::{
    collect_inputs, find_images, read_text, FoundImage, ImageListing, InputFile, Inputs,
    NotFollowed, SkippedImage, MAX_DOCUMENT_BYTES,
};
pub use overrides::{
    check_images_digests, configmap, images_digests_override, is_object_name, Override,
    OverrideError,
};
use serde::Serialize;

use crate::base::reference::Reference;
use crate::shared::mapping::MappingError;
// The map file moved to mapping; kept at its old path for the tests.
pub use crate::shared::mapping::{ImageMap, MapEntry, MAP_FORMAT};

/// Errors rewriting.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    /// The text is not valid YAML.
    #[error("invalid YAML at line {line} column {column}: {message}")]
    Yaml {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// Target names could not be computed.
    #[error(transparent)]
    Mapping(#[from] MappingError),
    /// A file or directory could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file or directory.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file is larger than [`files::MAX_DOCUMENT_BYTES`].
    #[error(
        "{path} is {size} bytes, more than the {}-byte limit for a YAML or JSON file",
        files::MAX_DOCUMENT_BYTES
    )]
    TooLarge {
        /// The file.
        path: std::path::PathBuf,
        /// Its size.
        size: u64,
    },
    /// A file is not UTF-8 text.
    #[error("{path} is not UTF-8 text")]
    NotUtf8 {
        /// The file.
        path: std::path::PathBuf,
    },
    /// Something in one file.
    #[error("{path}")]
    InFile {
        /// The file.
        path: std::path::PathBuf,
        /// What.
        #[source]
        source: Box<RewriteError>,
    },
}

/// What happened to one reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    /// Rewritten to `to`.
    Rewritten {
        /// The new reference.
        to: String,
    },
    /// Already points at the target registry.
    AlreadyLocal,
    /// The bundle does not carry it.
    NotInBundle,
    /// Not rewritable (templated, not a reference).
    Skipped {
        /// Why.
        reason: String,
    },
    /// Text that looks like YAML and names a registry, but could not be
    /// read (a block that does not parse, a folded block): the images it
    /// names are unknown, so `--check` fails on it.
    Unreadable {
        /// Why.
        reason: String,
    },
}

/// One reference found in a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Found {
    /// 1-based line of the value.
    pub line: usize,
    /// The form it was written in.
    pub form: &'static str,
    /// The reference as written (split forms joined).
    pub reference: String,
    /// What happened.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// The key path of the mapping it was found in, within its document or
    /// block (`spec.template.spec.containers[]`, `adminbot.haproxy`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// The reference, parsed, when the map was empty (what `ferry images`
    /// lists), so that it is not parsed twice.
    #[serde(skip)]
    pub parsed: Option<Box<Reference>>,
    /// The key path of the block scalar it was found in (`data.images_digests`),
    /// when it sits inside one; blocks within blocks are joined by ` > `.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block: Option<String>,
}

/// Rewrite settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct RewriteOptions {
    /// Add `@digest` to every rewritten reference.
    pub pin_digest: bool,
    /// In `images_digests` entries, also write the tag the target holds
    /// into `image_tag` (they differ when an entry matched by its digest
    /// an image carried under another tag).
    pub digests_tag: bool,
}

/// A scalar with its byte span and style.
#[derive(Debug, Clone)]
struct Scalar<'t> {
    value: Cow<'t, str>,
    start: usize,
    end: usize,
    style: ScalarStyle,
    line: usize,
}

#[derive(Debug)]
enum Frame<'t> {
    Map {
        key: Option<Cow<'t, str>>,
        expect_key: bool,
        fields: Vec<(Cow<'t, str>, Scalar<'t>)>,
        parent_key: Option<Cow<'t, str>>,
        in_images_seq: bool,
    },
    Seq {
        parent_key: Option<Cow<'t, str>>,
    },
}

/// Rewrites `text`; returns the new text (identical when nothing matched)
/// and every reference found.
///
/// A multi-document stream is cut at its `---` lines and the documents are
/// rewritten in parallel (YAML documents share no anchors or state).
pub fn rewrite(
    text: &str,
    map: &ImageMap,
    opts: RewriteOptions,
) -> Result<(String, Vec<Found>), RewriteError> {
    rewrite_in_pieces(text, map, opts, 1 << 20)
}

/// Every reference in `text`, as [`rewrite`] finds them, without making
/// the new text.
pub fn find(text: &str, map: &ImageMap, opts: RewriteOptions) -> Result<Vec<Found>, RewriteError> {
    let (_, found) = in_pieces(text, 1 << 20, |d| {
        walk_document(d, map, opts, 0).map(|(_, f)| ((), f))
    })?;
    Ok(found)
}

fn rewrite_in_pieces(
    text: &str,
    map: &ImageMap,
    opts: RewriteOptions,
    piece: usize,
) -> Result<(String, Vec<Found>), RewriteError> {
    let (outs, found) = in_pieces(text, piece, |d| rewrite_document(d, map, opts))?;
    if outs.len() == 1 {
        return Ok((outs.into_iter().next().unwrap_or_default(), found));
    }
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for o in outs {
        out.push_str(&o);
    }
    Ok((out, found))
}

/// Runs `each` on the pieces of `text` ([`split_documents`]) in parallel;
/// returns what each gave, in order, and every reference with its line in
/// `text`.
fn in_pieces<T: Send>(
    text: &str,
    piece: usize,
    each: impl Fn(&str) -> Result<(T, Vec<Found>), RewriteError> + Sync,
) -> Result<(Vec<T>, Vec<Found>), RewriteError> {
    use rayon::prelude::*;
    let docs = split_documents(text, piece);
    if docs.len() < 2 {
        let (t, f) = each(text)?;
        return Ok((vec![t], f));
    }
    // Line number of each document's first line.
    let mut first_lines = Vec::with_capacity(docs.len());
    let mut line = 1;
    for d in &docs {
        first_lines.push(line);
        line += d.bytes().filter(|&b| b == b'\n').count();
    }
    let results: Vec<Result<(T, Vec<Found>), RewriteError>> =
        docs.par_iter().map(|d| each(d)).collect();
    let mut outs = Vec::with_capacity(results.len());
    let mut found = Vec::new();
    for (r, first) in results.into_iter().zip(first_lines) {
        let shift = first - 1;
        let (o, f) = r.map_err(|e| match e {
            RewriteError::Yaml {
                line,
                column,
                message,
            } => RewriteError::Yaml {
                line: line + shift,
                column,
                message,
            },
            e => e,
        })?;
        outs.push(o);
        found.extend(f.into_iter().map(|mut f| {
            f.line += shift;
            f
        }));
    }
    Ok((outs, found))
}

/// Cuts a stream into pieces of about `min` bytes or more, each ending
/// just before a line that starts a document (`---` alone or followed by a
/// space), so every piece is a valid stream of whole documents. A stream
/// with directives (`%`) is not cut. One parser per piece, not per
/// document, keeps the set-up cost low.
fn split_documents(text: &str, min: usize) -> Vec<&str> {
    if text.starts_with('%') || text.contains("\n%") {
        return vec![text];
    }
    let b = text.as_bytes();
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while let Some(off) = text[i..].find("\n---") {
        let at = i + off + 1;
        let after = b.get(at + 3).copied();
        if matches!(after, None | Some(b'\n' | b'\r' | b' ' | b'\t')) && at - start >= min {
            pieces.push(&text[start..at]);
            start = at;
        }
        i = at;
    }
    pieces.push(&text[start..]);
    pieces
}

fn rewrite_document(
    text: &str,
    map: &ImageMap,
    opts: RewriteOptions,
) -> Result<(String, Vec<Found>), RewriteError> {
    let (edits, found) = walk_document(text, map, opts, 0)?;
    let mut out = String::with_capacity(text.len() + edits.len() * 32);
    let mut pos = 0;
    for (s, e, r) in edits {
        if s < pos {
            continue; // the same anchored scalar seen twice
        }
        out.push_str(&text[pos..s]);
        out.push_str(&r);
        pos = e;
    }
    out.push_str(&text[pos..]);
    Ok((out, found))
}

/// One replacement: the byte range and the new text.
type Edit = (usize, usize, String);

/// The edits (sorted, one per start) and the references of one stream of
/// documents. `depth` counts the block scalars it sits in.
fn walk_document(
    text: &str,
    map: &ImageMap,
    opts: RewriteOptions,
    depth: usize,
) -> Result<(Vec<Edit>, Vec<Found>), RewriteError> {
    let new_walk = || Walk {
        text,
        depth,
        map,
        opts,
        edits: Vec::new(),
        found: Vec::new(),
        global_registry: None,
        named: Vec::new(),
    };
    let mut stack: Vec<Frame> = Vec::new();
    let mut w = new_walk();
    if fast::scan(text, &mut |ev| step(&mut stack, &mut w, ev)).is_none() {
        // Outside the fast scanner's subset: start again with the parser.
        stack.clear();
        w = new_walk();
        for ev in parsed_events(text)? {
            step(&mut stack, &mut w, ev);
        }
    }
    let Walk {
        mut edits,
        mut found,
        ..
    } = w;
    edits.sort_by_key(|e| e.0);
    edits.dedup_by_key(|e| e.0);
    found.sort_by_key(|f| f.line);
    Ok((edits, found))
}

/// The events of `text` from the full YAML parser.
fn parsed_events(text: &str) -> Result<Vec<Ev<'_>>, RewriteError> {
    let mut out = Vec::new();
    for ev in Parser::new_from_str(text) {
        let (ev, span): (Event, Span) = ev.map_err(|e| RewriteError::Yaml {
            line: e.marker().line(),
            column: e.marker().col() + 1,
            message: e.info().to_owned(),
        })?;
        out.push(match ev {
            Event::Scalar(value, style, anchor, tag) => {
                // Spans of a parser reading a &str always carry byte offsets.
                let Some(range) = span.byte_range() else {
                    continue;
                };
                let (mut start, end) = (range.start, range.end);
                if anchor != 0 || tag.is_some() {
                    start = skip_properties(text, start, end);
                }
                Ev::Scalar {
                    value: Cow::Owned(value.into_owned()),
                    start,
                    end,
                    style,
                    line: span.start.line(),
                }
            }
            Event::MappingStart(..) => Ev::MapStart,
            Event::SequenceStart(..) => Ev::SeqStart,
            Event::MappingEnd => Ev::MapEnd,
            Event::SequenceEnd => Ev::SeqEnd,
            Event::Alias(_) => Ev::Alias,
            _ => continue,
        });
    }
    Ok(out)
}

/// Feeds one event to the walker.
fn step<'t>(stack: &mut Vec<Frame<'t>>, w: &mut Walk<'_, 't>, ev: Ev<'t>) {
    match ev {
        Ev::Scalar {
            value,
            start,
            end,
            style,
            line,
        } => {
            let s = Scalar {
                value,
                start,
                end,
                style,
                line,
            };
            if let Some(Frame::Map {
                key,
                expect_key,
                fields,
                ..
            }) = stack.last_mut()
            {
                if *expect_key {
                    *key = Some(s.value.clone());
                    *expect_key = false;
                } else {
                    if let Some(k) = key.take() {
                        fields.push((k, s));
                    }
                    *expect_key = true;
                }
            }
        }
        Ev::MapStart => {
            let (parent_key, in_images_seq) = open_child(stack);
            stack.push(Frame::Map {
                key: None,
                expect_key: true,
                fields: Vec::new(),
                parent_key,
                in_images_seq,
            });
        }
        Ev::SeqStart => {
            let (parent_key, _) = open_child(stack);
            stack.push(Frame::Seq { parent_key });
        }
        Ev::MapEnd => {
            if let Some(Frame::Map {
                fields,
                parent_key,
                in_images_seq,
                ..
            }) = stack.pop()
            {
                // The keys above this mapping, outermost first.
                let mut path: Vec<&str> = stack
                    .iter()
                    .map(|f| match f {
                        Frame::Map { parent_key, .. } | Frame::Seq { parent_key } => {
                            parent_key.as_deref().unwrap_or("-")
                        }
                    })
                    .collect();
                path.push(parent_key.as_deref().unwrap_or("-"));
                w.examine(&fields, &path[1..], in_images_seq);
            }
            close_child(stack);
        }
        Ev::SeqEnd => {
            stack.pop();
            close_child(stack);
        }
        Ev::Alias => close_child(stack),
    }
}

/// A collection starts as a value: returns the key it sits under and
/// whether it is an entry of an `images:` sequence.
fn open_child<'t>(stack: &mut [Frame<'t>]) -> (Option<Cow<'t, str>>, bool) {
    match stack.last_mut() {
        Some(Frame::Map {
            key, expect_key, ..
        }) if !*expect_key => (key.take(), false),
        Some(Frame::Seq { parent_key }) => (None, parent_key.as_deref() == Some("images")),
        _ => (None, false),
    }
}

/// A value that is not a scalar (a collection or an alias) ended: its
/// parent map now expects a key. An alias in key position is a key.
fn close_child(stack: &mut [Frame<'_>]) {
    if let Some(Frame::Map {
        key, expect_key, ..
    }) = stack.last_mut()
    {
        if *expect_key {
            // An alias used as a key: what follows is its value.
            *expect_key = false;
            *key = Some(Cow::Borrowed(""));
        } else {
            key.take();
            *expect_key = true;
        }
    }
}

/// A scalar's span starts at its properties (`&anchor`, `!tag`); the
/// value's bytes start after them.
fn skip_properties(text: &str, mut start: usize, end: usize) -> usize {
    let b = text.as_bytes();
    while start < end && (b[start] == b'&' || b[start] == b'!') {
        while start < end && !b[start].is_ascii_whitespace() {
            start += 1;
        }
        while start < end && b[start].is_ascii_whitespace() {
            start += 1;
        }
    }
    start
}

fn templated(v: &str) -> bool {
    v.contains("{{") || v.contains("${") || v.starts_with('$')
}

/// Renders `value` in the style of the scalar it replaces.
fn render(value: &str, style: ScalarStyle) -> String {
    match style {
        ScalarStyle::SingleQuoted => format!("'{}'", value.replace('\'', "''")),
        ScalarStyle::DoubleQuoted => serde_json::to_string(value).unwrap_or_default(),
        _ => value.to_owned(),
    }
}

fn get<'a, 't>(fields: &'a [(Cow<'t, str>, Scalar<'t>)], k: &str) -> Option<&'a Scalar<'t>> {
    fields.iter().find(|(key, _)| key == k).map(|(_, s)| s)
}

struct Walk<'m, 't> {
    /// The text the spans point into.
    text: &'t str,
    /// How many block scalars this text sits in.
    depth: usize,
    map: &'m ImageMap,
    opts: RewriteOptions,
    edits: Vec<Edit>,
    found: Vec<Found>,
    /// `global.imageRegistry` or `global.image.registry`, when non-empty.
    global_registry: Option<Scalar<'t>>,
    /// cert-manager-style `image.name` entries, resolved against the root's
    /// `imageRegistry` and `imageNamespace` when the root mapping ends.
    named: Vec<NamedImage<'t>>,
}

/// An `image:` mapping that names its image by `name` alone.
struct NamedImage<'t> {
    name: Scalar<'t>,
    tag: Option<Scalar<'t>>,
    digest: Option<Scalar<'t>>,
}

impl<'t> Walk<'_, 't> {
    /// Looks at one finished mapping. `path` holds the keys above it
    /// (`-` for sequence items), its own key last.
    fn examine(
        &mut self,
        fields: &[(Cow<'t, str>, Scalar<'t>)],
        path: &[&str],
        in_images_seq: bool,
    ) {
        let parent_key = path.last().copied();
        // Which of the keys the forms look at are here, found in one pass:
        // most mappings hold none of them.
        let mask = fields
            .iter()
            .fold(0u16, |m, (k, s)| m | key_bit(k) | multi_line_bit(s));
        if mask == 0 && (!path.is_empty() || self.named.is_empty()) {
            return;
        }
        let before = self.found.len();
        let global = |k: &str| get(fields, k).filter(|s| !s.value.is_empty()).cloned();
        match path {
            ["global"] => {
                if let Some(g) = global("imageRegistry") {
                    self.global_registry = Some(g);
                }
            }
            ["global", "image"] => {
                if let Some(g) = global("registry") {
                    self.global_registry = Some(g);
                }
            }
            _ => {}
        }
        // `image: REF` inside this mapping.
        if let Some(s) = get(fields, "image") {
            if parent_key != Some("image") && mask & key_bit("registry") == 0 {
                string_form(s, self.map, self.opts, &mut self.edits, &mut self.found);
            }
        }
        // cert-manager's naming: `image.name`, no repository override; the
        // registry and namespace come from the root.
        let has = |k: &str| mask & key_bit(k) != 0;
        let nonempty = |k: &str| get(fields, k).filter(|s| !s.value.is_empty()).cloned();
        let named = parent_key == Some("image")
            && has("name")
            && nonempty("repository").is_none()
            && !has("image");
        if named {
            if let Some(name) = nonempty("name") {
                self.named.push(NamedImage {
                    name,
                    tag: nonempty("tag"),
                    digest: nonempty("digest"),
                });
            }
        }
        if path.is_empty() && !self.named.is_empty() {
            self.resolve_named(fields);
        }
        // Helm split form: the value of an `image:` key, or any mapping with
        // `repository` next to `registry`, `tag`, `digest` or `sha`.
        let split = !named
            && (parent_key == Some("image") && (has("repository") || has("image"))
                || has("repository")
                    && (has("registry") || has("tag") || has("digest") || has("sha")));
        if split && path.first() != Some(&"global") {
            split_form(fields, self);
        }
        // An `images_digests.yml`-style entry.
        if has("image_repository_server") && has("image_repository_path") {
            digests_form(fields, self);
        }
        // kustomize `images:` entry.
        if in_images_seq && has("name") {
            kustomize_form(
                fields,
                self.map,
                self.opts,
                &mut self.edits,
                &mut self.found,
            );
        }
        if let Some((last, rest)) = self.found[before..].split_last_mut() {
            let here = key_path(path, None);
            for f in rest {
                f.path.clone_from(&here);
            }
            last.path = here;
        }
        // YAML inside block scalars (and multi-line strings, reported).
        if mask & MULTI_LINE != 0 {
            for (k, s) in fields {
                if multi_line_bit(s) != 0 {
                    self.embedded(k, s, path);
                }
            }
        }
    }

    /// A multi-line string value at `path`.`key` whose text looks like
    /// YAML is read as YAML. In a literal block, what it names is
    /// rewritten in place; in a folded block or a quoted string (whose
    /// lines are joined or unescaped) it is only reported. Text that
    /// cannot be read is reported, as unreadable when it names a registry.
    fn embedded(&mut self, key: &str, s: &Scalar<'t>, path: &[&str]) {
        if !block::looks_like_yaml(&s.value) {
            return;
        }
        let key_path = key_path(path, Some(key));
        let skip = |why: String, found: &mut Vec<Found>| {
            let mention = block::registry_mention(&s.value);
            found.push(Found {
                line: s.line,
                form: "yaml block",
                outcome: match &mention {
                    Some(_) => Outcome::Unreadable { reason: why },
                    None => Outcome::Skipped { reason: why },
                },
                reference: mention.unwrap_or_default(),
                path: String::new(),
                block: Some(key_path.clone()),
                parsed: None,
            });
        };
        if self.depth >= MAX_BLOCK_DEPTH {
            return skip(
                format!("blocks nested more than {MAX_BLOCK_DEPTH} deep are not read"),
                &mut self.found,
            );
        }
        let (edits, found) = match walk_document(&s.value, self.map, self.opts, self.depth + 1) {
            Ok(r) => r,
            Err(e) => {
                return skip(
                    format!("looks like YAML but does not parse: {e}"),
                    &mut self.found,
                )
            }
        };
        if found.is_empty() {
            return;
        }
        let in_block = |f: Found, line: usize| Found {
            line,
            block: Some(match f.block {
                Some(inner) => format!("{key_path} > {inner}"),
                None => key_path.clone(),
            }),
            ..f
        };
        let lines = match s.style {
            ScalarStyle::Literal => block::map_lines(self.text, s.start, &s.value),
            _ => None,
        };
        let mut outer = Vec::with_capacity(edits.len());
        if let Some(lines) = &lines {
            for (start, end, r) in &edits {
                match lines.outer(*start, *end) {
                    Some((a, b)) => outer.push((a, b, r.clone())),
                    None => {
                        outer.clear();
                        break;
                    }
                }
            }
        }
        let mapped = lines.is_some();
        match lines {
            Some(lines) if outer.len() == edits.len() => {
                self.edits.extend(outer);
                // Line 1 of the value is the block's first line, which may
                // be blank lines above its first content line (`s.line`).
                let first = s.line.saturating_sub(lines.lead);
                self.found.extend(found.into_iter().map(|f| {
                    let line = f.line + first - 1;
                    in_block(f, line)
                }));
            }
            _ => {
                // Read, but not replaceable in place: what would have been
                // rewritten is reported as skipped, at the block's line.
                let why = match s.style {
                    ScalarStyle::Literal if mapped => {
                        "a value in this block spans lines: not rewritten"
                    }
                    ScalarStyle::Literal => {
                        "this block's lines could not be matched to the file: not rewritten"
                    }
                    ScalarStyle::Folded => {
                        "in a folded block (>): not rewritten; write the YAML as a literal block (|)"
                    }
                    _ => "in a multi-line quoted string: not rewritten; write the YAML as a literal block (|)",
                };
                self.found.extend(found.into_iter().map(|mut f| {
                    if matches!(f.outcome, Outcome::Rewritten { .. }) {
                        f.outcome = Outcome::Skipped { reason: why.into() };
                    }
                    in_block(f, s.line)
                }));
            }
        }
    }
}

/// The bit of a key the forms look at (0 for any other key).
fn key_bit(k: &str) -> u16 {
    match k {
        "image" => 1,
        "registry" => 1 << 1,
        "name" => 1 << 2,
        "repository" => 1 << 3,
        "tag" => 1 << 4,
        "digest" => 1 << 5,
        "sha" => 1 << 6,
        "image_repository_server" => 1 << 7,
        "image_repository_path" => 1 << 8,
        "imageRegistry" => 1 << 9,
        _ => 0,
    }
}

/// Set in a mapping's key mask when a value is a multi-line string that
/// is not plain (a plain scalar cannot hold `key: value` lines).
const MULTI_LINE: u16 = 1 << 15;

fn multi_line_bit(s: &Scalar<'_>) -> u16 {
    if s.style != ScalarStyle::Plain && s.value.contains('\n') {
        MULTI_LINE
    } else {
        0
    }
}

/// Blocks inside blocks read at most this deep (each level parses its
/// text again).
const MAX_BLOCK_DEPTH: usize = 4;

/// `spec.source.helm.values`: the keys above a value and its own, with
/// `[]` for a sequence item.
fn key_path(path: &[&str], key: Option<&str>) -> String {
    let mut out = String::new();
    for k in path.iter().copied().chain(key) {
        if k == "-" {
            out.push_str("[]");
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(k);
        }
    }
    out
}

impl<'t> Walk<'_, 't> {
    /// Resolves cert-manager-style images against the root mapping's
    /// `imageRegistry` and `imageNamespace`: when every one is carried under
    /// one target namespace, those two values are rewritten.
    fn resolve_named(&mut self, root: &[(Cow<'t, str>, Scalar<'t>)]) {
        let named = std::mem::take(&mut self.named);
        let value = |k: &str| get(root, k).filter(|s| !s.value.is_empty());
        let (Some(reg), Some(ns)) = (value("imageRegistry"), value("imageNamespace")) else {
            for n in named {
                self.found.push(Found {
                    line: n.name.line,
                    form: "cert-manager",
                    reference: n.name.value.to_string(),
                    outcome: Outcome::Skipped {
                        reason: "no imageRegistry/imageNamespace at the top level".into(),
                    },
                    path: String::new(),
                    block: None,
                    parsed: None,
                });
            }
            return;
        };
        let mut found = Vec::new();
        let mut targets: Vec<(String, String)> = Vec::new();
        for n in &named {
            let mut joined = format!("{}/{}/{}", reg.value, ns.value, n.name.value);
            let exact = n.tag.is_some() || n.digest.is_some();
            if let Some(t) = &n.tag {
                joined.push(':');
                joined.push_str(&t.value);
            }
            if let Some(d) = &n.digest {
                joined.push('@');
                joined.push_str(&d.value);
            }
            let outcome = match classify(&joined, self.map) {
                Err(o) => o,
                Ok((r, e)) => {
                    // No tag in the values: the chart's appVersion decides,
                    // so any carried tag of that image counts.
                    let e = if exact {
                        e
                    } else {
                        self.map.lookup_name(&r.name()).cloned()
                    };
                    match e {
                        None => Outcome::NotInBundle,
                        Some(e) => {
                            let (host, path) = e.target.split_once('/').unwrap_or((&e.target, ""));
                            let ns_target = path
                                .strip_suffix(&format!("/{}", n.name.value))
                                .unwrap_or(path);
                            targets.push((host.to_owned(), ns_target.to_owned()));
                            Outcome::Rewritten {
                                to: if exact {
                                    target_string(&e, &r, self.opts)
                                } else {
                                    e.target.clone()
                                },
                            }
                        }
                    }
                }
            };
            found.push(Found {
                line: n.name.line,
                form: "cert-manager",
                reference: joined,
                outcome,
                path: String::new(),
                block: None,
                parsed: None,
            });
        }
        targets.dedup();
        let all_there = found
            .iter()
            .all(|f| matches!(f.outcome, Outcome::Rewritten { .. }));
        match targets.as_slice() {
            [(host, ns_target)] if all_there => {
                self.edits
                    .push((reg.start, reg.end, render(host, reg.style)));
                if ns.value != ns_target.as_str() {
                    self.edits
                        .push((ns.start, ns.end, render(ns_target, ns.style)));
                }
            }
            [] => {}
            _ => {
                // Shared values cannot point at two places, or at a registry
                // that lacks some of the images.
                for f in found.iter_mut() {
                    if matches!(f.outcome, Outcome::Rewritten { .. }) {
                        f.outcome = Outcome::Skipped {
                            reason: "the images sharing imageRegistry/imageNamespace are not all carried under one target".into(),
                        };
                    }
                }
            }
        }
        self.found.extend(found);
    }
}

fn classify(reference: &str, map: &ImageMap) -> Result<(Reference, Option<MapEntry>), Outcome> {
    if reference.is_empty() || templated(reference) {
        return Err(Outcome::Skipped {
            reason: "templated or empty".into(),
        });
    }
    let r: Reference = reference.parse().map_err(|_| Outcome::Skipped {
        reason: "not an image reference".into(),
    })?;
    if !map.target_host().is_empty() && r.registry() == map.target_host() {
        return Err(Outcome::AlreadyLocal);
    }
    let e = map.lookup(&r);
    Ok((r, e))
}

fn target_string(e: &MapEntry, r: &Reference, opts: RewriteOptions) -> String {
    let mut s = e.target.clone();
    if let Some(t) = r.tag() {
        s.push(':');
        s.push_str(t);
    }
    if opts.pin_digest || r.digest().is_some() {
        s.push('@');
        s.push_str(&e.digest.to_string());
    }
    s
}

fn string_form(
    s: &Scalar<'_>,
    map: &ImageMap,
    opts: RewriteOptions,
    edits: &mut Vec<(usize, usize, String)>,
    found: &mut Vec<Found>,
) {
    if matches!(s.style, ScalarStyle::Literal | ScalarStyle::Folded) {
        return;
    }
    let mut parsed = None;
    let outcome = match classify(&s.value, map) {
        Err(o) => o,
        Ok((r, None)) => {
            if map.is_empty() {
                parsed = Some(Box::new(r));
            }
            Outcome::NotInBundle
        }
        Ok((r, Some(e))) => {
            let to = target_string(&e, &r, opts);
            edits.push((s.start, s.end, render(&to, s.style)));
            Outcome::Rewritten { to }
        }
    };
    found.push(Found {
        line: s.line,
        form: "image",
        reference: s.value.to_string(),
        outcome,
        path: String::new(),
        block: None,
        parsed,
    });
}

fn split_form<'t>(fields: &[(Cow<'t, str>, Scalar<'t>)], w: &mut Walk<'_, 't>) {
    let (map, opts) = (w.map, w.opts);
    let repo = get(fields, "repository").or_else(|| get(fields, "image"));
    let Some(repo) = repo else { return };
    // No registry of its own: the chart falls back to the global one.
    let own_registry = get(fields, "registry").filter(|r| !r.value.is_empty());
    let registry = own_registry.or(w.global_registry.as_ref());
    let tag = get(fields, "tag").filter(|t| !t.value.is_empty());
    let digest = get(fields, "digest")
        .or_else(|| get(fields, "sha"))
        .filter(|d| !d.value.is_empty());
    let mut joined = match registry.filter(|r| !r.value.is_empty()) {
        Some(r) => format!("{}/{}", r.value, repo.value),
        None => repo.value.to_string(),
    };
    if let Some(t) = tag {
        joined.push(':');
        joined.push_str(&t.value);
    }
    if let Some(d) = digest {
        if d.value.starts_with("sha256:") {
            joined.push('@');
            joined.push_str(&d.value);
        } else {
            joined.push_str("@sha256:");
            joined.push_str(&d.value);
        }
    }
    let mut parsed = None;
    let outcome = match classify(&joined, map) {
        Err(o) => o,
        Ok((r, None)) => {
            if map.is_empty() {
                parsed = Some(Box::new(r));
            }
            Outcome::NotInBundle
        }
        Ok((r, Some(e))) => {
            let (host, path) = e.target.split_once('/').unwrap_or((e.target.as_str(), ""));
            match registry {
                // The registry (its own or the global one, which then points
                // every image that uses it at the target) and the path.
                Some(reg) => {
                    w.edits.push((reg.start, reg.end, render(host, reg.style)));
                    if repo.value != path {
                        w.edits
                            .push((repo.start, repo.end, render(path, repo.style)));
                    }
                }
                // No registry anywhere: the repository carries the whole name.
                None => w
                    .edits
                    .push((repo.start, repo.end, render(&e.target, repo.style))),
            }
            // An empty plain `digest:` has no bytes to replace safely.
            let slot = get(fields, "digest")
                .or_else(|| get(fields, "sha"))
                .filter(|d| !(d.value.is_empty() && d.style == ScalarStyle::Plain));
            if let Some(d) = slot {
                if opts.pin_digest || digest.is_some() {
                    let v = if d.value.is_empty() || d.value.starts_with("sha256:") {
                        e.digest.to_string()
                    } else {
                        e.digest.hex()
                    };
                    w.edits.push((d.start, d.end, render(&v, d.style)));
                }
            }
            Outcome::Rewritten {
                to: target_string(&e, &r, opts),
            }
        }
    };
    w.found.push(Found {
        line: repo.line,
        form: "helm split",
        reference: joined,
        outcome,
        path: String::new(),
        block: None,
        parsed,
    });
}

/// `image_repository_server`, `image_repository_path`, `image_tag`,
/// `image_digest` (the override map of ESS-style installers).
fn digests_form<'t>(fields: &[(Cow<'t, str>, Scalar<'t>)], w: &mut Walk<'_, 't>) {
    let (Some(server), Some(path)) = (
        get(fields, "image_repository_server"),
        get(fields, "image_repository_path"),
    ) else {
        return;
    };
    let tag = get(fields, "image_tag").filter(|t| !t.value.is_empty());
    let digest = get(fields, "image_digest");
    let mut joined = format!("{}/{}", server.value, path.value);
    if let Some(t) = tag {
        joined.push(':');
        joined.push_str(&t.value);
    }
    if let Some(d) = digest.filter(|d| !d.value.is_empty()) {
        joined.push('@');
        joined.push_str(&d.value);
    }
    let mut parsed = None;
    let outcome = match classify(&joined, w.map) {
        Err(o) => o,
        Ok((r, None)) => {
            if w.map.is_empty() {
                parsed = Some(Box::new(r));
            }
            Outcome::NotInBundle
        }
        Ok((r, Some(e))) => {
            let (host, target_path) = e.target.split_once('/').unwrap_or((e.target.as_str(), ""));
            w.edits
                .push((server.start, server.end, render(host, server.style)));
            if path.value != target_path {
                w.edits
                    .push((path.start, path.end, render(target_path, path.style)));
            }
            if w.opts.digests_tag {
                let slot = get(fields, "image_tag")
                    .filter(|t| !(t.value.is_empty() && t.style == ScalarStyle::Plain));
                if let (Some(t), Some(want)) = (slot, e.tag.as_deref()) {
                    if t.value != want {
                        w.edits.push((t.start, t.end, render(want, t.style)));
                    }
                }
            }
            // A digest recorded for the source is replaced by the one the
            // target holds (they differ when a platform filter applied).
            if let Some(d) =
                digest.filter(|d| !(d.value.is_empty() && d.style == ScalarStyle::Plain))
            {
                if w.opts.pin_digest || !d.value.is_empty() {
                    w.edits
                        .push((d.start, d.end, render(&e.digest.to_string(), d.style)));
                }
            }
            let to = match (w.opts.digests_tag, e.tag.as_deref()) {
                (true, Some(want)) => {
                    let mut to = format!("{}:{want}", e.target);
                    if w.opts.pin_digest || r.digest().is_some() {
                        to.push('@');
                        to.push_str(&e.digest.to_string());
                    }
                    to
                }
                _ => target_string(&e, &r, w.opts),
            };
            Outcome::Rewritten { to }
        }
    };
    w.found.push(Found {
        line: server.line,
        form: "images_digests",
        reference: joined,
        outcome,
        path: String::new(),
        block: None,
        parsed,
    });
}

fn kustomize_form(
    fields: &[(Cow<'_, str>, Scalar<'_>)],
    map: &ImageMap,
    opts: RewriteOptions,
    edits: &mut Vec<(usize, usize, String)>,
    found: &mut Vec<Found>,
) {
    let Some(name) = get(fields, "name") else {
        return;
    };
    let new_name = get(fields, "newName");
    let new_tag = get(fields, "newTag");
    let digest = get(fields, "digest");
    let mut joined = new_name
        .map(|n| n.value.to_string())
        .unwrap_or_else(|| name.value.to_string());
    if let Some(t) = new_tag {
        joined.push(':');
        joined.push_str(&t.value);
    }
    if let Some(d) = digest {
        joined.push('@');
        joined.push_str(&d.value);
    }
    let mut parsed = None;
    let outcome = match classify(&joined, map) {
        Err(o) => o,
        Ok((r, None)) => {
            if map.is_empty() {
                parsed = Some(Box::new(r));
            }
            Outcome::NotInBundle
        }
        Ok((r, Some(e))) => match new_name {
            Some(n) => {
                edits.push((n.start, n.end, render(&e.target, n.style)));
                if let Some(d) = digest {
                    edits.push((d.start, d.end, render(&e.digest.to_string(), d.style)));
                }
                Outcome::Rewritten {
                    to: target_string(
                        &e,
                        &r,
                        RewriteOptions {
                            pin_digest: opts.pin_digest && digest.is_some(),
                            ..opts
                        },
                    ),
                }
            }
            None => Outcome::Skipped {
                reason: "kustomize entry without newName: add `newName` to redirect it".into(),
            },
        },
    };
    found.push(Found {
        line: name.line,
        form: "kustomize",
        reference: joined,
        outcome,
        path: String::new(),
        block: None,
        parsed,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::digest::Digest;

    fn map() -> ImageMap {
        let d = |s: &str| Digest::of(s.as_bytes());
        ImageMap::from_entries(
            "registry.local:5000",
            vec![
                MapEntry {
                    source: "docker.io/library/nginx:1.27".into(),
                    target: "registry.local:5000/library/nginx".into(),
                    tag: Some("1.27".into()),
                    digest: d("nginx"),
                    source_digest: None,
                    converted: Vec::new(),
                },
                MapEntry {
                    source: "docker.io/bitnami/redis:8.2".into(),
                    target: "registry.local:5000/bitnami/redis".into(),
                    tag: Some("8.2".into()),
                    digest: d("redis"),
                    source_digest: None,
                    converted: Vec::new(),
                },
                MapEntry {
                    source: "quay.io/argoproj/argocd:latest".into(),
                    target: "registry.local:5000/argoproj/argocd".into(),
                    tag: Some("latest".into()),
                    digest: d("argocd"),
                    source_digest: None,
                    converted: Vec::new(),
                },
            ],
        )
    }

    fn rw(text: &str) -> (String, Vec<Found>) {
        rewrite(text, &map(), RewriteOptions::default()).unwrap()
    }

    #[test]
    fn cert_manager_naming() {
        let entry = |name: &str, target: &str| MapEntry {
            source: format!("quay.io/jetstack/{name}:v1.19.1"),
            target: format!("registry.local:5000/{target}/{name}"),
            tag: Some("v1.19.1".into()),
            digest: Digest::of(name.as_bytes()),
            source_digest: None,
            converted: Vec::new(),
        };
        let values = "imageRegistry: quay.io # default\nimageNamespace: \"jetstack\"\nimage:\n  name: cert-manager-controller\n  repository: \"\"\nwebhook:\n  image:\n    name: cert-manager-webhook\n";
        // Both carried under mirror/jetstack: the two shared values change.
        let m = ImageMap::from_entries(
            "registry.local:5000",
            vec![
                entry("cert-manager-controller", "mirror/jetstack"),
                entry("cert-manager-webhook", "mirror/jetstack"),
            ],
        );
        let (out, found) = rewrite(values, &m, RewriteOptions::default()).unwrap();
        assert_eq!(
            out,
            "imageRegistry: registry.local:5000 # default\nimageNamespace: \"mirror/jetstack\"\nimage:\n  name: cert-manager-controller\n  repository: \"\"\nwebhook:\n  image:\n    name: cert-manager-webhook\n"
        );
        assert_eq!(found.len(), 2);
        assert!(found
            .iter()
            .all(|f| f.form == "cert-manager" && matches!(f.outcome, Outcome::Rewritten { .. })));
        // One missing: nothing changes and it is reported.
        let m = ImageMap::from_entries(
            "registry.local:5000",
            vec![entry("cert-manager-controller", "jetstack")],
        );
        let (out, found) = rewrite(values, &m, RewriteOptions::default()).unwrap();
        assert_eq!(out, values);
        assert!(found.iter().any(|f| f.outcome == Outcome::NotInBundle
            && f.reference == "quay.io/jetstack/cert-manager-webhook"));
        // Without the top-level values there is nothing to redirect.
        let (_, found) = rw("image:\n  name: cert-manager-controller\n");
        assert!(matches!(found[0].outcome, Outcome::Skipped { .. }));
    }

    #[test]
    fn string_form_keeps_everything_else() {
        let src = "# a comment\napiVersion: v1\nkind: Pod\nspec:\n  containers:\n    - name: web   # inline\n      image: nginx:1.27\n    - name: db\n      image: \"postgres:16\"\n  initContainers:\n  - {name: init, image: 'nginx:1.27'}\n---\nimage: nginx:1.27\n";
        let (out, found) = rw(src);
        assert_eq!(
            out,
            src.replace(
                "image: nginx:1.27\n    -",
                "image: registry.local:5000/library/nginx:1.27\n    -"
            )
            .replace("'nginx:1.27'", "'registry.local:5000/library/nginx:1.27'")
            .replace(
                "---\nimage: nginx:1.27",
                "---\nimage: registry.local:5000/library/nginx:1.27"
            )
        );
        let outcomes: Vec<_> = found.iter().map(|f| (f.line, &f.outcome)).collect();
        assert_eq!(outcomes.len(), 4, "{found:?}");
        assert_eq!(found[0].path, "spec.containers[]");
        assert_eq!(found[1].outcome, Outcome::NotInBundle);
        assert_eq!(found[1].line, 9);
    }

    #[test]
    fn digest_pinning_and_already_local() {
        let src = "image: nginx:1.27\nother:\n  image: registry.local:5000/library/nginx:1.27\n";
        let (out, found) = rewrite(
            src,
            &map(),
            RewriteOptions {
                pin_digest: true,
                ..RewriteOptions::default()
            },
        )
        .unwrap();
        let d = Digest::of(b"nginx");
        assert!(
            out.starts_with(&format!(
                "image: registry.local:5000/library/nginx:1.27@{d}\n"
            )),
            "{out}"
        );
        assert_eq!(found[1].outcome, Outcome::AlreadyLocal);
        // A digest reference is matched by digest and stays pinned.
        let src = format!("image: nginx@{d}\n");
        let (out, _) = rw(&src);
        assert_eq!(
            out,
            format!("image: registry.local:5000/library/nginx@{d}\n")
        );
    }

    #[test]
    fn helm_split_form() {
        let src = "global:\n  imageRegistry: \"\"\nimage:\n  registry: docker.io\n  repository: bitnami/redis\n  tag: \"8.2\"\n  digest: \"\"\n  pullPolicy: IfNotPresent\n";
        let (out, found) = rewrite(
            src,
            &map(),
            RewriteOptions {
                pin_digest: true,
                ..RewriteOptions::default()
            },
        )
        .unwrap();
        let d = Digest::of(b"redis");
        assert_eq!(
            out,
            format!("global:\n  imageRegistry: \"\"\nimage:\n  registry: registry.local:5000\n  repository: bitnami/redis\n  tag: \"8.2\"\n  digest: \"{d}\"\n  pullPolicy: IfNotPresent\n")
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].form, "helm split");
    }

    #[test]
    fn images_digests_maps() {
        let d = Digest::of(b"nginx");
        let other = Digest::of(b"source");
        let src = format!("images_digests:\n  web:\n    nginx:\n      image_digest: {other}\n      image_repository_path: library/nginx\n      image_repository_server: docker.io\n      image_tag: '1.27'\n    other:\n      image_repository_path: x/y\n      image_repository_server: quay.io\n");
        let map = ImageMap::from_entries(
            "registry.local:5000",
            vec![MapEntry {
                source: "docker.io/library/nginx:1.27".into(),
                target: "registry.local:5000/library/nginx".into(),
                tag: Some("1.27".into()),
                digest: d,
                source_digest: Some(other),
                converted: Vec::new(),
            }],
        );
        let (out, found) = rewrite(&src, &map, RewriteOptions::default()).unwrap();
        assert_eq!(
            out,
            src.replace(&other.to_string(), &d.to_string()).replace(
                "image_repository_server: docker.io",
                "image_repository_server: registry.local:5000"
            )
        );
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].form, "images_digests");
        assert_eq!(found[1].outcome, Outcome::NotInBundle);
    }

    #[test]
    fn kustomize_images() {
        let src = "images:\n- name: quay.io/argoproj/argocd\n  newName: quay.io/argoproj/argocd\n  newTag: latest\nresources:\n- ./x\n";
        let (out, found) = rw(src);
        assert_eq!(
            out,
            src.replace(
                "  newName: quay.io/argoproj/argocd",
                "  newName: registry.local:5000/argoproj/argocd"
            )
        );
        assert_eq!(found[0].form, "kustomize");
    }

    #[test]
    fn anchors_flow_crlf_bom_and_templates() {
        let src = "\u{feff}x-img: &img nginx:1.27\r\nsvc:\r\n  a: {image: *img}\r\n  b:\r\n    image: ${IMAGE}:1\r\n  c:\r\n    image: \"{{ .Values.image }}\"\r\n";
        let (out, found) = rw(src);
        // The anchored value is not under an `image` key: left alone (its alias is not a scalar).
        assert_eq!(out, src);
        assert!(found
            .iter()
            .any(|f| matches!(f.outcome, Outcome::Skipped { .. })));
        let src = "a:\r\n  image: &i nginx:1.27\r\nb:\r\n  image: *i\r\n";
        let (out, _) = rw(src);
        assert_eq!(
            out,
            src.replace("&i nginx:1.27", "&i registry.local:5000/library/nginx:1.27")
        );
    }

    #[test]
    fn block_scalars_survive_and_their_text_is_not_rewritten() {
        let src = "script: |\n  docker pull nginx:1.27\n  image: nginx:1.27\nnote: >-\n  folded\n  text\nimage: nginx:1.27 # the only value\n";
        let (out, found) = rw(src);
        assert_eq!(
            out,
            src.replace(
                "image: nginx:1.27 # the only",
                "image: registry.local:5000/library/nginx:1.27 # the only"
            )
        );
        assert_eq!(found.len(), 1);
        // The same with the value itself a block scalar: reported, not edited.
        let src = "image: |\n  nginx:1.27\n";
        let (out, _) = rw(src);
        assert_eq!(out, src);
    }

    /// The ESS override as a ConfigMap: the installer's tree inside
    /// `data.images_digests: |`.
    const ESS_CONFIGMAP: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ess-images # the override\ndata:\n  images_digests: |\n    # from images_digests.yml\n    element_web:\n      element_web:\n        image_digest: sha256:SOURCE\n        image_repository_path: library/nginx\n        image_repository_server: docker.io\n        image_tag: \"1.27\"\n\n    synapse:\n      redis:\n        image_repository_path: bitnami/redis\n        image_repository_server: docker.io\n        image_tag: '8.2'\n  other: |\n    plain text: not images\n";

    #[test]
    fn yaml_in_a_configmap_block_is_rewritten_in_place() {
        let d = Digest::of(b"nginx");
        let src = ESS_CONFIGMAP.replace("sha256:SOURCE", &d.to_string());
        let (out, found) = rw(&src);
        let want = src
            .replace(
                "image_repository_server: docker.io\n        image_tag: \"1.27\"",
                "image_repository_server: registry.local:5000\n        image_tag: \"1.27\"",
            )
            .replace(
                "image_repository_server: docker.io\n        image_tag: '8.2'",
                "image_repository_server: registry.local:5000\n        image_tag: '8.2'",
            );
        assert_eq!(out, want);
        assert_eq!(found.len(), 2, "{found:?}");
        // Lines of the outer file, and the block's key path.
        assert_eq!(found[0].line, 12);
        assert_eq!(found[1].line, 18);
        assert_eq!(found[0].path, "element_web.element_web");
        assert_eq!(found[1].path, "synapse.redis");
        assert!(found
            .iter()
            .all(|f| f.block.as_deref() == Some("data.images_digests")
                && f.form == "images_digests"
                && matches!(f.outcome, Outcome::Rewritten { .. })));
        // A second pass finds everything local.
        let (again, found) = rw(&out);
        assert_eq!(again, out);
        assert!(found.iter().all(|f| f.outcome == Outcome::AlreadyLocal));
    }

    #[test]
    fn a_configmap_naming_a_missing_image_reports_it() {
        let src = ESS_CONFIGMAP
            .replace("library/nginx", "library/absent")
            .replace("sha256:SOURCE", &Digest::of(b"absent").to_string());
        let (_, found) = rw(&src);
        let missing: Vec<_> = found
            .iter()
            .filter(|f| f.outcome == Outcome::NotInBundle)
            .collect();
        assert_eq!(missing.len(), 1, "{found:?}");
        assert!(missing[0]
            .reference
            .starts_with("docker.io/library/absent:1.27"));
        assert_eq!(missing[0].block.as_deref(), Some("data.images_digests"));
    }

    #[test]
    fn argo_cd_helm_values_crlf_chomping_and_indicators() {
        let src = "apiVersion: argoproj.io/v1alpha1\r\nkind: Application\r\nspec:\r\n  source:\r\n    helm:\r\n      values: |-\r\n\r\n        image:\r\n          registry: docker.io\r\n          repository: bitnami/redis\r\n          tag: \"8.2\"\r\n  list:\r\n    - |2\r\n        image: nginx:1.27\r\n  more: |2\r\n      image: nginx:1.27\r\n";
        let (out, found) = rw(src);
        assert_eq!(
            out,
            src.replace("registry: docker.io", "registry: registry.local:5000")
                .replace(
                    "more: |2\r\n      image: nginx:1.27\r\n",
                    "more: |2\r\n      image: registry.local:5000/library/nginx:1.27\r\n"
                )
        );
        // (A block as a sequence item is not read.)
        let blocks: Vec<_> = found.iter().map(|f| (f.line, f.block.as_deref())).collect();
        assert_eq!(
            blocks,
            vec![
                (10, Some("spec.source.helm.values")),
                (16, Some("spec.more"))
            ]
        );
    }

    #[test]
    fn unreadable_blocks_are_reported_and_those_naming_a_registry_fail() {
        // Looks like YAML, does not parse, names a registry: unreadable.
        let src =
            "data:\n  bad: |\n    image: quay.io/org/app:1\n      - broken: [\n  ok: |\n    a: [\n";
        let (out, found) = rw(src);
        assert_eq!(out, src);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            matches!(&found[0].outcome, Outcome::Unreadable { reason } if reason.contains("does not parse")),
            "{found:?}"
        );
        assert_eq!(found[0].reference, "quay.io/org/app:1");
        assert_eq!(found[0].block.as_deref(), Some("data.bad"));
        // Names no registry: skipped.
        assert!(matches!(&found[1].outcome, Outcome::Skipped { .. }));
        // Folded blocks and multi-line quoted strings are not read.
        let src = "data:\n  f: >\n    image_repository_server: gitlab-registry.matrix.org\n    image_repository_path: x/y\n  q: \"image: ghcr.io/a/b:1\\nother: 1\"\n  s: >\n    a: b\n";
        let (out, found) = rw(src);
        assert_eq!(out, src);
        let outcomes: Vec<_> = found
            .iter()
            .map(|f| {
                (
                    f.block.as_deref().unwrap(),
                    matches!(f.outcome, Outcome::Unreadable { .. }),
                )
            })
            .collect();
        assert_eq!(outcomes, vec![("data.f", true), ("data.q", false)]);
        assert_eq!(found[1].outcome, Outcome::NotInBundle);
        assert_eq!(found[1].reference, "ghcr.io/a/b:1");
        // Found in a folded block and carried: reported, not rewritten.
        let src = "data:\n  f: >\n    image: nginx:1.27\n";
        let (out, found) = rw(src);
        assert_eq!(out, src);
        assert!(
            matches!(&found[0].outcome, Outcome::Skipped { reason } if reason.contains("folded")),
            "{found:?}"
        );
        // Shell scripts are not YAML and are not reported.
        let (_, found) = rw("script: |\n  set -e\n  docker pull quay.io/org/app:1\n");
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn json_in_a_literal_block_is_rewritten_too() {
        let src = "kind: ConfigMap\ndata:\n  config.json: |\n    {\"services\": [\n      {\"name\": \"web\", \"image\": \"nginx:1.27\"}\n    ]}\n";
        let (out, found) = rw(src);
        assert_eq!(
            out,
            src.replace(
                "\"nginx:1.27\"",
                "\"registry.local:5000/library/nginx:1.27\""
            )
        );
        assert_eq!(found[0].block.as_deref(), Some("data.config.json"));
        assert_eq!(found[0].line, 5);
    }

    #[test]
    fn blocks_within_blocks_and_the_depth_limit() {
        let src = "outer: |\n  inner: |\n    image: nginx:1.27\n";
        let (out, found) = rw(src);
        assert_eq!(
            out,
            src.replace("image: nginx", "image: registry.local:5000/library/nginx")
        );
        assert_eq!(found[0].block.as_deref(), Some("outer > inner"));
        assert_eq!(found[0].line, 3);
        // Deeper than the limit: reported, not read.
        let mut deep = String::from("image: docker.io/library/nginx:1.27\n");
        for i in 0..=MAX_BLOCK_DEPTH {
            let body: String = deep.lines().map(|l| format!("  {l}\n")).collect();
            deep = format!("k{i}: |\n{body}");
        }
        let (out, found) = rw(&deep);
        assert_eq!(out, deep);
        assert!(
            matches!(&found[0].outcome, Outcome::Unreadable { reason } if reason.contains("nested")),
            "{found:?}"
        );
    }

    #[test]
    fn multibyte_text_before_values() {
        let src = "# café ☕ — ünïcode\nname: \"日本\"\nimage: nginx:1.27\n";
        let (out, _) = rw(src);
        assert_eq!(
            out,
            src.replace(
                "image: nginx:1.27",
                "image: registry.local:5000/library/nginx:1.27"
            )
        );
    }

    #[test]
    fn invalid_yaml_names_position() {
        let e = rw_err("a: [1, 2\nb: c\n");
        assert!(e.contains("line "), "{e}");
    }

    #[test]
    fn pieces_give_the_same_result_as_one_parse() {
        let src = "a: 1\n---\nimage: nginx:1.27\n--- # c\nx:\n  image: nginx:1.27\n---\r\nb: [\n  1\n]\n--- \nimage: redis\n";
        let whole = rewrite_document(src, &map(), RewriteOptions::default()).unwrap();
        let pieces = rewrite_in_pieces(src, &map(), RewriteOptions::default(), 1).unwrap();
        assert_eq!(split_documents(src, 1).len(), 5);
        assert_eq!(whole, pieces);
        assert_eq!(
            pieces.1.iter().map(|f| f.line).collect::<Vec<_>>(),
            vec![3, 6, 12]
        );
        let e = rewrite_in_pieces("a: 1\n---\nb: [1\n", &map(), RewriteOptions::default(), 1)
            .unwrap_err();
        assert!(
            e.to_string().contains("line 4") || e.to_string().contains("line 3"),
            "{e}"
        );
    }

    /// The fast scanner, where it accepts a text, yields exactly the full
    /// parser's events.
    fn same_events(text: &str) -> bool {
        let mut fast = Vec::new();
        match fast::scan(text, &mut |e| fast.push(e)) {
            Some(()) => {
                let slow = parsed_events(text).expect("valid YAML");
                assert_eq!(fast, slow, "fast scanner differs on:\n{text}");
                true
            }
            None => false,
        }
    }

    #[test]
    fn fast_scanner_matches_the_parser_on_the_corpus() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
        let (mut fast, mut all) = (0, 0);
        for e in walkdir::WalkDir::new(dir).sort_by_file_name() {
            let e = e.unwrap();
            let ext = e.path().extension().and_then(|x| x.to_str()).unwrap_or("");
            if !e.file_type().is_file() || !matches!(ext, "yaml" | "yml" | "json") {
                continue;
            }
            let text = std::fs::read_to_string(e.path()).unwrap();
            // Per document, as the rewriter cuts streams.
            for d in split_documents(&text, 0) {
                all += 1;
                if same_events(d) {
                    fast += 1;
                }
            }
        }
        assert!(all > 0);
        eprintln!("fast scanner took {fast} of {all} corpus documents");
    }

    #[test]
    fn fast_scanner_matches_the_parser_on_tricky_inputs() {
        let cases = [
            "a:\nb: 1\nc: \"x\"\nd: [1, {e: f}]\ng:\n- h\n- i: \nj: k # c\n",
            "image: nginx:1.27\n",
            "---\na: 1\n---\nb: 2\n...\n",
            "spec:\n  containers:\n    - name: a\n      image: 'x:1'\n    - name: b\n      image: \"y\"\n",
            "list:\n- a\n- b\nnext: c\n",
            "m:\n  k:\n  l: v\n",
            "a: {x: 1, y: \"2\", z: 'it''s'}\nb: []\nc: {}\n",
            "k: v   \nk2: v2 # comment\n",
            "\u{feff}a: b\r\nc: d\r\n",
            "a: http://x:80/y\nb: -1\n",
            "- a\n- b: c\n  d: e\n-   f: g\n",
            "\"quoted key\": v\n'single': w\n",
            "a:\n  - b\n  -\n    c: d\n",
            "x: [a, b]  # trailing\n",
            "a: |\n  text\n",
            "data:\n  d: |\n    a:\n      b: c\n\n    d: e\nx: 1\n",
            "k: |\n  a: 1",
            "k: |\n  a: 1\n\n",
            "k: |\n  a: 1\n  \n \n",
            "k: |\r\n  a: 1\r\n\r\nz: 1\r\n",
            "m:\n  k: |\n    a\n  z: 1\n",
            "m:\n  k: |\n    a\n   \n  z: 1\n",
            "k: |\n  a\n---\nb: 1\n",
            "k: |\n  a\n\n# c\nz: 1\n",
            "k: |\n\n  a\n\n   b\n\n",
            "k: |+\n  a\n\n\n",
            "k: |-\n  a\n\n\n",
            "k: | # c\n  a\n",
            "k: |\n  a\n...\n",
            "k: |\n  a\n # c\nz: 2\n",
            "k: |\n  a\tb\n    \t\n",
            "- k: |\n    x\n  j: 1\n",
        ];
        for c in cases {
            assert!(same_events(c), "{c:?} should take the fast path");
        }
        // Outside the subset: the full parser decides.
        for c in [
            "a: &x 1\nb: *x\n",
            "a: >\n  text\n",
            "a: |2\n    text\n",
            "- |\n  text\n",
            "a: |\nb: 1\n",
            "a: |\n   \n  text\n",
            "a: b\n  c\n",
            "a: \"x\\ny\"\n",
            "{\"a\": 1}\n",
            "a: [1,\n 2]\n",
            "%YAML 1.2\n---\na: 1\n",
            "? a\n: b\n",
            "- - a\n",
            "a: !!str 1\n",
        ] {
            assert!(
                fast::scan(c, &mut |_| {}).is_none(),
                "{c:?} should go to the parser"
            );
        }
    }

    /// Random documents built from the pieces manifests are made of (and
    /// some broken indentation): wherever the fast scanner accepts one, the
    /// parser must accept it too and yield the same events.
    #[test]
    fn fast_scanner_agrees_with_the_parser_on_random_documents() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let keys = [
            "image",
            "name",
            "tag",
            "repository",
            "registry",
            "a",
            "\"q k\"",
            "'s'",
        ];
        let values = [
            "nginx:1.27",
            "\"x:1\"",
            "'y'",
            "''",
            "\"\"",
            "1",
            "-1",
            "http://h:1/p",
            "{a: 1, b: \"2\"}",
            "[x, 'y', \"z\"]",
            "[]",
            "{}",
            "v # c",
            "a b c",
            "~",
        ];
        let (mut accepted, mut total, mut blocks) = (0, 0, 0);
        for _ in 0..10000 {
            let mut doc = String::new();
            let mut indent = 0usize;
            for _ in 0..(1 + next(12)) {
                match next(10) {
                    0 if indent >= 2 => indent -= 2,
                    1 => indent += 2,
                    2 => indent = 0,
                    _ => {}
                }
                let pad = " ".repeat(indent + usize::from(next(25) == 0));
                let line = match next(10) {
                    8 => format!(
                        "{pad}{}: |{}",
                        keys[next(keys.len())],
                        ["", "-", "+", " # c"][next(4)]
                    ),
                    9 => format!(
                        "{pad}{}",
                        ["", " ", "  text", "    more: x", "\tx", "#", "- y"][next(7)]
                    ),
                    0 => format!("{pad}- {}", values[next(values.len())]),
                    1 => format!(
                        "{pad}- {}: {}",
                        keys[next(keys.len())],
                        values[next(values.len())]
                    ),
                    2 => format!("{pad}{}:", keys[next(keys.len())]),
                    3 => format!("{pad}- {}:", keys[next(keys.len())]),
                    4 => "# comment".to_owned(),
                    5 => String::new(),
                    _ => format!(
                        "{pad}{}: {}",
                        keys[next(keys.len())],
                        values[next(values.len())]
                    ),
                };
                doc.push_str(&line);
                doc.push(if next(20) == 0 { '\r' } else { ' ' });
                doc.pop();
                doc.push('\n');
                if next(15) == 0 {
                    doc.push_str("---\n");
                    indent = 0;
                }
            }
            total += 1;
            let mut fast = Vec::new();
            if fast::scan(&doc, &mut |e| fast.push(e)).is_some() {
                accepted += 1;
                let slow = parsed_events(&doc)
                    .unwrap_or_else(|e| panic!("fast scanner accepted invalid YAML ({e}):\n{doc}"));
                assert_eq!(fast, slow, "fast scanner differs on:\n{doc}");
                blocks += usize::from(fast.iter().any(|e| {
                    matches!(
                        e,
                        Ev::Scalar {
                            style: ScalarStyle::Literal,
                            ..
                        }
                    )
                }));
            }
        }
        assert!(accepted > total / 10, "{accepted} of {total} accepted");
        assert!(
            blocks > 60,
            "{blocks} accepted documents with a block scalar"
        );
    }

    /// Literal blocks with random indentation, blank lines, tabs,
    /// comments and separators: wherever the fast scanner accepts one it
    /// yields the parser's events.
    #[test]
    fn fast_scanner_agrees_with_the_parser_on_random_blocks() {
        let mut seed = 0x5851_f42d_4c95_7f2du64;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let (mut accepted, mut blocks) = (0, 0);
        for _ in 0..5000 {
            let parent = next(3) * 2;
            let mut doc = String::new();
            if parent > 0 {
                doc.push_str("m:\n");
                if parent > 2 {
                    doc.push_str("  n:\n");
                }
            }
            doc.push_str(&" ".repeat(parent));
            doc.push_str(["k: |", "k: |-", "k: |+", "k: | # c", "k: |1", "k: |x"][next(6)]);
            doc.push_str(if next(10) == 0 { "\r\n" } else { "\n" });
            for _ in 0..next(7) {
                let pad = " ".repeat(next(parent + 6));
                let text = ["a: 1", "", "# c", "\tx", "---", "- y", "z: |", "b"][next(8)];
                doc.push_str(&pad);
                doc.push_str(text);
                doc.push_str(if next(10) == 0 { "\r\n" } else { "\n" });
            }
            if next(3) == 0 {
                doc.push_str(&" ".repeat(parent));
                doc.push_str("after: 1\n");
            }
            if next(4) == 0 {
                doc.pop();
            }
            let mut fast = Vec::new();
            if fast::scan(&doc, &mut |e| fast.push(e)).is_some() {
                accepted += 1;
                let slow = parsed_events(&doc).unwrap_or_else(|e| {
                    panic!("fast scanner accepted invalid YAML ({e}):\n{doc:?}")
                });
                assert_eq!(fast, slow, "fast scanner differs on:\n{doc:?}");
                blocks += usize::from(fast.iter().any(|e| {
                    matches!(
                        e,
                        Ev::Scalar {
                            style: ScalarStyle::Literal,
                            ..
                        }
                    )
                }));
            }
        }
        assert!(
            blocks > 500,
            "{blocks} of {accepted} accepted documents had a block"
        );
    }

    /// Garbage made of YAML's significant characters never panics the
    /// fast scanner, and what it accepts the parser accepts alike.
    #[test]
    fn fast_scanner_survives_garbage() {
        let alphabet: Vec<char> = " \n\r\t-:#'\"{}[],&*!|>?%@`~ab1é\u{feff}".chars().collect();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20000 {
            let mut doc = String::new();
            for _ in 0..(seed % 60) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                doc.push(alphabet[(seed % alphabet.len() as u64) as usize]);
            }
            let mut fast = Vec::new();
            if fast::scan(&doc, &mut |e| fast.push(e)).is_some() {
                match parsed_events(&doc) {
                    Ok(slow) => assert_eq!(fast, slow, "differs on {doc:?}"),
                    Err(e) => panic!("fast scanner accepted {doc:?}, the parser says {e}"),
                }
            }
        }
    }

    fn rw_err(text: &str) -> String {
        rewrite(text, &map(), RewriteOptions::default())
            .unwrap_err()
            .to_string()
    }
}
