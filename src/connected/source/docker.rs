//! `docker-archive:TAR[:REF|:@N]` sources: tars that `docker save`,
//! `podman save` and skopeo's docker-archive transport write. Their
//! `manifest.json` lists each image's config, `RepoTags` and layers by
//! path; Docker 25 and later also write `index.json` and `oci-layout`,
//! with the OCI manifest of each image.
//!
//! An image is selected as skopeo does: by a name in its `RepoTags` (in
//! any spelling of the reference), by its position (`@N`, from 0), or as
//! the only one. When the tar carries an OCI manifest for it (Docker 25+),
//! that manifest is carried as it is. A legacy tar has none, so one is
//! built, deterministically: an OCI manifest whose config is the image's
//! config and whose layers are the tar's layer files as they are
//! (uncompressed `application/vnd.oci.image.layer.v1.tar`, whose digests
//! are the config's `diff_ids`; a gzip layer file keeps its gzip). The same
//! tar always gives the same digests, and nothing is recompressed.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use super::{read_limited, scan_tar, FoundBlob, LocalLayout, SourceError, WalkedImage};
use crate::base::digest::{Digest, HashingWriter};
use crate::base::platform::Platform;
use crate::base::reference::Reference;
use crate::format::archive::MemberSource;
use crate::format::oci::{self, Descriptor, Manifest};

/// The largest manifest.json or image config read.
const JSON_MAX: u64 = 16 << 20;

/// Which image of a docker-archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// A name in its `RepoTags`.
    Name(String),
    /// Its position in `manifest.json`, from 0.
    Index(usize),
}

