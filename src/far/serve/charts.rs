//! `serve`'s classic Helm chart repository: `/charts/index.yaml`, written
//! once at start-up from the bundle's chart artifacts, and the chart
//! archives it lists, `/charts/NAME-VERSION.tgz`.
//!
//! Each entry is the chart's metadata as its Helm config blob holds it
//! (read through the verifying blob path, not taken from bundle.json),
//! kept to the fields and types Helm 3's index loader knows, plus `urls`
//! (one URL relative to the index), `digest` (hex sha256 of the chart
//! archive, the chart layer) and `created`. Helm reads index.yaml
//! strictly: one unknown field or one value of the wrong type makes the
//! whole repository unusable, so a field outside that schema is dropped
//! and a chart whose metadata cannot fit it is left out with a note.
//! Versions are listed newest first by SemVer, as Helm sorts them.
//! Timestamps come from the bundle, never from the clock, so the same
//! bundle always gives the same bytes.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::base::digest::Digest;
use crate::format::bundle::{chart_semver, Artifact};
use crate::format::oci;

/// The largest Helm config blob read (Chart.yaml's metadata as JSON).
const CONFIG_MAX_BYTES: u64 = 1 << 20;

/// `created` and `generated` when the bundle records no time: the Unix
/// epoch, a fixed value rather than the clock.
pub(super) const EPOCH: &str = "1970-01-01T00:00:00Z";

/// The media type index.yaml is served with.
pub(super) const INDEX_MEDIA_TYPE: &str = "application/yaml";

/// The media type chart archives are served with.
pub(super) const CHART_MEDIA_TYPE: &str = "application/gzip";

/// A chart artifact, with its root manifest as checked at start-up.
pub(super) struct ChartSource<'a> {
    pub artifact: &'a Artifact,
    pub manifest: &'a [u8],
    pub media_type: &'a str,
}

/// The repository: index.yaml's bytes and where each archive it lists is.
#[derive(Debug)]
pub(super) struct ChartRepo {
    pub index: bytes::Bytes,
    /// Its digest, the ETag it is served with.
    pub index_digest: Digest,
    /// `NAME-VERSION.tgz` → the chart layer's digest.
    pub archives: BTreeMap<String, Digest>,
}

/// One entry on its way into the index.
struct Entry {
    name: String,
    version: String,
    reference: String,
    layer: Digest,
    fields: BTreeMap<String, Value>,
}

