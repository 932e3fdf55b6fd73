//! `export`: the images of an archive as one tar that container runtimes
//! import without a registry (`docker load`, `podman load`, `ctr images
//! import`, k3s/RKE2 `agent/images/`).
//!
//! Two forms. A **docker-archive** holds `manifest.json` and `repositories`
//! as `docker save` writes them, and also `index.json` and `oci-layout` as
//! Docker 25 and later write them beside; it holds one platform per image,
//! because `manifest.json` cannot hold a manifest list. An **oci-archive**
//! is an OCI image layout of the images alone (no charts, files or
//! referrers), every platform unless one is asked for. Entries of both
//! carry `io.containerd.image.name` (the full name) and
//! `org.opencontainers.image.ref.name` (the tag), as `docker save` does.
//!
//! Blobs go in archive order, each once however many images share it.
//! Into a file from a plain archive or volume set, each is copied by
//! position in the kernel (`copy_file_range`), and checking threads read
//! the copy back through the verifying reader as it is written; the file
//! is renamed into place only when every check has passed. From a zstd
//! archive (one ordered pass) or to stdout, the bytes go through the
//! verifying reader on one thread and are written on another. Manifests stay byte for byte as carried, so their digests and
//! the image IDs (config digests) do not change; a runtime that makes its
//! own manifest from a docker-archive shows another manifest digest. The
//! tar is deterministic: the same archive and options give the same bytes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::base::digest::Digest;
use crate::base::error::error_chain;
use crate::base::platform::Platform;
use crate::base::reference::Reference;
use crate::base::report::Reporter;
use crate::format::archive::{
    compressed::Stream, padding, partial_file, ustar_header, Archive, ArchiveError, Entry,
};
use crate::format::blob::{mismatch_in, BlobSource, SegmentReader, Verifying};
use crate::format::bundle::{Artifact, ArtifactKind};
use crate::format::layout::start_writeback;
use crate::format::oci::{self, Descriptor, Node, Visit, WalkError};
use crate::shared::mapping::{MappingError, TargetRegistry};