impl Selector {
    /// `REF` or `@N`.
    pub fn parse(s: &str) -> Selector {
        match s.strip_prefix('@').and_then(|n| n.parse().ok()) {
            Some(n) => Selector::Index(n),
            None => Selector::Name(s.to_owned()),
        }
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Selector::Name(n) => f.write_str(n),
            Selector::Index(i) => write!(f, "@{i}"),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Item {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Config {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
    rootfs: RootFs,
}

#[derive(Debug, Deserialize)]
struct RootFs {
    diff_ids: Vec<Digest>,
}

/// What a docker-archive gives for one image.
pub enum Picked {
    /// The tar is also an OCI layout (Docker 25+): walk it as one, from
    /// this root.
    Layout {
        /// The layout inside the tar.
        layout: Box<LocalLayout>,
        /// The image's entry in its index.json.
        root: Descriptor,
        /// The name it was saved under, when it had one.
        name: Option<String>,
    },
    /// A legacy tar: the image, with the manifest built for it.
    Built {
        /// The image.
        image: WalkedImage,
        /// The name it was saved under, when it had one.
        name: Option<String>,
    },
}

/// Opens `path` and picks the image `selector` names (or the only one).
/// `label` names the source in messages; `filter` the platforms to keep.
pub fn pick(
    path: &Path,
    selector: Option<&Selector>,
    filter: Option<&[Platform]>,
    label: &str,
) -> Result<Picked, SourceError> {
    let members = scan_tar(path)?;
    let read = |member: &str, limit: u64| -> Result<Vec<u8>, SourceError> {
        let Some(&(off, size)) = members.get(member.trim_start_matches("./")) else {
            return Err(SourceError::MissingMember {
                layout: label.to_owned(),
                member: member.to_owned(),
            });
        };
        if size > limit {
            return Err(SourceError::MemberTooLarge {
                layout: label.to_owned(),
                member: member.to_owned(),
                size,
                limit,
            });
        }
        let mut f = fs_err::File::open(path)?;
        f.seek(SeekFrom::Start(off))?;
        Ok(read_limited(f.take(size), limit)?)
    };
    let bad_json = |member: &str, source| SourceError::BadJson {
        layout: label.to_owned(),
        member: member.to_owned(),
        source,
    };
    let items: Vec<Item> = serde_json::from_slice(&read("manifest.json", JSON_MAX)?)
        .map_err(|e| bad_json("manifest.json", e))?;
    let tags_of = |i: &Item| i.repo_tags.clone().unwrap_or_default();
    let available = || {
        items
            .iter()
            .enumerate()
            .map(|(n, i)| match tags_of(i).as_slice() {
                [] => format!("@{n} (untagged)"),
                tags => format!("@{n} {}", tags.join(" ")),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let normal = |s: &str| s.parse::<Reference>().ok();
    let (at, name) = match selector {
        None => match items.as_slice() {
            [only] => (0, tags_of(only).into_iter().next()),
            many => {
                return Err(SourceError::Ambiguous {
                    layout: label.to_owned(),
                    count: many.len(),
                    available: available(),
                })
            }
        },
        Some(Selector::Index(n)) => match items.get(*n) {
            Some(i) => (*n, tags_of(i).into_iter().next()),
            None => {
                return Err(SourceError::UnknownName {
                    layout: label.to_owned(),
                    name: format!("@{n}"),
                    available: available(),
                })
            }
        },
        Some(Selector::Name(want)) => {
            let key = normal(want);
            let hits: Vec<(usize, String)> = items
                .iter()
                .enumerate()
                .filter_map(|(n, i)| {
                    let tag = tags_of(i)
                        .into_iter()
                        .find(|t| t == want || (key.is_some() && normal(t) == key))?;
                    Some((n, tag))
                })
                .collect();
            match hits.as_slice() {
                [(n, tag)] => (*n, Some(tag.clone())),
                [] => {
                    return Err(SourceError::UnknownName {
                        layout: label.to_owned(),
                        name: want.clone(),
                        available: available(),
                    })
                }
                many => {
                    return Err(SourceError::AmbiguousName {
                        layout: label.to_owned(),
                        name: want.clone(),
                        count: many.len(),
                        matches: many
                            .iter()
                            .map(|(n, t)| format!("@{n} {t}"))
                            .collect::<Vec<_>>()
                            .join(", "),
                    })
                }
            }
        }
    };
    let Some(item) = items.get(at) else {
        return Err(SourceError::UnknownName {
            layout: label.to_owned(),
            name: format!("@{at}"),
            available: available(),
        });
    };

    // Docker 25+: the tar is an OCI layout too, whose index.json names the
    // image in io.containerd.image.name; carry its own manifest.
    if let (true, true, Some(n)) = (
        members.contains_key("index.json"),
        members.contains_key("oci-layout"),
        &name,
    ) {
        let layout = LocalLayout::from_tar(path, members.clone(), label.to_owned())?;
        let key = normal(n);
        let entry = layout.index.manifests.iter().find(|d| {
            d.annotations
                .get(oci::ANN_IMAGE_NAME)
                .is_some_and(|full| full == n || (key.is_some() && normal(full) == key))
        });
        if let Some(root) = entry.cloned() {
            return Ok(Picked::Layout {
                layout: Box::new(layout),
                root,
                name,
            });
        }
    }

    // A legacy tar (or an untagged image): build the manifest.
    let config_bytes = read(&item.config, JSON_MAX)?;
    let config: Config =
        serde_json::from_slice(&config_bytes).map_err(|e| bad_json(&item.config, e))?;
    if config.rootfs.diff_ids.len() != item.layers.len() {
        return Err(SourceError::LayerCount {
            layout: label.to_owned(),
            config: item.config.clone(),
            diff_ids: config.rootfs.diff_ids.len(),
            layers: item.layers.len(),
        });
    }
    // A config without os or architecture names no platform (as the OCI
    // walker records it), and no filter can be checked against it.
    let platform = Some(Platform {
        os: config.os.clone(),
        architecture: config.architecture.clone(),
        variant: config.variant.clone().filter(|v| !v.is_empty()),
    })
    .filter(|p| !p.os.is_empty() && !p.architecture.is_empty());
    if let (Some(filter), Some(platform)) = (filter.filter(|f| !f.is_empty()), &platform) {
        if !filter.iter().any(|f| f.accepts(platform)) {
            return Err(SourceError::MissingPlatform {
                image: name.clone().unwrap_or_else(|| label.to_owned()),
                platform: filter.first().cloned().unwrap_or_else(|| platform.clone()),
                available: platform.to_string(),
            });
        }
    }
    let mut blobs: BTreeMap<Digest, FoundBlob> = BTreeMap::new();
    let at_of = |member: &str| -> Result<(u64, u64), SourceError> {
        members
            .get(member.trim_start_matches("./"))
            .copied()
            .ok_or_else(|| SourceError::MissingMember {
                layout: label.to_owned(),
                member: member.to_owned(),
            })
    };
    let (config_off, config_size) = at_of(&item.config)?;
    let config_digest = Digest::of(&config_bytes);
    blobs.insert(
        config_digest,
        FoundBlob {
            size: config_size,
            source: MemberSource::File {
                path: path.to_owned(),
                offset: config_off,
            },
            small: true,
        },
    );
    let mut layers = Vec::new();
    for (member, diff_id) in item.layers.iter().zip(&config.rootfs.diff_ids) {
        let (off, size) = at_of(member)?;
        // An uncompressed layer file is its own diff_id (the archive writer
        // re-hashes it on the way in); a gzip one is hashed here, and what
        // it decompresses to must be the diff_id, or the image would fail
        // only at the far side's import.
        let (media_type, digest) = if is_gzip(path, off, size)? {
            let (digest, unpacked) = hash_gzip_range(path, off, size).map_err(SourceError::Io)?;
            if unpacked != *diff_id {
                return Err(SourceError::DiffId {
                    layout: label.to_owned(),
                    member: member.clone(),
                    diff_id: *diff_id,
                    actual: unpacked,
                });
            }
            (oci::OCI_LAYER_GZIP, digest)
        } else {
            (oci::OCI_LAYER_TAR, *diff_id)
        };
        blobs.entry(digest).or_insert(FoundBlob {
            size,
            source: MemberSource::File {
                path: path.to_owned(),
                offset: off,
            },
            small: false,
        });
        layers.push(Descriptor::new(media_type, digest, size));
    }
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(oci::OCI_MANIFEST.into()),
        artifact_type: None,
        config: Descriptor::new(oci::OCI_CONFIG, config_digest, config_size),
        layers,
        subject: None,
        annotations: BTreeMap::new(),
    };
    let bytes = oci::to_bytes(&manifest);
    let digest = Digest::of(&bytes);
    let root = Descriptor::new(oci::OCI_MANIFEST, digest, bytes.len() as u64);
    blobs.insert(
        digest,
        FoundBlob {
            size: bytes.len() as u64,
            source: MemberSource::Bytes(Arc::new(bytes)),
            small: true,
        },
    );
    Ok(Picked::Built {
        image: WalkedImage {
            root,
            source_digest: None,
            converted: Vec::new(),
            platforms: platform.into_iter().collect(),
            blobs,
        },
        name,
    })
}

fn is_gzip(path: &Path, off: u64, size: u64) -> Result<bool, SourceError> {
    if size < 2 {
        return Ok(false);
    }
    let mut f = fs_err::File::open(path)?;
    f.seek(SeekFrom::Start(off))?;
    let mut magic = [0u8; 2];
    f.read_exact(&mut magic)?;
    Ok(magic == [0x1f, 0x8b])
}

/// The digest of a gzip layer file, and of what it decompresses to.
fn hash_gzip_range(path: &Path, off: u64, size: u64) -> std::io::Result<(Digest, Digest)> {
    use std::io::Write;
    let mut f = fs_err::File::open(path)?;
    f.seek(SeekFrom::Start(off))?;
    let mut packed = HashingWriter::new(std::io::sink());
    let mut unpacked = flate2::write::MultiGzDecoder::new(HashingWriter::new(std::io::sink()));
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    let mut r = f.take(size);
    while left > 0 {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{} ended inside a layer", path.display()),
            ));
        }
        let chunk = buf.get(..n).unwrap_or_default();
        packed.write_all(chunk)?;
        unpacked.write_all(chunk)?;
        left -= n as u64;
    }
    let (_, digest, _) = packed.finish();
    let (_, diff_id, _) = unpacked.finish()?.finish();
    Ok((digest, diff_id))
}

/// The tar's path, for messages.
pub fn label(path: &Path, selector: Option<&Selector>) -> String {
    let mut s = format!("docker-archive:{}", path.display());
    if let Some(sel) = selector {
        s.push(':');
        s.push_str(&sel.to_string());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_are_names_or_positions() {
        assert_eq!(Selector::parse("@2"), Selector::Index(2));
        assert_eq!(Selector::parse("redis:7"), Selector::Name("redis:7".into()));
        assert_eq!(Selector::parse("@x"), Selector::Name("@x".into()));
    }
}
