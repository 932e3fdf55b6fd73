//! The spec parsers (YAML/JSON and images.txt) on untrusted text: errors,
//! never panics, and bounded work for nesting and aliases.
#![no_main]

use std::path::Path;

use ferry::inputs::Spec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Spec::from_yaml(Path::new("fuzz.yaml"), text);
    let _ = Spec::from_lines(Path::new("fuzz.txt"), text);
});
