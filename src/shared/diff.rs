//! `ferry diff`: what changed between two bundles, from their bundle.json
//! alone (read through an archive's head, or a bare bundle.json; no layer
//! is read or hashed). Artifacts are matched by reference, then by
//! repository (the reference without its tag or digest: a new tag of the
//! same repository is a change, with both tags), and each is added,
//! removed, changed (another digest) or unchanged. Sizes are bundle.json's:
//! every distinct blob of an artifact, as carried (compressed). The growth
//! threshold ([`Diff::grown`]) is checked against images present in both.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::base::digest::Digest;
use crate::format::bundle::{Artifact, ArtifactKind, Bundle};
use crate::shared::inventory::{read_bundle, InventoryError};

/// Errors reading the bundles to compare.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// A bundle could not be read (the error names it).
    #[error(transparent)]
    Read(#[from] InventoryError),
}

/// How an artifact changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Only in the new bundle.
    Added,
    /// Only in the old bundle.
    Removed,
    /// In both, at another digest.
    Changed,
    /// In both, at the same digest (perhaps under another tag).
    Unchanged,
}

/// One side of a matched artifact.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    /// Its reference.
    pub reference: String,
    /// Its root digest.
    pub digest: Digest,
    /// Its bytes as carried (every distinct blob, compressed).
    pub size: u64,
}

/// One artifact in either bundle.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// Image, chart or file.
    pub kind: ArtifactKind,
    /// The repository it was matched by (its reference without tag or
    /// digest).
    pub repository: String,
    /// What happened to it.
    pub status: Status,
    /// In the old bundle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<Side>,
    /// In the new bundle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<Side>,
    /// New size less old size (a side that is missing counts as 0).
    pub delta: i64,
    /// The growth in percent of the old size, when in both and the old
    /// size is not 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub growth: Option<f64>,
}

/// Old and new bytes of a sum.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Total {
    /// In the old bundle.
    pub old: u64,
    /// In the new bundle.
    pub new: u64,
    /// New less old.
    pub delta: i64,
    /// In percent of the old, when the old is not 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub growth: Option<f64>,
}

impl Total {
    fn of(old: u64, new: u64) -> Total {
        Total {
            old,
            new,
            delta: delta(old, new),
            growth: growth(old, new),
        }
    }
}

/// One bundle compared.
#[derive(Debug, Clone, Serialize)]
pub struct Bundled {
    /// The file read (an archive's first volume, or a bundle.json).
    pub path: PathBuf,
    /// The bundle's name.
    pub name: String,
    /// Its artifacts.
    pub artifacts: usize,
    /// Its images.
    pub images: usize,
}

impl Bundled {
    fn of(path: &Path, b: &Bundle) -> Bundled {
        Bundled {
            path: path.to_owned(),
            name: b.name.clone(),
            artifacts: b.artifacts.len(),
            images: b
                .artifacts
                .iter()
                .filter(|a| a.kind == ArtifactKind::Image)
                .count(),
        }
    }
}

/// What changed between two bundles.
#[derive(Debug, Clone, Serialize)]
pub struct Diff {
    /// The old bundle.
    pub old: Bundled,
    /// The new bundle.
    pub new: Bundled,
    /// Every artifact of either: the new bundle's in its order, then the
    /// removed ones in the old bundle's order.
    pub artifacts: Vec<Change>,
    /// The images' sizes summed (each image counted on its own).
    pub images: Total,
    /// The bundles' members summed: what crosses the gap (bundle.json
    /// aside; a delta's left-out blobs are not members).
    pub content: Total,
}

impl Diff {
    /// The images in both bundles that grew by more than `percent`.
    pub fn grown(&self, percent: f64) -> Vec<&Change> {
        self.artifacts
            .iter()
            .filter(|c| c.kind == ArtifactKind::Image)
            .filter(|c| c.growth.is_some_and(|g| g > percent))
            .collect()
    }

    /// How many artifacts have `status`.
    pub fn count(&self, status: Status) -> usize {
        self.artifacts.iter().filter(|c| c.status == status).count()
    }
}

