//! The OCI document parser on untrusted bytes, under every declared media
//! type: never a panic, and what it accepts reads the same to a Go client.
//! An accepted document is JSON with no duplicate keys, its kind agrees
//! with the declared type, and the child list ferry walks is the only one
//! a case-folding reader could find.
#![no_main]

use ferry::digest::Digest;
use ferry::oci::{self, Node};
use libfuzzer_sys::fuzz_target;

const DECLARED: [&str; 6] = [
    "",
    oci::OCI_MANIFEST,
    oci::OCI_INDEX,
    oci::DOCKER_MANIFEST,
    oci::DOCKER_LIST,
    oci::OCI_CONFIG,
];

/// Go's folding, as far as the field names concerned need.
fn fold(s: &str) -> String {
    s.chars()
        .flat_map(char::to_uppercase)
        .flat_map(char::to_lowercase)
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, doc)) = data.split_first() else {
        return;
    };
    let declared = DECLARED[sel as usize % DECLARED.len()];
    let digest = Digest::of(doc);
    let _ = oci::parse_index_json(doc);
    let _ = oci::parse_config::<serde_json::Value>(doc);
    let Ok(node) = oci::parse_node(digest, declared, doc) else {
        return;
    };
    let v: serde_json::Value = serde_json::from_slice(doc).expect("accepted, so JSON");
    let obj = v.as_object().expect("accepted, so an object");
    let (field, walked) = match &node {
        Node::Index(i) => ("manifests", i.manifests.len()),
        Node::Manifest(m) => ("layers", m.layers.len()),
    };
    // No other spelling of the child list that Go would take instead.
    for k in obj.keys() {
        assert!(k == field || fold(k) != field, "{k} accepted beside {field}");
    }
    let listed = obj.get(field).and_then(|l| l.as_array()).map_or(0, Vec::len);
    assert_eq!(listed, walked, "the walked child list is not the document's");
    // The kind agrees with what pointed at it.
    match (&node, declared) {
        (Node::Index(_), d) => assert!(d.is_empty() || oci::is_index(d), "index under {d}"),
        (Node::Manifest(_), d) => assert!(
            d.is_empty() || d == oci::OCI_MANIFEST || d == oci::DOCKER_MANIFEST,
            "manifest under {d}"
        ),
    }
    assert_eq!(node.media_type().is_empty(), false);
});
