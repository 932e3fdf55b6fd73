//! Budgets: what each image's platforms unpack to, checked against the
//! spec's `budget:` (per image, or `image`/`bundle` at the top) and
//! `pack --max-image-size` once everything is planned and before anything
//! is written. Sizes are estimated as `inspect` estimates them
//! ([`sizes::estimate`]: a gzip trailer, a zstd frame header, a tar's own
//! size), from a few bytes at each layer's ends where the plan found it
//! (the cache, a local layout, a tar). The largest platform of an image
//! counts; for the bundle, the platform whose images together (each
//! distinct config and layer once) unpack to the most.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use rayon::prelude::*;

use crate::base::digest::Digest;
use crate::connected::inputs::Budget;
use crate::connected::source::read_found;
use crate::format::bundle::ArtifactKind;
use crate::format::oci::{self, Descriptor};
use crate::format::sizes::{self, human, Estimate, PlatformSize, Uncompressed};

use super::plan::Plan;

/// The limits that apply.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Limits {
    /// `pack --max-image-size`.
    pub cli: Option<u64>,
    /// The spec's `budget:`.
    pub spec: Budget,
}

impl Limits {
    fn any(&self, own: &HashMap<String, u64>) -> bool {
        self.cli.is_some()
            || self.spec.image.is_some()
            || self.spec.bundle.is_some()
            || !own.is_empty()
    }
}

/// Where a limit comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitFrom {
    /// The image's own `budget:` in the spec.
    Entry,
    /// `pack --max-image-size`.
    MaxImageSize,
    /// The spec's `budget.image`.
    SpecImage,
    /// The spec's `budget.bundle`.
    SpecBundle,
}

impl fmt::Display for LimitFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LimitFrom::Entry => "its budget",
            LimitFrom::MaxImageSize => "--max-image-size",
            LimitFrom::SpecImage => "the spec's budget.image",
            LimitFrom::SpecBundle => "the spec's budget.bundle",
        })
    }
}

/// One image (or the bundle) measured against its limit, at its largest
/// platform.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Measured {
    /// The image's reference, or `the bundle`.
    pub what: String,
    /// The platform that counted (`os/arch[/variant]`, or empty when the
    /// image names none).
    pub platform: String,
    /// What it unpacks to (config and layers).
    pub size: Uncompressed,
    /// The limit, in bytes.
    pub limit: u64,
    /// Where the limit comes from.
    pub from: LimitFrom,
}

impl Measured {
    /// Whether the known bytes alone are over the limit.
    pub fn over(&self) -> bool {
        self.size.bytes > self.limit
    }
}

impl fmt::Display for Measured {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let platform = match self.platform.as_str() {
            "" => String::new(),
            p => format!(" ({p})"),
        };
        write!(
            f,
            "{}{platform}: {} ({} bytes) uncompressed, {} {} of {} ({} bytes)",
            self.what,
            self.size.shown(),
            self.size.bytes,
            if self.over() { "over" } else { "within" },
            self.from,
            human(self.limit),
            self.limit
        )
    }
}

/// What checking the budgets found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BudgetReport {
    /// Every image with a limit, and the bundle when it has one, in bundle
    /// order (the bundle last).
    pub measured: Vec<Measured>,
    /// Notes: limits checked on partly unknown sizes.
    pub notes: Vec<String>,
}

impl BudgetReport {
    /// What is over its limit.
    pub fn over(&self) -> Vec<&Measured> {
        self.measured.iter().filter(|m| m.over()).collect()
    }
}

