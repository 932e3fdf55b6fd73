//! The files `rewrite` and `ferry images` read: which files a list of
//! paths names ([`collect_inputs`]: YAML and JSON to read, other files an
//! output tree copies, symbolic links that are neither followed nor
//! copied), and the image references those files name ([`find_images`]),
//! read by the rewriter itself with an empty map, so that what `pack`
//! carries and what `rewrite --check` asks for are found alike.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::{find, Found, ImageMap, Outcome, RewriteError, RewriteOptions};
use crate::base::reference::Reference;

/// One file, with the path it has relative to an output directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    /// Where it is.
    pub path: PathBuf,
    /// Where it goes under an output directory.
    pub rel: PathBuf,
}

/// What a list of paths holds.
#[derive(Debug, Default)]
pub struct Inputs {
    /// Files to read as YAML: the files named, and the `.yaml`, `.yml` and
    /// `.json` files under the directories named, sorted by name.
    pub documents: Vec<InputFile>,
    /// The other regular files under the directories (an output tree
    /// copies them).
    pub others: Vec<InputFile>,
    /// The directories under the directories named (relative paths), so
    /// an output tree has the empty ones too.
    pub dirs: Vec<PathBuf>,
    /// Symbolic links and special files under the directories: neither
    /// followed nor copied. A link given on the command line is followed.
    pub not_followed: Vec<NotFollowed>,
}

/// A directory entry that was not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotFollowed {
    /// The entry.
    pub file: InputFile,
    /// `symbolic link` or `not a regular file`.
    pub kind: &'static str,
    /// A link to a directory or to a YAML or JSON file: what it points
    /// at may name images that were not read.
    pub may_hold_documents: bool,
}

fn is_document(p: &Path) -> bool {
    p.extension()
        .and_then(|x| x.to_str())
        .is_some_and(|x| matches!(x, "yaml" | "yml" | "json"))
}

/// Walks `paths`: a file is a document whatever its name; a directory is
/// walked (sorted, links not followed).
pub fn collect_inputs(paths: &[PathBuf]) -> Result<Inputs, RewriteError> {
    let mut out = Inputs::default();
    for p in paths {
        let meta = fs_err::metadata(p).map_err(|source| RewriteError::Read {
            path: p.clone(),
            source,
        })?;
        if !meta.is_dir() {
            let rel = p
                .file_name()
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("input"));
            out.documents.push(InputFile {
                path: p.clone(),
                rel,
            });
            continue;
        }
        for e in walkdir::WalkDir::new(p).sort_by_file_name() {
            let e = e.map_err(|e| RewriteError::Read {
                path: e.path().map_or_else(|| p.clone(), Path::to_owned),
                source: e.into(),
            })?;
            let rel = e.path().strip_prefix(p).unwrap_or(e.path()).to_owned();
            let file = InputFile {
                path: e.path().to_owned(),
                rel,
            };
            let t = e.file_type();
            if t.is_dir() {
                if !file.rel.as_os_str().is_empty() {
                    out.dirs.push(file.rel);
                }
            } else if t.is_file() {
                if is_document(&file.path) {
                    out.documents.push(file);
                } else {
                    out.others.push(file);
                }
            } else {
                let link = t.is_symlink();
                // Where it points is looked at, never read.
                let may_hold_documents = link
                    && (is_document(&file.path)
                        || std::fs::metadata(&file.path).is_ok_and(|m| m.is_dir()));
                out.not_followed.push(NotFollowed {
                    file,
                    kind: if link {
                        "symbolic link"
                    } else {
                        "not a regular file"
                    },
                    may_hold_documents,
                });
            }
        }
    }
    Ok(out)
}

/// The largest YAML or JSON file `rewrite` and `ferry images` read
/// (a larger one is refused unread). The rewriter holds a file and its
/// rewritten copy in memory.
pub const MAX_DOCUMENT_BYTES: u64 = 256 << 20;

