//! The tar reader's checks, shared by every form: one header block
//! parsed and validated, each member matched against what bundle.json
//! expects at that position, and the random-access scanner of one file.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::read::Span;
use super::volumes::{VolumeHeader, VOLUME_HEADER_MAX, VOLUME_HEADER_PATH};
use super::write::padding;
use super::{ArchiveError, BLOCK};
use crate::base::digest::COPY_BUF;
use crate::format::bundle::BUNDLE_PATH;

/// A member header as scanned: the path, where its data starts, its size.
pub(crate) struct Header {
    pub(crate) path: String,
    pub(crate) offset: u64,
    pub(crate) size: u64,
}

pub(super) struct Scanner<'a> {
    pub(super) archive: PathBuf,
    file: &'a File,
    file_len: u64,
    pub(super) pos: u64,
}

impl<'a> Scanner<'a> {
    pub(super) fn new(archive: &Path, file: &'a File) -> Result<Scanner<'a>, ArchiveError> {
        Ok(Scanner {
            archive: archive.to_owned(),
            file,
            file_len: file.metadata()?.len(),
            pos: 0,
        })
    }

    /// Reads and parses a `ferry-volume.json` member.
    pub(super) fn volume_header(&mut self, h: &Header) -> Result<VolumeHeader, ArchiveError> {
        if h.size > VOLUME_HEADER_MAX {
            return Err(ArchiveError::TooLarge {
                archive: self.archive.clone(),
                path: h.path.clone(),
                size: h.size,
                limit: VOLUME_HEADER_MAX,
            });
        }
        let bytes = self.read_data(h)?;
        serde_json::from_slice(&bytes).map_err(|e| ArchiveError::NotFerry {
            archive: self.archive.clone(),
            reason: format!("its {VOLUME_HEADER_PATH} is not a ferry volume header ({e})"),
        })
    }

    /// Scans the members of one file against `expected` (tar path, size),
    /// recording each that is well-formed in `found`. `pending` is a header
    /// already read (and skipped). Stops at the first problem.
    pub(super) fn scan_volume(
        &mut self,
        volume: usize,
        expected: &[(String, u64)],
        known: &std::collections::HashSet<&str>,
        mut pending: Option<Header>,
        found: &mut HashMap<String, Span>,
    ) -> Result<(), ArchiveError> {
        let archive = self.archive.clone();
        let mut expected = expected.iter();
        let mut seen = std::collections::HashSet::new();
        loop {
            let already_skipped = pending.is_some();
            let entry = match pending.take() {
                Some(e) => Some(e),
                None => self.next_header()?,
            };
            let Some(entry) = entry else {
                // Proper end of archive: everything listed must have come.
                let rest: Vec<_> = expected.collect();
                if let Some((first, _)) = rest.first() {
                    return Err(ArchiveError::Missing {
                        archive,
                        path: first.clone(),
                        count: rest.len(),
                    });
                }
                return self.check_trailing();
            };
            check_member(&archive, expected.next(), &entry, &seen, known)?;
            if !already_skipped {
                self.skip_data(&entry)?;
            }
            seen.insert(entry.path.clone());
            found.insert(
                entry.path,
                Span {
                    volume,
                    offset: entry.offset,
                    len: entry.size,
                },
            );
        }
    }

    fn truncated(&self, what: String) -> ArchiveError {
        ArchiveError::Truncated {
            archive: self.archive.clone(),
            what,
            file_len: self.file_len,
        }
    }

    /// The next member header, or `None` at a valid end-of-archive marker.
    pub(super) fn next_header(&mut self) -> Result<Option<Header>, ArchiveError> {
        if self.pos >= self.file_len {
            return Err(self.truncated(format!(
                "no end-of-archive marker after byte {} (the archive was cut on a member boundary)",
                self.pos
            )));
        }
        if self.pos + BLOCK > self.file_len {
            return Err(self.truncated(format!("a tar header at byte {} is incomplete", self.pos)));
        }
        let mut block = [0u8; BLOCK as usize];
        self.file.read_exact_at(&mut block, self.pos)?;
        let at = self.pos;
        if block.iter().all(|&b| b == 0) {
            // End marker: a second zero block must follow.
            if self.pos + 2 * BLOCK > self.file_len {
                return Err(self.truncated(format!(
                    "the end-of-archive marker at byte {at} is incomplete"
                )));
            }
            self.file.read_exact_at(&mut block, self.pos + BLOCK)?;
            if block.iter().any(|&b| b != 0) {
                return Err(self.bad(at, "a zero block followed by data".into()));
            }
            self.pos += 2 * BLOCK;
            return Ok(None);
        }
        let (path, size) = parse_header(&self.archive, at, &block)?;
        self.pos += BLOCK;
        Ok(Some(Header {
            path,
            offset: self.pos,
            size,
        }))
    }

    fn bad(&self, offset: u64, reason: String) -> ArchiveError {
        ArchiveError::BadHeader {
            archive: self.archive.clone(),
            offset,
            reason,
        }
    }

    pub(super) fn skip_data(&mut self, e: &Header) -> Result<(), ArchiveError> {
        let end = e.offset + e.size;
        if end > self.file_len {
            return Err(self.truncated(format!(
                "member {} needs {} bytes but only {} are present",
                e.path,
                e.size,
                self.file_len.saturating_sub(e.offset)
            )));
        }
        self.pos = end + padding(e.size);
        Ok(())
    }

    pub(super) fn read_data(&mut self, e: &Header) -> Result<Vec<u8>, ArchiveError> {
        let end = e.offset + e.size;
        if end > self.file_len {
            return Err(self.truncated(format!(
                "member {} needs {} bytes but only {} are present",
                e.path,
                e.size,
                self.file_len.saturating_sub(e.offset)
            )));
        }
        let mut buf = vec![0u8; e.size as usize];
        self.file.read_exact_at(&mut buf, e.offset)?;
        self.pos = end + padding(e.size);
        Ok(buf)
    }

    /// After the end marker only zero padding (tar's record blocking) may follow.
    fn check_trailing(&mut self) -> Result<(), ArchiveError> {
        let mut buf = vec![0u8; COPY_BUF];
        let mut pos = self.pos;
        while pos < self.file_len {
            let n = ((self.file_len - pos) as usize).min(buf.len());
            self.file.read_exact_at(&mut buf[..n], pos)?;
            if let Some(i) = buf[..n].iter().position(|&b| b != 0) {
                return Err(ArchiveError::Trailing {
                    archive: self.archive.clone(),
                    offset: pos + i as u64,
                });
            }
            pos += n as u64;
        }
        Ok(())
    }
}

/// Checks a member header against the one bundle.json expects at that
/// position (`None`: no more are expected), naming what is wrong.
pub(crate) fn check_member(
    archive: &Path,
    expected: Option<&(String, u64)>,
    entry: &Header,
    seen: &std::collections::HashSet<String>,
    known: &std::collections::HashSet<&str>,
) -> Result<(), ArchiveError> {
    let archive = archive.to_owned();
    let path = entry.path.clone();
    let again = seen.contains(&entry.path) || path == BUNDLE_PATH || path == VOLUME_HEADER_PATH;
    let Some((want, want_size)) = expected else {
        return Err(if again {
            ArchiveError::Duplicate { archive, path }
        } else {
            ArchiveError::Unlisted { archive, path }
        });
    };
    if path != *want {
        return Err(if again {
            ArchiveError::Duplicate { archive, path }
        } else if known.contains(path.as_str()) {
            ArchiveError::OutOfOrder {
                archive,
                path,
                expected: want.clone(),
            }
        } else {
            ArchiveError::Unlisted { archive, path }
        });
    }
    if entry.size != *want_size {
        return Err(ArchiveError::Size {
            archive,
            path,
            actual: entry.size,
            declared: *want_size,
        });
    }
    Ok(())
}

/// Validates one non-zero 512-byte header block at byte `at`: checksum,
/// ustar magic, UTF-8 name, regular file, numeric size.
pub(crate) fn parse_header(
    archive: &Path,
    at: u64,
    block: &[u8; BLOCK as usize],
) -> Result<(String, u64), ArchiveError> {
    let bad = |offset: u64, reason: String| ArchiveError::BadHeader {
        archive: archive.to_owned(),
        offset,
        reason,
    };
    let h = tar::Header::from_byte_slice(block);
    let stored = h
        .cksum()
        .map_err(|_| bad(at, "the checksum field is not octal".into()))?;
    let computed: u32 = block[..148]
        .iter()
        .chain(&block[156..])
        .map(|&b| b as u32)
        .sum::<u32>()
        + 8 * 32;
    if stored != computed {
        return Err(bad(
            at,
            format!("checksum {stored} does not match the header's bytes ({computed})"),
        ));
    }
    if h.as_ustar().is_none() {
        return Err(bad(at, "not a POSIX ustar header".into()));
    }
    let path = String::from_utf8(h.path_bytes().into_owned())
        .map_err(|_| bad(at, "the member name is not UTF-8".into()))?;
    let kind = h.entry_type();
    if !kind.is_file() {
        let kind = match kind {
            tar::EntryType::Symlink => "symbolic link".to_owned(),
            tar::EntryType::Link => "hard link".to_owned(),
            tar::EntryType::Char => "character device".to_owned(),
            tar::EntryType::Block => "block device".to_owned(),
            tar::EntryType::Fifo => "FIFO".to_owned(),
            tar::EntryType::Directory => "directory".to_owned(),
            tar::EntryType::XHeader | tar::EntryType::XGlobalHeader => {
                "PAX extended header".to_owned()
            }
            tar::EntryType::GNULongName | tar::EntryType::GNULongLink => {
                "GNU long-name header".to_owned()
            }
            other => format!("tar entry of type {:?}", other.as_byte() as char),
        };
        return Err(ArchiveError::MemberType {
            archive: archive.to_owned(),
            path,
            kind,
        });
    }
    let size = h
        .entry_size()
        .map_err(|_| bad(at, format!("the size field of {path:?} is not a number")))?;
    Ok((path, size))
}