/// Compares the bundles at `old` and `new` (archives, first volumes, or
/// bundle.json files). With `key`, each must be an archive whose
/// bundle.json that key signed.
pub fn diff(old: &Path, new: &Path, key: Option<&Path>) -> Result<Diff, DiffError> {
    let a = read_bundle(old, key)?;
    let b = read_bundle(new, key)?;
    Ok(compare(old, &a, new, &b))
}

/// The reference without its tag or digest: `registry/repo:tag@sha256:…`
/// → `registry/repo` (a `:` after the last `/` starts the tag; one before
/// it is a port).
pub fn repository_of(reference: &str) -> &str {
    let r = reference.split_once('@').map_or(reference, |(r, _)| r);
    let last = r.rfind('/').map_or(0, |i| i + 1);
    match r[last..].rfind(':') {
        Some(i) => &r[..last + i],
        None => r,
    }
}

/// The old and the new artifacts (by index) of one repository that no
/// reference matched.
type Unmatched = (Vec<usize>, Vec<usize>);

/// What `old` (read from `old_path`) and `new` differ in.
pub fn compare(old_path: &Path, old: &Bundle, new_path: &Path, new: &Bundle) -> Diff {
    let key = |a: &Artifact| (a.kind as u8, a.reference.clone());
    // 1. The same reference on both sides.
    let old_by_ref: HashMap<(u8, String), usize> = old
        .artifacts
        .iter()
        .enumerate()
        .map(|(i, a)| (key(a), i))
        .collect();
    let mut pair_of_new: Vec<Option<usize>> = vec![None; new.artifacts.len()];
    let mut paired_old = vec![false; old.artifacts.len()];
    for (j, a) in new.artifacts.iter().enumerate() {
        if let Some(&i) = old_by_ref.get(&key(a)) {
            if !paired_old[i] {
                pair_of_new[j] = Some(i);
                paired_old[i] = true;
            }
        }
    }
    // 2. What is left, by repository, when it is one on each side.
    let mut left: BTreeMap<(u8, &str), Unmatched> = BTreeMap::new();
    for (i, a) in old.artifacts.iter().enumerate() {
        if !paired_old[i] {
            let e = left.entry((a.kind as u8, repository_of(&a.reference)));
            e.or_default().0.push(i);
        }
    }
    for (j, a) in new.artifacts.iter().enumerate() {
        if pair_of_new[j].is_none() {
            let e = left.entry((a.kind as u8, repository_of(&a.reference)));
            e.or_default().1.push(j);
        }
    }
    for (olds, news) in left.values() {
        if let ([i], [j]) = (olds.as_slice(), news.as_slice()) {
            pair_of_new[*j] = Some(*i);
            paired_old[*i] = true;
        }
    }

    let side = |a: &Artifact| Side {
        reference: a.reference.clone(),
        digest: a.digest,
        size: a.size,
    };
    let mut artifacts = Vec::with_capacity(new.artifacts.len());
    for (j, b) in new.artifacts.iter().enumerate() {
        let a = pair_of_new[j].and_then(|i| old.artifacts.get(i));
        let status = match a {
            None => Status::Added,
            Some(a) if a.digest == b.digest => Status::Unchanged,
            Some(_) => Status::Changed,
        };
        let old_size = a.map_or(0, |a| a.size);
        artifacts.push(Change {
            kind: b.kind,
            repository: repository_of(&b.reference).to_owned(),
            status,
            old: a.map(side),
            new: Some(side(b)),
            delta: delta(old_size, b.size),
            growth: a.and_then(|a| growth(a.size, b.size)),
        });
    }
    for (i, a) in old.artifacts.iter().enumerate() {
        if !paired_old[i] {
            artifacts.push(Change {
                kind: a.kind,
                repository: repository_of(&a.reference).to_owned(),
                status: Status::Removed,
                old: Some(side(a)),
                new: None,
                delta: delta(a.size, 0),
                growth: None,
            });
        }
    }
    let images = |b: &Bundle| -> u64 {
        b.artifacts
            .iter()
            .filter(|a| a.kind == ArtifactKind::Image)
            .map(|a| a.size)
            .sum()
    };
    let content = |b: &Bundle| -> u64 { b.members.iter().map(|m| m.size).sum() };
    Diff {
        old: Bundled::of(old_path, old),
        new: Bundled::of(new_path, new),
        artifacts,
        images: Total::of(images(old), images(new)),
        content: Total::of(content(old), content(new)),
    }
}

