//! The YAML rewriter on untrusted text. It must not panic; what it
//! rewrites must still be YAML it can read; a second pass must change
//! nothing (rewritten references are local); and only the lines holding
//! references may change, never their number.
#![no_main]

use std::sync::OnceLock;

use ferry::rewrite::{rewrite, ImageMap, MapEntry, Outcome, RewriteOptions};
use libfuzzer_sys::fuzz_target;

fn map() -> &'static ImageMap {
    static MAP: OnceLock<ImageMap> = OnceLock::new();
    MAP.get_or_init(|| {
        let d = |n: u8| ferry::digest::Digest::of(&[n]);
        let e = |source: &str, target: &str, tag: &str, n: u8| MapEntry {
            source: source.into(),
            target: target.into(),
            tag: Some(tag.into()),
            digest: d(n),
            source_digest: None,
            converted: Vec::new(),
        };
        ImageMap::from_entries(
            "reg.local:5000",
            vec![
                e("docker.io/library/nginx:1.27", "reg.local:5000/library/nginx", "1.27", 1),
                e("quay.io/jetstack/cert-manager-controller:v1.15.0", "reg.local:5000/jetstack/cert-manager-controller", "v1.15.0", 2),
                e("registry.k8s.io/ingress-nginx/controller:v1.11.2", "reg.local:5000/ingress-nginx/controller", "v1.11.2", 3),
                e("docker.io/bitnami/redis:7.2", "reg.local:5000/bitnami/redis", "7.2", 4),
            ],
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok((out, found)) = rewrite(text, map(), RewriteOptions::default()) else {
        return;
    };
    let rewritten = found
        .iter()
        .filter(|f| matches!(f.outcome, Outcome::Rewritten { .. }))
        .count();
    if rewritten == 0 {
        assert_eq!(out, text, "nothing rewritten, yet the text changed");
        return;
    }
    let (again, _) = rewrite(&out, map(), RewriteOptions::default())
        .unwrap_or_else(|e| panic!("the rewritten text no longer parses: {e}\n{out}"));
    assert_eq!(again, out, "a second pass changed the text");
    assert_eq!(
        out.lines().count(),
        text.lines().count(),
        "rewriting changed the number of lines"
    );
});