/// Reads `path` as UTF-8 text for the rewriter, refusing a file over
/// [`MAX_DOCUMENT_BYTES`] unread.
pub fn read_text(path: &Path) -> Result<String, RewriteError> {
    let read = |source| RewriteError::Read {
        path: path.to_owned(),
        source,
    };
    let mut f = fs_err::File::open(path).map_err(read)?;
    let size = f.metadata().map_err(read)?.len();
    if size > MAX_DOCUMENT_BYTES {
        return Err(RewriteError::TooLarge {
            path: path.to_owned(),
            size,
        });
    }
    let mut bytes = Vec::with_capacity(size as usize);
    // A file that grows while read is cut at the limit and refused.
    std::io::Read::read_to_end(
        &mut std::io::Read::take(&mut f, MAX_DOCUMENT_BYTES + 1),
        &mut bytes,
    )
    .map_err(read)?;
    if bytes.len() as u64 > MAX_DOCUMENT_BYTES {
        return Err(RewriteError::TooLarge {
            path: path.to_owned(),
            size: bytes.len() as u64,
        });
    }
    String::from_utf8(bytes).map_err(|_| RewriteError::NotUtf8 {
        path: path.to_owned(),
    })
}

/// An image reference found in a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FoundImage {
    /// The reference, normalised (`docker.io/library/nginx:1.27`).
    pub reference: String,
    /// As written (split forms joined).
    pub written: String,
    /// The file (shared by everything found in it).
    #[serde(serialize_with = "display_path")]
    pub file: Arc<Path>,
    /// 1-based line.
    pub line: usize,
    /// The form it was written in (`image`, `helm split`, `images_digests`…).
    pub form: &'static str,
    /// The key path of the mapping that holds it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// The key path of the block scalar it sits in, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block: Option<String>,
}

/// A value that was not taken as a reference, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedImage {
    /// As written.
    pub written: String,
    /// The file.
    #[serde(serialize_with = "display_path")]
    pub file: Arc<Path>,
    /// 1-based line.
    pub line: usize,
    /// The form.
    pub form: &'static str,
    /// Why.
    pub reason: String,
    /// Text that looks like YAML and names a registry but could not be
    /// read: the images it names are unknown.
    pub unreadable: bool,
    /// The key path of the mapping that holds it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// The key path of the block scalar it sits in, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block: Option<String>,
}

/// FNV-1a: SipHash's resistance to chosen keys buys nothing when
/// de-duplicating a listing, and costs a tenth of `ferry images`.
#[derive(Default, Clone, Copy)]
struct Fnv;

impl std::hash::BuildHasher for Fnv {
    type Hasher = FnvHasher;
    fn build_hasher(&self) -> FnvHasher {
        FnvHasher(0xcbf2_9ce4_8422_2325)
    }
}

struct FnvHasher(u64);

impl std::hash::Hasher for FnvHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

fn display_path<S: serde::Serializer>(p: &Arc<Path>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&p.display())
}

/// Everything [`find_images`] saw.
#[derive(Debug, Default)]
pub struct ImageListing {
    /// The references, by file and line.
    pub images: Vec<FoundImage>,
    /// Values not taken (templated, without a tag, not references,
    /// unreadable blocks).
    pub skipped: Vec<SkippedImage>,
    /// Links and special files under the directories, not followed.
    pub not_followed: Vec<NotFollowed>,
    /// How many files were read.
    pub files: usize,
}

impl ImageListing {
    /// The distinct references (normalised), in the order first found.
    pub fn distinct(&self) -> Vec<&str> {
        let mut seen: std::collections::HashSet<&str, Fnv> =
            std::collections::HashSet::with_capacity_and_hasher(self.images.len(), Fnv);
        self.images
            .iter()
            .map(|i| i.reference.as_str())
            .filter(|r| seen.insert(r))
            .collect()
    }
}

