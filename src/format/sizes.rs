//! What images take unpacked, told cheaply: each layer's uncompressed size
//! from a few bytes at its ends ([`estimate`]: a gzip trailer's ISIZE,
//! lifted past 4 GiB when the compressed size proves it; a zstd frame
//! header's content size; an uncompressed tar's own size), and the walk of
//! an image's documents down to its manifests, one per platform
//! ([`walk`]); and size strings as the command line and the spec write
//! them ([`parse_size`]). It reads nothing itself: callers hand it
//! positioned reads of a layer and a reader of documents, so the bundle
//! report (an archive's members) and `pack` (a cache or a local layout)
//! share it.

use std::collections::HashSet;
use std::io::{self, Read};

use serde::Serialize;

use crate::base::digest::Digest;
use crate::format::oci::{self, Descriptor, Node};

/// What a set of layers unpacks to, as far as can be told without
/// decompressing them: `bytes` is the sum over the layers whose size is
/// known; `approximate` says some of those are estimates (a gzip trailer's
/// ISIZE, a zstd frame header's content size); `unknown` counts the layers
/// whose size cannot be told cheaply (left out of `bytes`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Uncompressed {
    /// Known bytes.
    pub bytes: u64,
    /// Whether any part of `bytes` is an estimate.
    pub approximate: bool,
    /// Layers whose size is known (exactly or about).
    pub known: usize,
    /// Layers whose uncompressed size is unknown.
    pub unknown: usize,
}

impl Uncompressed {
    /// Adds one layer's size.
    pub fn add(&mut self, e: Estimate) {
        match e {
            Estimate::Exact(n) => {
                self.bytes += n;
                self.known += 1;
            }
            Estimate::About(n) => {
                self.bytes += n;
                self.known += 1;
                self.approximate = true;
            }
            Estimate::Unknown => self.unknown += 1,
        }
    }

    /// As printed: the size, `≈` an estimate, `≥` some layers unknown (the
    /// known ones counted), or `unknown`.
    pub fn shown(&self) -> String {
        match (self.known, self.unknown, self.approximate) {
            (0, n, _) if n > 0 => "unknown".into(),
            (_, n, _) if n > 0 => format!("≥ {}", human(self.bytes)),
            (_, _, true) => format!("≈ {}", human(self.bytes)),
            _ => human(self.bytes),
        }
    }
}

/// Byte counts in binary units, as the command line prints them
/// (`512 B`, `1.5 KiB`, `200.0 MiB`).
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    match UNITS.get(u) {
        Some(unit) if u > 0 => format!("{v:.1} {unit}"),
        _ => format!("{bytes} B"),
    }
}

/// One layer's uncompressed size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Estimate {
    /// The layer is an uncompressed tar: its own size.
    Exact(u64),
    /// From a gzip trailer or a zstd frame header.
    About(u64),
    /// Not known without decompressing.
    Unknown,
}

/// Positioned reads of one layer's bytes: fills the buffer from the
/// offset on, or fails.
pub type ReadAt<'a> = &'a dyn Fn(u64, &mut [u8]) -> io::Result<()>;

/// Layer media types that are an uncompressed tar.
pub fn is_plain_tar(media_type: &str) -> bool {
    matches!(
        media_type,
        oci::OCI_LAYER_TAR
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar"
    )
}

/// Annotations of layers made of many gzip members or zstd frames, whose
/// trailer or first header tells nothing of the whole.
const MULTI_PART: [&str; 2] = [
    "containerd.io/snapshot/stargz/toc.digest",
    "io.github.containers.zstd-chunked.manifest-checksum",
];

/// What `layer` unpacks to, from a few bytes at its ends at most. `bytes`
/// reads the layer's own bytes by position (`layer.size` of them), when
/// they are at hand.
pub fn estimate(layer: &Descriptor, bytes: Option<ReadAt<'_>>) -> Estimate {
    let size = layer.size;
    let head = bytes.and_then(|read| {
        let mut buf = vec![0u8; size.min(18) as usize];
        read(0, &mut buf).ok().map(|()| buf)
    });
    if MULTI_PART
        .iter()
        .any(|k| layer.annotations.contains_key(*k))
    {
        return Estimate::Unknown;
    }
    let Some((read, head)) = bytes.zip(head) else {
        // Not readable by position (a compressed archive, or a blob a delta
        // leaves out): the media type alone.
        return match is_plain_tar(&layer.media_type) {
            true => Estimate::Exact(size),
            false => Estimate::Unknown,
        };
    };
    if head.starts_with(&[0x1f, 0x8b]) {
        let mut isize = [0u8; 4];
        if size < 18 || read(size - 4, &mut isize).is_err() {
            return Estimate::Unknown;
        }
        return Estimate::About(gzip_size(u32::from_le_bytes(isize), size));
    }
    if head.starts_with(&crate::format::archive::form::ZSTD_MAGIC) {
        return zstd_content_size(&head).map_or(Estimate::Unknown, Estimate::About);
    }
    // Neither gzip nor zstd: a tar is its own size.
    match is_plain_tar(&layer.media_type) || is_tar(read, size) {
        true => Estimate::Exact(size),
        false => Estimate::Unknown,
    }
}