/// Errors exporting. Each names the archive, the image or the blob.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The archive is unreadable or damaged.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// The signature of bundle.json is missing or wrong.
    #[error(transparent)]
    Sign(#[from] crate::format::sign::SignError),
    /// Target names (`--registry`) could not be made.
    #[error(transparent)]
    Mapping(#[from] MappingError),
    /// The archive carries no images.
    #[error("{archive} carries no images to export (charts and files go out with `ferry unpack --charts/--files`)")]
    NoImages {
        /// The archive.
        archive: PathBuf,
    },
    /// `--image` named an image the archive does not carry.
    #[error("{archive} carries no image {image}; it carries: {available}")]
    UnknownImage {
        /// The archive.
        archive: PathBuf,
        /// The name asked for.
        image: String,
        /// The images it carries.
        available: String,
    },
    /// A docker-archive holds one platform per image.
    #[error("{image} has {count} platforms ({available}) and a docker-archive holds one per image; choose with --platform, or use --format oci-archive")]
    ChoosePlatform {
        /// The image.
        image: String,
        /// How many.
        count: usize,
        /// Its platforms.
        available: String,
    },
    /// The image has no manifest for the platform asked for.
    #[error("{image} has no {platform} variant; it has: {available}")]
    MissingPlatform {
        /// The image.
        image: String,
        /// The platform asked for.
        platform: Platform,
        /// Its platforms.
        available: String,
    },
    /// More than one manifest matches the platform asked for.
    #[error("{image} has several variants of {platform} ({matches}); name the variant, such as {example}")]
    AmbiguousPlatform {
        /// The image.
        image: String,
        /// The platform asked for.
        platform: Platform,
        /// The matching platforms.
        matches: String,
        /// One of them, as an example.
        example: String,
    },
    /// An index nested in an index, which one platform cannot be taken from.
    #[error("{image}: index {digest} holds another index; export it with --format oci-archive and no --platform")]
    Nested {
        /// The image.
        image: String,
        /// The inner index.
        digest: Digest,
    },
    /// The image's graph could not be walked.
    #[error("{archive}: image {image}")]
    Graph {
        /// The archive.
        archive: PathBuf,
        /// The image.
        image: String,
        /// Why.
        #[source]
        source: WalkError,
    },
    /// A blob an image needs was left out of a delta archive.
    #[error("{archive} is a delta that leaves out blob {digest} of {image} (the far registry holds it); export needs a full bundle")]
    LeftOut {
        /// The archive.
        archive: PathBuf,
        /// The image.
        image: String,
        /// The blob.
        digest: Digest,
    },
    /// A blob could not be read whole, or did not match its digest.
    #[error("{archive}: blob {digest} could not be exported")]
    Blob {
        /// The archive.
        archive: PathBuf,
        /// The blob.
        digest: Digest,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The output is the archive being read (or one of its volumes).
    #[error("{out} is the archive being exported ({archive}); write the export to another file")]
    SameFile {
        /// The output.
        out: PathBuf,
        /// The archive file it is.
        archive: PathBuf,
    },
    /// The output exists and is not a regular file.
    #[error("{out} is not a regular file (a FIFO, device, directory or symlink); export writes a new file and renames it into place, so name a file, or use `-o -` to stream")]
    NotAFile {
        /// The output.
        out: PathBuf,
    },
    /// Two images would load under one name.
    #[error("{first} and {second} would both be exported as {name}; export one of them (--image), or name them by registry (--registry)")]
    SameName {
        /// The name.
        name: String,
        /// The first image.
        first: String,
        /// The second image.
        second: String,
    },
    /// The output could not be written.
    #[error("writing {out}")]
    Write {
        /// The output (`-` for stdout).
        out: String,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// The form of the exported tar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExportFormat {
    /// `docker save`'s form (manifest.json, repositories) with index.json.
    DockerArchive,
    /// An OCI image layout tar.
    OciArchive,
}

/// How to export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// The form.
    pub format: ExportFormat,
    /// One platform per image; `None`: every platform (oci-archive) or the
    /// only one (docker-archive).
    pub platform: Option<Platform>,
    /// Images to export, by reference as carried (`docker.io/library/redis:7.2`
    /// or any spelling of it, such as `redis:7.2`); empty: all.
    pub images: Vec<String>,
    /// Name the images as `load` would in this registry
    /// (`HOST[:PORT][/PREFIX]`, with `keep_host`), instead of their source
    /// names.
    pub target: Option<TargetRegistry>,
    /// Require a signature of bundle.json by this minisign public key.
    pub key: Option<PathBuf>,
    /// The mtime written into tar headers.
    pub mtime: u64,
}

/// One exported image.
#[derive(Debug, Clone, Serialize)]
pub struct ExportedImage {
    /// The reference as carried.
    pub source: String,
    /// The name it is exported under (`None`: carried by digest only, so it
    /// has no tag to load under).
    pub name: Option<String>,
    /// The manifest (or index) exported, unchanged.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// The image ID a runtime shows (the config digest), when one platform
    /// is exported.
    pub image_id: Option<Digest>,
    /// The platform exported, when one is.
    pub platform: Option<String>,
}

/// What an export wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ExportSummary {
    /// The form.
    pub format: ExportFormat,
    /// The images, in bundle order.
    pub images: Vec<ExportedImage>,
    /// Blobs written (each once).
    pub blobs: usize,
    /// Bytes of the tar.
    pub bytes: u64,
    /// The signer's comment, when a key was checked.
    pub signature: Option<String>,
}

/// Where each blob of the archive is.
type Locations = HashMap<Digest, Entry>;

/// One image as it will be exported.
struct Chosen {
    artifact: Artifact,
    name: Option<String>,
    /// The full name with a digest, for `io.containerd.image.name` when the
    /// image has no tag.
    digest_name: String,
    tag: Option<String>,
    /// The exported root: the carried root, or one child of it.
    root: Descriptor,
    /// With one platform: the manifest's config and layers.
    config: Option<Digest>,
    layers: Vec<Digest>,
}

/// Exports into `out` (a file, written under a temp name and renamed when
/// whole; `-` is stdout, where a failure leaves a cut-off tar behind it).
pub fn export_to(
    archive: &Path,
    out: &Path,
    opts: &ExportOptions,
    reporter: &dyn Reporter,
) -> Result<ExportSummary, ExportError> {
    if out == Path::new("-") {
        let stdout = io::stdout();
        let mut w = io::BufWriter::with_capacity(1 << 20, stdout.lock());
        let summary = export(archive, &mut w, "stdout", opts, reporter)?;
        w.flush().map_err(|source| ExportError::Write {
            out: "stdout".into(),
            source,
        })?;
        return Ok(summary);
    }
    let name = out.display().to_string();
    let write_err = |source| ExportError::Write {
        out: name.clone(),
        source,
    };
    // The tar is written beside OUT and renamed over it: a FIFO, a device
    // or a symlink there would be replaced, not written into.
    if let Ok(m) = std::fs::symlink_metadata(out) {
        if !m.is_file() {
            return Err(ExportError::NotAFile {
                out: out.to_owned(),
            });
        }
    }
    let tmp = partial_file(out)?;
    let _registered = crate::base::interrupt::register(tmp.path());
    let direct = Direct {
        file: tmp.as_file(),
        read: Arc::new(tmp.as_file().try_clone().map_err(write_err)?),
        path: tmp.path(),
    };
    let mut w = io::BufWriter::with_capacity(1 << 20, tmp.as_file());
    let summary = export_inner(
        archive,
        &mut w,
        &name,
        Some(&direct),
        Some(out),
        opts,
        reporter,
    )?;
    w.flush().map_err(write_err)?;
    drop(w);
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(write_err)?;
    }
    tmp.as_file().sync_data().map_err(write_err)?;
    tmp.persist(out).map_err(|e| write_err(e.error))?;
    Ok(summary)
}

/// Exports the images of `archive` as one tar into `out` (named `out_name`
/// in messages).
pub fn export(
    archive: &Path,
    out: &mut dyn Write,
    out_name: &str,
    opts: &ExportOptions,
    reporter: &dyn Reporter,
) -> Result<ExportSummary, ExportError> {
    export_inner(archive, out, out_name, None, None, opts, reporter)
}

/// The temp file an export to a file writes: blobs are copied into it by
/// position, in the kernel, and checked by reading the copy back.
struct Direct<'f> {
    /// The file, written at its position (the tar's `BufWriter` writes to
    /// it too, and is flushed before each copy).
    file: &'f File,
    /// A second handle on it, for the checking threads' positioned reads.
    read: Arc<File>,
    /// Its path, for messages.
    path: &'f Path,
}

