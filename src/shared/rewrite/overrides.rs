//! The override an installer such as ESS reads, in its own shape: its
//! `images_digests.yml` (component → container → `image_repository_server`,
//! `image_repository_path`, `image_tag`, `image_digest`) rewritten by the
//! rewriter to where a load put each image, and optionally wrapped in a
//! ConfigMap whose `data.images_digests: |` block holds the tree.
//!
//! Every entry must have been carried and loaded: one that was not is an
//! error naming it, unless the caller allows missing entries, which are
//! then kept unchanged.

use super::{rewrite, Found, ImageMap, Outcome, RewriteError, RewriteOptions};

/// Errors making the override.
#[derive(Debug, thiserror::Error)]
pub enum OverrideError {
    /// The installer's file is not YAML.
    #[error("{file} is not valid YAML")]
    Yaml {
        /// The installer's file.
        file: String,
        /// The parser's error.
        #[source]
        source: RewriteError,
    },
    /// The file has no entry of the installer's shape.
    #[error("{0} has no images_digests entries (image_repository_server and image_repository_path under component and container keys)")]
    NoEntries(String),
    /// Entries the load did not carry.
    #[error("{file}: {} entr{} not loaded: {}; load them, or pass --allow-missing to keep them unchanged", .entries.len(), if .entries.len() == 1 { "y was" } else { "ies were" }, .entries.join("; "))]
    Missing {
        /// The installer's file.
        file: String,
        /// `KEY.PATH (line N): REFERENCE, why` for each.
        entries: Vec<String>,
    },
    /// The ConfigMap name is not a Kubernetes object name.
    #[error("{0:?} is not a ConfigMap name: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters")]
    Name(String),
    /// The tree cannot be put in a block as it is written.
    #[error("{file}: {why}; --configmap needs the tree as a block mapping")]
    Shape {
        /// The installer's file.
        file: String,
        /// What is wrong.
        why: String,
    },
}

/// The installer's file pointed at the loaded images.
#[derive(Debug)]
pub struct Override {
    /// The file's text with the server, path and digest of each entry
    /// (and the tag, when asked) changed; every other byte as it was.
    pub text: String,
    /// Every entry, with what happened to it.
    pub entries: Vec<Found>,
}

/// Checks an installer's file before anything is loaded: it parses and
/// has entries. `file` names it in messages.
pub fn check_images_digests(file: &str, text: &str) -> Result<usize, OverrideError> {
    let (_, found) =
        rewrite(text, &ImageMap::default(), RewriteOptions::default()).map_err(|source| {
            OverrideError::Yaml {
                file: file.to_owned(),
                source,
            }
        })?;
    let n = found.iter().filter(|f| f.form == "images_digests").count();
    if n == 0 {
        return Err(OverrideError::NoEntries(file.to_owned()));
    }
    Ok(n)
}

/// Rewrites the installer's `images_digests.yml` (`text`, named `file`)
/// with `map`, the images a load put in place: each entry's server, path
/// and digest become the target's (and its tag, with `set_tag`). An entry
/// the map lacks (or that cannot be read as a reference) is an error
/// unless `allow_missing`, which keeps it unchanged.
pub fn images_digests_override(
    file: &str,
    text: &str,
    map: &ImageMap,
    allow_missing: bool,
    set_tag: bool,
) -> Result<Override, OverrideError> {
    check_images_digests(file, text)?;
    let opts = RewriteOptions {
        pin_digest: true,
        digests_tag: set_tag,
    };
    let (out, found) = rewrite(text, map, opts).map_err(|source| OverrideError::Yaml {
        file: file.to_owned(),
        source,
    })?;
    let missing: Vec<String> = found
        .iter()
        .filter(|f| f.form == "images_digests")
        .filter_map(|f| {
            let why = match &f.outcome {
                Outcome::Rewritten { .. } | Outcome::AlreadyLocal => return None,
                Outcome::NotInBundle => "not loaded".to_owned(),
                Outcome::Skipped { reason } | Outcome::Unreadable { reason } => reason.clone(),
            };
            Some(format!(
                "{} (line {}): {}, {why}",
                if f.path.is_empty() { "-" } else { &f.path },
                f.line,
                f.reference
            ))
        })
        .collect();
    if !missing.is_empty() && !allow_missing {
        return Err(OverrideError::Missing {
            file: file.to_owned(),
            entries: missing,
        });
    }
    Ok(Override {
        text: out,
        entries: found,
    })
}

/// Whether `name` is a Kubernetes object name (an RFC 1123 subdomain).
pub fn is_object_name(name: &str) -> bool {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    name.len() <= 253 && name.split('.').all(label_ok)
}