/// The image references in the YAML and JSON files under `paths`, read
/// in parallel by the rewriter's own reader: manifests, values files,
/// compose files, kustomizations, `images_digests.yml` and the YAML in
/// literal block scalars. A file that cannot be read or parsed is an
/// error naming it.
pub fn find_images(paths: &[PathBuf]) -> Result<ImageListing, RewriteError> {
    use rayon::prelude::*;
    let inputs = collect_inputs(paths)?;
    let map = ImageMap::default();
    let per_file: Vec<Result<ImageListing, RewriteError>> = inputs
        .documents
        .par_iter()
        .map(|f| {
            let text = read_text(&f.path)?;
            let found =
                find(&text, &map, RewriteOptions::default()).map_err(|e| RewriteError::InFile {
                    path: f.path.clone(),
                    source: Box::new(e),
                })?;
            let mut one = ImageListing::default();
            let file: Arc<Path> = Arc::from(f.path.as_path());
            for x in found {
                classify_found(&file, x, &mut one);
            }
            Ok(one)
        })
        .collect();
    let mut listing = ImageListing {
        files: inputs.documents.len(),
        not_followed: inputs.not_followed,
        ..ImageListing::default()
    };
    let per_file: Vec<ImageListing> = per_file.into_iter().collect::<Result<_, _>>()?;
    listing
        .images
        .reserve(per_file.iter().map(|l| l.images.len()).sum());
    for one in per_file {
        listing.images.extend(one.images);
        listing.skipped.extend(one.skipped);
    }
    Ok(listing)
}

/// Sorts one finding of an empty-map rewrite into the listing.
fn classify_found(file: &Arc<Path>, mut f: Found, listing: &mut ImageListing) {
    let parsed = f.parsed.take();
    let skipped = |reason: String, unreadable: bool| SkippedImage {
        written: f.reference.clone(),
        file: file.clone(),
        line: f.line,
        form: f.form,
        reason,
        unreadable,
        path: f.path.clone(),
        block: f.block.clone(),
    };
    // Every finding of an empty map is "not in the bundle" or skipped.
    match &f.outcome {
        Outcome::Skipped { reason } => listing.skipped.push(skipped(reason.clone(), false)),
        Outcome::Unreadable { reason } => listing.skipped.push(skipped(reason.clone(), true)),
        // With an empty map every reference is "not in the bundle".
        Outcome::NotInBundle | Outcome::Rewritten { .. } | Outcome::AlreadyLocal => {
            let last = f.reference.rsplit('/').next().unwrap_or("");
            let pinned = last.contains(':') || last.contains('@');
            // An `image:` string without a tag means `latest`, as in
            // Kubernetes; a split form without one takes the chart's
            // appVersion, which is not in the values.
            if !pinned && f.form != "image" {
                let why = match f.form {
                    "kustomize" => "no newTag or digest: the tag comes from the resources",
                    _ => "no tag or digest: the chart's appVersion decides it",
                };
                listing.skipped.push(skipped(why.into(), false));
                return;
            }
            let parsed = match parsed {
                Some(r) => Ok(*r),
                None => f.reference.parse::<Reference>(),
            };
            match parsed {
                Ok(r) => listing.images.push(FoundImage {
                    reference: r.to_string(),
                    written: f.reference,
                    file: file.clone(),
                    line: f.line,
                    form: f.form,
                    path: f.path,
                    block: f.block,
                }),
                Err(_) => listing
                    .skipped
                    .push(skipped("not an image reference".into(), false)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_over_the_limit_is_refused_unread() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("huge.yaml");
        // Sparse: no disk is used.
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(MAX_DOCUMENT_BYTES + 1).unwrap();
        let e = read_text(&p).unwrap_err();
        assert!(matches!(e, RewriteError::TooLarge { .. }), "{e}");
        assert!(e.to_string().contains("huge.yaml"), "{e}");
        let e = find_images(&[t.path().to_owned()]).unwrap_err();
        assert!(e.to_string().contains("huge.yaml"), "{e}");
    }
}