/// [`export`], refusing an output file (`out_path`) that is the archive
/// itself or one of its volumes, which the rename would destroy. `direct`
/// is the file `out` writes to, when it is one.
fn export_inner(
    archive: &Path,
    out: &mut dyn Write,
    out_name: &str,
    direct: Option<&Direct<'_>>,
    out_path: Option<&Path>,
    opts: &ExportOptions,
    reporter: &dyn Reporter,
) -> Result<ExportSummary, ExportError> {
    let a = Archive::open_head(archive)?;
    if let Some(id) = out_path.and_then(file_id) {
        if let Some(f) = a.files().into_iter().find(|f| file_id(f) == Some(id)) {
            return Err(ExportError::SameFile {
                out: out_path.unwrap_or(archive).to_owned(),
                archive: f.to_owned(),
            });
        }
    }
    let signature = a.check_key(opts.key.as_deref())?;
    a.check_model()?;
    let locations = a.blob_locations();
    let chosen = choose(&a, &locations, archive, opts)?;

    // Every blob once, in archive order; documents and configs are blobs.
    let mut wanted: HashMap<Digest, u64> = HashMap::new();
    for c in &chosen {
        let mut need = |d: Digest, size: u64| -> Result<(), ExportError> {
            if locations.get(&d).map(|e| e.size) != Some(size) {
                let left_out = a
                    .bundle
                    .delta
                    .iter()
                    .flat_map(|x| &x.absent)
                    .any(|b| b.digest == d);
                return Err(if left_out {
                    ExportError::LeftOut {
                        archive: archive.to_owned(),
                        image: c.artifact.reference.clone(),
                        digest: d,
                    }
                } else {
                    ExportError::Graph {
                        archive: archive.to_owned(),
                        image: c.artifact.reference.clone(),
                        source: WalkError::Blob(d),
                    }
                });
            }
            wanted.insert(d, size);
            Ok(())
        };
        let mut found: Vec<(Digest, u64)> = Vec::new();
        oci::walk_graph(
            &c.root.media_type,
            &c.root.digest,
            &mut |d| read_document(&a, &locations, d),
            &mut |v| {
                match v {
                    Visit::Blob(b) => found.push((b.digest, b.size)),
                    Visit::Document { digest, bytes, .. } => {
                        found.push((digest, bytes.len() as u64))
                    }
                }
                Ok(())
            },
        )
        .map_err(|source| ExportError::Graph {
            archive: archive.to_owned(),
            image: c.artifact.reference.clone(),
            source,
        })?;
        for (d, size) in found {
            need(d, size)?;
        }
    }
    let total: u64 = wanted.values().sum();

    let mut tar = TarOut {
        w: out,
        name: out_name,
        bytes: 0,
        mtime: opts.mtime,
    };
    tar.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    reporter.start("exporting", total);
    let written = match direct {
        Some(direct) if !a.is_compressed() => {
            copy_blobs_direct(&a, archive, &locations, &wanted, &mut tar, direct, reporter)?
        }
        _ => copy_blobs(
            &a,
            archive,
            &wanted,
            &mut tar,
            direct.map(|d| d.file),
            reporter,
        )?,
    };
    reporter.finish();
    if let Some(d) = wanted.keys().find(|d| !written.contains(*d)) {
        return Err(ExportError::Blob {
            archive: archive.to_owned(),
            digest: *d,
            source: io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "it never came by in the archive",
            ),
        });
    }

    tar.file("index.json", &index_json(&chosen))?;
    if opts.format == ExportFormat::DockerArchive {
        tar.file("manifest.json", &manifest_json(&chosen))?;
        tar.file("repositories", &repositories_json(&chosen))?;
    }
    tar.finish()?;
    Ok(ExportSummary {
        format: opts.format,
        images: chosen
            .iter()
            .map(|c| ExportedImage {
                source: c.artifact.reference.clone(),
                name: c.name.clone(),
                digest: c.root.digest,
                media_type: c.root.media_type.clone(),
                image_id: c.config,
                platform: c
                    .root
                    .platform
                    .as_ref()
                    .map(|p| p.to_platform().to_string()),
            })
            .collect(),
        blobs: written.len(),
        bytes: tar.bytes,
        signature,
    })
}

/// A file's device and inode, when it exists.
fn file_id(p: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()))
}

fn read_document(a: &Archive, locations: &Locations, d: &Digest) -> io::Result<Vec<u8>> {
    let entry = locations
        .get(d)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "not in the archive"))?;
    a.read_member(entry, oci::MANIFEST_MAX_BYTES)
        .map_err(|e| io::Error::other(error_chain(&e)))
}

