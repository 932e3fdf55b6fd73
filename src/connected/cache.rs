//! The fetch cache as a whole: where it is, what it records, who may use
//! it when, and pruning it (docs/fetch.md, "The cache").
//!
//! The cache is an OCI layout store (`blobs/sha256/…`, written by
//! `format/layout.rs`) shared by every run, plus `records/`: one small
//! JSON file per name a run resolved (a registry reference to its root
//! manifest; a Helm repository chart version to its archive) and when it
//! was last used. Each record is written whole under a temp name and
//! renamed, so packs running side by side never leave half of one. A
//! `pack` holds a shared lock on the file `lock` for as long as it uses
//! the cache (fetching, then writing the archive from cached blobs);
//! `gc` and `prune` hold it exclusively, so they never remove a blob a
//! running pack has fetched but not yet recorded, or is reading. `gc`
//! keeps what the records reach: every document of a recorded root's
//! graph that is in the cache (checked against its digest and parsed by
//! `oci::parse_node`; index children that were never fetched, such as
//! platforms a filter left out, are skipped) and every config and layer
//! those documents name. Every other blob and every stale temp file goes.
//! A record whose graph cannot be read (its root missing, a document
//! damaged or unparseable) is dropped with the reason, never half kept.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::base::digest::Digest;
use crate::base::error::error_chain;
use crate::format::layout::write_atomic;
use crate::format::oci::{self, Node};

/// The folder of records inside the cache.
pub const RECORDS: &str = "records";

/// The lock file inside the cache.
pub const LOCK: &str = "lock";

/// The largest record file read; ferry's are a few hundred bytes.
const RECORD_MAX_BYTES: u64 = 64 << 10;

/// Errors using the cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The path given as the cache is something else.
    #[error("the cache {0} is not a directory")]
    NotDirectory(PathBuf),
    /// A filesystem operation on the cache failed.
    #[error("cannot use the cache {path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Another process holds the lock, and the caller would not wait.
    #[error("the cache {0} is in use by another ferry (a pack, or a `ferry cache` prune or gc); run again when it is done, or leave out --no-wait to wait for it")]
    Busy(PathBuf),
    /// A record could not be written.
    #[error("cannot record {what} in the cache {dir}")]
    Record {
        /// What the record is of.
        what: String,
        /// The cache.
        dir: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A file could not be removed.
    #[error("cannot remove {path} from the cache")]
    Remove {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// The cache directory when none is named: `$FERRY_CACHE`, else
/// `$XDG_CACHE_HOME/ferry` (an absolute path, as the XDG base directory
/// rules require), else `~/.cache/ferry`. Empty variables count as unset.
pub fn default_dir() -> Option<PathBuf> {
    default_dir_from(|k| std::env::var_os(k))
}

fn default_dir_from(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> Option<PathBuf> {
    let set = |k: &str| var(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(d) = set("FERRY_CACHE") {
        return Some(d);
    }
    if let Some(x) = set("XDG_CACHE_HOME").filter(|p| p.is_absolute()) {
        return Some(x.join("ferry"));
    }
    set("HOME").map(|h| h.join(".cache").join("ferry"))
}

/// Seconds since the Unix epoch, now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What a record is of: the name a run resolved.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum Source {
    /// An image or OCI chart fetched from a registry by this reference.
    Registry {
        /// The normalised reference (`registry/repository:tag`).
        reference: String,
    },
    /// A chart archive downloaded from a classic Helm repository.
    HelmRepo {
        /// The repository URL, without a trailing slash.
        repo: String,
        /// The chart.
        name: String,
        /// The version chosen.
        version: String,
    },
}

impl Source {
    /// A chart from the Helm repository at `repo` (trailing slashes do not
    /// count).
    pub fn helm_repo(repo: &str, name: &str, version: &str) -> Source {
        Source::HelmRepo {
            repo: repo.trim_end_matches('/').to_owned(),
            name: name.to_owned(),
            version: version.to_owned(),
        }
    }

    /// The record's file name: the sha256 of what identifies it, so one
    /// name has one file, whatever characters it holds.
    pub fn file_name(&self) -> String {
        let key = match self {
            Source::Registry { reference } => format!("registry\n{reference}"),
            Source::HelmRepo {
                repo,
                name,
                version,
            } => format!("helm_repo\n{repo}\n{name}\n{version}"),
        };
        format!("{}.json", Digest::of(key.as_bytes()).hex())
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Registry { reference } => f.write_str(reference),
            Source::HelmRepo {
                repo,
                name,
                version,
            } => write!(f, "{name} {version} from {repo}"),
        }
    }
}

/// What a name resolved to when a run last used it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The name.
    #[serde(flatten)]
    pub source: Source,
    /// The root: a manifest or index, or a chart archive.
    pub digest: Digest,
    /// The root's media type.
    pub media_type: String,
    /// The root's size.
    pub size: u64,
    /// The platforms fetched (`None`: all of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platforms: Option<Vec<String>>,
    /// When a run last used it (seconds since the Unix epoch).
    pub last_used: u64,
}

/// Writes (or replaces) `record` in the cache at `dir`: whole, under a
/// temp name renamed into place, so a record is never seen half written.
pub fn write_record(dir: &Path, record: &Record) -> Result<(), CacheError> {
    let err = |source| CacheError::Record {
        what: record.source.to_string(),
        dir: dir.to_owned(),
        source,
    };
    let records = dir.join(RECORDS);
    fs_err::create_dir_all(&records).map_err(err)?;
    let bytes = serde_json::to_vec_pretty(record).map_err(|e| err(io::Error::other(e)))?;
    write_atomic(&records.join(record.source.file_name()), &bytes).map_err(err)
}

/// How a lock is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Shared,
    Exclusive,
}

