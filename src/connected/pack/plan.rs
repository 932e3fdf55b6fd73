//! Planning: each resolved entry becomes an artifact (its root
//! descriptor and the blobs it needs, with where their bytes are), read
//! from the cache or a local layout in place; files and directories are
//! hashed, directories tarred into the scratch space. Then [`assemble`]
//! makes index.json, the member list and bundle.json's model from the
//! plan alone.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::base::digest::Digest;
use crate::base::platform::Platform;
use crate::base::reference::Reference;
use crate::connected::chart::{self, ChartError};
use crate::connected::fetch::FetchOptions;
use crate::connected::inputs::{ChartEntry, FileEntry, ImageEntry, ImageSource};
use crate::connected::source::{self, docker, FoundBlob, LocalLayout};
use crate::format::archive::{MemberSource, PlannedMember};
use crate::format::bundle::{
    self, Artifact, ArtifactKind, Bundle, ChartInfo, FileInfo, Member, Tool,
};
use crate::format::oci::{self, Descriptor, Index, Manifest};
use crate::shared::inventory::Inventory;

use super::{oci_chart_reference, PackError};

#[derive(Default)]
pub(super) struct Plan {
    pub(super) artifacts: Vec<(Artifact, Descriptor)>,
    pub(super) blobs: BTreeMap<Digest, FoundBlob>,
    names: HashMap<String, String>,
    /// Warnings for the user (through the reporter, once planning is done).
    pub(super) notes: Vec<String>,
    /// Convert Docker schema-2 documents to OCI (`pack --oci`).
    pub(super) oci: bool,
    /// Images with a `budget:` of their own, by reference.
    pub(super) budgets: HashMap<String, u64>,
    /// Referrers of carried documents, with their roots' descriptors.
    pub(super) referrers: Vec<(bundle::Referrer, Descriptor)>,
    /// Local layouts (`oci:` directories, `oci-archive:` tars) opened so
    /// far, by path: a layout that many entries select from has its
    /// index.json read (or its tar scanned) once, not once per entry.
    layouts: HashMap<(bool, PathBuf), Arc<LocalLayout>>,
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

