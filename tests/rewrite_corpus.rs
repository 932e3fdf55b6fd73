//! The rewriter on real public manifests and values files (tests/corpus,
//! provenance in tests/corpus/SOURCES.md): every image reference is found,
//! rewritten values are right, and every other byte is identical.

// Test helpers panic on failure, like the tests that call them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use ferry::digest::Digest;
use ferry::reference::Reference;
use ferry::rewrite::{rewrite, ImageMap, MapEntry, Outcome, RewriteOptions};

fn corpus() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// A map that carries every reference found in `text`.
fn map_for(text: &str) -> ImageMap {
    let (_, found) = rewrite(text, &ImageMap::default(), RewriteOptions::default()).unwrap();
    let entries = found
        .iter()
        .filter(|f| f.outcome == Outcome::NotInBundle)
        .filter_map(|f| f.reference.parse::<Reference>().ok())
        .map(|r| MapEntry {
            source: r.to_string(),
            target: format!("registry.local:5000/{}", r.repository()),
            tag: r.tag().map(str::to_owned),
            digest: r
                .digest()
                .unwrap_or_else(|| Digest::of(r.to_string().as_bytes())),
            source_digest: None,
            converted: Vec::new(),
        })
        .collect();
    ImageMap::from_entries("registry.local:5000", entries)
}

#[test]
fn corpus_references_are_found_and_only_their_values_change() {
    // (file, references found, rewritten, skipped). References, not keys:
    // a split form is one reference however many `image:` keys it uses.
    let expected: &[(&str, usize, usize, usize)] = &[
        ("argocd-base-kustomization.yaml", 1, 1, 0),
        // newName only: redirected by rewriting newName.
        ("argocd-redis-kustomization.yaml", 1, 1, 0),
        // The image list in the `images: |` annotation is YAML in a
        // literal block: read and rewritten in place.
        ("bitnami-redis-Chart.yaml", 5, 5, 0),
        ("bitnami-redis-values.yaml", 6, 6, 0),
        // cert-manager builds names from imageRegistry/imageNamespace/name:
        // five images, redirected by rewriting the two shared values.
        ("cert-manager-values.yaml", 5, 5, 0),
        // The same in `artifacthub.io/images: |`.
        ("dragonfly-Chart.yaml", 6, 6, 0),
        ("flux-cert-manager-oci.yaml", 0, 0, 0),
        // 7 `image:` keys: global, and controller, certgen and default
        // backend each as `image: {image: …}` with global.image.registry.
        ("ingress-nginx-chart-values.yaml", 3, 3, 0),
        ("ingress-nginx-cloud-deploy.yaml", 3, 3, 0),
        // Its changelogs are multi-line strings of YAML naming no image.
        ("ingress-nginx-helm-index.yaml", 0, 0, 0),
        ("k8s-website-cronjob.yaml", 1, 1, 0),
        ("k8s-website-daemonset.yaml", 1, 1, 0),
        ("k8s-website-init-containers.yaml", 2, 2, 0),
        ("k8s-website-mysql-statefulset.yaml", 4, 4, 0),
        // 9 image keys plus the split-form kubectl image under another key.
        ("kube-prometheus-stack-values.yaml", 10, 10, 0),
        // Every image is ${VAR}-interpolated.
        ("otel-demo-compose.yaml", 20, 0, 20),
        // 19 `image:` lines; 8 are "$VAR" images.
        ("sentry-self-hosted-docker-compose.yml", 19, 11, 8),
    ];
    let mut seen = Vec::new();
    for (name, text) in corpus() {
        let map = map_for(&text);
        let (out, found) = rewrite(&text, &map, RewriteOptions::default()).unwrap();
        let rewritten = found
            .iter()
            .filter(|f| matches!(f.outcome, Outcome::Rewritten { .. }))
            .count();
        let skipped = found
            .iter()
            .filter(|f| matches!(f.outcome, Outcome::Skipped { .. }))
            .count();
        seen.push((name.clone(), found.len(), rewritten, skipped));

        // Line structure is untouched; every changed line holds an image value.
        let (a, b): (Vec<&str>, Vec<&str>) =
            (text.split('\n').collect(), out.split('\n').collect());
        assert_eq!(a.len(), b.len(), "{name}: line count changed");
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            if x != y {
                let key = x
                    .trim_start()
                    .trim_start_matches("- ")
                    .split(':')
                    .next()
                    .unwrap_or("");
                assert!(
                    [
                        "image",
                        "registry",
                        "repository",
                        "newName",
                        "digest",
                        "sha",
                        "tag",
                        "imageRegistry",
                    ]
                    .contains(&key),
                    "{name}:{}: a non-image line changed:\n- {x}\n+ {y}",
                    i + 1
                );
                // Registries become the target host; a repository may gain
                // Docker Hub's implicit `library/` when the path changes.
                assert!(
                    y.contains("registry.local:5000") || key == "repository" || key == "image",
                    "{name}:{}: {y}",
                    i + 1
                );
            }
        }
        // The output still parses, and a second pass finds it all local.
        let (again, found2) = rewrite(&out, &map, RewriteOptions::default()).unwrap();
        assert_eq!(again, out, "{name}: rewriting is idempotent");
        assert_eq!(
            found2
                .iter()
                .filter(|f| f.outcome == Outcome::AlreadyLocal)
                .count(),
            rewritten,
            "{name}"
        );
    }
    let got: Vec<(&str, usize, usize, usize)> = seen
        .iter()
        .map(|(n, a, b, c)| (n.as_str(), *a, *b, *c))
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn the_index_yaml_negative_control_is_untouched() {
    let (_, text) = corpus()
        .into_iter()
        .find(|(n, _)| n == "ingress-nginx-helm-index.yaml")
        .unwrap();
    let map = map_for(&text);
    let (out, found) = rewrite(
        &text,
        &map,
        RewriteOptions {
            pin_digest: true,
            ..RewriteOptions::default()
        },
    )
    .unwrap();
    assert!(found.is_empty());
    assert_eq!(out, text);
}