/// A shared lock on the cache: what `pack` and `ls` hold. Released when
/// dropped.
#[derive(Debug)]
pub struct SharedLock(#[allow(dead_code)] File);

/// The exclusive lock on the cache: what `gc` and `prune` hold. Released
/// when dropped.
#[derive(Debug)]
pub struct ExclusiveLock(#[allow(dead_code)] File);

/// The fetch cache at one directory.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// The cache at `dir`, made when missing (what `pack` does).
    pub fn create(dir: &Path) -> Result<Cache, CacheError> {
        if dir.exists() && !dir.is_dir() {
            return Err(CacheError::NotDirectory(dir.to_owned()));
        }
        fs_err::create_dir_all(dir).map_err(|source| CacheError::Io {
            path: dir.to_owned(),
            source,
        })?;
        Ok(Cache {
            dir: dir.to_owned(),
        })
    }

    /// The cache at `dir` if there is one (nothing is made).
    pub fn open(dir: &Path) -> Result<Option<Cache>, CacheError> {
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => Ok(Some(Cache {
                dir: dir.to_owned(),
            })),
            Ok(_) => Err(CacheError::NotDirectory(dir.to_owned())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CacheError::Io {
                path: dir.to_owned(),
                source,
            }),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Takes the shared lock. When a prune or gc holds the cache, calls
    /// `waiting` and waits for it; without `waiting`, fails with
    /// [`CacheError::Busy`] instead.
    pub fn lock_shared(&self, waiting: Option<&dyn Fn()>) -> Result<SharedLock, CacheError> {
        self.lock(Access::Shared, waiting).map(SharedLock)
    }

    /// Takes the exclusive lock. While any pack (or `ls`) uses the cache,
    /// calls `waiting` and waits for them all; without `waiting`, fails
    /// with [`CacheError::Busy`] instead.
    pub fn lock_exclusive(&self, waiting: Option<&dyn Fn()>) -> Result<ExclusiveLock, CacheError> {
        self.lock(Access::Exclusive, waiting).map(ExclusiveLock)
    }

    fn lock(&self, access: Access, waiting: Option<&dyn Fn()>) -> Result<File, CacheError> {
        let path = self.dir.join(LOCK);
        let io_err = |source| CacheError::Io {
            path: path.clone(),
            source,
        };
        // A cache another user made may be read-only to this one; a lock
        // on a file opened for reading works the same.
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                File::open(&path).map_err(io_err)?
            }
            Err(e) => return Err(io_err(e)),
        };
        let tried = match access {
            Access::Shared => file.try_lock_shared(),
            Access::Exclusive => file.try_lock(),
        };
        match tried {
            Ok(()) => Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => {
                let Some(waiting) = waiting else {
                    return Err(CacheError::Busy(self.dir.clone()));
                };
                waiting();
                match access {
                    Access::Shared => file.lock_shared(),
                    Access::Exclusive => file.lock(),
                }
                .map_err(io_err)?;
                Ok(file)
            }
            Err(std::fs::TryLockError::Error(e)) => Err(io_err(e)),
        }
    }

    /// Reads every record and walks its graph, and lists every file of
    /// the store. Call it holding a lock, so nothing changes meanwhile.
    pub fn survey(&self) -> Result<Survey, CacheError> {
        let store = list_store(&self.dir)?;
        let (records, bad, record_temps, record_others) = list_records(&self.dir)?;
        let mut docs: HashMap<Digest, Doc> = HashMap::new();
        let entries = records
            .into_iter()
            .map(|(file, record)| {
                let graph = walk(&self.dir, &store.blobs, &mut docs, &record);
                Entry {
                    file,
                    record,
                    graph,
                }
            })
            .collect();
        let mut temps = store.temps;
        temps.extend(record_temps);
        let mut others = store.others;
        others.extend(record_others);
        Ok(Survey {
            dir: self.dir.clone(),
            blobs: store.blobs,
            temps,
            others,
            entries,
            bad,
        })
    }
}