    /// The local layout at `path` (a tar when `tar`), opened once.
    fn layout(&mut self, path: &Path, tar: bool) -> Result<Arc<LocalLayout>, source::SourceError> {
        let key = (tar, path.to_owned());
        if let Some(l) = self.layouts.get(&key) {
            return Ok(l.clone());
        }
        let l = Arc::new(if tar {
            LocalLayout::open_tar(path)?
        } else {
            LocalLayout::open_dir(path)?
        });
        self.layouts.insert(key, l.clone());
        Ok(l)
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
    // A layout and the root to walk in it; or, for a legacy docker-archive,
    // the image walked already (with the manifest built for it).
    enum Found {
        Layout(Arc<LocalLayout>, Descriptor),
        Walked(source::WalkedImage),
    }
    let (found, local_name) = match (&entry.source, fetched) {
        (ImageSource::Registry(r), Some((Some(f), root))) => (
            Found::Layout(Arc::new(LocalLayout::cache(&f.cache, r)), root.clone()),
            Some(r.to_string()),
        ),
        (ImageSource::Registry(_), _) => return Err(PackError::Remote { entry: label }),
        (ImageSource::OciDir { path, name }, _) => {
            let layout = plan.layout(path, false).map_err(image_err)?;
            let root = layout.select(name.as_deref()).map_err(image_err)?;
            (Found::Layout(layout, root), name.clone())
        }
        (ImageSource::OciArchive { path, name }, _) => {
            let layout = plan.layout(path, true).map_err(image_err)?;
            let root = layout.select(name.as_deref()).map_err(image_err)?;
            (Found::Layout(layout, root), name.clone())
        }
        (ImageSource::DockerArchive { path, name }, _) => {
            let selector = name.as_deref().map(docker::Selector::parse);
            match docker::pick(path, selector.as_ref(), filter, &label).map_err(image_err)? {
                docker::Picked::Layout { layout, root, name } => {
                    (Found::Layout(Arc::from(layout), root), name)
                }
                docker::Picked::Built { image, name } => (Found::Walked(image), name),
            }
        }
    };
    let annotation = |key: &str| match &found {
        Found::Layout(_, root) => root.annotations.get(key).map(String::as_str),
        Found::Walked(_) => None,
    };
    // The name carried: the spec's `name:`, else the full name an export
    // recorded (`io.containerd.image.name`), else the name the image was
    // selected by or its ref.name.
    let full = annotation(oci::ANN_IMAGE_NAME);
    let given = local_name.as_deref().or(annotation(oci::ANN_REF_NAME));
    let name = match (&entry.name, full.or(given)) {
        (Some(n), _) => n.clone(),
        (None, Some(n)) => {
            let r = n
                .parse::<Reference>()
                .map_err(|source| PackError::BadName {
                    entry: label.clone(),
                    name: n.to_owned(),
                    source,
                })?;
            // A bare ref.name (`tb`, `1.0`: buildah, podman and ctr write
            // these) is not the image's name: say what it was taken as.
            if full.is_none() && !n.contains(['/', ':', '@']) {
                plan.notes.push(format!(
                    "warning: image {label}: its name {n:?} is only a short name or a tag; it is carried as {r}. Give the entry `name:` to choose its name"
                ));
            }
            r
        }
        (None, None) => return Err(PackError::Unnamed { entry: label }),
    };
    let reference = name.to_string();
    plan.claim(&reference, &label)?;
    if let Some(b) = entry.budget {
        plan.budgets.insert(reference.clone(), b);
    }
    let mut walked = match found {
        Found::Walked(image) => image,
        Found::Layout(layout, root) => {
            source::walk_image(&layout, &root, filter, &reference).map_err(image_err)?
        }
    };
    if plan.oci {
        source::convert_to_oci(&mut walked, &reference).map_err(image_err)?;
        if let Some(from) = walked
            .source_digest
            .filter(|_| !walked.converted.is_empty())
        {
            plan.notes.push(format!(
                "warning: {reference} was converted to OCI: its digest is now {} (it was {from}). Signatures, attestations and SBOMs made for {from} (cosign's sha256-{}.sig, referrers) do not apply to it",
                walked.root.digest,
                from.hex()
            ));
        }
    }
    let size = walked
        .blobs
        .values()
        .map(|b| b.size)
        .fold(0, u64::saturating_add);
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
            converted: walked.converted,
            chart: None,
            file: None,
        },
        walked.root.clone(),
    ));
    plan.add_blobs(walked.blobs);
    Ok(())
}

