//! Image references: parsing never panics, and whatever parses prints
//! back to a string that parses to the same reference.
#![no_main]

use ferry::reference::Reference;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = s.parse::<Reference>() {
        let printed = r.to_string();
        let again: Reference = printed
            .parse()
            .unwrap_or_else(|e| panic!("{s:?} parsed, printed as {printed:?}, which does not: {e}"));
        assert_eq!(again, r, "{s:?} -> {printed:?}");
        let _ = (r.registry(), r.repository(), r.tag(), r.digest(), r.name());
    }
});
