//! Planning: each resolved entry becomes an artifact (its root
//! descriptor and the blobs it needs, with where their bytes are), read
//! from the cache or a local layout in place; files and directories are
//! hashed, directories tarred into the scratch space.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::base::digest::Digest;
use crate::base::platform::Platform;
use crate::base::reference::Reference;
use crate::connected::chart::{self, ChartError};
use crate::connected::fetch::FetchOptions;
use crate::connected::inputs::{ChartEntry, FileEntry, ImageEntry, ImageSource};
use crate::connected::source::{self, FoundBlob, LocalLayout};
use crate::format::archive::BlobSource;
use crate::format::bundle::{Artifact, ArtifactKind, ChartInfo, FileInfo};
use crate::format::oci::{self, Descriptor, Manifest};

use super::{oci_chart_reference, PackError};

#[derive(Default)]
pub(super) struct Plan {
    pub(super) artifacts: Vec<(Artifact, Descriptor)>,
    pub(super) blobs: BTreeMap<Digest, FoundBlob>,
    names: HashMap<String, String>,
}

impl Plan {
    fn add_blobs(&mut self, blobs: BTreeMap<Digest, FoundBlob>) {
        for (d, b) in blobs {
            self.blobs
                .entry(d)
                .and_modify(|e| e.small |= b.small)
                .or_insert(b);
        }
    }

    fn claim(&mut self, name: &str, entry: &str) -> Result<(), PackError> {
        if let Some(first) = self.names.insert(name.to_owned(), entry.to_owned()) {
            return Err(PackError::Collision {
                name: name.to_owned(),
                first,
                second: entry.to_owned(),
            });
        }
        Ok(())
    }
}

pub(super) fn plan_image(
    plan: &mut Plan,
    entry: &ImageEntry,
    filter: Option<&[Platform]>,
    fetched: Option<(Option<&FetchOptions>, &Descriptor)>,
) -> Result<(), PackError> {
    let label = entry.source.to_string();
    let image_err = |source| PackError::Image {
        entry: label.clone(),
        source,
    };
    let (layout, local_name) = match (&entry.source, fetched) {
        (ImageSource::Registry(r), Some((Some(f), _))) => {
            (LocalLayout::cache(&f.cache, r), Some(r.to_string()))
        }
        (ImageSource::Registry(_), _) => return Err(PackError::Remote { entry: label }),
        (ImageSource::OciDir { path, name }, _) => (
            LocalLayout::open_dir(path).map_err(image_err)?,
            name.clone(),
        ),
        (ImageSource::OciArchive { path, name }, _) => (
            LocalLayout::open_tar(path).map_err(image_err)?,
            name.clone(),
        ),
    };
    let local_name = local_name.as_deref();
    let root = match fetched {
        Some((_, root)) => root.clone(),
        None => layout.select(local_name).map_err(image_err)?,
    };
    let name = match (
        &entry.name,
        local_name,
        root.annotations.get(oci::ANN_REF_NAME).map(String::as_str),
    ) {
        (Some(n), _, _) => n.clone(),
        (None, Some(n), _) | (None, None, Some(n)) => {
            n.parse::<Reference>()
                .map_err(|source| PackError::BadName {
                    entry: label.clone(),
                    name: n.to_owned(),
                    source,
                })?
        }
        (None, None, None) => return Err(PackError::Unnamed { entry: label }),
    };
    let reference = name.to_string();
    plan.claim(&reference, &label)?;
    let walked = source::walk_image(&layout, &root, filter, &reference).map_err(image_err)?;
    let size = walked.blobs.values().map(|b| b.size).sum();
    plan.artifacts.push((
        Artifact {
            kind: ArtifactKind::Image,
            source: label,
            reference,
            digest: walked.root.digest,
            media_type: walked.root.media_type.clone(),
            size,
            platforms: walked.platforms.iter().map(|p| p.to_string()).collect(),
            source_digest: walked.source_digest,
            chart: None,
            file: None,
        },
        walked.root.clone(),
    ));
    plan.add_blobs(walked.blobs);
    Ok(())
}

