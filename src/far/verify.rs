//! `verify`: proves an archive arrived whole, or names exactly what is
//! wrong. It re-hashes every member in parallel (positioned reads, one
//! buffer per worker), checks each against bundle.json, then walks the graph
//! from `index.json` so every manifest, config and layer an artifact needs
//! is present with the size its descriptor declares. Each problem names the
//! member, the digest and the artifacts it belongs to.
//!
//! Structural damage (truncation, foreign members) is reported too, along
//! with which members before it were still good.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use crate::base::digest::{Digest, Hasher, COPY_BUF};
use crate::base::report::Reporter;
use crate::format::archive::{Archive, ArchiveError, Entry};
// Kept at its old path for the binary and tests.
pub use crate::base::error::error_chain;
use crate::format::bundle::INDEX_PATH;
use crate::format::oci::{self, Node};

/// One thing wrong with an archive.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Problem {
    /// The member concerned, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// The blob digest concerned, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    /// References of the artifacts that need it.
    pub artifacts: Vec<String>,
    /// The volumes concerned (numbered from 1), for a split archive.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<usize>,
    /// What is wrong.
    pub message: String,
}

/// The outcome of a verification.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// The archive.
    pub archive: PathBuf,
    /// The bundle's name.
    pub name: String,
    /// Members listed in bundle.json (bundle.json itself excluded).
    pub members_listed: usize,
    /// Members whose bytes matched their digest.
    pub members_ok: usize,
    /// Bytes hashed.
    pub bytes_hashed: u64,
    /// Artifacts whose every blob is present and intact.
    pub artifacts_ok: Vec<String>,
    /// Everything found wrong; empty when the archive is whole.
    pub problems: Vec<Problem>,
    /// Whether the archive carries a signature of bundle.json.
    pub signed: bool,
    /// With a key: the trusted comment of the signature it checked.
    pub signature: Option<String>,
    /// The volume files, for a split archive.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<PathBuf>,
    /// For a delta: what it leaves out and expects the target to hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<crate::format::bundle::Delta>,
    /// The checksum sidecar of a split archive, when it was there and
    /// checked against every volume.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sidecar: Option<PathBuf>,
    /// With `--cosign-key` or `--cosign-ca`: each image's signature check
    /// ([`check_signatures`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<SignatureResult>,
}

impl VerifyReport {
    /// True when nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty() && self.signatures.iter().all(|s| s.error.is_none())
    }
}