/// The images to export, each with its name and the root to export.
fn choose(
    a: &Archive,
    locations: &Locations,
    archive: &Path,
    opts: &ExportOptions,
) -> Result<Vec<Chosen>, ExportError> {
    let images: Vec<&Artifact> = a
        .bundle
        .artifacts
        .iter()
        .filter(|x| x.kind == ArtifactKind::Image)
        .collect();
    if images.is_empty() {
        return Err(ExportError::NoImages {
            archive: archive.to_owned(),
        });
    }
    // `--image` matches any spelling of a carried reference.
    let normal = |s: &str| s.parse::<Reference>().map(|r| r.to_string()).ok();
    let mut picked: Vec<&Artifact> = Vec::new();
    for want in &opts.images {
        let key = normal(want);
        let hit = images
            .iter()
            .find(|x| x.reference == *want || (key.is_some() && normal(&x.reference) == key));
        match hit {
            Some(x) if !picked.iter().any(|p| p.reference == x.reference) => picked.push(x),
            Some(_) => {}
            None => {
                return Err(ExportError::UnknownImage {
                    archive: archive.to_owned(),
                    image: want.clone(),
                    available: images
                        .iter()
                        .map(|x| x.reference.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })
            }
        }
    }
    if opts.images.is_empty() {
        picked = images;
    }
    // Names: as `load` would make them in the target registry, else the
    // source's full name. The mapping refuses two images on one name.
    let targets = match &opts.target {
        Some(t) => Some(
            t.rules
                .targets(&picked.iter().map(|x| (*x).clone()).collect::<Vec<_>>())?,
        ),
        None => None,
    };
    let mut out = Vec::new();
    for (i, x) in picked.iter().enumerate() {
        let (repo, tag) = match (&targets, &opts.target) {
            (Some(ts), Some(t)) => (
                format!("{}/{}", t.host, ts[i].repository),
                ts[i].tag.clone(),
            ),
            _ => {
                let r = crate::shared::mapping::image_reference(x)?;
                (r.name(), r.tag().map(str::to_owned))
            }
        };
        // bundle.json's size is the whole graph's; the root's own is the
        // member's.
        let own = locations.get(&x.digest).map(|e| e.size);
        let Some(own) = own else {
            return Err(ExportError::Graph {
                archive: archive.to_owned(),
                image: x.reference.clone(),
                source: WalkError::Blob(x.digest),
            });
        };
        let carried = Descriptor::new(&x.media_type, x.digest, own);
        let (root, config, layers) = pick_platform(a, locations, archive, x, carried, opts)?;
        out.push(Chosen {
            artifact: (*x).clone(),
            name: tag.as_ref().map(|t| format!("{repo}:{t}")),
            digest_name: format!("{repo}@{}", root.digest),
            tag,
            root,
            config,
            layers,
        });
    }
    // Two images under one name: the runtime keeps whichever it imports
    // last, silently.
    let mut seen: HashMap<&str, &str> = HashMap::new();
    for c in &out {
        if let Some(name) = &c.name {
            if let Some(first) = seen.insert(name, &c.artifact.reference) {
                return Err(ExportError::SameName {
                    name: name.clone(),
                    first: first.to_owned(),
                    second: c.artifact.reference.clone(),
                });
            }
        }
    }
    Ok(out)
}

/// The root to export for one image: with a platform (asked for, or
/// needed by a docker-archive) one manifest, with its config and layers.
fn pick_platform(
    a: &Archive,
    locations: &Locations,
    archive: &Path,
    x: &Artifact,
    carried: Descriptor,
    opts: &ExportOptions,
) -> Result<(Descriptor, Option<Digest>, Vec<Digest>), ExportError> {
    let graph = |source| ExportError::Graph {
        archive: archive.to_owned(),
        image: x.reference.clone(),
        source,
    };
    let parse = |d: &Descriptor| -> Result<Node, ExportError> {
        let bytes = read_document(a, locations, &d.digest).map_err(|source| {
            graph(WalkError::Read {
                digest: d.digest,
                source,
            })
        })?;
        if Digest::of(&bytes) != d.digest {
            return Err(graph(WalkError::Mismatch(d.digest)));
        }
        oci::parse_node(d.digest, &d.media_type, &bytes).map_err(|e| graph(e.into()))
    };
    let one = opts.format == ExportFormat::DockerArchive || opts.platform.is_some();
    let node = parse(&carried)?;
    let manifest = match node {
        Node::Manifest(m) => {
            // A single-platform image: the filter checks what bundle.json
            // says it is, when it says.
            if let Some(p) = &opts.platform {
                let have: Vec<Platform> =
                    x.platforms.iter().filter_map(|s| s.parse().ok()).collect();
                if !have.is_empty() && !have.iter().any(|h| p.accepts(h)) {
                    return Err(ExportError::MissingPlatform {
                        image: x.reference.clone(),
                        platform: p.clone(),
                        available: x.platforms.join(", "),
                    });
                }
            }
            (m, carried)
        }
        Node::Index(_) if !one => return Ok((carried, None, Vec::new())),
        Node::Index(i) => {
            let runnable: Vec<(&Descriptor, Platform)> = i
                .manifests
                .iter()
                .filter_map(|d| Some((d, d.platform.as_ref()?.to_platform())))
                .filter(|(_, p)| p.os != "unknown")
                .collect();
            let available = runnable
                .iter()
                .map(|(_, p)| p.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            let matching: Vec<&(&Descriptor, Platform)> = match &opts.platform {
                Some(p) => runnable.iter().filter(|(_, h)| p.accepts(h)).collect(),
                None => runnable.iter().collect(),
            };
            let child = match (matching.as_slice(), &opts.platform) {
                ([only], _) => only.0.clone(),
                // An index of one child that names no platform: that child.
                ([], _) if runnable.is_empty() && i.manifests.len() == 1 => {
                    match i.manifests.first() {
                        Some(c) => c.clone(),
                        None => {
                            return Err(ExportError::Nested {
                                image: x.reference.clone(),
                                digest: carried.digest,
                            })
                        }
                    }
                }
                ([], Some(p)) => {
                    return Err(ExportError::MissingPlatform {
                        image: x.reference.clone(),
                        platform: p.clone(),
                        available,
                    })
                }
                (many, Some(p)) => {
                    return Err(ExportError::AmbiguousPlatform {
                        image: x.reference.clone(),
                        platform: p.clone(),
                        matches: many
                            .iter()
                            .map(|(_, h)| h.to_string())
                            .collect::<Vec<_>>()
                            .join(", "),
                        example: many.first().map(|(_, h)| h.to_string()).unwrap_or_default(),
                    })
                }
                (many, None) => {
                    return Err(ExportError::ChoosePlatform {
                        image: x.reference.clone(),
                        count: many.len(),
                        available,
                    })
                }
            };
            match parse(&child)? {
                Node::Manifest(m) => (m, child),
                Node::Index(_) => {
                    return Err(ExportError::Nested {
                        image: x.reference.clone(),
                        digest: child.digest,
                    })
                }
            }
        }
    };
    let (m, root) = manifest;
    Ok((
        root,
        Some(m.config.digest),
        m.layers.iter().map(|l| l.digest).collect(),
    ))
}

/// What the reading thread hands the writer.
enum Piece {
    /// A blob starts.
    Start(Digest, u64),
    /// Its next bytes (the buffer goes back for reuse).
    Data(Vec<u8>),
    /// It ended, and matched its digest.
    End,
}

/// The bytes of one chunk handed over at a time.
const CHUNK: usize = 1 << 20;

/// Copies every wanted blob into the tar, in archive order, through user
/// space: the path for a zstd archive, and for any archive to stdout. One
/// thread reads and hashes (by position from a plain archive or volumes, in
/// one ordered pass over a zstd one) while this one writes, so the hashing
/// costs no time of its own when a core is free. `file`: the output file,
/// when there is one, whose writeback is started as it grows.
fn copy_blobs(
    a: &Archive,
    archive: &Path,
    wanted: &HashMap<Digest, u64>,
    tar: &mut TarOut<'_>,
    file: Option<&File>,
    reporter: &dyn Reporter,
) -> Result<HashSet<Digest>, ExportError> {
    let mut writeback = file.map(|f| Writeback::new(f, tar.bytes));
    let (tx, rx) = std::sync::mpsc::sync_channel::<Piece>(4);
    let (give_back, reuse) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || {
            let mut send = Sender { tx, reuse, archive };
            if a.in_order_only() {
                read_in_stream_order(a, archive, wanted, &mut send)
            } else {
                read_in_archive_order(a, archive, wanted, &mut send)
            }
        });
        let mut wrote: Result<(), ExportError> = Ok(());
        let mut current: Option<u64> = None;
        for piece in rx.iter() {
            let step = match piece {
                Piece::Start(d, size) => {
                    current = Some(size);
                    tar.header(&format!("blobs/sha256/{}", d.hex()), size)
                }
                Piece::Data(buf) => {
                    let mut r = tar.put(&buf);
                    reporter.advance(buf.len() as u64);
                    let _ = give_back.send(buf);
                    if let Some(wb) = writeback.as_mut().filter(|wb| wb.due(tar.bytes)) {
                        r = r.and_then(|()| tar.flush());
                        wb.start(tar.bytes);
                    }
                    r
                }
                Piece::End => tar.pad(current.take().unwrap_or(0)),
            };
            if let Err(e) = step {
                wrote = Err(e);
                // Dropping the receiver stops the reader at its next send.
                break;
            }
        }
        drop(rx);
        let read = reader.join().unwrap_or_else(|_| {
            Err(ExportError::Blob {
                archive: archive.to_owned(),
                digest: Digest::of(b""),
                source: io::Error::other("the reading thread panicked"),
            })
        });
        // A write failure is the cause when both failed.
        wrote?;
        read
    })
}