/// The cache as found: its blobs, temp files and records, each record's
/// graph walked.
#[derive(Debug)]
pub struct Survey {
    /// The cache directory.
    pub dir: PathBuf,
    /// Every blob in the store, with its size.
    pub blobs: HashMap<Digest, u64>,
    /// Temp files (`.tmp-*`) in the store and among the records, with
    /// their sizes: what an interrupted run left.
    pub temps: Vec<(PathBuf, u64)>,
    /// Files in the store that are neither blobs nor temp files, and
    /// anything among the records that is not a file (left alone).
    pub others: Vec<PathBuf>,
    /// The records, sorted by what they name.
    pub entries: Vec<Entry>,
    /// Record files that cannot be read, and why.
    pub bad: Vec<BadRecord>,
}

/// A record file that cannot be read.
#[derive(Debug, Clone, Serialize)]
pub struct BadRecord {
    /// The file.
    pub file: PathBuf,
    /// Why.
    pub why: String,
}

/// One record and what it reaches.
#[derive(Debug)]
pub struct Entry {
    /// The record's file.
    pub file: PathBuf,
    /// The record.
    pub record: Record,
    /// What it reaches, or why its graph cannot be read.
    pub graph: Result<Graph, String>,
}

/// The blobs a record reaches.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    /// Every blob the record needs, sorted (present in the store or not).
    pub blobs: Vec<Digest>,
    /// Whether it is a Helm chart.
    pub chart: bool,
}

/// One record as `ls`, `prune` and `gc` show it.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    /// `image` or `chart`.
    pub kind: &'static str,
    /// The name.
    #[serde(flatten)]
    pub source: Source,
    /// The root.
    pub digest: Digest,
    /// The root's media type.
    pub media_type: String,
    /// The platforms fetched (absent: all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platforms: Option<Vec<String>>,
    /// Bytes of its whole graph in the cache.
    pub size: u64,
    /// Blobs of its graph in the cache.
    pub blobs: usize,
    /// Blobs its graph names that are not in the cache.
    pub missing: usize,
    /// When a run last used it (seconds since the Unix epoch).
    pub last_used: u64,
    /// Seconds since then.
    pub age_seconds: u64,
    /// Why its graph cannot be read (`gc` drops such a record).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub damaged: Option<String>,
}

/// A count of files and their bytes.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Amount {
    /// Files.
    pub count: usize,
    /// Bytes.
    pub size: u64,
}

impl Amount {
    fn add(&mut self, size: u64) {
        self.count += 1;
        self.size += size;
    }
}

/// What `ls` shows.
#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    /// The cache directory.
    pub cache: PathBuf,
    /// The blobs in the store.
    pub blobs: Amount,
    /// The records.
    pub records: Vec<Listed>,
    /// Blobs no record reaches (what `gc` removes).
    pub unreferenced: Amount,
    /// Temp files an interrupted run left (what `gc` removes).
    pub temp_files: Amount,
    /// Other files in the store, left alone.
    pub other_files: usize,
    /// Record files that cannot be read (what `gc` removes).
    pub bad_records: Vec<BadRecord>,
}

impl Listing {
    /// The listing of a cache that does not exist yet.
    pub fn empty(dir: &Path) -> Listing {
        Listing {
            cache: dir.to_owned(),
            blobs: Amount::default(),
            records: Vec::new(),
            unreferenced: Amount::default(),
            temp_files: Amount::default(),
            other_files: 0,
            bad_records: Vec::new(),
        }
    }
}

