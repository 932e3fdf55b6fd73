//! Writes a fetch cache for `scripts/bench-cache.sh`: IMAGES recorded
//! images, each an index over one manifest with a config and 7 layers
//! (10 blobs), plus STRAY blobs no record names. Every blob is named by
//! the digest of its bytes (gc re-hashes the documents it reads); layers
//! are small, since gc never reads them. Records are written as a pack
//! writes them, without the per-record fsync (this is a generator).
//! `cargo run --release --example gen_cache -- DIR [IMAGES] [STRAY]`

use std::path::Path;

use ferry::cache::{Record, Source, RECORDS};
use ferry::digest::Digest;
use ferry::oci::{self, Descriptor, Index, Manifest};

fn blob(dir: &Path, bytes: &[u8]) -> std::io::Result<Digest> {
    let d = Digest::of(bytes);
    std::fs::write(dir.join(d.blob_path()), bytes)?;
    Ok(d)
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir =
        std::path::PathBuf::from(args.get(1).map(String::as_str).unwrap_or("bench-out/cache"));
    let images: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(4500);
    let stray: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(5000);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("blobs/sha256"))?;
    std::fs::create_dir_all(dir.join(RECORDS))?;
    std::fs::write(dir.join("oci-layout"), ferry::layout::OCI_LAYOUT)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for i in 0..images {
        let config = format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"image\":{i}}}");
        let config = Descriptor::new(
            oci::OCI_CONFIG,
            blob(&dir, config.as_bytes())?,
            config.len() as u64,
        );
        let mut layers = Vec::new();
        for j in 0..7 {
            let bytes = format!("layer {j} of image {i} {}", "x".repeat(200)).into_bytes();
            layers.push(Descriptor::new(
                oci::OCI_LAYER_GZIP,
                blob(&dir, &bytes)?,
                bytes.len() as u64,
            ));
        }
        let m = oci::to_bytes(&Manifest {
            schema_version: 2,
            media_type: Some(oci::OCI_MANIFEST.into()),
            artifact_type: None,
            config,
            layers,
            subject: None,
            annotations: Default::default(),
        });
        let m = Descriptor::new(oci::OCI_MANIFEST, blob(&dir, &m)?, m.len() as u64);
        let idx = oci::to_bytes(&Index {
            schema_version: 2,
            media_type: Some(oci::OCI_INDEX.into()),
            artifact_type: None,
            manifests: vec![m],
            subject: None,
            annotations: Default::default(),
        });
        let record = Record {
            source: Source::Registry {
                reference: format!("registry.example.com/bench/app{i}:1.0"),
            },
            digest: blob(&dir, &idx)?,
            media_type: oci::OCI_INDEX.into(),
            size: idx.len() as u64,
            platforms: None,
            // Spread over the last 100 days, for prune --older-than.
            last_used: now - (i as u64 % 100) * 86_400,
        };
        std::fs::write(
            dir.join(RECORDS).join(record.source.file_name()),
            serde_json::to_vec_pretty(&record)?,
        )?;
    }
    for k in 0..stray {
        blob(
            &dir,
            format!("stray blob {k} from an older bundle").as_bytes(),
        )?;
    }
    println!("{} blobs, {images} records", images * 10 + stray);
    Ok(())
}
