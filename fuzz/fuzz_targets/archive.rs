//! The archive reader on untrusted bytes: opening, verifying and reading
//! must never panic, and a damaged archive must never verify. The same
//! bytes are also read as a zstd-compressed archive, through the one-pass
//! stream reader.
#![no_main]

use std::io::Write;

use ferry::report::Silent;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("a.tar");
    std::fs::write(&plain, data).unwrap();
    check(&plain);
    let zst = dir.path().join("a.tar.zst");
    let mut enc = zstd::stream::write::Encoder::new(std::fs::File::create(&zst).unwrap(), 1).unwrap();
    enc.write_all(data).unwrap();
    enc.finish().unwrap();
    check(&zst);
});

fn check(path: &std::path::Path) {
    let _ = ferry::unpack::inspect(path, None);
    if let Ok(report) = ferry::verify::verify(path, None, &Silent) {
        if report.is_ok() {
            // Whatever verifies must open strictly and read back whole.
            if let Ok(a) = ferry::archive::Archive::open(path) {
                for e in &a.entries {
                    let _ = a.read_member(e, 1 << 20);
                }
            }
        }
    }
}