/// One image's cosign signature check.
#[derive(Debug, Clone, Serialize)]
pub struct SignatureResult {
    /// The image, as carried.
    pub image: String,
    /// The digest checked (the image's root).
    pub digest: Digest,
    /// The good signature's manifest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<Digest>,
    /// `simple-signing` or `sigstore-bundle`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub form: Option<&'static str>,
    /// The key file, or the certificate's identity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// The signed docker-reference, normalised.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub docker_reference: Option<String>,
    /// Why no signature was good: names the key or CA file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Checks, offline, that every image of the archive has a good cosign
/// signature under `policy` among the referrers carried for its root.
/// Every document and payload is read through the verifying reader. A
/// compressed archive is refused (it cannot be read by position).
pub fn check_signatures(
    path: &Path,
    key: Option<&Path>,
    policy: &crate::format::cosign::Policy,
) -> Result<Vec<SignatureResult>, SignatureCheckError> {
    use crate::format::blob::BlobSource;
    use crate::format::cosign::{self, CosignError};
    let archive = Archive::open_random(path, "checking cosign signatures")?;
    archive.check_key(key)?;
    let mut out = Vec::new();
    let limit = cosign::PAYLOAD_MAX_BYTES.max(oci::MANIFEST_MAX_BYTES);
    for a in &archive.bundle.artifacts {
        if a.kind != crate::format::bundle::ArtifactKind::Image {
            continue;
        }
        let candidates_of = |d: &Digest| -> Vec<(Digest, Vec<u8>)> {
            archive
                .bundle
                .referrers
                .iter()
                .filter(|r| r.subject == *d)
                .filter_map(|r| {
                    archive
                        .read_small(&r.digest, oci::MANIFEST_MAX_BYTES)
                        .ok()
                        .map(|b| (r.digest, b))
                })
                .collect()
        };
        // An index a platform filter made: each kept child may carry its
        // own signature.
        let children: Vec<Digest> = match a.source_digest {
            Some(_) => archive
                .read_small(&a.digest, oci::MANIFEST_MAX_BYTES)
                .ok()
                .and_then(|b| oci::parse_node(a.digest, &a.media_type, &b).ok())
                .map(|n| match n {
                    Node::Index(i) => i.manifests.iter().map(|m| m.digest).collect(),
                    Node::Manifest(_) => Vec::new(),
                })
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let mut read_blob = |d: &oci::Descriptor| {
            archive
                .read_small(&d.digest, limit)
                .map_err(|e| CosignError::read(d.digest, e))
        };
        let mut r = SignatureResult {
            image: a.reference.clone(),
            digest: a.digest,
            signature: None,
            form: None,
            signer: None,
            docker_reference: None,
            error: None,
        };
        match cosign::verify_image(&a.digest, &children, &candidates_of, policy, &mut read_blob) {
            Ok(v) => {
                r.signature = Some(v.signature_digest);
                r.form = Some(v.form.as_str());
                r.signer = Some(v.signer);
                r.docker_reference = v.docker_reference;
            }
            Err(e) => {
                r.error = Some(format!(
                    "no good signature by {}: {}",
                    policy.trust.name(),
                    crate::base::error::error_chain(&e)
                ))
            }
        }
        out.push(r);
    }
    Ok(out)
}

/// Verifies the archive at `path`. Errors are for archives that cannot be
/// read at all (missing file, not a ferry archive, unreadable bundle.json)
/// and, with `key`, for a signature that is missing or wrong; damage inside
/// a readable archive is reported in the returned report.
///
/// The signature is checked on the bundle.json this one open read, and
/// every member is hashed through the same open files and compared with
/// that bundle.json: nothing is opened again by path.
pub fn verify(
    path: &Path,
    key: Option<&Path>,
    reporter: &dyn Reporter,
) -> Result<VerifyReport, SignatureCheckError> {
    let archive = Archive::open_lenient_with(path, reporter)?;
    let signature = archive.check_key(key)?;
    let declared: HashMap<&str, (Digest, u64)> = archive
        .bundle
        .members
        .iter()
        .map(|m| (m.path.as_str(), (m.digest, m.size)))
        .collect();

    // 1. Hash every member that arrived, largest first for balance.
    let mut order: Vec<&Entry> = archive.entries.iter().collect();
    order.sort_by_key(|e| std::cmp::Reverse(e.size));
    let total: u64 = order.iter().map(|e| e.size).sum();
    reporter.start("verifying", total);
    let hashed: Vec<(&Entry, std::io::Result<Digest>)> = order
        .par_iter()
        .with_max_len(1)
        .map(|e| (*e, hash_member(&archive, e, reporter)))
        .collect();
    reporter.finish();

    let split = archive.volume_count() > 1;
    let where_ = |e: &Entry| -> (Vec<usize>, String) {
        if !split {
            return (Vec::new(), String::new());
        }
        let v = e.volumes();
        let text = match (v.first(), v.last()) {
            (Some(a), Some(b)) if a != b => {
                format!(
                    " (split across volumes {a}-{b} of {})",
                    archive.volume_count()
                )
            }
            (Some(a), _) => format!(" (in volume {a} of {})", archive.volume_count()),
            _ => String::new(),
        };
        (v, text)
    };
    let mut bad: BTreeMap<String, (Option<Digest>, String, Vec<usize>)> = BTreeMap::new();
    let mut good: BTreeSet<&str> = BTreeSet::new();
    for (e, r) in &hashed {
        let Some(&(want, _)) = declared.get(e.path.as_str()) else {
            continue;
        };
        match r {
            Ok(d) if *d == want => {
                good.insert(e.path.as_str());
            }
            Ok(d) => {
                let (v, at) = where_(e);
                bad.insert(
                    e.path.clone(),
                    (
                        Some(want),
                        format!("content does not match its digest {want} (it hashes to {d}){at}"),
                        v,
                    ),
                );
            }
            Err(err) => {
                let (v, at) = where_(e);
                bad.insert(
                    e.path.clone(),
                    (Some(want), format!("could not be read{at}: {err}"), v),
                );
            }
        }
    }

    // 2. Walk the graph from index.json over intact members.
    let mut problems = Vec::new();
    let mut owners: HashMap<Digest, BTreeSet<String>> = HashMap::new();
    let mut broken_artifacts: BTreeSet<String> = BTreeSet::new();
    let mut broken_index = false;
    let present: HashMap<Digest, &Entry> = archive
        .entries
        .iter()
        .filter_map(|e| Some((declared.get(e.path.as_str())?.0, e)))
        .collect();
    let absent: HashMap<Digest, u64> = archive
        .bundle
        .delta
        .iter()
        .flat_map(|d| &d.absent)
        .map(|b| (b.digest, b.size))
        .collect();
    let index = if good.contains(INDEX_PATH) {
        archive
            .entry(INDEX_PATH)
            .and_then(|e| archive.read_member(e, oci::MANIFEST_MAX_BYTES * 4).ok())
            .and_then(|b| oci::parse_index_json(&b).ok())
    } else {
        None
    };
    match &index {
        None if archive.faults.is_empty() && !bad.contains_key(INDEX_PATH) => {
            problems.push(Problem {
                member: Some(INDEX_PATH.into()),
                digest: None,
                artifacts: Vec::new(),
                volumes: Vec::new(),
                message: "index.json is not a valid OCI index".into(),
            })
        }
        None => {}
        Some(index) => {
            // Every document the artifacts reach, for the referrers'
            // subjects.
            let mut carried: std::collections::HashSet<Digest> = Default::default();
            // One model: bundle.json's artifacts are the roots load and
            // serve use, and index.json must agree with them.
            for message in archive.bundle.check_index(index) {
                problems.push(Problem {
                    member: Some(INDEX_PATH.into()),
                    digest: None,
                    artifacts: Vec::new(),
                    volumes: Vec::new(),
                    message,
                });
                broken_index = true;
            }
            for a in &archive.bundle.artifacts {
                let root_size = declared
                    .get(a.digest.blob_path().as_str())
                    .map_or(0, |(_, size)| *size);
                let root = oci::Descriptor::new(&a.media_type, a.digest, root_size);
                let image = a.kind == crate::format::bundle::ArtifactKind::Image;
                let mut walk = Walk::new(
                    &archive,
                    &present,
                    &bad,
                    &absent,
                    &a.reference,
                    image,
                    &mut owners,
                    &mut problems,
                );
                walk.visit(&root, 0);
                carried.extend(walk.walked.iter().copied());
                if walk.broken {
                    broken_artifacts.insert(a.reference.clone());
                }
            }
            // Referrers: walked as roots of their own (each blob checked
            // as any layer), and each must refer to a document the
            // bundle carries, which is where load pushes it.
            for r in &archive.bundle.referrers {
                let label = referrer_label(r);
                if !carried.contains(&r.subject) {
                    problems.push(Problem {
                        member: Some(r.digest.blob_path()),
                        digest: Some(r.digest),
                        artifacts: vec![label.clone()],
                        volumes: Vec::new(),
                        message: format!(
                            "bundle.json lists it as a referrer of {}, which no artifact carries",
                            r.subject
                        ),
                    });
                }
                let root_size = declared
                    .get(r.digest.blob_path().as_str())
                    .map_or(0, |(_, size)| *size);
                let root = oci::Descriptor::new(&r.media_type, r.digest, root_size);
                let mut walk = Walk::new(
                    &archive,
                    &present,
                    &bad,
                    &absent,
                    &label,
                    false,
                    &mut owners,
                    &mut problems,
                );
                walk.visit(&root, 0);
                carried.extend(walk.walked.iter().copied());
                // bundle.json's artifact type must be the manifest's: load
                // and serve list the manifest's, and a report shows this.
                let read = archive
                    .entry(&r.digest.blob_path())
                    .filter(|_| good.contains(r.digest.blob_path().as_str()))
                    .and_then(|e| archive.read_member(e, oci::MANIFEST_MAX_BYTES).ok())
                    .and_then(|b| oci::parse_node(r.digest, &r.media_type, &b).ok());
                if let Some(node) = read {
                    let actual = node.artifact_type();
                    if actual != r.artifact_type {
                        problems.push(Problem {
                            member: Some(r.digest.blob_path()),
                            digest: Some(r.digest),
                            artifacts: vec![label.clone()],
                            volumes: Vec::new(),
                            message: format!(
                                "bundle.json gives the referrer the artifact type {:?}, but its manifest says {:?}",
                                r.artifact_type, actual
                            ),
                        });
                    }
                }
            }
        }
    }
    if broken_index {
        // index.json is what OCI tools read: none of it can be trusted.
        broken_artifacts.extend(archive.bundle.artifacts.iter().map(|a| a.reference.clone()));
    }

    // 3. Content problems, each with the artifacts that need the member.
    let mut content_problems = Vec::new();
    for (path, (digest, message, volumes)) in &bad {
        let artifacts: Vec<String> = digest
            .and_then(|d| owners.get(&d))
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        broken_artifacts.extend(artifacts.iter().cloned());
        content_problems.push(Problem {
            member: Some(path.clone()),
            digest: *digest,
            artifacts,
            volumes: volumes.clone(),
            message: message.clone(),
        });
    }
    let reached: BTreeSet<&str> = archive.entries.iter().map(|e| e.path.as_str()).collect();
    // Which volumes each member lives in, for a split archive.
    let mut member_volumes: HashMap<&str, BTreeSet<usize>> = HashMap::new();
    if let Some(plan) = &archive.bundle.volumes {
        for (v, vol) in plan.volumes.iter().enumerate() {
            for p in &vol.pieces {
                member_volumes
                    .entry(p.member.as_str())
                    .or_default()
                    .insert(v + 1);
            }
        }
    }
    for (i, fault) in archive.faults.iter().enumerate() {
        let volume = fault_volume(fault);
        let mut affected = BTreeSet::new();
        let mut lost = 0;
        for m in &archive.bundle.members {
            let here = match volume {
                Some(v) => member_volumes
                    .get(m.path.as_str())
                    .is_some_and(|s| s.contains(&v)),
                None => true,
            };
            if here && !reached.contains(m.path.as_str()) {
                lost += 1;
                if let Some(o) = owners.get(&m.digest) {
                    affected.extend(o.iter().cloned());
                }
            }
        }
        if index.is_none() {
            affected.extend(archive.bundle.artifacts.iter().map(|a| a.reference.clone()));
        }
        broken_artifacts.extend(affected.iter().cloned());
        let message = match volume {
            Some(_) => format!("{}; {lost} member(s) in it are lost", error_chain(fault)),
            None => format!(
                "{} ({} of {} members arrived before it)",
                error_chain(fault),
                archive.entries.len(),
                archive.bundle.members.len()
            ),
        };
        content_problems.insert(
            i,
            Problem {
                member: None,
                digest: None,
                artifacts: affected.into_iter().collect(),
                volumes: volume.into_iter().collect(),
                message,
            },
        );
    }
    content_problems.extend(problems);
    let mut content_problems = merge_problems(content_problems);
    // A split archive's checksum sidecar must agree with the volumes, so
    // `sha256sum -c` and verify never give two verdicts.
    // A volume set of one (a bundle that fit in its first volume) has a
    // sidecar too.
    let sidecar = match archive.bundle.volumes.is_some() {
        true => check_sidecar(&archive.files(), &mut content_problems),
        false => None,
    };

    let artifacts_ok = archive
        .bundle
        .artifacts
        .iter()
        .filter(|a| !broken_artifacts.contains(&a.reference))
        .map(|a| a.reference.clone())
        .collect();
    Ok(VerifyReport {
        archive: path.to_owned(),
        name: archive.bundle.name.clone(),
        members_listed: archive.bundle.members.len(),
        members_ok: good.len(),
        bytes_hashed: total,
        artifacts_ok,
        problems: content_problems,
        signed: archive.signature.is_some(),
        signature,
        volumes: if split {
            archive.files().into_iter().map(Path::to_owned).collect()
        } else {
            Vec::new()
        },
        delta: archive.bundle.delta.clone(),
        sidecar,
        signatures: Vec::new(),
    })
}

/// One problem per thing wrong: the same blob missing from several
/// artifacts is reported once, with all the artifacts that need it.
fn merge_problems(problems: Vec<Problem>) -> Vec<Problem> {
    let mut out: Vec<Problem> = Vec::with_capacity(problems.len());
    // Per merged problem, the artifacts it already names.
    let mut named: Vec<BTreeSet<String>> = Vec::new();
    let mut at: HashMap<(Option<String>, Option<Digest>, String), usize> = HashMap::new();
    for p in problems {
        let key = (p.member.clone(), p.digest, p.message.clone());
        match at.get(&key) {
            Some(&i) => {
                if let (Some(first), Some(seen)) = (out.get_mut(i), named.get_mut(i)) {
                    for a in p.artifacts {
                        if seen.insert(a.clone()) {
                            first.artifacts.push(a);
                        }
                    }
                }
            }
            None => {
                at.insert(key, out.len());
                named.push(p.artifacts.iter().cloned().collect());
                out.push(p);
            }
        }
    }
    out
}

/// The largest checksum sidecar read (999 volumes take about 80 KB).
pub const SIDECAR_MAX_BYTES: u64 = 1 << 20;

/// Checks the sidecar beside a split archive's volumes (`OUT.sha256` for
/// `OUT.001`, …), when there is one: every volume is listed once with the
/// digest of its bytes, and nothing else is listed. Each disagreement is a
/// problem; a volume already named by a problem (damaged or missing) is not
/// hashed again, its damage being reported. Returns the sidecar's path when
/// it was there.
fn check_sidecar(volumes: &[&Path], problems: &mut Vec<Problem>) -> Option<PathBuf> {
    let damaged: BTreeSet<usize> = problems.iter().flat_map(|p| p.volumes.clone()).collect();
    let first = volumes.first()?.to_str()?;
    let base = Path::new(first.strip_suffix(".001")?);
    let sidecar = crate::format::archive::sidecar_path(base);
    let name = sidecar.display().to_string();
    let mut problem = |message: String, volume: Option<usize>| {
        problems.push(Problem {
            member: None,
            digest: None,
            artifacts: Vec::new(),
            volumes: volume.into_iter().collect(),
            message,
        })
    };
    let size = fs_err::metadata(&sidecar).ok()?.len();
    if size > SIDECAR_MAX_BYTES {
        problem(
            format!(
                "{name} is {size} bytes, more than the {SIDECAR_MAX_BYTES}-byte limit; not read"
            ),
            None,
        );
        return Some(sidecar);
    }
    let text = match fs_err::read_to_string(&sidecar) {
        Ok(t) => t,
        Err(e) => {
            problem(format!("{name} cannot be read: {e}"), None);
            return Some(sidecar);
        }
    };
    let mut listed: BTreeMap<String, Digest> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let parsed = line
            .split_once("  ")
            .or_else(|| line.split_once(" *"))
            .and_then(|(hex, file)| Some((Digest::from_hex(hex).ok()?, file)));
        match parsed {
            Some((d, file)) => {
                if listed.insert(file.to_owned(), d).is_some() {
                    problem(format!("{name} lists {file} twice"), None);
                }
            }
            None => problem(
                format!("{name} line {} is not `<sha256>  <file>`", i + 1),
                None,
            ),
        }
    }
    let sums: Vec<Option<std::io::Result<(Digest, u64)>>> = volumes
        .par_iter()
        .enumerate()
        .with_max_len(1)
        .map(|(n, v)| {
            (!damaged.contains(&(n + 1))).then(|| {
                fs_err::File::open(v)
                    .and_then(|f| crate::base::digest::hash_reader(std::io::BufReader::new(f)))
            })
        })
        .collect();
    for (n, (v, sum)) in volumes.iter().zip(sums).enumerate() {
        let file = v
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some(sum) = sum else {
            listed.remove(&file);
            continue;
        };
        match (listed.remove(&file), sum) {
            (None, _) => problem(format!("{name} does not list {file}"), Some(n + 1)),
            (Some(want), Ok((got, _))) if want != got => problem(
                format!("{name} says {file} hashes to {want}, but it hashes to {got} (`sha256sum -c` fails on it)"),
                Some(n + 1),
            ),
            (Some(_), Ok(_)) => {}
            (Some(_), Err(e)) => problem(format!("{file} cannot be read: {e}"), Some(n + 1)),
        }
    }
    for file in listed.keys() {
        problem(
            format!("{name} lists {file}, which is not a volume of this archive"),
            None,
        );
    }
    Some(sidecar)
}

/// The volume (from 1) a fault of a split archive is in.
fn fault_volume(e: &ArchiveError) -> Option<usize> {
    match e {
        ArchiveError::InVolume { volume, .. }
        | ArchiveError::VolumeMissing { volume, .. }
        | ArchiveError::VolumeMismatch { volume, .. } => Some(*volume),
        _ => None,
    }
}

/// Why a signature check failed.
#[derive(Debug, thiserror::Error)]
pub enum SignatureCheckError {
    /// The archive cannot be read as far as bundle.json.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// The signature is missing or wrong.
    #[error(transparent)]
    Sign(#[from] crate::format::sign::SignError),
}

fn hash_member(archive: &Archive, e: &Entry, reporter: &dyn Reporter) -> std::io::Result<Digest> {
    if let Some(d) = archive.scanned_digest(e) {
        return Ok(d);
    }
    let mut r = archive.member_reader(e);
    let mut h = Hasher::new();
    // A framed zstd member: hash each frame's bytes where they were
    // decompressed.
    while let Some(chunk) = r.frame_chunk() {
        let chunk = chunk?;
        if chunk.is_empty() {
            return Ok(h.finish().0);
        }
        let n = chunk.len();
        h.update(chunk);
        reporter.advance(n as u64);
        r.consume(n);
    }
    let mut buf = vec![0u8; COPY_BUF.min(e.size.max(1) as usize)];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        reporter.advance(n as u64);
    }
    Ok(h.finish().0)
}

struct Walk<'a> {
    archive: &'a Archive,
    present: &'a HashMap<Digest, &'a Entry>,
    bad: &'a BTreeMap<String, (Option<Digest>, String, Vec<usize>)>,
    fault: bool,
    absent: &'a HashMap<Digest, u64>,
    artifact: &'a str,
    /// Whether the artifact is an image (whose index must list something
    /// to run).
    image: bool,
    owners: &'a mut HashMap<Digest, BTreeSet<String>>,
    problems: &'a mut Vec<Problem>,
    broken: bool,
    /// Documents already walked for this artifact: a graph that names
    /// one child many times at every level is walked once per document,
    /// not once per path (fan-out to the power of the depth).
    walked: std::collections::HashSet<Digest>,
    /// Blob descriptors already checked, by digest and size.
    checked: std::collections::HashSet<(Digest, u64)>,
}

