//! `unpack` and `inspect`: reading an archive out.
//!
//! `unpack` writes a plain OCI image layout that skopeo, umoci, oras or
//! containerd can use without ferry. Only the paths bundle.json declares
//! (and the archive reader accepted) are written, each blob through the
//! layout store (temp file, hash check, rename), and `index.json` last, so
//! an interrupted or refused unpack never leaves a layout that looks whole.
//! `inspect` summarises bundle.json without hashing anything.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::base::digest::Digest;
use crate::base::report::Reporter;
use crate::format::archive::{Archive, ArchiveError};
use crate::format::blob;
use crate::format::bundle::{self, Artifact, INDEX_PATH, OCI_LAYOUT_PATH};
use crate::format::layout::{LayoutError, Store};

/// Errors unpacking.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The archive is unreadable or damaged.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// The signature of bundle.json is missing or wrong.
    #[error(transparent)]
    Sign(#[from] crate::format::sign::SignError),
    /// The target directory holds something already.
    #[error("{0} exists and is not empty; unpack into a new or empty directory")]
    NotEmpty(PathBuf),
    /// A chart or file could not be written out.
    #[error("{archive}: {artifact} could not be written to {path}")]
    Extract {
        /// The archive.
        archive: PathBuf,
        /// The artifact's reference.
        artifact: String,
        /// The file or directory being written.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A blob could not be copied into the layout (named, with why).
    #[error("{archive}: unpacking into {dir} failed")]
    Copy {
        /// The archive.
        archive: PathBuf,
        /// The target directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: blob::CopyError,
    },
    /// Writing a member failed or it did not match its digest.
    #[error("{archive}: member {member} could not be unpacked into {dir}")]
    Blob {
        /// The archive.
        archive: PathBuf,
        /// The member.
        member: String,
        /// The target directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: LayoutError,
    },
}

/// What an unpack wrote.
#[derive(Debug, Clone, Serialize)]
pub struct UnpackSummary {
    /// The layout directory.
    pub dir: PathBuf,
    /// Blobs written.
    pub blobs: usize,
    /// Bytes written.
    pub bytes: u64,
}

/// Unpacks `archive` into the OCI layout directory `dir`. With `key`, the
/// signature of bundle.json is checked first, on the archive as opened, and
/// is written beside bundle.json so `serve DIR --key` can check it again.
pub fn unpack(
    archive_path: &Path,
    dir: &Path,
    key: Option<&Path>,
    reporter: &dyn Reporter,
) -> Result<UnpackSummary, UnpackError> {
    let archive = Archive::open_random(archive_path, "ferry unpack")?;
    archive.check_key(key)?;
    archive.check_model()?;
    if dir.exists() {
        let mut it = fs_err::read_dir(dir).map_err(ArchiveError::Io)?;
        if it.next().is_some() {
            return Err(UnpackError::NotEmpty(dir.to_owned()));
        }
    }
    let blob_err = |member: &str, source| UnpackError::Blob {
        archive: archive_path.to_owned(),
        member: member.to_owned(),
        dir: dir.to_owned(),
        source,
    };
    let store = Store::create(dir).map_err(|e| blob_err(OCI_LAYOUT_PATH, e))?;
    // bundle.json's members indexed once, not searched per blob.
    let by_path: std::collections::HashMap<&str, (Digest, u64)> = archive
        .bundle
        .members
        .iter()
        .map(|m| (m.path.as_str(), (m.digest, m.size)))
        .collect();
    let declared = |path: &str| -> Option<(Digest, u64)> { by_path.get(path).copied() };

    // Every blob, through the one blob path: read by position, verified,
    // renamed into the layout only when whole.
    let blobs: Vec<Digest> = archive
        .entries
        .iter()
        .filter(|e| e.path != INDEX_PATH && e.path != OCI_LAYOUT_PATH)
        .filter_map(|e| Some(declared(&e.path)?.0))
        .collect();
    let total: u64 = archive
        .entries
        .iter()
        .filter(|e| e.path.starts_with("blobs/"))
        .map(|e| e.size)
        .sum();
    blob::copy(&archive, &store, &blobs, reporter).map_err(|source| UnpackError::Copy {
        archive: archive_path.to_owned(),
        dir: dir.to_owned(),
        source,
    })?;

    // bundle.json travels along (harmless to other tools, useful to ferry).
    crate::format::layout::write_atomic(&dir.join(bundle::BUNDLE_PATH), &archive.bundle_bytes)
        .map_err(|e| blob_err(bundle::BUNDLE_PATH, e.into()))?;
    if let Some(sig) = &archive.signature {
        let name = crate::format::sign::SIGNATURE_PATH;
        crate::format::layout::write_atomic(&dir.join(name), sig)
            .map_err(|e| blob_err(name, e.into()))?;
    }
    // index.json last, after its own digest check.
    let index_entry = archive.entry(INDEX_PATH).ok_or_else(|| {
        blob_err(
            INDEX_PATH,
            LayoutError::Io(std::io::Error::other("index.json missing")),
        )
    })?;
    let bytes = archive.read_member(index_entry, bundle::BUNDLE_MAX_BYTES)?;
    if let Some((d, n)) = declared(INDEX_PATH) {
        let actual = Digest::of(&bytes);
        if actual != d || bytes.len() as u64 != n {
            return Err(blob_err(
                INDEX_PATH,
                LayoutError::Mismatch(blob::Mismatch {
                    digest: d,
                    size: n,
                    actual,
                    actual_size: bytes.len() as u64,
                    from: format!("{INDEX_PATH} in {}", archive_path.display()),
                }),
            ));
        }
    }
    store
        .write_index(&bytes)
        .map_err(|e| blob_err(INDEX_PATH, e))?;
    Ok(UnpackSummary {
        dir: dir.to_owned(),
        blobs: blobs.len(),
        bytes: total,
    })
}

/// What [`extract`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct Extracted {
    /// Chart `.tgz` files written.
    pub charts: Vec<PathBuf>,
    /// Files and directories written.
    pub files: Vec<PathBuf>,
}