/// Builds the repository. `read_config` reads (and checks) a config blob
/// by digest. `created` is bundle.json's creation time, if any. A chart
/// that cannot be listed is left out with a line in `notes`; two
/// different charts with one name and version are an `Err`, since one
/// URL could serve only one of them.
pub(super) fn build(
    charts: &[ChartSource<'_>],
    read_config: &dyn Fn(&Digest, u64) -> std::io::Result<Vec<u8>>,
    created: Option<&str>,
    notes: &mut Vec<String>,
) -> Result<ChartRepo, String> {
    let bundle_time = created.filter(|t| is_rfc3339(t));
    let mut entries: BTreeMap<(String, String), Entry> = BTreeMap::new();
    for c in charts {
        let entry = match entry(c, read_config, bundle_time) {
            Ok(e) => e,
            Err(why) => {
                notes.push(format!(
                    "chart {} is left out of /charts/index.yaml: {why}",
                    c.artifact.reference
                ));
                continue;
            }
        };
        let key = (entry.name.clone(), entry.version.clone());
        if let Some(first) = entries.get(&key) {
            if first.layer == entry.layer {
                continue;
            }
            return Err(format!(
                "the charts {} and {} are both {} {} with different archives ({} and {}); /charts/{}-{}.tgz can serve only one: leave one out of the bundle",
                first.reference, entry.reference, key.0, key.1, first.layer, entry.layer, key.0, key.1
            ));
        }
        entries.insert(key, entry);
    }
    let mut archives = BTreeMap::new();
    let mut by_name: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
    for ((name, version), e) in entries {
        archives.insert(archive_name(&name, &version), e.layer);
        by_name.entry(name).or_default().push(e);
    }
    let mut listed: BTreeMap<String, Value> = BTreeMap::new();
    for (name, mut versions) in by_name {
        // Newest first; equal precedence (build metadata only) by text.
        versions.sort_by(|a, b| {
            match (chart_semver(&a.version), chart_semver(&b.version)) {
                (Some(x), Some(y)) => y.cmp_precedence(&x),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            }
            .then_with(|| a.version.cmp(&b.version))
        });
        let list = versions
            .into_iter()
            .map(|e| Value::Object(e.fields.into_iter().collect()))
            .collect();
        listed.insert(name, Value::Array(list));
    }
    let mut top: BTreeMap<&str, Value> = BTreeMap::new();
    top.insert("apiVersion", "v1".into());
    top.insert("entries", Value::Object(listed.into_iter().collect()));
    top.insert("generated", bundle_time.unwrap_or(EPOCH).into());
    let index = to_yaml(&top).map_err(|e| format!("cannot write index.yaml: {e}"))?;
    Ok(ChartRepo {
        index_digest: Digest::of(index.as_bytes()),
        index: index.into(),
        archives,
    })
}

/// The file name a chart archive is served under, relative to the index.
pub(super) fn archive_name(name: &str, version: &str) -> String {
    format!("{name}-{version}.tgz")
}

/// YAML as Helm reads it: strings that YAML 1.1 (Go's parser) would take
/// for numbers, booleans or times are quoted, and every string stays on
/// one line (no block or folded scalars to misread).
fn to_yaml<T: serde::Serialize>(value: &T) -> Result<String, serde_saphyr::SerializeError> {
    let options = serde_saphyr::ser_options! {
        prefer_block_scalars: false,
    };
    serde_saphyr::to_string_with_options(value, options)
}

fn entry(
    c: &ChartSource<'_>,
    read_config: &dyn Fn(&Digest, u64) -> std::io::Result<Vec<u8>>,
    bundle_time: Option<&str>,
) -> Result<Entry, String> {
    let a = c.artifact;
    let m = match oci::parse_node(a.digest, c.media_type, c.manifest) {
        Ok(oci::Node::Manifest(m)) => m,
        Ok(oci::Node::Index(_)) => return Err("its root is an index, not a chart manifest".into()),
        Err(e) => return Err(format!("its manifest does not parse: {e}")),
    };
    if m.config.media_type != oci::HELM_CONFIG {
        return Err(format!(
            "its config has media type {:?}, not {:?}",
            m.config.media_type,
            oci::HELM_CONFIG
        ));
    }
    let layers: Vec<&oci::Descriptor> = m
        .layers
        .iter()
        .filter(|l| l.media_type == oci::HELM_CHART)
        .collect();
    let [layer] = layers.as_slice() else {
        return Err(format!(
            "it has {} {} layers, not one",
            layers.len(),
            oci::HELM_CHART
        ));
    };
    let config = read_config(&m.config.digest, CONFIG_MAX_BYTES)
        .map_err(|e| format!("its config {} cannot be read: {e}", m.config.digest))?;
    let mut fields = helm_metadata(&config)?;
    let text = |k: &str| fields.get(k).and_then(Value::as_str).map(str::to_owned);
    let (Some(name), Some(version)) = (text("name"), text("version")) else {
        return Err("its Helm config has no name or no version".into());
    };
    if let Some(info) = &a.chart {
        if info.name != name || info.version != version {
            return Err(format!(
                "its Helm config says {name} {version} but bundle.json says {} {}",
                info.name, info.version
            ));
        }
    }
    // What Helm's loader checks of each entry, skipping one that fails.
    crate::format::bundle::check_chart(&name, &version)?;
    if let Some(t) = text("type").filter(|t| t != "application" && t != "library") {
        return Err(format!("its type {t:?} is neither application nor library"));
    }
    let created = m
        .annotations
        .get(oci::ANN_CREATED)
        .map(String::as_str)
        .filter(|t| is_rfc3339(t))
        .or(bundle_time)
        .unwrap_or(EPOCH);
    fields.insert(
        "urls".into(),
        Value::Array(vec![archive_name(&name, &version).into()]),
    );
    fields.insert("digest".into(), layer.digest.hex().into());
    fields.insert("created".into(), created.into());
    Ok(Entry {
        name,
        version,
        reference: a.reference.clone(),
        layer: layer.digest,
        fields,
    })
}

/// The shape of a field of Helm's chart metadata (Helm 3's
/// `chart.Metadata`, the fields a Chart.yaml may hold).
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Texts,
    Flag,
    TextMap,
    Maintainers,
    Dependencies,
}

