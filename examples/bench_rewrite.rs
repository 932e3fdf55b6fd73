//! Rewrite throughput on generated manifests:
//! `cargo run --release --example bench_rewrite [MB=100]`.
//! Prints MB/s for a mix of Deployments (image strings) and Helm values
//! (split forms), half of the references carried by the map.

use std::time::Instant;

use ferry::digest::Digest;
use ferry::rewrite::{rewrite, ImageMap, MapEntry, RewriteOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mb: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let mut text = String::with_capacity(mb << 20);
    let mut i = 0;
    while text.len() < mb << 20 {
        text.push_str(&format!(
            "---\n# deployment {i}\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{i}\n  labels: {{app: app-{i}, tier: \"web\"}}\nspec:\n  replicas: 3\n  template:\n    spec:\n      initContainers:\n        - name: init\n          image: busybox:1.{}\n      containers:\n        - name: app\n          image: \"registry.example.com/team/app-{}:1.0\"\n          args: [\"--port\", \"8080\"]\n          env:\n            - {{name: MODE, value: production}}\n---\nimage:\n  registry: docker.io\n  repository: bitnami/redis\n  tag: \"7.{}\"\n  digest: \"\"\n",
            i % 40,
            i % 100,
            i % 20
        ));
        i += 1;
    }
    let entries: Vec<MapEntry> = (0..50)
        .map(|k| MapEntry {
            source: format!("registry.example.com/team/app-{k}:1.0"),
            target: format!("registry.local:5000/team/app-{k}"),
            tag: Some("1.0".into()),
            digest: Digest::of(format!("{k}").as_bytes()),
            source_digest: None,
            converted: Vec::new(),
        })
        .chain((0..20).map(|k| MapEntry {
            source: format!("docker.io/bitnami/redis:7.{k}"),
            target: "registry.local:5000/bitnami/redis".into(),
            tag: Some(format!("7.{k}")),
            digest: Digest::of(format!("redis{k}").as_bytes()),
            source_digest: None,
            converted: Vec::new(),
        }))
        .collect();
    let map = ImageMap::from_entries("registry.local:5000", entries);
    let start = Instant::now();
    let (out, found) = rewrite(
        &text,
        &map,
        RewriteOptions {
            pin_digest: true,
            ..RewriteOptions::default()
        },
    )?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "rewrote {:.1} MB ({} documents, {} references) in {:.3} s: {:.0} MB/s; output {:.1} MB",
        text.len() as f64 / 1e6,
        i * 2,
        found.len(),
        secs,
        text.len() as f64 / 1e6 / secs,
        out.len() as f64 / 1e6
    );
    Ok(())
}
