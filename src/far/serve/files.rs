//! `serve`'s file downloads: each file artifact of the bundle at
//! `/files/NAME`, NAME being its title (what `inspect` shows), and a
//! directory as the tar it is carried as. A name is looked up in a table
//! built at start-up, never on a filesystem, so no request can reach
//! anything but a listed file's layer.

use std::collections::BTreeMap;

use crate::base::digest::Digest;
use crate::format::bundle::Artifact;
use crate::format::oci;

/// A file artifact, with its root manifest as checked at start-up.
pub(super) struct FileSource<'a> {
    pub artifact: &'a Artifact,
    pub manifest: &'a [u8],
    pub media_type: &'a str,
}

/// What `/files/NAME` serves.
#[derive(Debug)]
pub(super) struct ServedFile {
    /// The layer holding the bytes.
    pub digest: Digest,
    pub content_type: &'static str,
    /// `Content-Disposition`, naming the file for `curl -OJ`.
    pub disposition: String,
}

/// Builds the table, title → file. A file that cannot be served is left
/// out with a line in `notes`; two different files under one title are an
/// `Err`, since `/files/TITLE` could serve only one of them.
pub(super) fn build(
    files: &[FileSource<'_>],
    notes: &mut Vec<String>,
) -> Result<BTreeMap<String, ServedFile>, String> {
    let mut out: BTreeMap<String, (ServedFile, &str)> = BTreeMap::new();
    for f in files {
        let a = f.artifact;
        let (title, file) = match served(f) {
            Ok(x) => x,
            Err(why) => {
                notes.push(format!(
                    "file {} is not served under /files/: {why}",
                    a.reference
                ));
                continue;
            }
        };
        if let Some((first, first_ref)) = out.get(&title) {
            if first.digest == file.digest {
                continue;
            }
            return Err(format!(
                "the files {first_ref} and {} are both named {title:?} with different content; /files/{} can serve only one: rename one in the spec",
                a.reference,
                percent_encode(&title)
            ));
        }
        out.insert(title, (file, a.reference.as_str()));
    }
    Ok(out.into_iter().map(|(k, (f, _))| (k, f)).collect())
}

fn served(f: &FileSource<'_>) -> Result<(String, ServedFile), String> {
    let a = f.artifact;
    let Some(info) = &a.file else {
        return Err("bundle.json gives it no file title".into());
    };
    let m = match oci::parse_node(a.digest, f.media_type, f.manifest) {
        Ok(oci::Node::Manifest(m)) => m,
        Ok(oci::Node::Index(_)) => return Err("its root is an index, not a manifest".into()),
        Err(e) => return Err(format!("its manifest does not parse: {e}")),
    };
    let titled: Vec<&oci::Descriptor> = m
        .layers
        .iter()
        .filter(|l| l.annotations.get(oci::ANN_TITLE) == Some(&info.title))
        .collect();
    let [layer] = titled.as_slice() else {
        return Err(format!(
            "{} of its layers are titled {:?}, not one",
            titled.len(),
            info.title
        ));
    };
    let (content_type, download) = if info.directory {
        ("application/x-tar", format!("{}.tar", info.title))
    } else {
        (content_type(&info.title), info.title.clone())
    };
    Ok((
        info.title.clone(),
        ServedFile {
            digest: layer.digest,
            content_type,
            disposition: disposition(&download),
        },
    ))
}

/// A content type from a file name's extension; anything unknown is
/// `application/octet-stream`. HTML is deliberately not in the table: a
/// browser would render it from this host.
pub(super) fn content_type(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "sh" | "bash" => "text/x-shellscript; charset=utf-8",
        "txt" | "md" | "asc" | "sha256" | "sha512" | "sum" => "text/plain; charset=utf-8",
        "yaml" | "yml" => "application/yaml",
        "json" => "application/json",
        "toml" => "application/toml",
        "pem" | "crt" | "cer" => "application/x-pem-file",
        "tar" => "application/x-tar",
        "gz" | "tgz" => "application/gzip",
        "zst" => "application/zstd",
        "xz" => "application/x-xz",
        "bz2" => "application/x-bzip2",
        "zip" => "application/zip",
        "deb" => "application/vnd.debian.binary-package",
        "rpm" => "application/x-rpm",
        "iso" => "application/x-iso9660-image",
        _ => "application/octet-stream",
    }
}

/// `attachment; filename="…"` with the last path component of `name`,
/// every character outside printable ASCII (and `"`, `\`) replaced by `_`;
/// when that changed anything, the exact name follows as RFC 8187
/// `filename*=UTF-8''…`.
pub(super) fn disposition(name: &str) -> String {
    let base = name.rsplit('/').next().unwrap_or(name);
    let plain: String = base
        .chars()
        .map(|c| match c {
            '"' | '\\' => '_',
            ' '..='~' => c,
            _ => '_',
        })
        .collect();
    if plain == base {
        format!("attachment; filename=\"{plain}\"")
    } else {
        format!(
            "attachment; filename=\"{plain}\"; filename*=UTF-8''{}",
            percent_encode(base)
        )
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub(super) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(
            content_type("install.sh"),
            "text/x-shellscript; charset=utf-8"
        );
        assert_eq!(content_type("VALUES.YAML"), "application/yaml");
        assert_eq!(content_type("index.html"), "application/octet-stream");
        assert_eq!(content_type("noext"), "application/octet-stream");
    }

    #[test]
    fn dispositions_never_carry_quotes_paths_or_controls() {
        assert_eq!(
            disposition("install.sh"),
            "attachment; filename=\"install.sh\""
        );
        assert_eq!(
            disposition("a/b\"c\r\nd.txt"),
            "attachment; filename=\"b_c__d.txt\"; filename*=UTF-8''b%22c%0D%0Ad.txt"
        );
        assert_eq!(
            disposition("notes é.txt"),
            "attachment; filename=\"notes _.txt\"; filename*=UTF-8''notes%20%C3%A9.txt"
        );
    }
}