impl Survey {
    /// One record as shown, at time `now`.
    pub fn listed(&self, e: &Entry, now: u64) -> Listed {
        let (kind, present, size, missing, damaged) = match &e.graph {
            Ok(g) => {
                let mut present = 0;
                let mut size = 0;
                for d in &g.blobs {
                    if let Some(n) = self.blobs.get(d) {
                        present += 1;
                        size += n;
                    }
                }
                let kind = if g.chart { "chart" } else { "image" };
                (kind, present, size, g.blobs.len() - present, None)
            }
            Err(why) => ("image", 0, 0, 0, Some(why.clone())),
        };
        Listed {
            kind,
            source: e.record.source.clone(),
            digest: e.record.digest,
            media_type: e.record.media_type.clone(),
            platforms: e.record.platforms.clone(),
            size,
            blobs: present,
            missing,
            last_used: e.record.last_used,
            age_seconds: now.saturating_sub(e.record.last_used),
            damaged,
        }
    }

    /// The blobs the records reach, leaving out those `dropped` says go.
    fn reached(&self, dropped: &dyn Fn(&Entry) -> bool) -> HashSet<Digest> {
        let mut keep = HashSet::new();
        for e in &self.entries {
            if let (Ok(g), false) = (&e.graph, dropped(e)) {
                keep.extend(g.blobs.iter().copied());
            }
        }
        keep
    }

    /// What `ls` shows, at time `now`.
    pub fn listing(&self, now: u64) -> Listing {
        let reached = self.reached(&|_| false);
        let mut blobs = Amount::default();
        let mut unreferenced = Amount::default();
        for (d, n) in &self.blobs {
            blobs.add(*n);
            if !reached.contains(d) {
                unreferenced.add(*n);
            }
        }
        let mut temp_files = Amount::default();
        for (_, n) in &self.temps {
            temp_files.add(*n);
        }
        Listing {
            cache: self.dir.clone(),
            blobs,
            records: self.entries.iter().map(|e| self.listed(e, now)).collect(),
            unreferenced,
            temp_files,
            other_files: self.others.len(),
            bad_records: self.bad.clone(),
        }
    }
}

/// A record `gc` dropped, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Dropped {
    /// The record.
    #[serde(flatten)]
    pub record: Listed,
    /// Why it was dropped.
    pub reason: String,
}

/// What `gc` (or `prune`) did, or with `dry_run` would do.
#[derive(Debug, Clone, Serialize)]
pub struct GcReport {
    /// The cache directory.
    pub cache: PathBuf,
    /// Nothing was removed; this is what would be.
    pub dry_run: bool,
    /// Records dropped: those the rule said go, and damaged ones.
    pub dropped: Vec<Dropped>,
    /// Record files that could not be read, removed.
    pub bad_records: Vec<BadRecord>,
    /// Blobs removed.
    pub removed: Amount,
    /// Temp files removed.
    pub temp_files: Amount,
    /// Records kept.
    pub records_kept: usize,
    /// Blobs kept.
    pub kept: Amount,
}

impl GcReport {
    /// The report on a cache that does not exist: nothing to remove.
    pub fn nothing(dir: &Path, dry_run: bool) -> GcReport {
        GcReport {
            cache: dir.to_owned(),
            dry_run,
            dropped: Vec::new(),
            bad_records: Vec::new(),
            removed: Amount::default(),
            temp_files: Amount::default(),
            records_kept: 0,
            kept: Amount::default(),
        }
    }
}

/// Drops the records `drop` names a reason for (with the reason), and
/// those whose graph cannot be read; then removes every blob the records
/// left do not reach, every temp file and every unreadable record file.
/// With `dry_run`, removes nothing and says what would go. Holding the
/// exclusive lock is the proof that no pack is using the cache.
pub fn gc(
    _lock: &ExclusiveLock,
    survey: &Survey,
    drop: &dyn Fn(&Entry) -> Option<String>,
    dry_run: bool,
    now: u64,
) -> Result<GcReport, CacheError> {
    let mut dropped = Vec::new();
    let mut gone: HashSet<PathBuf> = HashSet::new();
    for e in &survey.entries {
        let reason = match &e.graph {
            Err(why) => Some(format!("its graph in the cache cannot be read: {why}")),
            Ok(_) => drop(e),
        };
        if let Some(reason) = reason {
            gone.insert(e.file.clone());
            dropped.push(Dropped {
                record: survey.listed(e, now),
                reason,
            });
        }
    }
    let reached = survey.reached(&|e| gone.contains(&e.file));
    let mut removed = Amount::default();
    let mut kept = Amount::default();
    let mut doomed: Vec<PathBuf> = Vec::new();
    for (d, n) in &survey.blobs {
        if reached.contains(d) {
            kept.add(*n);
        } else {
            removed.add(*n);
            doomed.push(survey.dir.join(d.blob_path()));
        }
    }
    let mut temp_files = Amount::default();
    for (_, n) in &survey.temps {
        temp_files.add(*n);
    }
    if !dry_run {
        // Records first: a gc cut short leaves blobs no record needs (the
        // next gc removes them), never a record whose blobs are gone.
        let records: Vec<&PathBuf> = survey.bad.iter().map(|b| &b.file).chain(&gone).collect();
        remove_all(&records)?;
        let rest: Vec<&PathBuf> = survey.temps.iter().map(|(p, _)| p).chain(&doomed).collect();
        remove_all(&rest)?;
    }
    Ok(GcReport {
        cache: survey.dir.clone(),
        dry_run,
        records_kept: survey.entries.len() - dropped.len(),
        dropped,
        bad_records: survey.bad.clone(),
        removed,
        temp_files,
        kept,
    })
}