/// Adds the referrers found for the artifact just planned (the last one):
/// each whose subject the bundle carries (the artifact's documents, or a
/// referrer added before it) travels with its documents and blobs from the
/// cache; one whose subject is not carried (a platform filter or `--oci`
/// made a new document) is left behind, and a warning says so, since a
/// signature over the old digest cannot cover the new one. Returns the
/// referrers left behind.
pub(super) fn plan_referrers(
    plan: &mut Plan,
    found: &[crate::connected::referrers::Found],
    cache: &Path,
) -> Result<Vec<crate::connected::referrers::Found>, PackError> {
    let Some((artifact, _)) = plan.artifacts.last() else {
        return Ok(Vec::new());
    };
    let (label, reference, root) = (
        artifact.source.clone(),
        artifact.reference.clone(),
        artifact.digest,
    );
    let image: Reference = reference.parse().map_err(|source| PackError::BadName {
        entry: label.clone(),
        name: reference.clone(),
        source,
    })?;
    let layout = LocalLayout::cache(cache, &image);
    let mut left = Vec::new();
    for f in found {
        let carried = plan.blobs.contains_key(&f.subject)
            || plan.referrers.iter().any(|(r, _)| r.digest == f.subject);
        if !carried {
            left.push(f.clone());
            continue;
        }
        if plan
            .referrers
            .iter()
            .any(|(r, _)| r.digest == f.root.digest)
            || plan
                .artifacts
                .iter()
                .any(|(a, _)| a.digest == f.root.digest)
        {
            continue;
        }
        let walked = source::walk_image(
            &layout,
            &f.root,
            None,
            &format!("{reference} (a referrer {})", f.root.digest),
        )
        .map_err(|source| PackError::Image {
            entry: label.clone(),
            source,
        })?;
        let size = walked
            .blobs
            .values()
            .map(|b| b.size)
            .fold(0, u64::saturating_add);
        plan.add_blobs(walked.blobs);
        plan.referrers.push((
            bundle::Referrer {
                digest: f.root.digest,
                media_type: f.root.media_type.clone(),
                artifact_type: f.artifact_type.clone(),
                subject: f.subject,
                kind: f.kind,
                size,
                found: f.found,
                tag: f.tag.clone(),
                verified_by: None,
            },
            walked.root,
        ));
    }
    if !left.is_empty() {
        let subjects: std::collections::BTreeSet<String> =
            left.iter().map(|f| f.subject.to_string()).collect();
        plan.notes.push(format!(
            "warning: {reference}: {} made for {} are not carried: the bundle carries {root} instead (a platform filter or --oci made a new document), which they do not cover. Keep all platforms, or sign each platform's manifest",
            bundle::count_kinds(left.iter().map(|f| f.kind)),
            subjects.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    Ok(left)
}

pub(super) fn small_bytes(bytes: Vec<u8>) -> (Digest, FoundBlob) {
    let d = Digest::of(&bytes);
    (
        d,
        FoundBlob {
            size: bytes.len() as u64,
            source: MemberSource::Bytes(Arc::new(bytes)),
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
            source: MemberSource::File {
                path: path.to_owned(),
                offset: 0,
            },
            small: false,
        },
    );
    let total = blobs.values().map(|b| b.size).fold(0, u64::saturating_add);
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
            converted: Vec::new(),
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
    let size = walked
        .blobs
        .values()
        .map(|b| b.size)
        .fold(0, u64::saturating_add);
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
            converted: Vec::new(),
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

/// A repository-safe form of a file name that stays recognisable:
/// lowercase (OCI repository names must be), letters and digits kept, and
/// each run of other characters made one separator the repository grammar
/// allows: `.` when the run has a dot (`README.txt` → `readme.txt`), `_`
/// or `__` for underscores alone, else `-`.
pub(super) fn repo_name(title: &str) -> String {
    let mut s = String::new();
    let mut run = String::new();
    for c in title.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            if !run.is_empty() && !s.is_empty() {
                s.push_str(match run.as_str() {
                    r if r.contains('.') => ".",
                    "_" => "_",
                    "__" => "__",
                    _ => "-",
                });
            }
            run.clear();
            s.push(c);
        } else {
            run.push(c);
        }
    }
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
            source: MemberSource::File {
                path: layer_path,
                offset: 0,
            },
            small: false,
        },
    );
    let total = blobs.values().map(|b| b.size).fold(0, u64::saturating_add);
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
            converted: Vec::new(),
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

/// The bundle a plan makes: index.json (one descriptor per artifact, in
/// spec order, named by `org.opencontainers.image.ref.name`), the members
/// in contract order (`oci-layout`, `index.json`, the small JSON blobs,
/// then the large ones, each sorted by digest), and bundle.json's model.
/// With `have`, the large blobs the far side holds (same digest and size)
/// are left out and recorded as absent. No I/O: a function of the plan.
pub(super) fn assemble(
    mut plan: Plan,
    name: String,
    have: Option<&(Inventory, Digest)>,
) -> (Bundle, Vec<PlannedMember>) {
    // index.json: one descriptor per artifact, in spec order.
    let index = Index {
        schema_version: 2,
        media_type: Some(oci::OCI_INDEX.into()),
        artifact_type: None,
        manifests: plan
            .artifacts
            .iter()
            .map(|(a, root)| {
                let mut d = root.clone();
                d.annotations
                    .insert(oci::ANN_REF_NAME.into(), a.reference.clone());
                d
            })
            // Referrers follow, without a name: tools that list images by
            // name skip them, and the layout stays a plain OCI layout.
            .chain(plan.referrers.iter().map(|(r, root)| {
                let mut d = root.clone();
                d.annotations.clear();
                d.artifact_type = r.artifact_type.clone();
                d.platform = None;
                d
            }))
            .collect(),
        subject: None,
        annotations: BTreeMap::new(),
    };
    let index_bytes = Arc::new(oci::to_bytes(&index));

    let mut members = vec![
        PlannedMember {
            path: bundle::OCI_LAYOUT_PATH.into(),
            digest: Digest::of(crate::format::layout::OCI_LAYOUT),
            size: crate::format::layout::OCI_LAYOUT.len() as u64,
            source: MemberSource::Bytes(Arc::new(crate::format::layout::OCI_LAYOUT.to_vec())),
        },
        PlannedMember {
            path: bundle::INDEX_PATH.into(),
            digest: Digest::of(&index_bytes),
            size: index_bytes.len() as u64,
            source: MemberSource::Bytes(index_bytes.clone()),
        },
    ];
    // A delta leaves out layers and contents the far side holds (same
    // digest and size); manifests, indexes and configs always travel.
    let mut delta = have.map(|(inv, digest)| bundle::Delta {
        base: inv.source.clone(),
        inventory: *digest,
        absent: Vec::new(),
    });
    if let (Some(delta), Some((inv, _))) = (&mut delta, have) {
        let held = inv.held();
        plan.blobs.retain(|d, b| {
            let Some(h) = held.get(d).filter(|h| !b.small && h.size == b.size) else {
                return true;
            };
            delta.absent.push(bundle::AbsentBlob {
                digest: *d,
                size: b.size,
                repositories: h.repositories.clone(),
            });
            false
        });
    }
    for small in [true, false] {
        for (d, b) in plan.blobs.iter().filter(|(_, b)| b.small == small) {
            members.push(PlannedMember {
                path: d.blob_path(),
                digest: *d,
                size: b.size,
                source: b.source.clone(),
            });
        }
    }

    let mut bundle = Bundle {
        format: bundle::FORMAT.into(),
        format_version: bundle::FORMAT_VERSION_BASE,
        tool: Tool {
            name: "ferry".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        name,
        created: None,
        artifacts: plan.artifacts.into_iter().map(|(a, _)| a).collect(),
        members: members
            .iter()
            .map(|m| Member {
                path: m.path.clone(),
                digest: m.digest,
                size: m.size,
            })
            .collect(),
        volumes: None,
        delta,
        referrers: plan.referrers.into_iter().map(|(r, _)| r).collect(),
    };
    if bundle.delta.is_some() {
        bundle.format_version = bundle::FORMAT_VERSION_VOLUMES;
    }
    if bundle.artifacts.iter().any(|a| !a.converted.is_empty()) {
        bundle.format_version = bundle::FORMAT_VERSION_CONVERTED;
    }
    if !bundle.referrers.is_empty() {
        bundle.format_version = bundle::FORMAT_VERSION_REFERRERS;
    }
    (bundle, members)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::inventory::HeldBlob;

    #[test]
    fn file_names_stay_recognisable_and_valid_repository_names() {
        for (title, want) in [
            ("README.txt", "readme.txt"),
            ("install.sh", "install.sh"),
            ("values_prod.yaml", "values_prod.yaml"),
            ("My File (1).tar.gz", "my-file-1.tar.gz"),
            ("a__b", "a__b"),
            ("a___b", "a-b"),
            ("--x--", "x"),
            ("..", "file"),
            ("Ünïcode.md", "n-code.md"),
        ] {
            let got = repo_name(title);
            assert_eq!(got, want, "{title}");
            assert!(
                crate::base::reference::is_valid_repository(&format!("files/{got}")),
                "{title} -> {got}"
            );
        }
    }

    fn blob(bytes: &[u8], small: bool) -> (Digest, FoundBlob) {
        (
            Digest::of(bytes),
            FoundBlob {
                size: bytes.len() as u64,
                source: MemberSource::Bytes(Arc::new(bytes.to_vec())),
                small,
            },
        )
    }

    fn artifact(reference: &str, root: &[u8]) -> (Artifact, Descriptor) {
        let d = Descriptor::new(oci::OCI_MANIFEST, Digest::of(root), root.len() as u64);
        (
            Artifact {
                kind: ArtifactKind::Image,
                source: reference.into(),
                reference: reference.into(),
                digest: d.digest,
                media_type: d.media_type.clone(),
                size: 0,
                platforms: Vec::new(),
                source_digest: None,
                converted: Vec::new(),
                chart: None,
                file: None,
            },
            d,
        )
    }

    /// Two images: two manifests and a config (small), three layers.
    fn two_images() -> Plan {
        let mut plan = Plan::default();
        plan.artifacts
            .push(artifact("r.example/b:1", b"{manifest b}"));
        plan.artifacts
            .push(artifact("r.example/a:1", b"{manifest a}"));
        plan.add_blobs(
            [
                blob(b"{manifest b}", true),
                blob(b"{manifest a}", true),
                blob(b"{config}", true),
                blob(b"layer one", false),
                blob(b"layer two", false),
                blob(b"layer three!", false),
            ]
            .into_iter()
            .collect(),
        );
        plan
    }

    #[test]
    fn members_come_in_contract_order_small_then_large_each_sorted_by_digest() {
        let (bundle, members) = assemble(two_images(), "t".into(), None);
        let paths: Vec<&str> = members.iter().map(|m| m.path.as_str()).collect();
        assert_eq!(paths[..2], [bundle::OCI_LAYOUT_PATH, bundle::INDEX_PATH]);
        let small: Vec<Digest> = [&b"{manifest b}"[..], b"{manifest a}", b"{config}"]
            .iter()
            .map(|b| Digest::of(b))
            .collect();
        let (head, tail) = members[2..].split_at(3);
        assert!(head.iter().all(|m| small.contains(&m.digest)));
        assert!(tail.iter().all(|m| !small.contains(&m.digest)));
        for part in [head, tail] {
            assert!(part.windows(2).all(|w| w[0].digest < w[1].digest));
        }
        // bundle.json lists exactly the members, with their digests.
        assert_eq!(bundle.members.len(), members.len());
        for (b, m) in bundle.members.iter().zip(&members) {
            assert_eq!((&b.path, b.digest, b.size), (&m.path, m.digest, m.size));
        }
        assert_eq!(bundle.format_version, bundle::FORMAT_VERSION_BASE);
        assert_eq!(bundle.name, "t");
    }

    #[test]
    fn index_json_names_every_artifact_in_spec_order() {
        let (_, members) = assemble(two_images(), "t".into(), None);
        let MemberSource::Bytes(bytes) = &members[1].source else {
            panic!("index.json is made in memory");
        };
        let index: Index = serde_json::from_slice(bytes).unwrap();
        let names: Vec<&str> = index
            .manifests
            .iter()
            .map(|d| d.annotations[oci::ANN_REF_NAME].as_str())
            .collect();
        assert_eq!(names, ["r.example/b:1", "r.example/a:1"]);
        assert_eq!(members[1].digest, Digest::of(bytes));
    }

    #[test]
    fn a_delta_leaves_out_only_large_blobs_the_far_side_holds_at_the_same_size() {
        let held = |b: &[u8], size: u64| HeldBlob {
            digest: Digest::of(b),
            size,
            repositories: vec!["library/a".into()],
        };
        let inventory = Inventory {
            format: "ferry-inventory".into(),
            format_version: 1,
            source: "registry r.example".into(),
            blobs: vec![
                held(b"layer one", 9),
                held(b"layer two", 999), // another size: carried
                held(b"{config}", 8),    // small: always carried
            ],
        };
        let have = (inventory, Digest::of(b"inventory file"));
        let (bundle, members) = assemble(two_images(), "t".into(), Some(&have));
        let carried: Vec<Digest> = members.iter().map(|m| m.digest).collect();
        assert!(!carried.contains(&Digest::of(b"layer one")));
        assert!(carried.contains(&Digest::of(b"layer two")));
        assert!(carried.contains(&Digest::of(b"{config}")));
        let delta = bundle.delta.expect("a delta");
        assert_eq!(delta.absent.len(), 1);
        assert_eq!(delta.absent[0].digest, Digest::of(b"layer one"));
        assert_eq!(delta.absent[0].repositories, ["library/a"]);
        assert_eq!(delta.inventory, Digest::of(b"inventory file"));
        assert_eq!(bundle.format_version, bundle::FORMAT_VERSION_VOLUMES);
    }

    #[test]
    fn two_entries_under_one_name_are_refused_naming_both() {
        let mut plan = Plan::default();
        assert!(plan.claim("r.example/a:1", "oci:x:a").is_ok());
        let e = plan.claim("r.example/a:1", "r.example/a:1").unwrap_err();
        let m = e.to_string();
        assert!(m.contains("r.example/a:1 would be carried twice"), "{m}");
        assert!(m.contains("by oci:x:a"), "{m}");
    }
}