/// Writes carried charts back out as `NAME-VERSION.tgz` under `charts_dir`
/// and carried files and directories under `files_dir` (by their titles),
/// each byte checked against its digest. A chart file already there with
/// the same bytes is left alone; any other existing target is an error.
/// Directories are staged under a temp name and renamed into place whole;
/// their tar may hold only plain files and directories below the title,
/// so `..`, absolute paths and links are refused with nothing written.
pub fn extract(
    archive_path: &Path,
    charts_dir: Option<&Path>,
    files_dir: Option<&Path>,
    key: Option<&Path>,
) -> Result<Extracted, UnpackError> {
    let archive = Archive::open_random(archive_path, "ferry unpack")?;
    archive.check_key(key)?;
    archive.check_model()?;
    let locations = archive.blob_locations();
    let mut out = Extracted {
        charts: Vec::new(),
        files: Vec::new(),
    };
    for a in &archive.bundle.artifacts {
        let (dir, name) = match (a.kind, &a.chart, &a.file) {
            (bundle::ArtifactKind::Chart, Some(c), _) => match charts_dir {
                Some(d) => (d, format!("{}-{}.tgz", c.name, c.version)),
                None => continue,
            },
            (bundle::ArtifactKind::File, _, Some(f)) => match files_dir {
                Some(d) => (d, f.title.clone()),
                None => continue,
            },
            _ => continue,
        };
        let target = dir.join(&name);
        let fail = |source: std::io::Error| UnpackError::Extract {
            archive: archive_path.to_owned(),
            artifact: a.reference.clone(),
            path: target.clone(),
            source,
        };
        if !is_plain_name(&name) {
            return Err(fail(invalid(format!("{name:?} is not a plain file name"))));
        }
        let layer = single_layer(&archive, &locations, a).map_err(&fail)?;
        // Read through the verifying reader: a damaged blob fails the read
        // at its end, before anything is renamed into place.
        let reader = locations
            .get(&layer.digest)
            .filter(|e| e.size == layer.size)
            .and_then(|_| blob::BlobSource::open(&archive, &layer.digest))
            .ok_or_else(|| fail(invalid(format!("blob {} is missing", layer.digest))))?;
        fs_err::create_dir_all(dir).map_err(&fail)?;
        let directory = a.file.as_ref().is_some_and(|f| f.directory);
        if directory {
            write_tree(reader, dir, &name).map_err(&fail)?;
        } else {
            write_file(reader, &target, &layer.digest).map_err(&fail)?;
        }
        if a.kind == bundle::ArtifactKind::Chart {
            out.charts.push(target);
        } else {
            out.files.push(target);
        }
    }
    Ok(out)
}

