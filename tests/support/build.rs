//! Builders for test content: deterministic pseudo-random layers, OCI and
//! Docker schema-2 images, multi-arch indexes, OCI layouts and Helm chart
//! archives. Shared by the integration tests and by
//! `examples/gen_fixtures.rs`, which writes `fixtures/`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use ferry::digest::Digest;
use ferry::oci::{self, Descriptor, Index, Manifest, OciPlatform};

/// Deterministic bytes from a seed (xorshift64*), incompressible enough.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A deterministic uncompressed tar of `files`.
pub fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// Deterministic gzip (mtime 0, no file name).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A gzip layer holding `files`, and its diff id (digest of the tar).
pub fn layer(files: &[(&str, &[u8])]) -> (Vec<u8>, Digest) {
    let t = tar_of(files);
    (gzip(&t), Digest::of(&t))
}

/// Media types for images.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Flavour {
    Oci,
    Docker,
}

/// Writes an OCI image layout (blobs and index.json).
pub struct LayoutBuilder {
    pub root: PathBuf,
    pub refs: Vec<Descriptor>,
}

impl LayoutBuilder {
    pub fn new(root: &Path) -> LayoutBuilder {
        std::fs::create_dir_all(root.join("blobs/sha256")).unwrap();
        std::fs::write(
            root.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        LayoutBuilder {
            root: root.to_owned(),
            refs: Vec::new(),
        }
    }

    pub fn blob(&mut self, media_type: &str, bytes: &[u8]) -> Descriptor {
        let d = Digest::of(bytes);
        std::fs::write(self.root.join(d.blob_path()), bytes).unwrap();
        Descriptor::new(media_type, d, bytes.len() as u64)
    }

    /// An image manifest for one platform with the given (gzip) layers.
    pub fn image(
        &mut self,
        flavour: Flavour,
        os: &str,
        arch: &str,
        layers: &[(Vec<u8>, Digest)],
    ) -> Descriptor {
        let (mt, cmt, lmt) = match flavour {
            Flavour::Oci => (oci::OCI_MANIFEST, oci::OCI_CONFIG, oci::OCI_LAYER_GZIP),
            Flavour::Docker => (
                oci::DOCKER_MANIFEST,
                "application/vnd.docker.container.image.v1+json",
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
            ),
        };
        let diff_ids: Vec<String> = layers.iter().map(|(_, d)| format!("\"{d}\"")).collect();
        let config = format!(
            r#"{{"architecture":"{arch}","os":"{os}","config":{{"Env":["PATH=/usr/bin:/bin"],"Cmd":["/bin/sh"]}},"rootfs":{{"type":"layers","diff_ids":[{}]}},"created":"1970-01-01T00:00:00Z","history":[{{"created":"1970-01-01T00:00:00Z","created_by":"ferry test fixture"}}]}}"#,
            diff_ids.join(",")
        );
        let config = self.blob(cmt, config.as_bytes());
        let layer_descs: Vec<Descriptor> = layers.iter().map(|(b, _)| self.blob(lmt, b)).collect();
        let m = Manifest {
            schema_version: 2,
            media_type: Some(mt.into()),
            artifact_type: None,
            config,
            layers: layer_descs,
            subject: None,
            annotations: BTreeMap::new(),
        };
        let mut d = self.blob(mt, &oci::to_bytes(&m));
        d.platform = Some(OciPlatform {
            architecture: arch.into(),
            os: os.into(),
            os_version: None,
            os_features: None,
            variant: None,
        });
        d
    }

    /// An index over `children` (which carry their platforms).
    pub fn index(&mut self, flavour: Flavour, children: Vec<Descriptor>) -> Descriptor {
        let mt = match flavour {
            Flavour::Oci => oci::OCI_INDEX,
            Flavour::Docker => oci::DOCKER_LIST,
        };
        let i = Index {
            schema_version: 2,
            media_type: Some(mt.into()),
            artifact_type: None,
            manifests: children,
            subject: None,
            annotations: BTreeMap::new(),
        };
        self.blob(mt, &oci::to_bytes(&i))
    }

    /// Names `d` in index.json.
    pub fn tag(&mut self, d: &Descriptor, name: &str) {
        let mut d = Descriptor::new(&d.media_type, d.digest, d.size);
        d.annotations.insert(oci::ANN_REF_NAME.into(), name.into());
        self.refs.push(d);
    }

    pub fn finish(self) -> PathBuf {
        let i = Index {
            schema_version: 2,
            media_type: Some(oci::OCI_INDEX.into()),
            artifact_type: None,
            manifests: self.refs,
            subject: None,
            annotations: BTreeMap::new(),
        };
        std::fs::write(self.root.join("index.json"), oci::to_bytes(&i)).unwrap();
        self.root
    }
}

/// A multi-arch OCI image (linux/amd64 + linux/arm64) sharing a base layer.
pub fn multi_arch(l: &mut LayoutBuilder, seed: u64, layer_size: usize) -> Descriptor {
    let base = layer(&[("etc/base", &pseudo_random(seed, layer_size))]);
    let amd = layer(&[("bin/app", &pseudo_random(seed + 1, layer_size))]);
    let arm = layer(&[("bin/app", &pseudo_random(seed + 2, layer_size))]);
    let a = l.image(Flavour::Oci, "linux", "amd64", &[base.clone(), amd]);
    let b = l.image(Flavour::Oci, "linux", "arm64", &[base, arm]);
    l.index(Flavour::Oci, vec![a, b])
}

/// A Helm chart `.tgz` (deterministic).
pub fn chart_tgz(name: &str, version: &str, values: &str) -> Vec<u8> {
    let chart_yaml = format!(
        "apiVersion: v2\nname: {name}\nversion: {version}\ndescription: A chart for ferry's tests\nappVersion: \"1.0\"\ntype: application\n"
    );
    let template = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}\nspec:\n  template:\n    spec:\n      containers:\n        - name: app\n          image: \"{{ .Values.image.repository }}:{{ .Values.image.tag }}\"\n";
    let files: Vec<(String, &[u8])> = vec![
        (format!("{name}/Chart.yaml"), chart_yaml.as_bytes()),
        (format!("{name}/values.yaml"), values.as_bytes()),
        (
            format!("{name}/templates/deployment.yaml"),
            template.as_bytes(),
        ),
    ];
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, d)| (n.as_str(), *d)).collect();
    gzip(&tar_of(&refs))
}