/// Files removed at once: unlinking waits on the disk (a filesystem
/// mounted with `discard` trims each freed block), and unlinks issued
/// side by side share those waits; on the 2-core development VM, 3,000
/// files took 9.5 s one at a time and 0.3 s from 8 at once.
const REMOVERS: usize = 16;

/// Removes `paths` (a file already gone is fine), several at once.
fn remove_all(paths: &[&PathBuf]) -> Result<(), CacheError> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failed: std::sync::Mutex<Option<CacheError>> = std::sync::Mutex::new(None);
    let work = || loop {
        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Some(path) = paths.get(i) else { return };
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                let mut f = failed.lock().unwrap_or_else(|p| p.into_inner());
                f.get_or_insert(CacheError::Remove {
                    path: (*path).clone(),
                    source,
                });
                // Stop every remover: nothing more is removed after a failure.
                next.store(paths.len(), std::sync::atomic::Ordering::Relaxed);
                return;
            }
        }
    };
    std::thread::scope(|s| {
        for _ in 0..REMOVERS.min(paths.len().div_ceil(64)) {
            s.spawn(work);
        }
    });
    match failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The store's files.
struct StoreFiles {
    blobs: HashMap<Digest, u64>,
    temps: Vec<(PathBuf, u64)>,
    others: Vec<PathBuf>,
}

/// Lists `blobs/sha256/`: blobs (regular files named by their digest),
/// temp files, and anything else.
fn list_store(dir: &Path) -> Result<StoreFiles, CacheError> {
    let mut out = StoreFiles {
        blobs: HashMap::new(),
        temps: Vec::new(),
        others: Vec::new(),
    };
    let store = dir.join("blobs/sha256");
    let io_err = |path: &Path, source| CacheError::Io {
        path: path.to_owned(),
        source,
    };
    let rd = match std::fs::read_dir(&store) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_err(&store, e)),
    };
    for e in rd {
        let e = e.map_err(|source| io_err(&store, source))?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        let ft = e.file_type().map_err(|source| io_err(&e.path(), source))?;
        if !ft.is_file() {
            out.others.push(e.path());
            continue;
        }
        let size = || match e.metadata() {
            Ok(m) => Ok(m.len()),
            Err(source) => Err(io_err(&e.path(), source)),
        };
        if name.starts_with(".tmp-") {
            out.temps.push((e.path(), size()?));
        } else if let Ok(d) = Digest::from_hex(&name) {
            out.blobs.insert(d, size()?);
        } else {
            out.others.push(e.path());
        }
    }
    Ok(out)
}

/// What `records/` holds: the records (sorted by what they name), the
/// files that are not readable records, temp files, and what is not a
/// file (directories, links: left alone).
type RecordFiles = (
    Vec<(PathBuf, Record)>,
    Vec<BadRecord>,
    Vec<(PathBuf, u64)>,
    Vec<PathBuf>,
);

/// Reads `records/`.
fn list_records(dir: &Path) -> Result<RecordFiles, CacheError> {
    let records_dir = dir.join(RECORDS);
    let io_err = |path: &Path, source| CacheError::Io {
        path: path.to_owned(),
        source,
    };
    let mut records = BTreeMap::new();
    let mut bad = Vec::new();
    let mut temps = Vec::new();
    let mut others = Vec::new();
    let rd = match std::fs::read_dir(&records_dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok((Vec::new(), bad, temps, others))
        }
        Err(e) => return Err(io_err(&records_dir, e)),
    };
    for e in rd {
        let e = e.map_err(|source| io_err(&records_dir, source))?;
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        let ft = e.file_type().map_err(|source| io_err(&path, source))?;
        if !ft.is_file() {
            others.push(path);
            continue;
        }
        if name.starts_with(".tmp-") {
            let size = e.metadata().map_err(|source| io_err(&path, source))?.len();
            temps.push((path, size));
            continue;
        }
        match read_record(&path, &name) {
            Ok(r) => {
                records.insert(r.source.clone(), (path, r));
            }
            Err(why) => bad.push(BadRecord { file: path, why }),
        }
    }
    Ok((records.into_values().collect(), bad, temps, others))
}

