//! The spec → plan path: a spec that parses is packed against the demo
//! fixtures (its images, layout and charts), so every field reaches the
//! planner. Only specs that stay inside `fixtures/demo` and need no network
//! are packed (no registry images, no chart repositories, no files, no
//! chart that carries its images). Packing must error or write an archive
//! that verifies; it must never panic.
#![no_main]

use std::path::{Path, PathBuf};

use ferry::inputs::{ChartEntry, ImageSource, Spec};
use ferry::pack::{pack, PackOptions};
use libfuzzer_sys::fuzz_target;

fn demo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/demo")
}

fn local_only(spec: &Spec) -> bool {
    let inside = |p: &Path| p.starts_with(demo()) && !p.components().any(|c| c.as_os_str() == "..");
    spec.files.is_empty()
        && spec.images.iter().all(|i| match &i.source {
            ImageSource::OciDir { path, .. } => inside(path),
            _ => false,
        })
        && spec.charts.iter().all(|c| match c {
            ChartEntry::Path { path, images } => !images && inside(path),
            _ => false,
        })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(spec) = Spec::from_yaml(&demo().join("fuzz.yaml"), text) else {
        return;
    };
    if !local_only(&spec) {
        return;
    }
    let dir = tempfile::tempdir().expect("a temp dir");
    let opts = PackOptions {
        out: dir.path().join("b.tar"),
        platforms: None,
        default_name: "fuzz".into(),
        mtime: 0,
        fetch: None,
        sign: None,
        volume_size: None,
        have: None,
        compress: None,
        oci: false,
        lock: None,
        budget: Default::default(),
        referrers: true,
        cosign_key: None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    if pack(&spec, &opts, rt.handle(), &ferry::report::Silent).is_ok() {
        let r = ferry::verify::verify(&opts.out, None, &ferry::report::Silent).expect("readable");
        assert!(r.is_ok(), "a packed archive does not verify: {:?}", r.problems);
    }
});