/// Copies every wanted blob into the output file, in archive order: by
/// position from a plain archive or volume set, in the kernel
/// (`copy_file_range`: the bytes never pass through user space), while
/// checking threads read each blob back from the output through the
/// verifying reader, following the copy as it goes (a large layer is
/// hashed while it is still being copied). The copy, not the source, is
/// what is checked, so the bytes checked are the bytes the rename will put
/// in place. Every check has ended, and passed, before this returns `Ok`;
/// the first failure stops the copying.
fn copy_blobs_direct(
    a: &Archive,
    archive: &Path,
    locations: &Locations,
    wanted: &HashMap<Digest, u64>,
    tar: &mut TarOut<'_>,
    out: &Direct<'_>,
    reporter: &dyn Reporter,
) -> Result<HashSet<Digest>, ExportError> {
    let mut order: Vec<Digest> = Vec::new();
    let mut seen = HashSet::new();
    for d in a.entries.iter().filter_map(|e| blob_digest(&e.path)) {
        if wanted.contains_key(&d) && seen.insert(d) {
            order.push(d);
        }
    }
    let mut done = HashSet::new();
    let checkers = std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 4));
    let copied = Copied::default();
    // The first (in archive order) blob whose copy did not check out.
    let failed: Mutex<Option<(usize, ExportError)>> = Mutex::new(None);
    let (jobs, queue) = std::sync::mpsc::channel::<Check>();
    let queue = Mutex::new(queue);
    // One job at a time off the shared queue, until it closes.
    let check_all = || {
        while let Some(job) = queue.lock().ok().and_then(|q| q.recv().ok()) {
            if copied.stopped() {
                continue;
            }
            let Err(source) = check_copy(out, &job, &copied) else {
                continue;
            };
            // A check cut short by another failure is not one.
            if copied.stopped() && mismatch_in(&source).is_none() {
                continue;
            }
            copied.stop();
            if let Ok(mut f) = failed.lock() {
                if f.as_ref().is_none_or(|(j, _)| job.index < *j) {
                    let e = ExportError::Blob {
                        archive: archive.to_owned(),
                        digest: job.digest,
                        source,
                    };
                    *f = Some((job.index, e));
                }
            }
        }
    };
    let result = std::thread::scope(|scope| {
        for _ in 0..checkers {
            scope.spawn(check_all);
        }
        // Starting writeback can wait on the disk's queue: a thread of its
        // own does it, so neither the copy nor the checks wait.
        let (kick, kicks) = std::sync::mpsc::channel::<u64>();
        scope.spawn(move || {
            let mut writeback = Writeback::new(out.file, 0);
            for pos in kicks {
                writeback.start(pos);
            }
        });
        // Should this thread panic, the checkers waiting on its copy must
        // not wait forever (the scope joins them before unwinding on).
        let _unstick = Unstick(&copied);
        let mut kicked = tar.bytes;
        let result = (|| -> Result<(), ExportError> {
            for (index, d) in order.iter().copied().enumerate() {
                if copied.stopped() {
                    break;
                }
                let (Some(&size), Some(entry)) = (wanted.get(&d), locations.get(&d)) else {
                    continue;
                };
                tar.header(&format!("blobs/sha256/{}", d.hex()), size)?;
                // The header goes out first: the copy lands at the file's
                // own position, which is then the tar's.
                tar.flush()?;
                let at = tar.bytes;
                let _ = jobs.send(Check {
                    index,
                    digest: d,
                    size,
                    at,
                    from: format!("{} in {}", entry.path, archive.display()),
                });
                let mut pos = at;
                a.copy_member(entry, out.file, &mut |n| {
                    reporter.advance(n);
                    pos += n;
                    copied.reach(pos);
                    if pos - kicked >= WRITEBACK_RUN {
                        let _ = kick.send(pos);
                        kicked = pos;
                    }
                })
                .map_err(|source| ExportError::Blob {
                    archive: archive.to_owned(),
                    digest: d,
                    source,
                })?;
                tar.bytes += size;
                tar.pad(size)?;
                done.insert(d);
            }
            Ok(())
        })();
        drop(kick);
        // No more jobs; checkers waiting on bytes that will never come
        // (the copy failed) give up.
        drop(jobs);
        if result.is_err() {
            copied.stop();
        }
        // The copy is done: this thread checks too.
        check_all();
        result
    });
    // A copy or write failure is the cause when both failed.
    result?;
    if let Some((_, e)) = failed.into_inner().ok().flatten() {
        return Err(e);
    }
    Ok(done)
}