/// Writes the demo fixture set into `dir` (what `fixtures/demo` holds).
pub fn demo_fixtures(dir: &Path) {
    let mut l = LayoutBuilder::new(&dir.join("layout"));
    let idx = multi_arch(&mut l, 1, 4096);
    l.tag(&idx, "docker.io/library/demo:1.0");
    let hello = layer(&[("hello.txt", b"hello from ferry\n")]);
    let single = l.image(Flavour::Oci, "linux", "amd64", &[hello]);
    l.tag(&single, "registry.example.com/tools/hello:2.1");
    l.finish();

    std::fs::create_dir_all(dir.join("charts")).unwrap();
    std::fs::write(
        dir.join("charts/demo-chart-0.1.0.tgz"),
        chart_tgz(
            "demo-chart",
            "0.1.0",
            "image:\n  repository: docker.io/library/demo\n  tag: \"1.0\"\n",
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("files/manifests")).unwrap();
    std::fs::write(
        dir.join("files/README.txt"),
        "Demo bundle for ferry: a multi-arch image, a single-platform image, a chart and files.\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("files/manifests/deployment.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: demo\nspec:\n  selector:\n    matchLabels: {app: demo}\n  template:\n    metadata:\n      labels: {app: demo}\n    spec:\n      containers:\n        - name: demo\n          image: docker.io/library/demo:1.0\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("ferry.yaml"),
        "# The demo bundle: everything local, no network needed.\n# Regenerate with: cargo run --example gen_fixtures\nname: demo\nimages:\n  - oci:layout:docker.io/library/demo:1.0              # linux/amd64 + linux/arm64\n  - oci:layout:registry.example.com/tools/hello:2.1    # single platform\ncharts:\n  - path: charts/demo-chart-0.1.0.tgz\nfiles:\n  - path: files/README.txt\n  - path: files/manifests\n",
    )
    .unwrap();
}

/// Writes `dir/layout` and `dir/ferry.yaml`: `images` two-platform images
/// (linux/amd64 and linux/arm64) under several repositories, each platform
/// one of ten shared base layers and a small layer of its own whose size
/// grows with the image's number, so sizes differ and sharing is real.
/// Quick to make (a few KiB per image). Used by the report's test and by
/// `examples/gen_report.rs` for its benchmark. Returns the bytes sharing
/// the base layers saves: each base's size times its images less one.
pub fn many_images(dir: &Path, images: usize) -> u64 {
    many_images_generation(dir, images, 0)
}

/// [`many_images`] as generation `generation` of the same image set: from
/// generation 1 on, every tenth image's own layer is new and 30 % larger,
/// and every image has a new tag (`1.N` becomes `1.N+10×generation`), so a
/// diff matches them by repository. Generation 0 is `many_images` itself.
pub fn many_images_generation(dir: &Path, images: usize, generation: usize) -> u64 {
    let mut l = LayoutBuilder::new(&dir.join("layout"));
    let bases: Vec<Vec<(Vec<u8>, Digest)>> = (0..10u64)
        .map(|b| {
            ["amd64", "arm64"]
                .iter()
                .enumerate()
                .map(|(a, _)| {
                    let data = pseudo_random(1_000 + b * 2 + a as u64, 16_384 + b as usize * 4096);
                    layer(&[("usr/lib/base", &data)])
                })
                .collect()
        })
        .collect();
    let mut spec = String::from("name: many\nimages:\n");
    for i in 0..images {
        let mut children = Vec::new();
        for (a, arch) in ["amd64", "arm64"].iter().enumerate() {
            let grown = generation > 0 && i % 10 == 0;
            let own = match grown {
                false => pseudo_random((i * 2 + a) as u64, 512 + (i % 97) * 64),
                true => pseudo_random(
                    (1_000_000 * generation + i * 2 + a) as u64,
                    (512 + (i % 97) * 64) * 13 / 10,
                ),
            };
            let app = layer(&[("app/bin", &own)]);
            let base = bases[i % bases.len()][a].clone();
            children.push(l.image(Flavour::Oci, "linux", arch, &[base, app]));
        }
        let idx = l.index(Flavour::Oci, children);
        let name = format!(
            "registry.example.com/team{}/app{i:04}:1.{}",
            i % 7,
            i % 3 + 10 * generation
        );
        l.tag(&idx, &name);
        spec.push_str(&format!("  - oci:layout:{name}\n"));
    }
    l.finish();
    std::fs::write(dir.join("ferry.yaml"), spec).unwrap();
    let mut saved = 0;
    for (b, pair) in bases.iter().enumerate() {
        let users = (0..images).filter(|i| i % bases.len() == b).count() as u64;
        for (gz, _) in pair {
            saved += gz.len() as u64 * users.saturating_sub(1);
        }
    }
    saved
}
