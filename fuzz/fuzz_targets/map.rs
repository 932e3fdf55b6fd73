//! The map-file reader on untrusted bytes: never a panic, and a map it
//! accepts holds only references, tags and digests: every target with its
//! tag or digest parses as a reference, and the map writes out and reads
//! back the same.
#![no_main]

use ferry::reference::Reference;
use ferry::rewrite::ImageMap;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(map) = ImageMap::from_json(data) else {
        return;
    };
    for e in map.entries() {
        let r = match &e.tag {
            Some(t) => format!("{}:{t}", e.target),
            None => format!("{}@{}", e.target, e.digest),
        };
        assert!(r.parse::<Reference>().is_ok(), "accepted target {r:?}");
        assert!(!r.contains(['\n', '\r', ' ', '"', '\'']), "accepted target {r:?}");
        assert!(e.source.parse::<Reference>().is_ok(), "accepted source {:?}", e.source);
    }
    let again = ImageMap::from_json(&map.to_json()).expect("a written map reads back");
    assert_eq!(again.to_json(), map.to_json());
});