fn invalid(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

/// The one content layer of a chart or file artifact.
fn single_layer(
    archive: &Archive,
    locations: &std::collections::HashMap<Digest, crate::format::archive::Entry>,
    a: &Artifact,
) -> std::io::Result<crate::format::oci::Descriptor> {
    let entry = locations
        .get(&a.digest)
        .ok_or_else(|| invalid(format!("manifest {} is missing", a.digest)))?;
    let bytes = archive
        .read_member(entry, crate::format::oci::MANIFEST_MAX_BYTES)
        .map_err(|e| invalid(crate::base::error::error_chain(&e)))?;
    if Digest::of(&bytes) != a.digest {
        return Err(invalid(format!(
            "manifest {} does not match its digest",
            a.digest
        )));
    }
    let one = match crate::format::oci::parse_node(a.digest, &a.media_type, &bytes) {
        Ok(crate::format::oci::Node::Manifest(m)) => <[_; 1]>::try_from(m.layers).ok(),
        _ => None,
    };
    match one {
        Some([layer]) => Ok(layer),
        None => Err(invalid(format!(
            "manifest {} is not a one-layer artifact",
            a.digest
        ))),
    }
}

/// Copies `reader` to `target` via a temp file, renamed only when the
/// digest matches. An identical existing file is kept.
fn write_file<R: std::io::Read>(
    mut reader: blob::Verifying<R>,
    target: &Path,
    digest: &Digest,
) -> std::io::Result<()> {
    if target.exists() {
        let (d, _) = crate::base::digest::hash_file(target)?;
        if d == *digest {
            return Ok(());
        }
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "a different file is there; remove it or choose another directory",
        ));
    }
    let dir = target.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".ferry-extract.")
        .tempfile_in(dir)?;
    let registered = crate::base::interrupt::register(tmp.path());
    std::io::copy(&mut reader, tmp.as_file_mut())?;
    use std::os::unix::fs::PermissionsExt;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    tmp.as_file().sync_all()?;
    drop(registered);
    tmp.persist_noclobber(target).map_err(|e| e.error)?;
    Ok(())
}

/// Extracts a directory artifact's tar (entries under `title/`) into
/// `dir/title`, staged in a temp directory and renamed into place whole.
fn write_tree<R: std::io::Read>(
    mut reader: blob::Verifying<R>,
    dir: &Path,
    title: &str,
) -> std::io::Result<()> {
    use std::path::Component;
    let target = dir.join(title);
    // An existing directory is checked after the tar is read whole (and
    // its digest checked): the same tree is success, another an error.
    let existing = target.exists();
    let stage = tempfile::Builder::new()
        .prefix(".ferry-extract.")
        .tempdir_in(dir)?;
    let _registered = crate::base::interrupt::register(stage.path());
    {
        let mut tar = tar::Archive::new(&mut reader);
        for entry in tar.entries()? {
            let mut entry = entry?;
            let path = entry.path()?.into_owned();
            let mut comps = path.components();
            let first_ok = matches!(comps.next(), Some(Component::Normal(c)) if c == title);
            if !first_ok || !comps.all(|c| matches!(c, Component::Normal(_))) {
                return Err(invalid(format!(
                    "the directory's tar holds {path:?}, outside {title}/"
                )));
            }
            let out = stage.path().join(&path);
            match entry.header().entry_type() {
                tar::EntryType::Directory => fs_err::create_dir_all(&out)?,
                tar::EntryType::Regular => {
                    if let Some(p) = out.parent() {
                        fs_err::create_dir_all(p)?;
                    }
                    let mut f = fs_err::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&out)?;
                    std::io::copy(&mut entry, &mut f)?;
                    let exec = entry.header().mode().unwrap_or(0o644) & 0o111 != 0;
                    use std::os::unix::fs::PermissionsExt;
                    f.file()
                        .set_permissions(std::fs::Permissions::from_mode(if exec {
                            0o755
                        } else {
                            0o644
                        }))?;
                }
                other => {
                    return Err(invalid(format!(
                        "the directory's tar holds {path:?} of type {other:?}; only files and directories are restored"
                    )))
                }
            }
        }
    }
    // The rest (tar padding) to the end, where the digest is checked.
    std::io::copy(&mut reader, &mut std::io::sink())?;
    let staged = stage.path().join(title);
    if !staged.is_dir() {
        fs_err::create_dir_all(&staged)?;
    }
    if existing {
        return if same_tree(&staged, &target)? {
            Ok(())
        } else {
            Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a different directory is there; remove it or choose another directory",
            ))
        };
    }
    fs_err::rename(&staged, &target)?;
    Ok(())
}