const METADATA: &[(&str, Kind)] = &[
    ("name", Kind::Text),
    ("home", Kind::Text),
    ("sources", Kind::Texts),
    ("version", Kind::Text),
    ("description", Kind::Text),
    ("keywords", Kind::Texts),
    ("maintainers", Kind::Maintainers),
    ("icon", Kind::Text),
    ("apiVersion", Kind::Text),
    ("condition", Kind::Text),
    ("tags", Kind::Text),
    ("appVersion", Kind::Text),
    ("deprecated", Kind::Flag),
    ("annotations", Kind::TextMap),
    ("kubeVersion", Kind::Text),
    ("dependencies", Kind::Dependencies),
    ("type", Kind::Text),
];

const MAINTAINER: &[(&str, Kind)] = &[
    ("name", Kind::Text),
    ("email", Kind::Text),
    ("url", Kind::Text),
];

/// `import-values` is free-form in Helm (strings or child/parent pairs):
/// kept as it is.
const DEPENDENCY: &[(&str, Kind)] = &[
    ("name", Kind::Text),
    ("version", Kind::Text),
    ("repository", Kind::Text),
    ("condition", Kind::Text),
    ("tags", Kind::Texts),
    ("enabled", Kind::Flag),
    ("alias", Kind::Text),
];

/// The Helm config's metadata, as index entry fields of Helm's types:
/// unknown fields dropped, empty ones left out (as Helm writes them),
/// numbers and booleans where Helm has text turned into text. `Err` names
/// a field no reader could take.
fn helm_metadata(config: &[u8]) -> Result<BTreeMap<String, Value>, String> {
    let v: Value =
        serde_json::from_slice(config).map_err(|e| format!("its Helm config is not JSON: {e}"))?;
    let Value::Object(obj) = v else {
        return Err("its Helm config is not a JSON object".into());
    };
    let mut out = object(&obj, METADATA)?;
    // The loader treats a missing apiVersion as v1; say so.
    out.entry("apiVersion".into())
        .or_insert_with(|| "v1".into());
    Ok(out)
}