fn read_record(path: &Path, name: &str) -> Result<Record, String> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|f| f.take(RECORD_MAX_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() as u64 > RECORD_MAX_BYTES {
        return Err(format!(
            "it is larger than a record may be ({} KiB)",
            RECORD_MAX_BYTES >> 10
        ));
    }
    let r: Record =
        serde_json::from_slice(&bytes).map_err(|e| format!("it is not a ferry record: {e}"))?;
    if r.source.file_name() != name {
        return Err(format!(
            "it holds the record of {}, which ferry keeps in {}",
            r.source,
            r.source.file_name()
        ));
    }
    Ok(r)
}

/// A document of the store, as read once for every record that reaches
/// it.
enum Doc {
    Damaged(String),
    Index(Vec<(Digest, String)>),
    Manifest { parts: Vec<Digest>, chart: bool },
}

fn read_doc(dir: &Path, blobs: &HashMap<Digest, u64>, d: &Digest, declared: &str) -> Doc {
    let Some(&size) = blobs.get(d) else {
        return Doc::Damaged("it is not in the cache".into());
    };
    if size > oci::MANIFEST_MAX_BYTES {
        return Doc::Damaged(format!(
            "it is {size} bytes, more than a manifest may be ({} MiB)",
            oci::MANIFEST_MAX_BYTES >> 20
        ));
    }
    let bytes = match std::fs::read(dir.join(d.blob_path())) {
        Ok(b) => b,
        Err(e) => return Doc::Damaged(format!("cannot read it: {e}")),
    };
    if Digest::of(&bytes) != *d {
        return Doc::Damaged("its bytes do not match its digest".into());
    }
    match oci::parse_node(*d, declared, &bytes) {
        Err(e) => Doc::Damaged(error_chain(&e)),
        Ok(Node::Index(i)) => Doc::Index(
            i.manifests
                .iter()
                .map(|c| (c.digest, c.media_type.clone()))
                .collect(),
        ),
        Ok(Node::Manifest(m)) => Doc::Manifest {
            parts: std::iter::once(&m.config)
                .chain(&m.layers)
                .map(|b| b.digest)
                .collect(),
            chart: m.config.media_type == oci::HELM_CONFIG,
        },
    }
}

/// The blobs `record` reaches. Documents are read and parsed once for
/// all records (`docs`); index children not in the store were never
/// fetched (a platform filter left them out) and are skipped.
fn walk(
    dir: &Path,
    blobs: &HashMap<Digest, u64>,
    docs: &mut HashMap<Digest, Doc>,
    record: &Record,
) -> Result<Graph, String> {
    if let Source::HelmRepo { .. } = record.source {
        return Ok(Graph {
            blobs: vec![record.digest],
            chart: true,
        });
    }
    if !blobs.contains_key(&record.digest) {
        return Err(format!("its root {} is not in the cache", record.digest));
    }
    let mut graph = Graph::default();
    let mut seen = HashSet::new();
    let mut todo = vec![(record.digest, record.media_type.clone(), 0usize)];
    while let Some((d, declared, depth)) = todo.pop() {
        if !seen.insert(d) {
            continue;
        }
        graph.blobs.push(d);
        let doc = docs
            .entry(d)
            .or_insert_with(|| read_doc(dir, blobs, &d, &declared));
        match doc {
            Doc::Damaged(why) => return Err(format!("document {d}: {why}")),
            Doc::Index(children) => {
                if depth >= oci::MAX_DEPTH {
                    return Err(format!(
                        "indexes nest deeper than {} levels at {d}",
                        oci::MAX_DEPTH
                    ));
                }
                for (c, mt) in children.iter() {
                    if blobs.contains_key(c) {
                        todo.push((*c, mt.clone(), depth + 1));
                    }
                }
            }
            Doc::Manifest { parts, chart } => {
                graph.blobs.extend(parts.iter().copied());
                graph.chart |= *chart;
            }
        }
    }
    graph.blobs.sort();
    graph.blobs.dedup();
    Ok(graph)
}