/// What `layer` unpacks to, counted exactly: its bytes, read from `r` to
/// the end, streamed through a gzip (any number of members) or zstd (any
/// number of frames) decoder into nothing, in bounded memory (the
/// decoders' buffers and a zstd window of at most 128 MiB). An
/// uncompressed tar is its own size; bytes that are none of these are
/// read through (so a verifying reader sees them all) and unknown.
pub fn count(layer: &Descriptor, r: &mut dyn Read) -> io::Result<Estimate> {
    let mut head = Vec::with_capacity(262);
    (&mut *r).take(262).read_to_end(&mut head)?;
    let mut all = io::Cursor::new(head.as_slice()).chain(&mut *r);
    let sink = &mut io::sink();
    let e = if head.starts_with(&[0x1f, 0x8b]) {
        Estimate::Exact(io::copy(
            &mut flate2::read::MultiGzDecoder::new(&mut all),
            sink,
        )?)
    } else if head.starts_with(&crate::format::archive::form::ZSTD_MAGIC) {
        let mut d = zstd::stream::read::Decoder::new(&mut all)?;
        d.window_log_max(27)?;
        Estimate::Exact(io::copy(&mut d, sink)?)
    } else if is_plain_tar(&layer.media_type) || head.get(257..262) == Some(&b"ustar"[..]) {
        Estimate::Exact(io::copy(&mut all, sink)?)
    } else {
        io::copy(&mut all, sink)?;
        Estimate::Unknown
    };
    // Whatever a decoder left unread, to the end, so that a verifying
    // reader underneath checks the whole blob.
    io::copy(&mut all, sink)?;
    Ok(e)
}

/// Whether the bytes start with a ustar header (`ustar` at 257).
fn is_tar(read: ReadAt<'_>, size: u64) -> bool {
    let mut magic = [0u8; 5];
    size >= 512 && read(257, &mut magic).is_ok() && &magic == b"ustar"
}

/// The most bytes deflate makes from one (a 258-byte match in as little
/// as two bits, with some slack).
const DEFLATE_MAX_RATIO: u64 = 1032;

/// The uncompressed size of a one-member gzip of `compressed` bytes whose
/// trailer says `isize` (the size modulo 2^32): the smallest size with that
/// remainder that deflate could have made `compressed` bytes from (stored
/// blocks add 5 bytes per 65,535, the gzip frame 18). When that would take
/// more than deflate can make of `compressed` bytes, the trailer is not a
/// wrapped size but the last of several members: then at least what the
/// compressed size proves (the bytes less the framing).
pub fn gzip_size(isize: u32, compressed: u64) -> u64 {
    let overhead = 18 + 5 * (compressed / 65_535 + 1);
    let floor = compressed.saturating_sub(overhead);
    let n = u64::from(isize);
    if n >= floor {
        return n;
    }
    let lifted = n + ((floor - n).div_ceil(1 << 32) << 32);
    match lifted <= compressed.saturating_mul(DEFLATE_MAX_RATIO) {
        true => lifted,
        false => floor,
    }
}

