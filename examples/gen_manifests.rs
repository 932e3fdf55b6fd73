//! Writes the `ferry images` benchmark input for `scripts/bench-images.sh`:
//! MB megabytes of manifests in files of about 1 MB, a deterministic mix
//! of Deployments (image strings), Helm values (split forms), ESS-style
//! ConfigMaps (the installer's tree in `data.images_digests: |`), Argo CD
//! Applications (values in `spec.source.helm.values: |`) and compose
//! services, plus one installer `images_digests.yml`.
//! `cargo run --release --example gen_manifests -- DIR [MB=100]`

use std::fmt::Write as _;

fn document(i: usize) -> String {
    match i % 5 {
        0 => format!(
            "# deployment {i}\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{i}\n  labels: {{app: app-{i}, tier: \"web\"}}\nspec:\n  replicas: 3\n  template:\n    spec:\n      initContainers:\n        - name: init\n          image: busybox:1.{}\n      containers:\n        - name: app\n          image: \"registry.example.com/team/app-{}:1.0\"\n          args: [\"--port\", \"8080\"]\n          env:\n            - {{name: MODE, value: production}}\n",
            i % 40,
            i % 100
        ),
        1 => format!(
            "# values {i}\nglobal:\n  imageRegistry: \"\"\nimage:\n  registry: docker.io\n  repository: bitnami/redis\n  tag: \"7.{}\"\n  digest: \"\"\n  pullPolicy: IfNotPresent\nmetrics:\n  image:\n    registry: docker.io\n    repository: bitnami/redis-exporter\n    tag: 1.{}.0\n",
            i % 20,
            i % 30
        ),
        2 => {
            let mut s = format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ess-images-{i}\n  namespace: element\ndata:\n  images_digests: |\n"
            );
            for (component, containers) in [
                ("adminbot", ["access_element_web", "haproxy", "pipe"]),
                ("synapse", ["haproxy", "redis", "synapse"]),
            ] {
                let _ = writeln!(s, "    {component}:");
                for (k, c) in containers.iter().enumerate() {
                    let _ = write!(
                        s,
                        "      {c}:\n        image_digest: sha256:{:064x}\n        image_repository_path: ems-image-store/enterprise/{c}\n        image_repository_server: gitlab-registry.matrix.org\n        image_tag: v1.{}.{k}\n",
                        i * 7 + k,
                        i % 50
                    );
                }
            }
            s
        }
        3 => format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: redis-{i}\n  namespace: argocd\nspec:\n  project: default\n  source:\n    repoURL: https://charts.example.com\n    chart: redis\n    targetRevision: 18.1.{}\n    helm:\n      values: |\n        image:\n          registry: docker.io\n          repository: bitnami/redis\n          tag: \"7.{}\"\n        sentinel:\n          enabled: false\n  destination:\n    server: https://kubernetes.default.svc\n    namespace: redis-{i}\n",
            i % 9,
            i % 20
        ),
        _ => format!(
            "services:\n  web-{i}:\n    image: nginx:1.{}-alpine\n    ports: [\"80:80\"]\n  db-{i}:\n    image: postgres:16.{}\n    environment:\n      POSTGRES_PASSWORD: example\n",
            i % 27,
            i % 4
        ),
    }
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(
        args.get(1)
            .map(String::as_str)
            .unwrap_or("bench-out/images/src"),
    );
    let mb: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("manifests"))?;
    let (mut total, mut i, mut file) = (0, 0, 0);
    while total < mb * 1_000_000 {
        let mut text = String::with_capacity(1 << 20);
        while text.len() < 1_000_000 {
            text.push_str("---\n");
            text.push_str(&document(i));
            i += 1;
        }
        total += text.len();
        std::fs::write(
            dir.join("manifests").join(format!("part-{file:04}.yaml")),
            &text,
        )?;
        file += 1;
    }
    let mut installer = String::from("images_digests:\n");
    for c in ["adminbot", "auditbot", "synapse"] {
        let _ = write!(
            installer,
            "  {c}:\n    haproxy:\n      image_digest: sha256:{:064x}\n      image_repository_path: library/haproxy\n      image_repository_server: docker.io\n      image_tag: 2.8-alpine\n",
            c.len()
        );
    }
    std::fs::write(dir.join("images_digests.yml"), installer)?;
    println!(
        "wrote {} ({total} bytes of manifests in {file} files, {i} documents)",
        dir.display()
    );
    Ok(())
}