/// Whether two directory trees hold the same entries: the same paths, the
/// same kinds, the same bytes and the same executable bits (links count
/// as different: unpack never writes one).
fn same_tree(a: &Path, b: &Path) -> std::io::Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    let list = |root: &Path| -> std::io::Result<Vec<(PathBuf, std::fs::Metadata)>> {
        let mut v = Vec::new();
        for e in walkdir::WalkDir::new(root)
            .follow_links(false)
            .sort_by_file_name()
        {
            let e = e.map_err(std::io::Error::other)?;
            let rel = e.path().strip_prefix(root).unwrap_or(e.path()).to_owned();
            v.push((rel, std::fs::symlink_metadata(e.path())?));
        }
        Ok(v)
    };
    let (la, lb) = (list(a)?, list(b)?);
    if la.len() != lb.len() {
        return Ok(false);
    }
    for ((pa, ma), (pb, mb)) in la.iter().zip(&lb) {
        let exec = |m: &std::fs::Metadata| m.permissions().mode() & 0o111 != 0;
        let same_kind = (ma.is_dir() && mb.is_dir()) || (ma.is_file() && mb.is_file());
        if pa != pb || !same_kind {
            return Ok(false);
        }
        if ma.is_file()
            && (ma.len() != mb.len()
                || exec(ma) != exec(mb)
                || fs_err::read(a.join(pa))? != fs_err::read(b.join(pb))?)
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A summary of an archive's contents.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// The archive.
    pub archive: PathBuf,
    /// The bundle's name.
    pub name: String,
    /// bundle.json format version.
    pub format_version: u32,
    /// The ferry version that wrote it.
    pub tool_version: String,
    /// Number of members (bundle.json included).
    pub members: usize,
    /// Bytes of member content (bundle.json included).
    pub content_bytes: u64,
    /// The archive's size (all volumes together).
    pub archive_bytes: u64,
    /// The volume files of a split archive, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<PathBuf>,
    /// What a delta archive leaves out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<bundle::Delta>,
    /// Whether the archive is one zstd stream.
    pub compressed: bool,
    /// The artifacts.
    pub artifacts: Vec<Artifact>,
    /// With a key: the trusted comment of the signature checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// Reads bundle.json and summarises it. Refuses damaged archives, and with
/// `key`, a bundle.json that key did not sign.
pub fn inspect(path: &Path, key: Option<&Path>) -> Result<Inspection, UnpackError> {
    // A compressed archive is read only as far as its head.
    let head = crate::format::archive::read_head_strict(path)?;
    let signature = head.check_key(key)?;
    let mut archive_bytes = 0;
    for f in &head.files {
        archive_bytes += fs_err::metadata(f).map_err(ArchiveError::Io)?.len();
    }
    let volumes = match head.files.len() {
        1 => Vec::new(),
        _ => head.files.clone(),
    };
    let mut i = Inspection::of(
        &head.path,
        &head.bundle,
        &head.bundle_bytes,
        archive_bytes,
        volumes,
        head.form == crate::format::archive::Form::Zstd,
    );
    i.signature = signature;
    Ok(i)
}

impl Inspection {
    /// The summary of `bundle` as read from `archive`.
    pub(crate) fn of(
        archive: &Path,
        bundle: &bundle::Bundle,
        bundle_bytes: &[u8],
        archive_bytes: u64,
        volumes: Vec<PathBuf>,
        compressed: bool,
    ) -> Inspection {
        Inspection {
            archive: archive.to_owned(),
            name: bundle.name.clone(),
            format_version: bundle.format_version,
            tool_version: bundle.tool.version.clone(),
            members: bundle.members.len() + 1,
            content_bytes: bundle.members.iter().map(|m| m.size).sum::<u64>()
                + bundle_bytes.len() as u64,
            archive_bytes,
            volumes,
            delta: bundle.delta.clone(),
            compressed,
            artifacts: bundle.artifacts.clone(),
            signature: None,
        }
    }
}
