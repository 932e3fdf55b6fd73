//! Helm charts as OCI artifacts: reading a chart `.tgz` safely (its
//! `Chart.yaml`, with path checks and a decompression limit) and building
//! the config and manifest the way Helm does when it pushes a chart
//! (`application/vnd.cncf.helm.config.v1+json` config holding Chart.yaml's
//! metadata, one `…chart.content.v1.tar+gzip` layer, and the
//! `org.opencontainers.image.*` annotations Helm sets).
//!
//! Fetching charts from repositories is not here; this module starts from
//! a local file.

// Parses untrusted input: no indexing that could panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use crate::base::digest::Digest;
use crate::format::oci::{self, Descriptor, Manifest};

/// Largest decompressed chart Helm itself accepts (100 MiB).
pub const CHART_MAX_DECOMPRESSED: u64 = 100 << 20;
const CHART_YAML_MAX: u64 = 1 << 20;

/// Errors reading a chart archive.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// A filesystem operation failed (the error names the path).
    #[error("reading the chart failed")]
    Io(#[from] std::io::Error),
    /// Not a gzip tar.
    #[error("{path} is not a gzip-compressed tar archive")]
    NotTgz {
        /// The chart file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A path that would escape the chart directory.
    #[error("{path} contains the unsafe path {member:?}; the chart was refused")]
    UnsafePath {
        /// The chart file.
        path: PathBuf,
        /// The member.
        member: String,
    },
    /// No Chart.yaml.
    #[error("{0} is not a Helm chart: it has no <name>/Chart.yaml")]
    NoChartYaml(PathBuf),
    /// Chart.yaml does not parse.
    #[error("{path}: invalid Chart.yaml: {message}")]
    BadChartYaml {
        /// The chart file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Decompresses beyond the limit.
    #[error("{0} decompresses to more than {CHART_MAX_DECOMPRESSED} bytes; refused")]
    TooLarge(PathBuf),
}

/// What ferry needs to know about a chart.
#[derive(Debug, Clone)]
pub struct ChartMeta {
    /// Chart name.
    pub name: String,
    /// Chart version.
    pub version: String,
    /// App version.
    pub app_version: Option<String>,
    /// The Helm config blob (Chart.yaml metadata as JSON, in Helm's field order).
    pub config: Vec<u8>,
    /// Manifest annotations, as Helm sets them.
    pub annotations: BTreeMap<String, String>,
}

/// Helm's `chart.Metadata` JSON field order.
const HELM_FIELDS: &[&str] = &[
    "name",
    "home",
    "sources",
    "version",
    "description",
    "keywords",
    "maintainers",
    "icon",
    "apiVersion",
    "condition",
    "tags",
    "appVersion",
    "deprecated",
    "annotations",
    "kubeVersion",
    "dependencies",
    "type",
];

/// Reads a chart `.tgz`: checks every member path, finds `<dir>/Chart.yaml`.
pub fn read_chart(path: &Path) -> Result<ChartMeta, ChartError> {
    let f = fs_err::File::open(path)?;
    let gz = flate2::read::GzDecoder::new(std::io::BufReader::new(f));
    let limited = gz.take(CHART_MAX_DECOMPRESSED + 1);
    let mut ar = tar::Archive::new(limited);
    let not_tgz = |source| ChartError::NotTgz {
        path: path.to_owned(),
        source,
    };
    let mut chart_yaml: Option<Vec<u8>> = None;
    let mut total = 0u64;
    for entry in ar.entries().map_err(not_tgz)? {
        let mut entry = entry.map_err(|e| {
            if total > CHART_MAX_DECOMPRESSED {
                ChartError::TooLarge(path.to_owned())
            } else {
                not_tgz(e)
            }
        })?;
        let member = checked_member(path, &entry, &mut total)?;
        let kind = entry.header().entry_type();
        let p = Path::new(&member);
        let parts: Vec<_> = p
            .components()
            .filter(|c| !matches!(c, Component::CurDir))
            .collect();
        if chart_yaml.is_none()
            && matches!(parts.as_slice(), [_, f] if f.as_os_str() == "Chart.yaml")
            && kind.is_file()
        {
            let mut buf = Vec::new();
            (&mut entry).take(CHART_YAML_MAX).read_to_end(&mut buf)?;
            chart_yaml = Some(buf);
        }
    }
    let yaml = chart_yaml.ok_or_else(|| ChartError::NoChartYaml(path.to_owned()))?;
    meta_from_chart_yaml(path, &yaml)
}

/// A chart archive member's path, after the checks every reader applies:
/// no `..`, absolute path, backslash or link, and the running total of
/// sizes within the decompression limit.
fn checked_member<R: Read>(
    path: &Path,
    entry: &tar::Entry<'_, R>,
    total: &mut u64,
) -> Result<String, ChartError> {
    let member = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
    let safe = !member.contains('\\')
        && Path::new(&member)
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    let kind = entry.header().entry_type();
    if !safe || kind.is_symlink() || kind.is_hard_link() {
        return Err(ChartError::UnsafePath {
            path: path.to_owned(),
            member,
        });
    }
    *total = total.saturating_add(entry.size());
    if *total > CHART_MAX_DECOMPRESSED {
        return Err(ChartError::TooLarge(path.to_owned()));
    }
    Ok(member)
}

/// Builds chart metadata from Chart.yaml bytes.
pub fn meta_from_chart_yaml(path: &Path, yaml: &[u8]) -> Result<ChartMeta, ChartError> {
    let bad = |message: String| ChartError::BadChartYaml {
        path: path.to_owned(),
        message,
    };
    let text = std::str::from_utf8(yaml).map_err(|_| bad("not UTF-8".into()))?;
    let value: serde_json::Value = serde_saphyr::from_str(text)
        .map_err(|e| bad(e.to_string().lines().next().unwrap_or("").to_owned()))?;
    let map = value
        .as_object()
        .ok_or_else(|| bad("not a mapping".into()))?;
    let string = |k: &str| map.get(k).and_then(scalar_string);
    let name = string("name").ok_or_else(|| bad("`name` is missing".into()))?;
    let version = string("version").ok_or_else(|| bad("`version` is missing".into()))?;
    // The name and version become a repository and a tag.
    crate::format::bundle::check_chart(&name, &version).map_err(bad)?;
    // Helm's config: the metadata fields it knows, in its struct order.
    let mut config = String::from("{");
    for key in HELM_FIELDS {
        let Some(v) = map.get(*key) else { continue };
        if v.is_null() {
            continue;
        }
        let v = match *key {
            "version" | "appVersion" | "name" => {
                serde_json::Value::String(scalar_string(v).unwrap_or_default())
            }
            _ => v.clone(),
        };
        if config.len() > 1 {
            config.push(',');
        }
        config.push_str(&serde_json::to_string(key).unwrap_or_default());
        config.push(':');
        config.push_str(&serde_json::to_string(&v).unwrap_or_default());
    }
    config.push('}');

    let mut annotations = BTreeMap::new();
    if let Some(serde_json::Value::Object(a)) = map.get("annotations") {
        for (k, v) in a {
            if let Some(s) = scalar_string(v) {
                annotations.insert(k.clone(), s);
            }
        }
    }
    if let Some(d) = string("description") {
        annotations.insert(oci::ANN_DESCRIPTION.into(), d);
    }
    if let Some(h) = string("home") {
        annotations.insert("org.opencontainers.image.url".into(), h);
    }
    if let Some(serde_json::Value::Array(s)) = map.get("sources") {
        if let Some(first) = s.first().and_then(scalar_string) {
            annotations.insert("org.opencontainers.image.source".into(), first);
        }
    }
    annotations.insert(oci::ANN_TITLE.into(), name.clone());
    annotations.insert(oci::ANN_VERSION.into(), version.clone());
    Ok(ChartMeta {
        name,
        version,
        app_version: string("appVersion"),
        config: config.into_bytes(),
        annotations,
    })
}

fn scalar_string(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl ChartMeta {
    /// The OCI tag Helm uses for this version (`+` is not allowed in tags).
    pub fn tag(&self) -> String {
        self.version.replace('+', "_")
    }

    /// The chart manifest, given the chart archive's digest and size.
    pub fn manifest(&self, chart_digest: Digest, chart_size: u64) -> Vec<u8> {
        let m = Manifest {
            schema_version: 2,
            media_type: Some(oci::OCI_MANIFEST.into()),
            artifact_type: None,
            config: Descriptor::new(
                oci::HELM_CONFIG,
                Digest::of(&self.config),
                self.config.len() as u64,
            ),
            layers: vec![Descriptor::new(oci::HELM_CHART, chart_digest, chart_size)],
            subject: None,
            annotations: self.annotations.clone(),
        };
        oci::to_bytes(&m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_follows_helm_field_order() {
        let m = meta_from_chart_yaml(
            Path::new("c.tgz"),
            b"apiVersion: v2\nname: demo\nversion: 0.1.0\ndescription: A demo\nappVersion: 1.0\ntype: application\n",
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(m.config).unwrap(),
            r#"{"name":"demo","version":"0.1.0","description":"A demo","apiVersion":"v2","appVersion":"1.0","type":"application"}"#
        );
        assert_eq!(m.annotations[oci::ANN_TITLE], "demo");
        assert_eq!(m.annotations[oci::ANN_VERSION], "0.1.0");
    }

    #[test]
    fn missing_version_is_named() {
        let e = meta_from_chart_yaml(Path::new("c.tgz"), b"name: demo\n").unwrap_err();
        assert!(e.to_string().contains("`version` is missing"), "{e}");
    }
}

/// An image a chart names, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartImage {
    /// The reference (a tag from the chart's appVersion when the values
    /// give none).
    pub reference: String,
    /// Where it was found (`redis/values.yaml:123`, `Chart.yaml
    /// artifacthub.io/images`).
    pub origin: String,
}

/// The images a chart names: the `artifacthub.io/images` annotation of its
/// Chart.yaml, and `image:` values (string and split forms) in the
/// `values.yaml` of the chart and its sub-charts (directories and nested
/// `.tgz` files). References without a tag take the (sub-)chart's
/// appVersion, as Helm charts' templates do. Templated values are left out.
/// An image named in several places is listed once per place.
pub fn chart_images(path: &Path) -> Result<Vec<ChartImage>, ChartError> {
    let f = fs_err::File::open(path)?;
    let mut out = Vec::new();
    images_in_tgz(path, std::io::BufReader::new(f), "", 0, &mut out)?;
    Ok(out)
}

/// [`chart_images`] of a chart archive read from `reader` (a chart held in
/// memory, say); `label` names it in messages.
pub fn chart_images_in(label: &Path, reader: impl Read) -> Result<Vec<ChartImage>, ChartError> {
    let mut out = Vec::new();
    images_in_tgz(label, reader, "", 0, &mut out)?;
    Ok(out)
}

/// The chart files one chart directory holds, by their path inside it.
#[derive(Default)]
struct ChartFiles {
    chart_yaml: Option<Vec<u8>>,
    values: Option<Vec<u8>>,
}

fn images_in_tgz<R: Read>(
    path: &Path,
    reader: R,
    prefix: &str,
    depth: usize,
    out: &mut Vec<ChartImage>,
) -> Result<(), ChartError> {
    if depth > 3 {
        return Ok(());
    }
    let gz = flate2::read::GzDecoder::new(reader);
    let mut ar = tar::Archive::new(gz.take(CHART_MAX_DECOMPRESSED + 1));
    let not_tgz = |source| ChartError::NotTgz {
        path: path.to_owned(),
        source,
    };
    // Chart directories (`x`, `x/charts/y`) and their files.
    let mut dirs: BTreeMap<String, ChartFiles> = BTreeMap::new();
    let mut nested: Vec<(String, Vec<u8>)> = Vec::new();
    let mut total = 0u64;
    for entry in ar.entries().map_err(not_tgz)? {
        let mut entry = entry.map_err(not_tgz)?;
        let member = checked_member(path, &entry, &mut total)?;
        let parts: Vec<&str> = member
            .split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .collect();
        let (Some((&file, ancestors)), true) =
            (parts.split_last(), entry.header().entry_type().is_file())
        else {
            continue;
        };
        let Some(&parent) = ancestors.last() else {
            continue;
        };
        let dir = ancestors.join("/");
        // Only the chart itself and sub-charts under `charts/`.
        let is_chart_dir = ancestors.len() == 1 || ancestors.iter().rev().nth(1) == Some(&"charts");
        let want = match file {
            "Chart.yaml" | "values.yaml" => is_chart_dir,
            f => f.ends_with(".tgz") && parent == "charts",
        };
        if !want {
            continue;
        }
        let mut buf = Vec::new();
        (&mut entry)
            .take(CHART_MAX_DECOMPRESSED)
            .read_to_end(&mut buf)?;
        match file {
            "Chart.yaml" => dirs.entry(dir).or_default().chart_yaml = Some(buf),
            "values.yaml" => dirs.entry(dir).or_default().values = Some(buf),
            _ => nested.push((format!("{prefix}{member}"), buf)),
        }
    }
    for (dir, files) in &dirs {
        let label = format!("{prefix}{dir}");
        let app_version = files
            .chart_yaml
            .as_deref()
            .and_then(|y| meta_from_chart_yaml(path, y).ok())
            .and_then(|m| m.app_version);
        if let Some(y) = &files.chart_yaml {
            annotation_images(y, &label, out);
        }
        if let Some(v) = &files.values {
            value_images(v, &label, app_version.as_deref(), out);
        }
    }
    for (label, bytes) in nested {
        images_in_tgz(path, &bytes[..], &format!("{label}!"), depth + 1, out)?;
    }
    Ok(())
}

/// `artifacthub.io/images`: a YAML list of `{name, image}` in a string.
fn annotation_images(chart_yaml: &[u8], label: &str, out: &mut Vec<ChartImage>) {
    #[derive(serde::Deserialize)]
    struct Chart {
        #[serde(default)]
        annotations: BTreeMap<String, serde_json::Value>,
    }
    #[derive(serde::Deserialize)]
    struct Listed {
        image: String,
    }
    let Ok(c) = serde_saphyr::from_slice::<Chart>(chart_yaml) else {
        return;
    };
    let Some(serde_json::Value::String(list)) = c.annotations.get("artifacthub.io/images") else {
        return;
    };
    let Ok(items) = serde_saphyr::from_str::<Vec<Listed>>(list) else {
        return;
    };
    for i in items {
        out.push(ChartImage {
            reference: i.image,
            origin: format!("{label}/Chart.yaml artifacthub.io/images"),
        });
    }
}

/// `image:` values in values.yaml, found by the rewriter's reader.
fn value_images(values: &[u8], label: &str, app_version: Option<&str>, out: &mut Vec<ChartImage>) {
    let Ok(text) = std::str::from_utf8(values) else {
        return;
    };
    let map = crate::shared::rewrite::ImageMap::default();
    let Ok((_, found)) = crate::shared::rewrite::rewrite(text, &map, Default::default()) else {
        return;
    };
    for f in found {
        if f.outcome != crate::shared::rewrite::Outcome::NotInBundle {
            continue; // templated, empty or not a reference
        }
        let last = f.reference.rsplit('/').next().unwrap_or("");
        let reference = if last.contains(':') || last.contains('@') {
            f.reference
        } else {
            match app_version {
                Some(v) => format!("{}:{v}", f.reference),
                None => continue,
            }
        };
        out.push(ChartImage {
            reference,
            origin: format!("{label}/values.yaml:{}", f.line),
        });
    }
}
