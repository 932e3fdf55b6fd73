//! Archives written by hand, member by member, with whatever documents a
//! test needs, including ones `ferry pack` would refuse to write.
#![allow(dead_code)]

use std::path::Path;

use ferry::digest::Digest;

use super::{write_raw_tar, RawMember};

/// One artifact of a hand-written archive: its reference, its root's
/// media type and the root document's bytes.
pub struct Root<'a> {
    pub reference: &'a str,
    pub media_type: &'a str,
    pub bytes: Vec<u8>,
}

/// Writes a plain ferry archive at `path`: oci-layout, bundle.json,
/// index.json (one entry per root, named by reference), then every root
/// and blob as `blobs/sha256/…`. Returns the members, so a test can change
/// one and write them again with [`write_raw_tar`].
pub fn hand_archive(path: &Path, roots: &[Root<'_>], blobs: &[Vec<u8>]) -> Vec<RawMember> {
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": roots.iter().map(|r| serde_json::json!({
            "mediaType": r.media_type,
            "digest": Digest::of(&r.bytes).to_string(),
            "size": r.bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": r.reference},
        })).collect::<Vec<_>>(),
    });
    let index = serde_json::to_vec(&index).unwrap();
    let mut contents: Vec<&Vec<u8>> = roots.iter().map(|r| &r.bytes).chain(blobs).collect();
    contents.dedup_by_key(|b| Digest::of(b));
    let mut members = vec![
        RawMember::file("oci-layout", &layout),
        RawMember::file("bundle.json", b""),
        RawMember::file("index.json", &index),
    ];
    let mut seen = std::collections::HashSet::new();
    for b in contents {
        let d = Digest::of(b);
        if seen.insert(d) {
            members.push(RawMember::file(&d.blob_path(), b));
        }
    }
    let listed: Vec<serde_json::Value> = members
        .iter()
        .filter(|m| m.name != "bundle.json")
        .map(|m| {
            serde_json::json!({
                "path": m.name,
                "digest": Digest::of(&m.data).to_string(),
                "size": m.data.len(),
            })
        })
        .collect();
    let bundle = serde_json::json!({
        "format": "ferry-bundle",
        "format_version": 1,
        "tool": {"name": "ferry", "version": "test"},
        "name": "hand",
        "artifacts": roots.iter().map(|r| serde_json::json!({
            "kind": "image",
            "source": r.reference,
            "reference": r.reference,
            "digest": Digest::of(&r.bytes).to_string(),
            "media_type": r.media_type,
            "size": r.bytes.len(),
        })).collect::<Vec<_>>(),
        "members": listed,
    });
    members[1].data = serde_json::to_vec_pretty(&bundle).unwrap();
    write_raw_tar(path, &members, true);
    members
}

/// A descriptor as JSON text.
pub fn desc(media_type: &str, bytes: &[u8]) -> String {
    format!(
        r#"{{"mediaType":"{media_type}","digest":"{}","size":{}}}"#,
        Digest::of(bytes),
        bytes.len()
    )
}

/// Renames the artifact `from` to `to` in bundle.json and index.json
/// alike, so the two still agree, and records index.json's new digest.
pub fn rename_artifact(members: &mut [RawMember], from: &str, to: &str) {
    let index = members.iter_mut().find(|m| m.name == "index.json").unwrap();
    let mut i: serde_json::Value = serde_json::from_slice(&index.data).unwrap();
    for d in i["manifests"].as_array_mut().unwrap() {
        let name = &mut d["annotations"]["org.opencontainers.image.ref.name"];
        if name.as_str() == Some(from) {
            *name = to.into();
        }
    }
    index.data = serde_json::to_vec(&i).unwrap();
    let (digest, size) = (Digest::of(&index.data), index.data.len());
    let mut b = super::bundle_of(members);
    for a in b["artifacts"].as_array_mut().unwrap() {
        if a["reference"].as_str() == Some(from) {
            a["reference"] = to.into();
        }
    }
    for m in b["members"].as_array_mut().unwrap() {
        if m["path"] == "index.json" {
            m["digest"] = digest.to_string().into();
            m["size"] = size.into();
        }
    }
    super::set_bundle(members, &b);
}