pub(super) fn small_bytes(bytes: Vec<u8>) -> (Digest, FoundBlob) {
    let d = Digest::of(&bytes);
    (
        d,
        FoundBlob {
            size: bytes.len() as u64,
            source: BlobSource::Bytes(Arc::new(bytes)),
            small: true,
        },
    )
}

pub(super) fn plan_chart(
    plan: &mut Plan,
    entry: &ChartEntry,
    fetched: Option<(&FetchOptions, &Descriptor)>,
) -> Result<(), PackError> {
    let path = match entry {
        ChartEntry::Path { path, .. } => path,
        ChartEntry::Repo { repo, name, .. } => {
            return Err(PackError::Remote {
                entry: format!("chart {name} from {repo}"),
            })
        }
        ChartEntry::Oci {
            reference, version, ..
        } => {
            return match fetched {
                Some((f, root)) => plan_oci_chart(plan, reference, version, f, root),
                None => Err(PackError::Remote {
                    entry: format!("chart {reference}"),
                }),
            }
        }
    };
    plan_chart_file(plan, path, path.display().to_string())
}

/// A chart `.tgz` on disk (given, or downloaded into the cache).
pub(super) fn plan_chart_file(
    plan: &mut Plan,
    path: &Path,
    label: String,
) -> Result<(), PackError> {
    let chart_err = |source| PackError::Chart {
        entry: label.clone(),
        source,
    };
    let meta = chart::read_chart(path).map_err(chart_err)?;
    let (digest, size) =
        crate::base::digest::hash_file(path).map_err(|e| chart_err(ChartError::Io(e)))?;
    let reference = format!("charts/{}:{}", meta.name, meta.tag());
    plan.claim(&reference, &label)?;
    let manifest = meta.manifest(digest, size);
    let (md, mblob) = small_bytes(manifest);
    let (cd, cblob) = small_bytes(meta.config.clone());
    let mut blobs = BTreeMap::new();
    let msize = mblob.size;
    blobs.insert(md, mblob);
    blobs.insert(cd, cblob);
    blobs.insert(
        digest,
        FoundBlob {
            size,
            source: BlobSource::File {
                path: path.to_owned(),
                offset: 0,
            },
            small: false,
        },
    );
    let total = blobs.values().map(|b| b.size).sum();
    plan.artifacts.push((
        Artifact {
            kind: ArtifactKind::Chart,
            source: label,
            reference,
            digest: md,
            media_type: oci::OCI_MANIFEST.into(),
            size: total,
            platforms: Vec::new(),
            source_digest: None,
            chart: Some(ChartInfo {
                name: meta.name.clone(),
                version: meta.version.clone(),
                app_version: meta.app_version.clone(),
            }),
            file: None,
        },
        Descriptor::new(oci::OCI_MANIFEST, md, msize),
    ));
    plan.add_blobs(blobs);
    Ok(())
}

