//! Volumes: the plan that cuts members into files of at most a given size
//! (on member boundaries, splitting only members larger than a volume),
//! the `ferry-volume.json` header that opens every volume after the first,
//! and the names of the volume files and their `sha256sum -c` sidecar.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::write::padding;
use super::{ArchiveError, BLOCK};
use crate::base::digest::Digest;
use crate::format::bundle::{Bundle, Member, Piece, VolumeInfo, VolumePlan};
use crate::format::sign::SIGNATURE_MAX_BYTES;

/// Member name of the small header that opens every volume after the first.
pub const VOLUME_HEADER_PATH: &str = "ferry-volume.json";
/// The largest `ferry-volume.json` ferry reads.
pub(super) const VOLUME_HEADER_MAX: u64 = 4096;
/// The most data a `ferry-volume.json` that ferry writes holds: it fits
/// one block.
const VOLUME_HEADER_DATA_MAX: u64 = BLOCK;
/// The smallest part a split member is cut into; less room than this in a
/// volume starts the next volume instead.
const MIN_PART: u64 = 64 * 1024;
/// The smallest volume size accepted.
pub const MIN_VOLUME_SIZE: u64 = 1 << 20;

/// `ferry-volume.json`: says which bundle and which volume a file is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeHeader {
    /// Always `ferry-volume`.
    pub format: String,
    /// The bundle's volume-set id (bundle.json `volumes.id`).
    pub id: Digest,
    /// This volume's number, from 1.
    pub volume: usize,
    /// How many volumes the set has.
    pub volumes: usize,
}

impl VolumeHeader {
    pub(super) fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).unwrap_or_default();
        v.push(b'\n');
        v
    }
}

/// The file name of volume `n` (from 1) of the archive `out`: `OUT.001`.
pub fn volume_path(out: &Path, n: usize) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(format!(".{n:03}"));
    PathBuf::from(s)
}

/// The coreutils-format checksum file written beside a split archive.
pub fn sidecar_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".sha256");
    PathBuf::from(s)
}

/// Bytes a member takes in a tar: header, data, padding.
pub(super) fn tar_bytes(size: u64) -> u64 {
    BLOCK + size + padding(size)
}

/// How members are laid into a volume file, which decides what each one
/// costs against the volume size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framing {
    /// A plain tar: a member takes its header, data and padding.
    Plain,
    /// zstd volumes: each member in frames of its own, with its
    /// seek-table entries. `measured` holds what whole members really take
    /// (by path, from [`compressed::measure`](super::compressed::measure));
    /// anything else (bundle.json, parts of a split member) is priced at
    /// zstd's worst case, so a volume never exceeds the size.
    Zstd {
        /// Each whole member's exact size as frames, by member path.
        measured: HashMap<String, u64>,
    },
}

impl Framing {
    /// The most bytes a tar member with `size` bytes of data takes.
    pub fn member(&self, size: u64) -> u64 {
        match self {
            Framing::Plain => tar_bytes(size),
            Framing::Zstd { .. } => super::compressed::framed_bound(tar_bytes(size)),
        }
    }

    /// What the whole member `m` takes: measured, or at most.
    fn whole(&self, m: &Member) -> u64 {
        match self {
            Framing::Zstd { measured } => measured
                .get(&m.path)
                .copied()
                .unwrap_or_else(|| self.member(m.size)),
            Framing::Plain => self.member(m.size),
        }
    }

    /// The most bytes a volume spends after its last member: the
    /// end-of-archive marker (and, for zstd, the seek table's frame).
    pub fn end(&self) -> u64 {
        match self {
            Framing::Plain => 2 * BLOCK,
            Framing::Zstd { .. } => {
                super::compressed::framed_bound(2 * BLOCK) + super::compressed::SEEK_TABLE_FIXED
            }
        }
    }

    /// What volume 1 spends on bundle.json (`bundle_len` bytes) and, when
    /// signed, the signature.
    pub fn head(&self, bundle_len: u64, signed: bool) -> u64 {
        let sig = match signed {
            true => self.member(SIGNATURE_MAX_BYTES),
            false => 0,
        };
        match self {
            // The plain plan reserves a whole block of padding.
            Framing::Plain => BLOCK + bundle_len + BLOCK + sig,
            Framing::Zstd { .. } => self.member(bundle_len) + sig,
        }
    }