/// A ConfigMap named `name` whose `data.images_digests: |` block holds
/// the tree of `text` (the value of its top-level `images_digests:` key,
/// or the whole document when it has none), line for line, comments
/// included. The result is checked: its block must parse to the same tree.
pub fn configmap(name: &str, file: &str, text: &str) -> Result<String, OverrideError> {
    if !is_object_name(name) {
        return Err(OverrideError::Name(name.to_owned()));
    }
    let shape = |why: &str| OverrideError::Shape {
        file: file.to_owned(),
        why: why.to_owned(),
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let is_key = |l: &str| {
        l.strip_prefix("images_digests:")
            .is_some_and(|rest| rest.trim().is_empty() || rest.trim_start().starts_with('#'))
    };
    let body: Vec<&str> = match lines.iter().position(|l| is_key(l)) {
        Some(i) => lines[i + 1..]
            .iter()
            .take_while(|l| l.is_empty() || l.starts_with([' ', '#']))
            .copied()
            .collect(),
        None if lines.iter().any(|l| l.starts_with("images_digests:")) => {
            return Err(shape("images_digests: has its value on the same line"))
        }
        None => lines
            .iter()
            .filter(|l| !matches!(l.trim_end(), "---" | "..."))
            .copied()
            .collect(),
    };
    let indent = body
        .iter()
        .filter(|l| {
            let t = l.trim_start();
            !t.is_empty() && !t.starts_with('#')
        })
        .map(|l| l.len() - l.trim_start_matches(' ').len())
        .min()
        .ok_or_else(|| shape("the images_digests tree is empty"))?;
    if body.iter().any(|l| l.starts_with('\t')) {
        return Err(shape("the tree is indented with tabs"));
    }
    let mut out = format!(
        "# Written by `ferry load --images-digests-from {} --configmap {name}`:\n# the installer's images, where the load put them.\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  images_digests: |\n",
        crate::base::error::one_line(
            std::path::Path::new(file)
                .file_name()
                .map_or(file.into(), |n| n.to_string_lossy())
                .as_ref(),
            200
        )
    );
    for l in &body {
        let t = l.trim_start_matches(' ');
        if t.is_empty() {
            out.push('\n');
            continue;
        }
        // A comment less indented than the tree would end the block.
        let at = (l.len() - t.len()).saturating_sub(indent);
        out.push_str("    ");
        out.push_str(&" ".repeat(at));
        out.push_str(t);
        out.push('\n');
    }
    // The block must hold exactly the tree it was made from.
    let tree = parse_value(text).map_err(|e| shape(&e))?;
    let tree = match tree.get("images_digests") {
        Some(t) => t.clone(),
        None => tree,
    };
    let cm = parse_value(&out).map_err(|e| shape(&e))?;
    let embedded = cm
        .get("data")
        .and_then(|d| d.get("images_digests"))
        .and_then(|v| v.as_str())
        .map(parse_value)
        .transpose()
        .map_err(|e| shape(&e))?;
    if embedded.as_ref() != Some(&tree) {
        return Err(shape("the tree does not survive being put in a block"));
    }
    Ok(out)
}

fn parse_value(text: &str) -> Result<serde_json::Value, String> {
    serde_saphyr::from_str::<serde_json::Value>(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::digest::Digest;
    use crate::shared::mapping::MapEntry;

    const INSTALLER: &str = "# ESS images\nimages_digests:\n  adminbot:\n    haproxy:\n      image_digest: sha256:SRC1\n      image_repository_path: library/haproxy\n      image_repository_server: docker.io\n      image_tag: 2.8-alpine\n    pipe:\n      image_digest: sha256:SRC2\n      image_repository_path: ems-image-store/enterprise/pipe\n      image_repository_server: gitlab-registry.matrix.org\n      image_tag: 2.7.0\n# a trailing comment\n";

    fn fixture() -> (String, ImageMap, Digest, Digest) {
        let (s1, s2) = (Digest::of(b"src1"), Digest::of(b"src2"));
        let (t1, t2) = (Digest::of(b"t1"), Digest::of(b"t2"));
        let text = INSTALLER
            .replace("sha256:SRC1", &s1.to_string())
            .replace("sha256:SRC2", &s2.to_string());
        let map = ImageMap::from_entries(
            "reg.local:5000",
            vec![
                MapEntry {
                    source: format!("docker.io/library/haproxy:2.8-alpine@{s1}"),
                    target: "reg.local:5000/ess/library/haproxy".into(),
                    tag: Some("2.8-alpine".into()),
                    digest: t1,
                    source_digest: Some(s1),
                    converted: Vec::new(),
                },
                MapEntry {
                    source: format!(
                        "gitlab-registry.matrix.org/ems-image-store/enterprise/pipe:2.7.0@{s2}"
                    ),
                    target: "reg.local:5000/ess/ems-image-store/enterprise/pipe".into(),
                    tag: Some("2.7.0".into()),
                    digest: t2,
                    source_digest: None,
                    converted: Vec::new(),
                },
            ],
        );
        (text, map, t1, s2)
    }

    #[test]
    fn the_installers_tree_with_only_server_path_and_digest_changed() {
        let (text, map, t1, s2) = fixture();
        let o = images_digests_override("images_digests.yml", &text, &map, false, false).unwrap();
        let want = text
            .replace(&Digest::of(b"src1").to_string(), &t1.to_string())
            .replace("path: library/haproxy", "path: ess/library/haproxy")
            .replace("server: docker.io", "server: reg.local:5000")
            .replace(&s2.to_string(), &Digest::of(b"t2").to_string())
            .replace("path: ems-image-store", "path: ess/ems-image-store")
            .replace(
                "server: gitlab-registry.matrix.org",
                "server: reg.local:5000",
            );
        assert_eq!(o.text, want);
        assert_eq!(o.entries.len(), 2);

        let cm = configmap("ess-images", "images_digests.yml", &o.text).unwrap();
        assert!(cm.starts_with("# Written by `ferry load"), "{cm}");
        assert!(
            cm.contains("metadata:\n  name: ess-images\ndata:\n  images_digests: |\n    adminbot:\n      haproxy:\n        image_digest: "),
            "{cm}"
        );
        // Its block is read by the rewriter, and everything is local.
        let (_, found) = rewrite(&cm, &map, RewriteOptions::default()).unwrap();
        assert_eq!(found.len(), 2);
        assert!(found.iter().all(|f| f.outcome == Outcome::AlreadyLocal
            && f.block.as_deref() == Some("data.images_digests")));
    }

    #[test]
    fn a_missing_entry_is_named_unless_allowed() {
        let (text, map, ..) = fixture();
        let text = text.replace("library/haproxy", "library/other");
        let e = images_digests_override("f.yml", &text, &map, false, false).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("f.yml: 1 entry was not loaded: images_digests.adminbot.haproxy (line 7): docker.io/library/other:2.8-alpine@")
                && msg.contains("--allow-missing"),
            "{msg}"
        );
        let o = images_digests_override("f.yml", &text, &map, true, false).unwrap();
        assert!(o.text.contains(
            "image_repository_path: library/other\n      image_repository_server: docker.io\n"
        ));
        assert!(o.text.contains("path: ess/ems-image-store/enterprise/pipe"));
    }

    #[test]
    fn the_tag_changes_only_when_asked() {
        let (text, mut map, ..) = fixture();
        // The haproxy digest was carried under another tag.
        let mut entries = map.entries().to_vec();
        entries[0].tag = Some("2.8.5-alpine".into());
        map = ImageMap::from_entries("reg.local:5000", entries);
        let o = images_digests_override("f.yml", &text, &map, false, false).unwrap();
        assert!(o.text.contains("image_tag: 2.8-alpine"));
        let o = images_digests_override("f.yml", &text, &map, false, true).unwrap();
        assert!(o.text.contains("image_tag: 2.8.5-alpine"));
        assert!(o.text.contains("image_tag: 2.7.0"));
    }

    #[test]
    fn bad_input() {
        assert!(matches!(
            check_images_digests("f", "a: [1\n"),
            Err(OverrideError::Yaml { .. })
        ));
        assert!(matches!(
            check_images_digests("f", "a: 1\n"),
            Err(OverrideError::NoEntries(_))
        ));
        for bad in ["Ess", "-x", "a_b", "", "x\ny"] {
            assert!(matches!(
                configmap(bad, "f", INSTALLER),
                Err(OverrideError::Name(_))
            ));
        }
        assert!(matches!(
            configmap("x", "f", "images_digests: {a: {b: {image_repository_server: x, image_repository_path: y}}}\n"),
            Err(OverrideError::Shape { .. })
        ));
        // A tree without the top key is taken whole; comments at column 0
        // are indented into the block.
        let cm = configmap("x", "f", "# c\na:\n  b:\n    image_repository_server: h.io\n# inner\n    image_repository_path: p\n").unwrap();
        assert!(cm.ends_with("  images_digests: |\n    # c\n    a:\n      b:\n        image_repository_server: h.io\n    # inner\n        image_repository_path: p\n"), "{cm}");
    }
}