/// One blob for a checking thread: `size` bytes at `at` in the output.
struct Check {
    /// Its place in archive order (the first failure is the one reported).
    index: usize,
    digest: Digest,
    size: u64,
    at: u64,
    /// Where its bytes were copied from, for the mismatch.
    from: String,
}

/// How far the copy into the output has come, for the checking threads
/// that follow it.
#[derive(Default)]
struct Copied {
    state: Mutex<(u64, bool)>,
    moved: std::sync::Condvar,
}

impl Copied {
    /// The output holds every byte before `pos`.
    fn reach(&self, pos: u64) {
        if let Ok(mut s) = self.state.lock() {
            s.0 = pos;
        }
        self.moved.notify_all();
    }

    /// Copying and checking stop. Only for a failure that the export
    /// returns (or a panic): a check cut short by a stop is not counted as
    /// one, so a stop without an error would let unchecked bytes through.
    fn stop(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.1 = true;
        }
        self.moved.notify_all();
    }

    fn stopped(&self) -> bool {
        self.state.lock().map_or(true, |s| s.1)
    }

    /// Waits until the output holds some bytes from `pos` on, and says
    /// up to where; `None`: it never will (the export stopped).
    fn wait_past(&self, pos: u64) -> Option<u64> {
        let mut s = self.state.lock().ok()?;
        while s.0 <= pos && !s.1 {
            s = self.moved.wait(s).ok()?;
        }
        (!s.1).then_some(s.0)
    }
}

/// Stops the copy's followers if the copying thread panics.
struct Unstick<'a>(&'a Copied);

impl Drop for Unstick<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.stop();
        }
    }
}

/// A reader over a stretch of the output (`pos` to `end`) that hands out
/// only bytes the copy has already written.
struct Following<'a> {
    inner: SegmentReader,
    copied: &'a Copied,
    pos: u64,
    end: u64,
}

impl Read for Following<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.end || buf.is_empty() {
            return self.inner.read(buf);
        }
        let ready = self
            .copied
            .wait_past(self.pos)
            .ok_or_else(|| io::Error::other("the export stopped"))?;
        let room = usize::try_from(ready.min(self.end) - self.pos)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = self.inner.read(&mut buf[..room])?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Reads a blob back from the output as the copy writes it, through the