/// A chart fetched from a registry into the cache: checked to be a Helm
/// chart artifact whose archive is a real chart, then carried with its
/// manifest bytes unchanged.
pub(super) fn plan_oci_chart(
    plan: &mut Plan,
    reference: &str,
    version: &str,
    f: &FetchOptions,
    root: &Descriptor,
) -> Result<(), PackError> {
    let label = format!("{reference}:{version}");
    let r = oci_chart_reference(reference, version)?;
    let layout = LocalLayout::cache(&f.cache, &r);
    let not_chart = |what: String| PackError::NotChart {
        entry: label.clone(),
        what,
    };
    let image_err = |source| PackError::Image {
        entry: label.clone(),
        source,
    };
    let bytes = layout
        .read_verified(root, oci::MANIFEST_MAX_BYTES)
        .map_err(image_err)?;
    let m = match oci::parse_node(root.digest, &root.media_type, &bytes) {
        Ok(oci::Node::Manifest(m)) => m,
        _ => return Err(not_chart("it is not an artifact manifest".into())),
    };
    if m.config.media_type != oci::HELM_CONFIG {
        return Err(not_chart(format!(
            "its config has media type {:?}, not {:?}",
            m.config.media_type,
            oci::HELM_CONFIG
        )));
    }
    let Some(layer) = m.layers.iter().find(|l| l.media_type == oci::HELM_CHART) else {
        return Err(not_chart(format!("it has no {} layer", oci::HELM_CHART)));
    };
    let config = layout
        .read_verified(&m.config, 1 << 20)
        .map_err(image_err)?;
    #[derive(serde::Deserialize)]
    struct HelmConfig {
        name: String,
        version: String,
        #[serde(rename = "appVersion")]
        app_version: Option<String>,
    }
    let cfg: HelmConfig = serde_json::from_slice(&config)
        .map_err(|e| not_chart(format!("its Helm config does not parse: {e}")))?;
    // The archive itself must be a chart (and safe to unpack later).
    let meta = chart::read_chart(&f.cache.join(layer.digest.blob_path())).map_err(|source| {
        PackError::Chart {
            entry: label.clone(),
            source,
        }
    })?;
    if meta.name != cfg.name || meta.version != cfg.version {
        return Err(not_chart(format!(
            "its config says {} {} but its Chart.yaml says {} {}",
            cfg.name, cfg.version, meta.name, meta.version
        )));
    }
    let reference_name = format!("charts/{}:{}", cfg.name, cfg.version.replace('+', "_"));
    plan.claim(&reference_name, &label)?;
    let walked = source::walk_image(&layout, root, None, &label).map_err(image_err)?;
    let size = walked.blobs.values().map(|b| b.size).sum();
    plan.artifacts.push((
        Artifact {
            kind: ArtifactKind::Chart,
            source: label,
            reference: reference_name,
            digest: root.digest,
            media_type: root.media_type.clone(),
            size,
            platforms: Vec::new(),
            source_digest: None,
            chart: Some(ChartInfo {
                name: cfg.name,
                version: cfg.version,
                app_version: cfg.app_version,
            }),
            file: None,
        },
        plain_descriptor(root),
    ));
    plan.add_blobs(walked.blobs);
    Ok(())
}

pub(super) fn plain_descriptor(d: &Descriptor) -> Descriptor {
    Descriptor::new(&d.media_type, d.digest, d.size)
}

/// A repository-safe form of a file name: lowercase, runs of other
/// characters turned into single dashes.
pub(super) fn repo_name(title: &str) -> String {
    let mut s = String::new();
    for c in title.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            s.push(c);
        } else if !s.is_empty() && !s.ends_with('-') {
            s.push('-');
        }
    }
    let s = s.trim_end_matches('-').to_owned();
    if s.is_empty() {
        "file".into()
    } else {
        s
    }
}