/// The records' sources that `keep` holds, for `prune --keep`: the rule
/// that drops every other record.
pub fn not_kept(keep: &BTreeSet<Source>) -> impl Fn(&Entry) -> Option<String> + '_ {
    move |e: &Entry| {
        (!keep.contains(&e.record.source)).then(|| "no spec given to --keep needs it".to_owned())
    }
}

/// The rule for `prune --older-than`: records last used more than
/// `seconds` before `now` go.
pub fn older_than(seconds: u64, now: u64) -> impl Fn(&Entry) -> Option<String> {
    move |e: &Entry| {
        let age = now.saturating_sub(e.record.last_used);
        (age > seconds).then(|| {
            format!(
                "last used {} ago, longer than {}",
                human_age(age),
                human_age(seconds)
            )
        })
    }
}

/// A span of seconds, roughly, for people: `45s`, `12m`, `5h`, `40d`.
pub fn human_age(seconds: u64) -> String {
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 120 * 60 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::layout::Store;
    use crate::format::oci::{Descriptor, Index, Manifest};

    fn put(store: &Store, bytes: &[u8]) -> Digest {
        store.put(bytes, None, "test").unwrap().0
    }

    fn manifest(store: &Store, seed: &str) -> (Descriptor, Vec<Digest>) {
        let config = put(store, format!("{{\"config\":\"{seed}\"}}").as_bytes());
        let layer = put(store, format!("layer of {seed}").as_bytes());
        let m = Manifest {
            schema_version: 2,
            media_type: Some(oci::OCI_MANIFEST.into()),
            artifact_type: None,
            config: Descriptor::new(oci::OCI_CONFIG, config, 10),
            layers: vec![Descriptor::new(oci::OCI_LAYER_GZIP, layer, 10)],
            subject: None,
            annotations: Default::default(),
        };
        let bytes = oci::to_bytes(&m);
        let d = put(store, &bytes);
        (
            Descriptor::new(oci::OCI_MANIFEST, d, bytes.len() as u64),
            vec![d, config, layer],
        )
    }

    fn record(reference: &str, root: &Descriptor, last_used: u64) -> Record {
        Record {
            source: Source::Registry {
                reference: reference.into(),
            },
            digest: root.digest,
            media_type: root.media_type.clone(),
            size: root.size,
            platforms: None,
            last_used,
        }
    }

    #[test]
    fn the_default_dir_prefers_ferry_cache_then_xdg_then_home() {
        fn env<'a>(pairs: &'a [(&str, &str)]) -> impl Fn(&str) -> Option<std::ffi::OsString> + 'a {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        }
        let all = [
            ("FERRY_CACHE", "/f"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ];
        assert_eq!(default_dir_from(env(&all)), Some(PathBuf::from("/f")));
        let no_ferry = [
            ("FERRY_CACHE", ""),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ];
        assert_eq!(
            default_dir_from(env(&no_ferry)),
            Some(PathBuf::from("/x/ferry"))
        );
        // A relative XDG_CACHE_HOME is invalid by the XDG rules: ignored.
        let relative = [("XDG_CACHE_HOME", "x"), ("HOME", "/h")];
        assert_eq!(
            default_dir_from(env(&relative)),
            Some(PathBuf::from("/h/.cache/ferry"))
        );
        assert_eq!(default_dir_from(env(&[("HOME", "")])), None);
    }

    #[test]
    fn a_shared_lock_keeps_gc_out_until_it_is_released() {
        let t = tempfile::tempdir().unwrap();
        let cache = Cache::create(t.path()).unwrap();
        let pack = cache.lock_shared(None).unwrap();
        let other_pack = cache.lock_shared(None).unwrap();
        let busy = cache.lock_exclusive(None).unwrap_err();
        assert!(matches!(busy, CacheError::Busy(_)), "{busy}");
        drop(pack);
        assert!(cache.lock_exclusive(None).is_err(), "one pack still runs");
        drop(other_pack);
        let gc = cache.lock_exclusive(None).unwrap();
        assert!(matches!(
            cache.lock_shared(None).unwrap_err(),
            CacheError::Busy(_)
        ));
        drop(gc);
        cache.lock_shared(None).unwrap();
    }

    #[test]
    fn records_round_trip_under_their_own_file_names() {
        let t = tempfile::tempdir().unwrap();
        let r = Record {
            source: Source::helm_repo("https://charts.example.com/stable/", "demo", "1.2.3"),
            digest: Digest::of(b"chart"),
            media_type: oci::HELM_CHART.into(),
            size: 5,
            platforms: None,
            last_used: 1_700_000_000,
        };
        write_record(t.path(), &r).unwrap();
        let (records, bad, temps, _) = list_records(t.path()).unwrap();
        assert!(bad.is_empty() && temps.is_empty(), "{bad:?} {temps:?}");
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].1, r);
        assert_eq!(
            records[0].1.source,
            Source::helm_repo("https://charts.example.com/stable", "demo", "1.2.3")
        );
        // A record in another record's file is not trusted.
        std::fs::rename(
            &records[0].0,
            t.path()
                .join(RECORDS)
                .join(format!("{}.json", "0".repeat(64))),
        )
        .unwrap();
        let (records, bad, _, _) = list_records(t.path()).unwrap();
        assert!(records.is_empty());
        assert!(bad[0].why.contains("which ferry keeps in"), "{bad:?}");
    }

    #[test]
    fn gc_keeps_what_records_reach_and_drops_a_record_whose_manifest_is_damaged() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::create_cache(t.path()).unwrap();
        let cache = Cache::open(t.path()).unwrap().unwrap();
        let (a, a_blobs) = manifest(&store, "a");
        let (b, b_blobs) = manifest(&store, "b");
        let (c, c_blobs) = manifest(&store, "c");
        // An index whose second child was never fetched (a platform filter).
        let never = Descriptor::new(oci::OCI_MANIFEST, Digest::of(b"never fetched"), 3);
        let idx = Index {
            schema_version: 2,
            media_type: Some(oci::OCI_INDEX.into()),
            artifact_type: None,
            manifests: vec![a.clone(), never],
            subject: None,
            annotations: Default::default(),
        };
        let idx_bytes = oci::to_bytes(&idx);
        let i = put(&store, &idx_bytes);
        let idx = Descriptor::new(oci::OCI_INDEX, i, idx_bytes.len() as u64);
        let stray = put(&store, b"nobody needs me");
        std::fs::write(t.path().join("blobs/sha256/.tmp-x"), b"half").unwrap();
        write_record(t.path(), &record("r/a:1", &idx, 10)).unwrap();
        write_record(t.path(), &record("r/b:1", &b, 10)).unwrap();
        write_record(t.path(), &record("r/c:1", &c, 10)).unwrap();
        std::fs::write(t.path().join(RECORDS).join("junk.json"), b"{").unwrap();
        // c's manifest is damaged in place (same size, other bytes).
        let c_path = t.path().join(c.digest.blob_path());
        let mut bytes = std::fs::read(&c_path).unwrap();
        bytes[5] ^= 1;
        std::fs::write(&c_path, bytes).unwrap();

        let lock = cache.lock_exclusive(None).unwrap();
        let s = cache.survey().unwrap();
        let listing = s.listing(20);
        assert_eq!(listing.records.len(), 3);
        assert_eq!(
            listing.records[0].blobs, 4,
            "index, manifest, config, layer"
        );
        assert_eq!(listing.records[0].age_seconds, 10);
        assert!(listing.records[2].damaged.is_some());
        assert_eq!(listing.bad_records.len(), 1);
        assert_eq!(listing.temp_files.count, 1);

        let dry = gc(&lock, &s, &|_| None, true, 20).unwrap();
        assert_eq!(dry.removed.count, 4, "stray + c's three: {dry:?}");
        assert!(t.path().join(stray.blob_path()).exists(), "dry run");

        let report = gc(&lock, &s, &|_| None, false, 20).unwrap();
        assert_eq!(report.dropped.len(), 1);
        assert!(
            report.dropped[0].reason.contains("do not match its digest"),
            "{:?}",
            report.dropped
        );
        assert_eq!(report.records_kept, 2);
        for d in a_blobs.iter().chain(&b_blobs).chain([&i]) {
            assert!(t.path().join(d.blob_path()).exists(), "{d} kept");
        }
        for d in c_blobs.iter().chain([&stray]) {
            assert!(!t.path().join(d.blob_path()).exists(), "{d} removed");
        }
        assert!(!t.path().join("blobs/sha256/.tmp-x").exists());
        assert!(!t.path().join(RECORDS).join("junk.json").exists());

        // A prune rule drops b, and with it b's blobs only.
        let s = cache.survey().unwrap();
        let report = gc(&lock, &s, &older_than(5, 100), false, 100).unwrap();
        assert_eq!(report.dropped.len(), 2, "both are 90 s old");
        let s = cache.survey().unwrap();
        assert!(s.entries.is_empty() && s.blobs.is_empty(), "{s:?}");
    }
}