/// The content size a zstd frame header declares, when it declares one
/// (the first frame's: the whole layer's when it is one frame).
pub fn zstd_content_size(head: &[u8]) -> Option<u64> {
    let fhd = *head.get(4)?;
    let single_segment = fhd & 0x20 != 0;
    let did = [0usize, 1, 2, 4][usize::from(fhd & 0x03)];
    let fcs = match fhd >> 6 {
        0 if single_segment => 1,
        0 => return None,
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let at = 5 + usize::from(!single_segment) + did;
    let field = head.get(at..at + fcs)?;
    let mut v = [0u8; 8];
    v[..fcs].copy_from_slice(field);
    let n = u64::from_le_bytes(v);
    Some(if fcs == 2 { n + 256 } else { n })
}

/// The largest file FAT32 holds: 4 GiB less one byte.
pub const FAT32_MAX: u64 = (4 << 30) - 1;

/// Parses a size with an optional unit: `700M`, `4G`, `1.5GiB`, `4000MB`,
/// or `fat32`. K, M, G, T and KiB… are powers of 1024; KB, MB, GB, TB are
/// powers of 1000.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("fat32") {
        return Ok(FAT32_MAX);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (try 700M, 4G or fat32)"))?;
    let mult: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KIB" => 1 << 10,
        "M" | "MIB" => 1 << 20,
        "G" | "GIB" => 1 << 30,
        "T" | "TIB" => 1 << 40,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => {
            return Err(format!(
                "{s:?} has an unknown unit (use K, M, G, T, KiB…, KB…)"
            ))
        }
    };
    let v = n * mult as f64;
    if !v.is_finite() || v < 1.0 || v > u64::MAX as f64 {
        return Err(format!("{s:?} is not a usable size"));
    }
    Ok(v as u64)
}

/// One platform of an image: one image manifest, and what it takes.
#[derive(Debug, Clone, Serialize)]
pub struct PlatformSize {
    /// `os/arch[/variant]`, or empty when neither the index nor bundle.json
    /// says.
    pub platform: String,
    /// The manifest's digest.
    pub digest: Digest,
    /// Its layers.
    pub layers: usize,
    /// Config and layers, as a pull transfers them.
    pub compressed: u64,
    /// Config and layers, unpacked (the config counts at its own size).
    pub uncompressed: Uncompressed,
}

impl PlatformSize {
    /// What manifest `m` takes, each layer's uncompressed size told by
    /// `estimate_of`.
    pub fn of(m: &ManifestSeen, estimate_of: &dyn Fn(&Descriptor) -> Estimate) -> PlatformSize {
        let mut p = PlatformSize {
            platform: m.platform.clone(),
            digest: m.digest,
            layers: m.layers.len(),
            compressed: m.config.size,
            uncompressed: Uncompressed {
                bytes: m.config.size,
                ..Default::default()
            },
        };
        for l in &m.layers {
            p.compressed += l.size;
            p.uncompressed.add(estimate_of(l));
        }
        p
    }
}

/// One image manifest met under a root.
#[derive(Debug, Clone)]
pub struct ManifestSeen {
    /// `os/arch[/variant]` from the index's descriptor (or the one
    /// bundle.json records for a single manifest), or empty.
    pub platform: String,
    /// The manifest's digest.
    pub digest: Digest,
    /// Its config.
    pub config: Descriptor,
    /// Its layers.
    pub layers: Vec<Descriptor>,
}

/// What walking one artifact found.
#[derive(Debug, Clone, Default)]
pub struct Walked {
    /// Every manifest under the root, in index order.
    pub manifests: Vec<ManifestSeen>,
    /// The root's subject and artifact type.
    pub subject: Option<(Digest, String)>,
    /// Why the graph could not be walked whole (what was met before is
    /// kept).
    pub problem: Option<String>,
}

/// Walks the graph under `root`, reading each document with `read` (which
/// checks it against its digest and parses it). A single manifest at the
/// root gets `platform`.
pub fn walk(
    root: &Descriptor,
    platform: String,
    read: &(dyn Fn(&Descriptor) -> Result<Node, String> + Sync),
) -> Walked {
    let mut w = Walked::default();
    let mut walked = HashSet::new();
    if let Err(e) = visit(read, root, platform, 0, true, &mut walked, &mut w) {
        w.problem = Some(e);
    }
    w
}

