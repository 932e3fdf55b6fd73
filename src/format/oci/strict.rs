//! The strictness rules every OCI document ferry reads must pass before
//! its typed view is trusted: no duplicate keys anywhere, and no key in a
//! schema object that differs only in case from one of the schema's
//! fields. Go's `encoding/json` (the distribution registry, skopeo,
//! containerd) matches keys case-insensitively and lets the last duplicate
//! win, so a document that passes here reads the same in Go as in ferry.
//! Annotations and labels are user maps: their keys are checked for exact
//! duplicates only (`maintainer` and `Maintainer` both occur in real images).

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Fields of a manifest or an index (both, so an index that carries
/// `Config` is caught as surely as one that carries `config`).
const DOCUMENT: &[&str] = &[
    "schemaVersion",
    "mediaType",
    "artifactType",
    "config",
    "layers",
    "manifests",
    "subject",
    "annotations",
];
const DESCRIPTOR: &[&str] = &[
    "mediaType",
    "digest",
    "size",
    "urls",
    "annotations",
    "data",
    "artifactType",
    "platform",
];
const PLATFORM: &[&str] = &[
    "architecture",
    "os",
    "os.version",
    "os.features",
    "variant",
    "features",
];

/// Top-level fields of an image config that ferry reads (the platform).
const CONFIG: &[&str] = &[
    "created",
    "author",
    "architecture",
    "os",
    "os.version",
    "os.features",
    "variant",
    "config",
    "rootfs",
    "history",
];

/// Where in a document a value sits.
#[derive(Clone, Copy)]
enum Place {
    Document,
    Descriptor,
    Descriptors,
    Platform,
    Config,
    /// Annotations: keys are the user's.
    UserMap,
    /// Anything else: only exact duplicates matter.
    Other,
}

impl Place {
    fn fields(self) -> &'static [&'static str] {
        match self {
            Place::Document => DOCUMENT,
            Place::Descriptor => DESCRIPTOR,
            Place::Platform => PLATFORM,
            Place::Config => CONFIG,
            Place::Descriptors | Place::UserMap | Place::Other => &[],
        }
    }

    fn child(self, key: &str) -> Place {
        match (self, key) {
            (Place::Document, "config" | "subject") => Place::Descriptor,
            (Place::Document, "layers" | "manifests") => Place::Descriptors,
            (Place::Document | Place::Descriptor, "annotations") => Place::UserMap,
            (Place::Descriptor, "platform") => Place::Platform,
            _ => Place::Other,
        }
    }

    fn element(self) -> Place {
        match self {
            Place::Descriptors => Place::Descriptor,
            _ => Place::Other,
        }
    }
}

/// Go's case folding of a key: simple Unicode folding, so `ſ` (U+017F)
/// matches `s` and the Kelvin sign matches `k`, as in `encoding/json`.
fn fold(s: &str) -> String {
    s.chars()
        .flat_map(char::to_uppercase)
        .flat_map(char::to_lowercase)
        .collect()
}

struct Check(Place);

impl<'de> DeserializeSeed<'de> for Check {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Check {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Check(self.0.element()))?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut keys: HashSet<String> = HashSet::new();
        let fields = self.0.fields();
        while let Some(key) = map.next_key::<String>()? {
            if keys.contains(&key) {
                return Err(de::Error::custom(format_args!(
                    "the key {key:?} appears twice in one object"
                )));
            }
            if !fields.contains(&key.as_str()) {
                let folded = fold(&key);
                if let Some(f) = fields.iter().find(|f| fold(f) == folded) {
                    return Err(de::Error::custom(format_args!(
                        "the key {key:?} differs only in case from the field {f:?}, which Go clients would read it as"
                    )));
                }
            }
            map.next_value_seed(Check(self.0.child(&key)))?;
            keys.insert(key);
        }
        Ok(())
    }
}

/// Checks `bytes` (a manifest or index) against the rules above.
pub(super) fn check(bytes: &[u8]) -> Result<(), serde_json::Error> {
    check_at(Place::Document, bytes)
}

/// Checks `bytes` (an image config) against the rules above.
pub(super) fn check_config(bytes: &[u8]) -> Result<(), serde_json::Error> {
    check_at(Place::Config, bytes)
}

fn check_at(place: Place, bytes: &[u8]) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    Check(place).deserialize(&mut de)?;
    de.end()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_and_case_variant_keys_are_refused_where_go_would_fold_them() {
        let refused = [
            r#"{"layers":[],"Layers":[]}"#,
            r#"{"Layers":[]}"#,
            r#"{"layers":[],"layers":[]}"#,
            r#"{"config":{"digest":"a","Digest":"b"}}"#,
            r#"{"manifests":[{"platform":{"OS":"linux"}}]}"#,
            r#"{"manifests":[{"annotations":{"a":"1","a":"2"}}]}"#,
            "{\"\u{17f}chemaVersion\":2}",
            "{\"config\":{\"\u{212a}\":1,\"mediaType\":\"x\",\"MEDIATYPE\":\"y\"}}",
            r#"{"lay\u0065rs":[],"layers":[]}"#,
        ];
        for doc in refused {
            assert!(check(doc.as_bytes()).is_err(), "{doc} was accepted");
        }
        let accepted = [
            r#"{"annotations":{"maintainer":"a","Maintainer":"b"}}"#,
            r#"{"config":{"annotations":{"Digest":"x"}}}"#,
            r#"{"layers":[{"mediaType":"x","unknownField":{"k":1,"K":2}}]}"#,
            r#"{"schemaVersion":2,"mediaType":"m","layers":[]}"#,
        ];
        for doc in accepted {
            assert!(check(doc.as_bytes()).is_ok(), "{doc} was refused");
        }
    }
}