    /// The largest part (a multiple of the block size) of a split member
    /// whose tar member fits in `room` bytes.
    fn largest_part(&self, room: u64) -> u64 {
        match self {
            Framing::Plain => room.saturating_sub(BLOCK) / BLOCK * BLOCK,
            Framing::Zstd { .. } => {
                // The cost only grows with the size: search for the
                // largest block count that fits.
                let (mut lo, mut hi) = (0u64, room / BLOCK + 1);
                while lo + 1 < hi {
                    let mid = lo + (hi - lo) / 2;
                    if self.member(mid * BLOCK) <= room {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
                lo * BLOCK
            }
        }
    }
}

/// Cuts `members` into volumes of at most `max_size` bytes each, pricing
/// each member by `framing`. `head` is what volume 1 spends on
/// bundle.json and the signature ([`Framing::head`]). Members are never
/// split unless larger than a whole volume; such a member fills the rest
/// of the volume it starts in and continues in the next.
pub fn plan_volumes(
    members: &[Member],
    max_size: u64,
    head: u64,
    framing: &Framing,
) -> Result<Vec<VolumeInfo>, ArchiveError> {
    let too_small = |need: u64, what: String| ArchiveError::VolumeTooSmall {
        max_size,
        need,
        what,
    };
    if max_size < MIN_VOLUME_SIZE {
        return Err(too_small(
            MIN_VOLUME_SIZE,
            "the smallest volume ferry writes".into(),
        ));
    }
    let end = framing.end();
    let mut volumes = vec![VolumeInfo { pieces: Vec::new() }];
    let mut used = head;
    if used + end > max_size {
        return Err(too_small(
            used + end,
            "bundle.json and the signature".into(),
        ));
    }
    // A later volume opens with its ferry-volume.json (under a block).
    let empty = framing.member(VOLUME_HEADER_DATA_MAX);
    for m in members {
        let need = framing.whole(m);
        let whole = Piece {
            member: m.path.clone(),
            offset: 0,
            size: m.size,
            part: None,
        };
        if used + need + end <= max_size {
            used += need;
        } else if empty + need + end <= max_size {
            volumes.push(VolumeInfo { pieces: Vec::new() });
            used = empty + need;
        } else {
            // Larger than a volume: fill this one, then whole volumes.
            let mut at = 0;
            let mut part = 1;
            while at < m.size {
                let room = framing.largest_part(max_size.saturating_sub(used + end));
                if room < MIN_PART.min(m.size - at) {
                    volumes.push(VolumeInfo { pieces: Vec::new() });
                    used = empty;
                    continue;
                }
                let len = room.min(m.size - at);
                if let Some(v) = volumes.last_mut() {
                    v.pieces.push(Piece {
                        member: m.path.clone(),
                        offset: at,
                        size: len,
                        part: Some(part),
                    });
                }
                used += framing.member(len);
                at += len;
                part += 1;
            }
            continue;
        }
        if let Some(v) = volumes.last_mut() {
            v.pieces.push(whole);
        }
    }
    Ok(volumes)
}

/// Adds a volume plan to `bundle` for volumes of at most `max_size`
/// bytes, pricing members by `framing`. Volume 1
/// must also hold bundle.json (which holds the plan) and the signature, so
/// the plan is made with room reserved for them and made again until the
/// room suffices.
pub fn plan_into(
    bundle: &mut Bundle,
    max_size: u64,
    signed: bool,
    framing: &Framing,
) -> Result<(), ArchiveError> {
    let key = (&bundle.name, &bundle.artifacts, &bundle.members, max_size);
    // Plain and zstd volumes of the same content are different sets.
    let id = Digest::of(
        &match framing {
            Framing::Plain => serde_json::to_vec(&key),
            Framing::Zstd { .. } => serde_json::to_vec(&(key, "zstd")),
        }
        .unwrap_or_default(),
    );
    bundle.format_version = bundle
        .format_version
        .max(crate::format::bundle::FORMAT_VERSION_VOLUMES);
    let mut head = framing.head(bundle.to_bytes().len() as u64, signed);
    for _ in 0..8 {
        let volumes = plan_volumes(&bundle.members, max_size, head, framing)?;
        bundle.volumes = Some(VolumePlan {
            id,
            max_size,
            volumes,
        });
        let need = framing.head(bundle.to_bytes().len() as u64, signed);
        if need <= head {
            return Ok(());
        }
        head = need + 4096;
    }
    Err(ArchiveError::VolumeTooSmall {
        max_size,
        need: head,
        what: "bundle.json".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::bundle::{self, Bundle, OCI_LAYOUT_PATH};

    fn member(n: u8, size: u64) -> Member {
        let d = Digest::of(&[n]);
        Member {
            path: d.blob_path(),
            digest: d,
            size,
        }
    }

    /// The tar bytes a planned volume takes, as the writer lays it out.
    fn volume_bytes(v: usize, vol: &VolumeInfo, head: u64) -> u64 {
        let fixed = if v == 0 {
            head
        } else {
            tar_bytes(VOLUME_HEADER_DATA_MAX)
        };
        fixed + vol.pieces.iter().map(|p| tar_bytes(p.size)).sum::<u64>() + 2 * BLOCK
    }

    #[test]
    fn volume_plan_keeps_every_volume_under_the_size_and_splits_only_oversized_members() {
        let max = 1 << 20;
        let head = 8192;
        let members: Vec<Member> = [100, 300_000, 700_000, 3_500_000, 10, 1_040_000, 500_000, 0]
            .iter()
            .enumerate()
            .map(|(i, &s)| member(i as u8, s))
            .collect();
        let plan = plan_volumes(&members, max, head, &Framing::Plain).unwrap();
        for (v, vol) in plan.iter().enumerate() {
            assert!(volume_bytes(v, vol, head) <= max, "volume {}", v + 1);
        }
        let parts: Vec<&Piece> = plan
            .iter()
            .flat_map(|v| &v.pieces)
            .filter(|p| p.part.is_some())
            .collect();
        assert!(parts.iter().all(|p| p.member == members[3].path));
        assert_eq!(parts.iter().map(|p| p.size).sum::<u64>(), 3_500_000);
        // The plan is what bundle.json validation accepts.
        let mut all = vec![
            Member {
                path: OCI_LAYOUT_PATH.into(),
                digest: Digest::of(b"l"),
                size: 30,
            },
            Member {
                path: bundle::INDEX_PATH.into(),
                digest: Digest::of(b"i"),
                size: 300,
            },
        ];
        all.extend(members);
        let plan = plan_volumes(&all, max, head, &Framing::Plain).unwrap();
        let bundle = Bundle {
            format: bundle::FORMAT.into(),
            format_version: bundle::FORMAT_VERSION_VOLUMES,
            tool: bundle::Tool {
                name: "ferry".into(),
                version: "0".into(),
            },
            name: "t".into(),
            created: None,
            artifacts: Vec::new(),
            members: all,
            volumes: Some(bundle::VolumePlan {
                id: Digest::of(b"id"),
                max_size: max,
                volumes: plan,
            }),
            delta: None,
            referrers: Vec::new(),
        };
        assert!(Bundle::from_slice(&bundle.to_bytes()).is_ok());
        // A plan that drops a piece is refused.
        let mut broken = bundle.clone();
        if let Some(p) = &mut broken.volumes {
            p.volumes[1].pieces.remove(0);
        }
        let e = Bundle::from_slice(&broken.to_bytes()).unwrap_err();
        assert!(e.to_string().contains("inconsistent volume plan"), "{e}");
    }

    #[test]
    fn volume_plan_refuses_a_size_that_cannot_hold_bundle_json() {
        let e = plan_volumes(&[member(1, 10)], 1 << 20, 2 << 20, &Framing::Plain).unwrap_err();
        assert!(
            e.to_string().contains("bundle.json and the signature"),
            "{e}"
        );
        let e = plan_volumes(&[member(1, 10)], 1000, 0, &Framing::Plain).unwrap_err();
        assert!(e.to_string().contains("too small"), "{e}");
    }
}