fn object(
    obj: &serde_json::Map<String, Value>,
    fields: &[(&str, Kind)],
) -> Result<BTreeMap<String, Value>, String> {
    let mut out = BTreeMap::new();
    for (key, kind) in fields {
        let Some(v) = obj.get(*key) else { continue };
        let v = convert(v, *kind).map_err(|what| format!("`{key}` {what}"))?;
        if let Some(v) = v {
            out.insert((*key).to_owned(), v);
        }
    }
    Ok(out)
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// One field as Helm's type, `None` when empty.
fn convert(v: &Value, kind: Kind) -> Result<Option<Value>, String> {
    if v.is_null() {
        return Ok(None);
    }
    let list = |v: &Value| match v {
        Value::Array(items) => Ok(items.clone()),
        _ => Err("is not a list".to_owned()),
    };
    let non_empty = |items: Vec<Value>| (!items.is_empty()).then_some(Value::Array(items));
    Ok(match kind {
        Kind::Text => {
            let s = scalar_text(v).ok_or("is not text")?;
            (!s.is_empty()).then_some(Value::String(s))
        }
        Kind::Texts => non_empty(
            list(v)?
                .iter()
                .map(|i| scalar_text(i).map(Value::String))
                .collect::<Option<_>>()
                .ok_or("holds an item that is not text")?,
        ),
        Kind::Flag => match v {
            Value::Bool(b) => b.then_some(Value::Bool(true)),
            _ => return Err("is not true or false".into()),
        },
        Kind::TextMap => {
            let Value::Object(m) = v else {
                return Err("is not a mapping".into());
            };
            let mut out = serde_json::Map::new();
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            for k in keys {
                let s = m
                    .get(k)
                    .and_then(scalar_text)
                    .ok_or("holds a value that is not text")?;
                out.insert(k.clone(), Value::String(s));
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        Kind::Maintainers | Kind::Dependencies => {
            let fields = match kind {
                Kind::Maintainers => MAINTAINER,
                _ => DEPENDENCY,
            };
            let mut out = Vec::new();
            for item in list(v)? {
                let Value::Object(o) = &item else {
                    return Err("holds an item that is not a mapping".into());
                };
                let mut m = object(o, fields)?;
                if let Some(iv) = o
                    .get("import-values")
                    .filter(|_| matches!(kind, Kind::Dependencies))
                {
                    match iv {
                        Value::Null => {}
                        Value::Array(a) if a.is_empty() => {}
                        Value::Array(_) => {
                            m.insert("import-values".into(), iv.clone());
                        }
                        _ => return Err("holds an `import-values` that is not a list".into()),
                    }
                }
                out.push(Value::Object(m.into_iter().collect()));
            }
            non_empty(out)
        }
    })
}

/// Whether `t` is an RFC 3339 time as Go's `time.Time` reads it from
/// JSON: `YYYY-MM-DDTHH:MM:SS`, optional fraction, then `Z` or `±HH:MM`,
/// every number in range.
pub(super) fn is_rfc3339(t: &str) -> bool {
    let b = t.as_bytes();
    let num = |from: usize, len: usize| -> Option<u32> {
        let s = b.get(from..from + len)?;
        s.iter()
            .all(u8::is_ascii_digit)
            .then(|| s.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0')))
    };
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
        num(0, 4),
        num(5, 2),
        num(8, 2),
        num(11, 2),
        num(14, 2),
        num(17, 2),
    ) else {
        return false;
    };
    if !(at(4, b'-') && at(7, b'-') && at(10, b'T') && at(13, b':') && at(16, b':')) {
        return false;
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    if day == 0 || day > days || hour > 23 || minute > 59 || second > 59 {
        return false;
    }
    let mut i = 19;
    if at(i, b'.') {
        let digits = b
            .get(i + 1..)
            .map_or(0, |r| r.iter().take_while(|c| c.is_ascii_digit()).count());
        if digits == 0 {
            return false;
        }
        i += 1 + digits;
    }
    match b.get(i..) {
        Some(b"Z") => true,
        Some([s, ..]) if *s == b'+' || *s == b'-' => {
            b.len() == i + 6
                && at(i + 3, b':')
                && num(i + 1, 2).is_some_and(|h| h <= 23)
                && num(i + 4, 2).is_some_and(|m| m <= 59)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(config: &[u8], created: Option<&str>) -> (Artifact, Vec<u8>) {
        let d = |media_type: &str, b: &[u8]| {
            oci::Descriptor::new(media_type, Digest::of(b), b.len() as u64)
        };
        let m = oci::Manifest {
            schema_version: 2,
            media_type: Some(oci::OCI_MANIFEST.into()),
            artifact_type: None,
            config: d(oci::HELM_CONFIG, config),
            layers: vec![d(oci::HELM_CHART, b"tgz")],
            subject: None,
            annotations: created
                .map(|c| (oci::ANN_CREATED.to_owned(), c.to_owned()))
                .into_iter()
                .collect(),
        };
        let bytes = oci::to_bytes(&m);
        let a = Artifact {
            kind: crate::format::bundle::ArtifactKind::Chart,
            source: "c.tgz".into(),
            reference: "charts/c:1.0.0".into(),
            digest: Digest::of(&bytes),
            media_type: oci::OCI_MANIFEST.into(),
            size: 0,
            platforms: Vec::new(),
            source_digest: None,
            converted: Vec::new(),
            chart: None,
            file: None,
        };
        (a, bytes)
    }

    #[test]
    fn created_is_the_manifests_annotation_then_bundle_json_then_the_epoch() {
        let config = br#"{"name":"c","version":"1.0.0","apiVersion":"v2"}"#;
        let read = |_: &Digest, _: u64| Ok(config.to_vec());
        for (annotation, bundle, want) in [
            (
                Some("2023-01-02T03:04:05Z"),
                Some("2024-01-01T00:00:00Z"),
                "2023-01-02T03:04:05Z",
            ),
            (
                Some("not a time"),
                Some("2024-01-01T00:00:00Z"),
                "2024-01-01T00:00:00Z",
            ),
            (None, Some("yesterday"), EPOCH),
            (None, None, EPOCH),
        ] {
            let (a, bytes) = chart(config, annotation);
            let source = ChartSource {
                artifact: &a,
                manifest: &bytes,
                media_type: oci::OCI_MANIFEST,
            };
            let mut notes = Vec::new();
            let repo = build(&[source], &read, bundle, &mut notes).unwrap();
            assert!(notes.is_empty(), "{notes:?}");
            let index: Value =
                serde_saphyr::from_str(std::str::from_utf8(&repo.index).unwrap()).unwrap();
            assert_eq!(
                index["entries"]["c"][0]["created"], want,
                "{annotation:?} {bundle:?}"
            );
            let generated = bundle.filter(|b| is_rfc3339(b)).unwrap_or(EPOCH);
            assert_eq!(index["generated"], generated);
        }
    }

    #[test]
    fn rfc3339_times_are_checked_as_go_reads_them() {
        for ok in [
            "1970-01-01T00:00:00Z",
            "2024-02-29T23:59:59.123456789Z",
            "2023-06-30T12:00:00+02:00",
            "2023-06-30T12:00:00-23:59",
        ] {
            assert!(is_rfc3339(ok), "{ok}");
        }
        for bad in [
            "",
            "2023-02-29T00:00:00Z",
            "2023-13-01T00:00:00Z",
            "2023-01-01 00:00:00Z",
            "2023-01-01T24:00:00Z",
            "2023-01-01T00:00:60Z",
            "2023-01-01T00:00:00",
            "2023-01-01T00:00:00.Z",
            "2023-01-01T00:00:00+24:00",
            "2023-01-01T00:00:00+0200",
            "2023-01-01T00:00:00Zjunk",
            "yesterday",
        ] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
    }

    #[test]
    fn metadata_keeps_helms_fields_and_types_only() {
        let m = helm_metadata(
            br#"{"name":"a","version":"1.0.0","appVersion":1.0,"x-unknown":1,
                "keywords":["k",2],"deprecated":false,"home":"",
                "maintainers":[{"name":"m","extra":"dropped"}],
                "dependencies":[{"name":"d","repository":"r","enabled":true,"import-values":["x"],"depends-on":["y"]}],
                "annotations":{"b":"2","a":true}}"#,
        )
        .unwrap();
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "name": "a", "version": "1.0.0", "appVersion": "1.0", "apiVersion": "v1",
                "keywords": ["k", "2"],
                "maintainers": [{"name": "m"}],
                "dependencies": [{"name": "d", "repository": "r", "enabled": true, "import-values": ["x"]}],
                "annotations": {"a": "true", "b": "2"},
            })
        );
        for bad in [
            r#"{"name":"a","keywords":"k"}"#,
            r#"{"name":"a","deprecated":"yes"}"#,
            r#"{"name":{"x":1}}"#,
            r#"{"annotations":{"a":[1]}}"#,
            r#"{"maintainers":[null]}"#,
            r#"[1]"#,
        ] {
            assert!(helm_metadata(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn yaml_quotes_what_go_would_misread() {
        let v = serde_json::json!({
            "appVersion": "1.0", "a": "yes", "b": "on", "c": "1970-01-01T00:00:00Z",
            "d": "null", "e": "0x1F", "f": "a: b", "g": "line\nbreak", "h": "~", "i": "1e3",
            "j": "plain text", "k": "x".repeat(120),
        });
        let y = to_yaml(&v).unwrap();
        let back: Value = serde_saphyr::from_str(&y).unwrap();
        assert_eq!(back, v, "{y}");
        for line in y.lines() {
            let (k, val) = line.split_once(": ").unwrap();
            if k != "j" && k != "k" {
                assert!(
                    val.starts_with('"') || val.starts_with('\''),
                    "{k} is quoted: {line}"
                );
            }
        }
        assert_eq!(y.lines().count(), 12, "one line per string: {y}");
    }
}
