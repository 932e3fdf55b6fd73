//! serve's request parsing on untrusted requests: a method, a target and
//! headers (one per line, `Name: value`), answered from the demo archive
//! written by `fuzz/seed.sh`. No request may panic; every answer is one a
//! registry client can read (a 2xx, 3xx, 4xx or 416, never a 5xx), and a
//! partial answer's range lies inside the blob.
#![no_main]

use std::sync::OnceLock;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use ferry::serve::Registry;
use libfuzzer_sys::fuzz_target;

fn registry() -> &'static Registry {
    static REG: OnceLock<Registry> = OnceLock::new();
    REG.get_or_init(|| {
        let archive = concat!(env!("CARGO_MANIFEST_DIR"), "/corpus/archive/demo.tar");
        Registry::open(archive.as_ref(), &Default::default())
            .expect("fuzz/corpus/archive/demo.tar (run fuzz/seed.sh)")
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let Some((method, target)) = lines.next().and_then(|l| l.split_once(' ')) else {
        return;
    };
    let (Ok(method), Ok(uri)) = (Method::from_bytes(method.as_bytes()), target.parse::<Uri>()) else {
        return;
    };
    let mut headers = HeaderMap::new();
    for l in lines {
        let Some((n, v)) = l.split_once(':') else { continue };
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(n.trim().as_bytes()),
            HeaderValue::from_bytes(v.trim().as_bytes()),
        ) {
            headers.append(n, v);
        }
    }
    let reg = registry();
    let response = runtime().block_on(reg.answer(&method, &uri, &headers));
    let status = response.status();
    assert!(!status.is_server_error(), "{method} {uri} answered {status}");
    if status.as_u16() == 206 {
        let range = response.headers().get("content-range").expect("206 with Content-Range");
        let range = range.to_str().expect("ASCII");
        let (span, total) = range
            .trim_start_matches("bytes ")
            .split_once('/')
            .expect("bytes A-B/N");
        let (a, b) = span.split_once('-').expect("A-B");
        let (a, b, n): (u64, u64, u64) = (a.parse().unwrap(), b.parse().unwrap(), total.parse().unwrap());
        assert!(a <= b && b < n, "{range}");
    }
    let _ = runtime().block_on(axum::body::to_bytes(response.into_body(), 64 << 20));
});