fn delta(old: u64, new: u64) -> i64 {
    (i128::from(new) - i128::from(old)).clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

fn growth(old: u64, new: u64) -> Option<f64> {
    (old > 0).then(|| (new as f64 - old as f64) * 100.0 / old as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_is_the_reference_without_tag_or_digest() {
        assert_eq!(
            repository_of("docker.io/library/nginx:1.27"),
            "docker.io/library/nginx"
        );
        assert_eq!(repository_of("localhost:5000/app"), "localhost:5000/app");
        assert_eq!(repository_of("localhost:5000/app:2"), "localhost:5000/app");
        assert_eq!(repository_of("r.example/app:1@sha256:abc"), "r.example/app");
        assert_eq!(repository_of("r.example/app@sha256:abc"), "r.example/app");
        assert_eq!(repository_of("charts/redis:18.1.0"), "charts/redis");
        assert_eq!(repository_of(""), "");
    }

    fn bundle(artifacts: &[(&str, &[u8], u64)]) -> Bundle {
        let mut b: Bundle = serde_json::from_value(serde_json::json!({
            "format": crate::format::bundle::FORMAT,
            "format_version": 1,
            "tool": {"name": "ferry", "version": "0"},
            "name": "t",
            "artifacts": [],
            "members": [],
        }))
        .unwrap();
        for (reference, root, size) in artifacts {
            b.artifacts.push(Artifact {
                kind: ArtifactKind::Image,
                source: (*reference).into(),
                reference: (*reference).into(),
                digest: Digest::of(root),
                media_type: crate::format::oci::OCI_MANIFEST.into(),
                size: *size,
                platforms: Vec::new(),
                source_digest: None,
                converted: Vec::new(),
                chart: None,
                file: None,
            });
        }
        b
    }

    #[test]
    fn artifacts_match_by_reference_then_by_a_repository_alone_on_each_side() {
        let old = bundle(&[
            ("r/base:1", b"base", 100),
            ("r/app:1.0", b"app1", 200),
            ("r/gone:1", b"gone", 50),
            ("r/two:1", b"two1", 10),
            ("r/two:2", b"two2", 10),
        ]);
        let new = bundle(&[
            ("r/base:1", b"base", 100),
            ("r/app:1.1", b"app2", 260),
            ("r/new:1", b"new", 70),
            ("r/two:3", b"two3", 10),
        ]);
        let d = compare(Path::new("a"), &old, Path::new("b"), &new);
        let rows: Vec<(Status, &str)> = d
            .artifacts
            .iter()
            .map(|c| (c.status, c.repository.as_str()))
            .collect();
        assert_eq!(
            rows,
            [
                (Status::Unchanged, "r/base"),
                (Status::Changed, "r/app"),
                (Status::Added, "r/new"),
                // Two old tags of r/two and one new: not guessed.
                (Status::Added, "r/two"),
                (Status::Removed, "r/gone"),
                (Status::Removed, "r/two"),
                (Status::Removed, "r/two"),
            ]
        );
        let app = &d.artifacts[1];
        assert_eq!(app.old.as_ref().unwrap().reference, "r/app:1.0");
        assert_eq!(app.new.as_ref().unwrap().reference, "r/app:1.1");
        assert_eq!(app.delta, 60);
        assert_eq!(app.growth, Some(30.0));
        assert_eq!(d.grown(20.0).len(), 1);
        assert!(d.grown(30.0).is_empty(), "30 % is not over 30 %");
        assert_eq!(d.images.old, 370);
        assert_eq!(d.images.new, 440);
        assert_eq!(d.images.delta, 70);
        assert_eq!(d.count(Status::Removed), 3);
    }
}