/// verifying reader (which fails naming the digest and where the bytes
/// were copied from).
fn check_copy(out: &Direct<'_>, job: &Check, copied: &Copied) -> io::Result<()> {
    let copy = SegmentReader::with_files(
        vec![(out.path.to_owned(), job.at, job.size)],
        vec![Some(out.read.clone())],
    );
    let mut r = Verifying::new(
        Following {
            inner: copy,
            copied,
            pos: job.at,
            end: job.at + job.size,
        },
        job.digest,
        job.size,
        job.from.clone(),
    );
    let mut buf = vec![0u8; CHECK_BUF];
    loop {
        match r.read(&mut buf) {
            // At its end the verifying reader has checked the digest.
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The buffer each checking thread reads a copy back into (small enough to
/// stay in cache between the read and the hash).
const CHECK_BUF: usize = 256 << 10;

/// Starting the output's writeback as it grows, a run at a time, so that
/// the disk works while the export does and the final sync is short.
struct Writeback<'f> {
    file: &'f File,
    /// Where the last run started ends: writeback of what is before it
    /// has begun.
    started: u64,
}

/// How many bytes are written before their writeback is started.
const WRITEBACK_RUN: u64 = 32 << 20;

impl<'f> Writeback<'f> {
    fn new(file: &'f File, at: u64) -> Writeback<'f> {
        Writeback { file, started: at }
    }

    /// Whether a run has been written since the last start, at `pos`.
    fn due(&self, pos: u64) -> bool {
        pos.saturating_sub(self.started) >= WRITEBACK_RUN
    }

    /// Starts writing back what is in the file before `pos`.
    fn start(&mut self, pos: u64) {
        // (A length of 0 would mean "to the end of the file".)
        if pos > self.started {
            start_writeback(self.file, self.started, pos - self.started);
            self.started = pos;
        }
    }
}

/// The reading side of [`copy_blobs`].
struct Sender<'a> {
    tx: std::sync::mpsc::SyncSender<Piece>,
    reuse: std::sync::mpsc::Receiver<Vec<u8>>,
    archive: &'a Path,
}

/// The writer has stopped (it failed, and says why).
struct Stopped;

impl Sender<'_> {
    /// Sends one blob: exactly `size` bytes from `r`, which verifies them.
    /// `Ok(false)`: the writer stopped.
    fn blob(&mut self, d: Digest, size: u64, r: &mut dyn Read) -> Result<bool, ExportError> {
        let read_err = |source| ExportError::Blob {
            archive: self.archive.to_owned(),
            digest: d,
            source,
        };
        if self.tx.send(Piece::Start(d, size)).is_err() {
            return Ok(false);
        }
        let mut left = size;
        while left > 0 {
            let mut buf = self.reuse.try_recv().unwrap_or_else(|_| vec![0u8; CHUNK]);
            let want = CHUNK.min(usize::try_from(left).unwrap_or(CHUNK));
            buf.resize(want, 0);
            let mut filled = 0;
            while filled < want {
                let Some(rest) = buf.get_mut(filled..) else {
                    break;
                };
                match r.read(rest) {
                    Ok(0) => {
                        return Err(read_err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!(
                                "ended {} bytes before its size of {size}",
                                left - filled as u64
                            ),
                        )))
                    }
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(read_err(e)),
                }
            }
            left -= want as u64;
            if self.tx.send(Piece::Data(buf)).is_err() {
                return Ok(false);
            }
        }
        // The verifying reader checks the digest at the end of the bytes.
        match r.read(&mut [0u8; 1]) {
            Ok(0) => {}
            Ok(_) => {
                return Err(read_err(io::Error::other(format!(
                    "longer than its size of {size}"
                ))))
            }
            Err(e) => return Err(read_err(e)),
        }
        Ok(self.tx.send(Piece::End).is_ok())
    }
}

/// Plain archive or volumes: each wanted blob by position, in archive
/// order, through the verifying reader.
fn read_in_archive_order(
    a: &Archive,
    archive: &Path,
    wanted: &HashMap<Digest, u64>,
    send: &mut Sender<'_>,
) -> Result<HashSet<Digest>, ExportError> {
    let mut done = HashSet::new();
    let order: Vec<Digest> = a
        .entries
        .iter()
        .filter_map(|e| blob_digest(&e.path))
        .filter(|d| wanted.contains_key(d))
        .collect();
    for d in order {
        let Some(&size) = wanted.get(&d) else {
            continue;
        };
        if done.contains(&d) {
            continue;
        }
        let mut r = a.open(&d).ok_or_else(|| ExportError::Blob {
            archive: archive.to_owned(),
            digest: d,
            source: io::Error::new(io::ErrorKind::NotFound, "not in the archive"),
        })?;
        if !send.blob(d, size, &mut r)? {
            return Err(Stopped.into_error(archive));
        }
        done.insert(d);
    }
    Ok(done)
}