pub(super) fn plan_file(
    plan: &mut Plan,
    entry: &FileEntry,
    scratch: &Path,
    mtime: u64,
) -> Result<(), PackError> {
    let label = entry.path.display().to_string();
    let io_err = |source| PackError::File {
        entry: label.clone(),
        source,
    };
    let meta = fs_err::metadata(&entry.path).map_err(io_err)?;
    let title = match &entry.name {
        Some(n) => n.clone(),
        None => entry
            .path
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "file".into()),
    };
    let (layer_path, layer_type, directory) = if meta.is_dir() {
        let tar_path = scratch.join(format!("{}.tar", plan.artifacts.len()));
        write_dir_tar(&entry.path, &title, &tar_path, mtime, &label)?;
        (tar_path, oci::OCI_LAYER_TAR, true)
    } else if meta.is_file() {
        (entry.path.clone(), oci::FILE_LAYER, false)
    } else {
        return Err(PackError::FileKind {
            entry: label,
            path: entry.path.clone(),
            kind: "special file",
        });
    };
    let (digest, size) = crate::base::digest::hash_file(&layer_path).map_err(io_err)?;
    let mut layer = Descriptor::new(layer_type, digest, size);
    layer
        .annotations
        .insert(oci::ANN_TITLE.into(), title.clone());
    if directory {
        layer
            .annotations
            .insert(oci::ANN_ORAS_UNPACK.into(), "true".into());
    }
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(oci::OCI_MANIFEST.into()),
        artifact_type: Some(oci::FERRY_FILE_ARTIFACT.into()),
        config: Descriptor::new(
            oci::OCI_EMPTY,
            Digest::of(oci::EMPTY_JSON),
            oci::EMPTY_JSON.len() as u64,
        ),
        layers: vec![layer],
        subject: None,
        annotations: BTreeMap::from([(oci::ANN_TITLE.to_owned(), title.clone())]),
    };
    let reference = format!("files/{}:latest", repo_name(&title));
    plan.claim(&reference, &label)?;
    let (md, mblob) = small_bytes(oci::to_bytes(&manifest));
    let (ed, eblob) = small_bytes(oci::EMPTY_JSON.to_vec());
    let msize = mblob.size;
    let mut blobs = BTreeMap::from([(md, mblob), (ed, eblob)]);
    blobs.insert(
        digest,
        FoundBlob {
            size,
            source: BlobSource::File {
                path: layer_path,
                offset: 0,
            },
            small: false,
        },
    );
    let total = blobs.values().map(|b| b.size).sum();
    plan.artifacts.push((
        Artifact {
            kind: ArtifactKind::File,
            source: label,
            reference,
            digest: md,
            media_type: oci::OCI_MANIFEST.into(),
            size: total,
            platforms: Vec::new(),
            source_digest: None,
            chart: None,
            file: Some(FileInfo { title, directory }),
        },
        Descriptor::new(oci::OCI_MANIFEST, md, msize),
    ));
    plan.add_blobs(blobs);
    Ok(())
}

/// Writes a directory as a deterministic tar: entries sorted by name, paths
/// under `title/`, uid/gid 0, fixed mtime, modes 0755 (directories and
/// executables) or 0644. Symbolic links and special files are refused.
pub(super) fn write_dir_tar(
    dir: &Path,
    title: &str,
    out: &Path,
    mtime: u64,
    label: &str,
) -> Result<(), PackError> {
    let io_err = |source| PackError::File {
        entry: label.to_owned(),
        source,
    };
    let f = fs_err::File::create(out).map_err(io_err)?;
    let mut b = tar::Builder::new(std::io::BufWriter::new(f));
    for item in walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .follow_links(false)
    {
        let item = item.map_err(|e| io_err(e.into()))?;
        let rel = item.path().strip_prefix(dir).unwrap_or(item.path());
        let name = if rel.as_os_str().is_empty() {
            PathBuf::from(title)
        } else {
            Path::new(title).join(rel)
        };
        let ft = item.file_type();
        let mut h = tar::Header::new_ustar();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(mtime);
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            b.append_data(&mut h, &name, std::io::empty())
                .map_err(io_err)?;
        } else if ft.is_file() {
            let m = fs_err::metadata(item.path()).map_err(io_err)?;
            use std::os::unix::fs::PermissionsExt;
            let exec = m.permissions().mode() & 0o111 != 0;
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(if exec { 0o755 } else { 0o644 });
            h.set_size(m.len());
            let file = fs_err::File::open(item.path()).map_err(io_err)?;
            b.append_data(&mut h, &name, file).map_err(io_err)?;
        } else {
            return Err(PackError::FileKind {
                entry: label.to_owned(),
                path: item.path().to_owned(),
                kind: if ft.is_symlink() {
                    "symbolic link"
                } else {
                    "special file"
                },
            });
        }
    }
    let w = b.into_inner().map_err(io_err)?;
    w.into_inner()
        .map_err(|e| io_err(e.into_error()))?
        .sync_all()
        .map_err(io_err)?;
    Ok(())
}