/// Measures every image that has a limit (and the bundle, when it has
/// one) from the plan. `None` when no budget applies.
pub(super) fn check(plan: &Plan, limits: Limits) -> Option<BudgetReport> {
    if !limits.any(&plan.budgets) {
        return None;
    }
    let images: Vec<_> = plan
        .artifacts
        .iter()
        .filter(|(a, _)| a.kind == ArtifactKind::Image)
        .collect();
    // Each image's manifests, walked through the planned blobs.
    let walked: Vec<sizes::Walked> = images
        .par_iter()
        .map(|(a, root)| {
            let platform = match a.platforms.as_slice() {
                [one] => one.clone(),
                _ => String::new(),
            };
            let read = |d: &Descriptor| {
                let found = plan
                    .blobs
                    .get(&d.digest)
                    .ok_or_else(|| format!("document {} was not found", d.digest))?;
                let bytes = read_found(found, &d.digest, &a.reference)
                    .map_err(|e| crate::base::error::error_chain(&e))?;
                oci::parse_node(d.digest, &d.media_type, &bytes)
                    .map_err(|e| crate::base::error::error_chain(&e))
            };
            sizes::walk(root, platform, &read)
        })
        .collect();
    // Each distinct layer's estimate, once.
    let mut seen = HashSet::new();
    let layers: Vec<&Descriptor> = walked
        .iter()
        .flat_map(|w| w.manifests.iter().flat_map(|m| &m.layers))
        .filter(|l| seen.insert(l.digest))
        .collect();
    let estimates: HashMap<Digest, Estimate> = layers
        .par_iter()
        .map(|l| {
            let found = plan.blobs.get(&l.digest).filter(|b| b.size == l.size);
            let e = match found {
                Some(b) => sizes::estimate(l, Some(&|at, buf| b.read_at(at, buf))),
                None => sizes::estimate(l, None),
            };
            (l.digest, e)
        })
        .collect();
    let estimate_of = |d: &Descriptor| {
        estimates
            .get(&d.digest)
            .copied()
            .unwrap_or(Estimate::Unknown)
    };

    let mut report = BudgetReport::default();
    for ((a, _), w) in images.iter().zip(&walked) {
        if let Some(p) = &w.problem {
            report.notes.push(format!(
                "warning: {}: its size is not known whole: {p}",
                a.reference
            ));
        }
        let (limit, from) = match (
            plan.budgets.get(&a.reference),
            limits.cli,
            limits.spec.image,
        ) {
            (Some(&own), _, _) => (own, LimitFrom::Entry),
            (None, Some(cli), _) => (cli, LimitFrom::MaxImageSize),
            (None, None, Some(spec)) => (spec.0, LimitFrom::SpecImage),
            (None, None, None) => continue,
        };
        let largest = w
            .manifests
            .iter()
            .map(|m| PlatformSize::of(m, &estimate_of))
            .max_by_key(|p| p.uncompressed.bytes);
        let Some(p) = largest else { continue };
        let m = Measured {
            what: a.reference.clone(),
            platform: p.platform,
            size: p.uncompressed,
            limit,
            from,
        };
        note_unknown(&mut report.notes, &m);
        report.measured.push(m);
    }
    if let Some(limit) = limits.spec.bundle {
        if let Some(m) = bundle_size(&walked, &estimate_of, limit.0) {
            note_unknown(&mut report.notes, &m);
            report.measured.push(m);
        }
    }
    Some(report)
}

/// `1 image is`, `2 images and the bundle are`, `the bundle is`: who is
/// over budget, for the message.
pub(super) fn who(over: &[Measured]) -> String {
    let bundle = over.iter().any(|m| m.from == LimitFrom::SpecBundle);
    let images = over.len() - usize::from(bundle);
    let images = match images {
        0 => None,
        1 => Some("1 image".to_owned()),
        n => Some(format!("{n} images")),
    };
    match (images, bundle) {
        (Some(i), true) => format!("{i} and the bundle are"),
        (None, true) => "the bundle is".into(),
        (Some(i), false) if over.len() == 1 => format!("{i} is"),
        (Some(i), false) => format!("{i} are"),
        (None, false) => "nothing is".into(),
    }
}

/// A limit checked on a size some of whose layers are unknown.
fn note_unknown(notes: &mut Vec<String>, m: &Measured) {
    if m.size.unknown > 0 && !m.over() {
        notes.push(format!(
            "warning: {}{}: {} layers of unknown uncompressed size; {} of {} is checked on the {} known",
            m.what,
            match m.platform.as_str() {
                "" => String::new(),
                p => format!(" ({p})"),
            },
            m.size.unknown,
            m.from,
            human(m.limit),
            human(m.size.bytes)
        ));
    }
}

/// The bundle at its largest platform: for each platform, every distinct
/// config and layer of the images' manifests for it (manifests that name
/// no platform count towards every platform).
fn bundle_size(
    walked: &[sizes::Walked],
    estimate_of: &dyn Fn(&Descriptor) -> Estimate,
    limit: u64,
) -> Option<Measured> {
    let manifests: Vec<&sizes::ManifestSeen> = walked.iter().flat_map(|w| &w.manifests).collect();
    let mut platforms: Vec<&str> = manifests
        .iter()
        .map(|m| m.platform.as_str())
        .filter(|p| !p.is_empty())
        .collect();
    platforms.sort_unstable();
    platforms.dedup();
    if platforms.is_empty() {
        platforms.push("");
    }
    let mut sums: BTreeMap<&str, Uncompressed> = BTreeMap::new();
    for p in platforms {
        let mut seen = HashSet::new();
        let mut u = Uncompressed::default();
        for m in manifests
            .iter()
            .filter(|m| m.platform == p || m.platform.is_empty())
        {
            if seen.insert(m.config.digest) {
                u.bytes += m.config.size;
            }
            for l in &m.layers {
                if seen.insert(l.digest) {
                    u.add(estimate_of(l));
                }
            }
        }
        sums.insert(p, u);
    }
    let (platform, size) = sums.into_iter().max_by_key(|(_, u)| u.bytes)?;
    Some(Measured {
        what: "the bundle".into(),
        platform: platform.to_owned(),
        size,
        limit,
        from: LimitFrom::SpecBundle,
    })
}