/// A zstd archive: one ordered pass, taking each wanted blob as it comes by.
fn read_in_stream_order(
    a: &Archive,
    archive: &Path,
    wanted: &HashMap<Digest, u64>,
    send: &mut Sender<'_>,
) -> Result<HashSet<Digest>, ExportError> {
    let mut s = Stream::reopen(archive, &a.bundle_bytes)?;
    let mut done = HashSet::new();
    while let Some(i) = s.next_member()? {
        let Some(m) = s.bundle.members.get(i).cloned() else {
            continue;
        };
        let Some(&size) = wanted.get(&m.digest) else {
            continue;
        };
        if done.contains(&m.digest) || m.size != size {
            continue;
        }
        let from = format!("{} in {}", m.path, archive.display());
        let mut r = Verifying::new(&mut s, m.digest, size, from);
        if !send.blob(m.digest, size, &mut r)? {
            return Err(Stopped.into_error(archive));
        }
        done.insert(m.digest);
    }
    Ok(done)
}

impl Stopped {
    /// The reader's side of a writer that stopped: the writer's own error
    /// is the one reported.
    fn into_error(self, archive: &Path) -> ExportError {
        ExportError::Write {
            out: archive.display().to_string(),
            source: io::Error::other("the writer stopped"),
        }
    }
}

fn blob_digest(path: &str) -> Option<Digest> {
    Digest::from_hex(path.strip_prefix("blobs/sha256/")?).ok()
}

/// `index.json`: one entry per image and name.
fn index_json(chosen: &[Chosen]) -> Vec<u8> {
    let manifests: Vec<serde_json::Value> = chosen
        .iter()
        .map(|c| {
            let mut annotations: BTreeMap<&str, String> = BTreeMap::new();
            annotations.insert(
                oci::ANN_IMAGE_NAME,
                c.name.clone().unwrap_or_else(|| c.digest_name.clone()),
            );
            if let Some(t) = &c.tag {
                annotations.insert(oci::ANN_REF_NAME, t.clone());
            }
            let mut d = serde_json::json!({
                "mediaType": c.root.media_type,
                "digest": c.root.digest.to_string(),
                "size": c.root.size,
                "annotations": annotations,
            });
            if let Some(p) = &c.root.platform {
                d["platform"] = serde_json::to_value(p).unwrap_or_default();
            }
            d
        })
        .collect();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": oci::OCI_INDEX,
        "manifests": manifests,
    });
    serde_json::to_vec(&index).unwrap_or_default()
}

/// `manifest.json`, as `docker save` writes it: config and layers by path.
fn manifest_json(chosen: &[Chosen]) -> Vec<u8> {
    let path = |d: &Digest| format!("blobs/sha256/{}", d.hex());
    let items: Vec<serde_json::Value> = chosen
        .iter()
        .map(|c| {
            serde_json::json!({
                "Config": c.config.as_ref().map(path).unwrap_or_default(),
                "RepoTags": c.name.iter().collect::<Vec<_>>(),
                "Layers": c.layers.iter().map(path).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::to_vec(&items).unwrap_or_default()
}

/// `repositories`, the legacy name → tag → top layer map.
fn repositories_json(chosen: &[Chosen]) -> Vec<u8> {
    let mut repos: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for c in chosen {
        let (Some(name), Some(top)) = (&c.name, c.layers.last()) else {
            continue;
        };
        if let Some((repo, tag)) = name.rsplit_once(':') {
            repos
                .entry(familiar(repo))
                .or_default()
                .insert(tag.to_owned(), top.hex().to_owned());
        }
    }
    serde_json::to_vec(&repos).unwrap_or_default()
}

/// Docker's short form of a name: `redis` for `docker.io/library/redis`,
/// `org/app` for `docker.io/org/app`.
fn familiar(repo: &str) -> String {
    match repo.strip_prefix("docker.io/") {
        Some(rest) => rest.strip_prefix("library/").unwrap_or(rest).to_owned(),
        None => repo.to_owned(),
    }
}

/// The tar being written: ustar headers as the archive writer makes them.
struct TarOut<'a> {
    w: &'a mut dyn Write,
    name: &'a str,
    bytes: u64,
    mtime: u64,
}

impl TarOut<'_> {
    fn write_err(&self, source: io::Error) -> ExportError {
        ExportError::Write {
            out: self.name.to_owned(),
            source,
        }
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), ExportError> {
        self.w.write_all(bytes).map_err(|e| self.write_err(e))?;
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    fn header(&mut self, path: &str, size: u64) -> Result<(), ExportError> {
        let h = ustar_header(path, size, self.mtime).map_err(|e| self.write_err(e))?;
        self.put(h.as_bytes())
    }

    fn pad(&mut self, size: u64) -> Result<(), ExportError> {
        let pad = padding(size) as usize;
        self.put(&[0u8; 512][..pad])
    }

    fn file(&mut self, path: &str, bytes: &[u8]) -> Result<(), ExportError> {
        self.header(path, bytes.len() as u64)?;
        self.put(bytes)?;
        self.pad(bytes.len() as u64)
    }

    fn flush(&mut self) -> Result<(), ExportError> {
        self.w.flush().map_err(|e| self.write_err(e))
    }

    fn finish(&mut self) -> Result<(), ExportError> {
        self.put(&[0u8; 1024])?;
        self.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn familiar_names_are_dockers() {
        assert_eq!(familiar("docker.io/library/redis"), "redis");
        assert_eq!(familiar("docker.io/org/app"), "org/app");
        assert_eq!(familiar("ghcr.io/org/app"), "ghcr.io/org/app");
        assert_eq!(familiar("localhost:5000/x"), "localhost:5000/x");
    }
}