impl<'a> Walk<'a> {
    /// A walk of one root (`artifact` names it in problems).
    #[allow(clippy::too_many_arguments)]
    fn new(
        archive: &'a Archive,
        present: &'a HashMap<Digest, &'a Entry>,
        bad: &'a BTreeMap<String, (Option<Digest>, String, Vec<usize>)>,
        absent: &'a HashMap<Digest, u64>,
        artifact: &'a str,
        image: bool,
        owners: &'a mut HashMap<Digest, BTreeSet<String>>,
        problems: &'a mut Vec<Problem>,
    ) -> Walk<'a> {
        Walk {
            archive,
            present,
            bad,
            fault: !archive.faults.is_empty(),
            absent,
            artifact,
            image,
            owners,
            problems,
            broken: false,
            walked: Default::default(),
            checked: Default::default(),
        }
    }

    fn problem(&mut self, d: &oci::Descriptor, message: String) {
        self.broken = true;
        self.problems.push(Problem {
            member: Some(d.digest.blob_path()),
            digest: Some(d.digest),
            artifacts: vec![self.artifact.to_owned()],
            volumes: Vec::new(),
            message,
        });
    }

    /// Checks `d` is present with its size; for documents, reads and
    /// recurses. Returns false when the blob is unusable.
    fn check(&mut self, d: &oci::Descriptor) -> Option<&'a Entry> {
        self.owners
            .entry(d.digest)
            .or_default()
            .insert(self.artifact.to_owned());
        let Some(entry) = self.present.get(&d.digest).copied() else {
            if let Some(&size) = self.absent.get(&d.digest) {
                // A delta leaves it out: the target must hold it.
                if size != d.size {
                    self.problem(
                        d,
                        format!(
                            "blob {} is recorded as left out with {size} bytes but its descriptor says {}",
                            d.digest, d.size
                        ),
                    );
                }
                return None;
            }
            if !self.fault {
                // A truncated archive already explains missing members.
                self.problem(
                    d,
                    // Without the media type: the same blob can be
                    // described differently by the manifests that need it,
                    // and it is reported once for all of them.
                    format!("blob {} is missing from the archive", d.digest),
                );
            } else {
                self.broken = true;
            }
            return None;
        };
        if entry.size != d.size {
            self.problem(
                d,
                format!(
                    "blob {} is {} bytes but its descriptor says {}",
                    d.digest, entry.size, d.size
                ),
            );
            return None;
        }
        if self.bad.contains_key(&entry.path) {
            self.broken = true;
            return None;
        }
        Some(entry)
    }

    fn visit(&mut self, d: &oci::Descriptor, depth: usize) {
        // As in `oci::walk_graph`, which load and serve use: any path that
        // nests too deep is refused, even to a document already walked.
        if depth > oci::MAX_DEPTH {
            self.problem(
                d,
                format!("indexes nest deeper than {} levels", oci::MAX_DEPTH),
            );
            return;
        }
        if !self.walked.insert(d.digest) {
            // Already walked as a document, with its children; a problem
            // it has is already reported for this artifact.
            return;
        }
        let Some(entry) = self.check(d) else { return };
        let bytes = match self.archive.read_member(entry, oci::MANIFEST_MAX_BYTES) {
            Ok(b) => b,
            Err(e) => return self.problem(d, error_chain(&e)),
        };
        match oci::parse_node(d.digest, &d.media_type, &bytes) {
            Ok(Node::Index(i)) => {
                // An image index with nothing in it has nothing to run (an
                // empty referrers list, which has an artifactType or a
                // subject, is fine).
                if self.image
                    && i.manifests.is_empty()
                    && i.artifact_type.is_none()
                    && i.subject.is_none()
                {
                    self.problem(
                        d,
                        format!(
                            "image {}: index {} lists no manifests, so there is nothing to run",
                            self.artifact, d.digest
                        ),
                    );
                }
                for c in &i.manifests {
                    self.visit(c, depth + 1);
                }
            }
            Ok(Node::Manifest(m)) => {
                // Every blob descriptor is checked (each size a manifest
                // gives, as load and serve check them), once per digest
                // and size; a digest met as a blob is still walked when a
                // document names it as a child.
                for b in std::iter::once(&m.config).chain(&m.layers) {
                    if self.checked.insert((b.digest, b.size)) {
                        self.check(b);
                    }
                }
            }
            Err(e) => self.problem(d, error_chain(&e)),
        }
    }
}

/// How verify names a referrer among the artifacts a problem touches.
pub fn referrer_label(r: &crate::format::bundle::Referrer) -> String {
    format!("{} {} (of {})", r.kind, r.digest, r.subject)
}