fn visit(
    read: &(dyn Fn(&Descriptor) -> Result<Node, String> + Sync),
    d: &Descriptor,
    platform: String,
    depth: usize,
    root: bool,
    walked: &mut HashSet<Digest>,
    w: &mut Walked,
) -> Result<(), String> {
    if depth > oci::MAX_DEPTH {
        return Err(format!(
            "indexes nest deeper than {} levels at {}",
            oci::MAX_DEPTH,
            d.digest
        ));
    }
    if !walked.insert(d.digest) {
        return Ok(());
    }
    match read(d)? {
        Node::Index(i) => {
            if root {
                w.subject = i
                    .subject
                    .as_ref()
                    .map(|s| (s.digest, i.artifact_type.clone().unwrap_or_default()));
            }
            for c in &i.manifests {
                let p = c
                    .platform
                    .as_ref()
                    .map(|p| p.to_platform().to_string())
                    .unwrap_or_default();
                visit(read, c, p, depth + 1, false, walked, w)?;
            }
        }
        Node::Manifest(m) => {
            if root {
                w.subject = m.subject.as_ref().map(|s| {
                    let t = m
                        .artifact_type
                        .clone()
                        .unwrap_or_else(|| m.config.media_type.clone());
                    (s.digest, t)
                });
            }
            w.manifests.push(ManifestSeen {
                platform,
                digest: d.digest,
                config: m.config,
                layers: m.layers,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_size("700M"), Ok(700 << 20));
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("4000MB"), Ok(4_000_000_000));
        assert_eq!(parse_size("fat32"), Ok(FAT32_MAX));
        assert_eq!(parse_size("12345"), Ok(12345));
        assert!(parse_size("4X").is_err());
        assert!(parse_size("G").is_err());
        assert!(parse_size("0").is_err());
    }

    fn layer(media_type: &str) -> Descriptor {
        Descriptor::new(media_type, Digest::of(b""), 0)
    }

    #[test]
    fn count_decompresses_every_gzip_member_and_zstd_frame() {
        use std::io::Write;
        let data = vec![5u8; 300_000];
        let gz = |d: &[u8]| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(d).unwrap();
            e.finish().unwrap()
        };
        // Two gzip members: the trailer tells only the last one's size.
        let two = [gz(&data), gz(&data[..1000])].concat();
        let l = layer(oci::OCI_LAYER_GZIP);
        assert_eq!(count(&l, &mut &two[..]).unwrap(), Estimate::Exact(301_000));
        // Two zstd frames.
        let z = [
            zstd::bulk::compress(&data, 3).unwrap(),
            zstd::bulk::compress(&data[..7], 3).unwrap(),
        ]
        .concat();
        assert_eq!(count(&l, &mut &z[..]).unwrap(), Estimate::Exact(300_007));
        // An uncompressed tar by its media type; anything else is unknown.
        let plain = layer(oci::OCI_LAYER_TAR);
        assert_eq!(
            count(&plain, &mut &data[..]).unwrap(),
            Estimate::Exact(300_000)
        );
        assert_eq!(count(&l, &mut &data[..]).unwrap(), Estimate::Unknown);
        // A damaged stream is an error, never a size.
        let mut bad = gz(&data);
        let mid = bad.len() / 2;
        bad[mid] ^= 0xff;
        assert!(count(&l, &mut &bad[..]).is_err());
    }

    #[test]
    fn gzip_isize_is_lifted_past_4_gib_when_the_compressed_size_needs_it() {
        assert_eq!(gzip_size(1000, 500), 1000);
        // A 5 GiB layer of incompressible data: ISIZE wrapped once.
        let five = 5u64 << 30;
        let wrapped = (five % (1 << 32)) as u32;
        assert_eq!(gzip_size(wrapped, five + 1000), five);
        // Well-compressed data over 4 GiB cannot be told apart: the floor.
        assert_eq!(gzip_size(wrapped, 1 << 20), u64::from(wrapped));
        // A trailer below the compressed size in a layer too small to hide
        // 4 GiB: several members, the trailer only the last one's. At
        // least the compressed bytes less the framing, never 4 GiB more.
        assert_eq!(gzip_size(100, 30_000), 30_000 - 23);
        // Compressible data just over 4 GiB in 64 MiB is still lifted.
        let wrapped = ((4u64 << 30) + 100 - (1 << 32)) as u32 + (100 << 20);
        assert_eq!(gzip_size(wrapped, 200 << 20), (4 << 30) + 100 + (100 << 20));
    }

    #[test]
    fn zstd_frame_header_content_size_is_read_when_declared() {
        let data = vec![7u8; 100_000];
        let z = zstd::bulk::compress(&data, 3).unwrap();
        assert_eq!(zstd_content_size(&z[..18.min(z.len())]), Some(100_000));
        // A header without a content size (streamed).
        let no_size = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x58, 0, 0, 0, 0];
        assert_eq!(zstd_content_size(&no_size), None);
        // Two-byte field: value + 256.
        let two = [0x28, 0xb5, 0x2f, 0xfd, 0x40, 0x58, 0x10, 0x00];
        assert_eq!(zstd_content_size(&two), Some(0x10 + 256));
        assert_eq!(zstd_content_size(&[0x28, 0xb5]), None);
    }
}
