//! Seed 003, end to end with real registries: an installer ships
//! `images_digests.yml` (component → container → server, path, tag,
//! digest); `ferry images` and `images: [{from: …}]` find its images, pack
//! fetches them, load pushes them under a prefix and writes the override
//! in the installer's own shape, wrapped in a ConfigMap whose every entry
//! names an image the target registry holds with the listed digest.
//! `rewrite --check` reads that ConfigMap's block, and fails on an image
//! the bundle lacks.

// Test helpers panic on failure, like the tests that call them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use support::build::{self, Flavour, LayoutBuilder};
use support::registry::DockerRegistry;
use support::*;

/// (name in the layout, repository path, tag) of the fixture images.
const IMAGES: [(&str, &str, &str); 3] = [
    ("haproxy", "library/haproxy", "2.8-alpine"),
    ("pipe", "ems-image-store/enterprise/pipe", "2.7.0"),
    (
        "access",
        "ems-image-store/enterprise/access-token-elementweb",
        "v1.11.45",
    ),
];

/// A source registry holding the fixture images (haproxy multi-arch),
/// pushed by skopeo with their digests kept; returns each one's digest.
fn source_registry(dir: &Path, reg: &DockerRegistry) -> Vec<String> {
    let mut l = LayoutBuilder::new(&dir.join("layout"));
    let haproxy = build::multi_arch(&mut l, 61, 8 << 10);
    l.tag(&haproxy, "haproxy");
    for (i, name) in ["pipe", "access"].iter().enumerate() {
        let layer = build::layer(&[("bin/x", &build::pseudo_random(70 + i as u64, 8 << 10))]);
        let d = l.image(Flavour::Oci, "linux", "amd64", &[layer]);
        l.tag(&d, name);
    }
    let layout = l.finish();
    IMAGES
        .iter()
        .map(|(name, path, tag)| {
            let target = format!("{}/{path}:{tag}", reg.host());
            run(skopeo()
                .args([
                    "copy",
                    "--all",
                    "--preserve-digests",
                    "--dest-tls-verify=false",
                ])
                .arg(format!("oci:{}:{name}", layout.display()))
                .arg(format!("docker://{target}")))
            .expect_ok(&format!("skopeo copy {name}"));
            registry_digest(&target)
        })
        .collect()
}

/// The digest of the manifest `reference` resolves to in its registry.
fn registry_digest(reference: &str) -> String {
    let raw = registry_manifest(reference, None).expect_ok(&format!("skopeo inspect {reference}"));
    ferry::digest::Digest::of(raw.as_bytes()).to_string()
}

/// The installer's file, in its shape: two components sharing containers.
fn installer_file(host: &str, digests: &[String]) -> String {
    let mut s = String::from("# ESS Installer images\nimages_digests:\n");
    for component in ["adminbot", "auditbot"] {
        s.push_str(&format!("  {component}:\n"));
        for (((_, path, tag), digest), key) in
            IMAGES
                .iter()
                .zip(digests)
                .zip(["haproxy", "pipe", "access_element_web"])
        {
            s.push_str(&format!(
                "    {key}:\n      image_digest: {digest}\n      image_repository_path: {path}\n      image_repository_server: {host}\n      image_tag: {tag}\n"
            ));
        }
    }
    s
}

fn ferry_cmd(args: &[&std::ffi::OsStr]) -> Out {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferry"));
    c.arg("--quiet").args(args);
    // Never read the developer's own docker credentials.
    c.env("DOCKER_CONFIG", "/nonexistent/ferry-test-docker-config");
    run(&mut c)
}

fn os<S: AsRef<std::ffi::OsStr> + ?Sized>(s: &S) -> &std::ffi::OsStr {
    s.as_ref()
}

fn parse_yaml(text: &str) -> Value {
    serde_saphyr::from_str::<Value>(text).unwrap_or_else(|e| panic!("not YAML ({e}):\n{text}"))
}

#[test]
fn seed_003_images_digests_to_a_configmap_of_images_the_registry_holds() {
    let t = tempfile::tempdir().unwrap();
    let src = DockerRegistry::start(&t.path().join("src-reg"), false);
    let digests = source_registry(t.path(), &src);
    let installer = t.path().join("images_digests.yml");
    std::fs::write(&installer, installer_file(&src.host(), &digests)).unwrap();

    // `ferry images` lists every entry with its file and line.
    let out = ferry_cmd(&[os("images"), installer.as_os_str(), os("--json")]);
    let listing: Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(out.ok(), "{}", out.stderr);
    let images = listing["images"].as_array().unwrap();
    assert_eq!(images.len(), 6, "{listing}");
    assert_eq!(listing["distinct"].as_array().unwrap().len(), 3);
    assert_eq!(images[0]["line"], 7, "{}", images[0]);
    assert_eq!(images[0]["path"], "images_digests.adminbot.haproxy");
    assert_eq!(
        images[0]["reference"],
        format!("{}/library/haproxy:2.8-alpine@{}", src.host(), digests[0])
    );

    // Pack from the installer's file, one platform only: haproxy's index
    // is filtered, so the target holds a new digest.
    let spec = t.path().join("ferry.yaml");
    std::fs::write(
        &spec,
        "name: ess\nplatforms: [linux/amd64]\nimages:\n  - from: images_digests.yml\n",
    )
    .unwrap();
    let archive = t.path().join("ess.tar");
    let cache = t.path().join("cache");
    let out = ferry_cmd(&[
        os("pack"),
        spec.as_os_str(),
        os("-o"),
        archive.as_os_str(),
        os("--cache"),
        cache.as_os_str(),
    ]);
    assert!(out.ok(), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("images_digests.yml: 3 to carry, 0 value(s) skipped"),
        "{}",
        out.stderr
    );
    let carried = inspect_json(&archive);
    assert_eq!(carried["artifacts"].as_array().unwrap().len(), 3);

    // Load under a prefix; the override is the installer's tree in a
    // ConfigMap.
    let dst = DockerRegistry::start(&t.path().join("dst-reg"), false);
    let cm_path = t.path().join("ess-images.yml");
    let map = t.path().join("map.json");
    let out = ferry_cmd(&[
        os("load"),
        archive.as_os_str(),
        os("--registry"),
        os(&format!("{}/ess", dst.host())),
        os("--map-out"),
        map.as_os_str(),
        os("--images-digests-out"),
        cm_path.as_os_str(),
        os("--images-digests-from"),
        installer.as_os_str(),
        os("--configmap"),
        os("ess-images"),
    ]);
    assert!(out.ok(), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("(ConfigMap ess-images): 6 of 6 entries of"),
        "{}",
        out.stderr
    );
    let cm_text = std::fs::read_to_string(&cm_path).unwrap();
    let cm = parse_yaml(&cm_text);
    assert_eq!(cm["apiVersion"], "v1");
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["name"], "ess-images");
    let tree = parse_yaml(cm["data"]["images_digests"].as_str().unwrap());
    let mut checked = 0;
    for (component, containers) in tree.as_object().unwrap() {
        for (container, e) in containers.as_object().unwrap() {
            let what = format!("{component}.{container}");
            let server = e["image_repository_server"].as_str().unwrap();
            let path = e["image_repository_path"].as_str().unwrap();
            let tag = e["image_tag"].as_str().unwrap();
            let digest = e["image_digest"].as_str().unwrap();
            assert_eq!(server, dst.host(), "{what}");
            assert!(path.starts_with("ess/"), "{what}: {path}");
            // The registry holds that manifest, by digest and by tag.
            assert_eq!(
                registry_digest(&format!("{server}/{path}@{digest}")),
                digest,
                "{what}"
            );
            assert_eq!(
                registry_digest(&format!("{server}/{path}:{tag}")),
                digest,
                "{what}: the tag names the same manifest"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 6);
    // haproxy was filtered to one platform: its digest is the target's,
    // not the installer's.
    assert!(!cm_text.contains(&digests[0]), "{cm_text}");
    assert!(
        cm_text.contains(&digests[1]),
        "unfiltered images keep theirs"
    );

    // `rewrite --check` reads the ConfigMap: everything is there.
    let out = ferry_cmd(&[
        os("rewrite"),
        os("--map"),
        map.as_os_str(),
        os("--check"),
        cm_path.as_os_str(),
    ]);
    assert!(out.ok(), "{}{}", out.stdout, out.stderr);
    assert_eq!(
        out.stdout.matches("already local").count(),
        6,
        "{}",
        out.stdout
    );

    // A ConfigMap naming an image the bundle lacks fails the check, named.
    let broken = cm_text.replacen(
        "ess/ems-image-store/enterprise/pipe",
        "ess/ems-image-store/enterprise/absent",
        1,
    );
    let broken = broken.replacen(&dst.host(), "gitlab-registry.matrix.org", 1);
    let broken_path = t.path().join("broken.yml");
    std::fs::write(&broken_path, &broken).unwrap();
    let out = ferry_cmd(&[
        os("rewrite"),
        os("--map"),
        map.as_os_str(),
        os("--check"),
        broken_path.as_os_str(),
    ]);
    let msg = out.expect_fail("rewrite --check on a ConfigMap naming a missing image");
    assert!(
        msg.contains("(in data.images_digests)  images_digests  gitlab-registry.matrix.org/ess/library/haproxy:2.8-alpine@")
            && msg.contains("NOT IN BUNDLE"),
        "{msg}"
    );
    assert!(
        msg.contains("1 image reference(s) are not in the bundle"),
        "{msg}"
    );
}

#[test]
fn an_installer_entry_the_load_did_not_carry_is_an_error_unless_allowed() {
    let t = tempfile::tempdir().unwrap();
    let archive = pack_demo(t.path());
    let demo_digest = inspect_json(&archive)["artifacts"][0]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let installer = t.path().join("images_digests.yml");
    std::fs::write(
        &installer,
        format!("images_digests:\n  web:\n    demo:\n      image_digest: {demo_digest}\n      image_repository_path: library/demo\n      image_repository_server: docker.io\n      image_tag: \"1.0\"\n  synapse:\n    redis:\n      image_repository_path: bitnami/redis\n      image_repository_server: docker.io\n      image_tag: \"8.2\"\n"),
    )
    .unwrap();
    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    let out_file = t.path().join("overrides.yml");
    let load = |extra: &[&str]| {
        let host = reg.host();
        let mut args: Vec<&std::ffi::OsStr> = vec![
            os("load"),
            archive.as_os_str(),
            os("--registry"),
            os(&host),
            os("--images-digests-out"),
            out_file.as_os_str(),
            os("--images-digests-from"),
            installer.as_os_str(),
        ];
        args.extend(extra.iter().map(os));
        ferry_cmd(&args)
    };

    // Bad input is refused before anything is pushed.
    let e = load(&["--configmap", "ESS_images"]).expect_fail("a bad ConfigMap name");
    assert!(e.contains("\"ESS_images\" is not a ConfigMap name"), "{e}");
    assert!(reg.repositories().is_empty(), "nothing was pushed");
    let bad = t.path().join("bad.yml");
    std::fs::write(&bad, "images_digests:\n  a: [\n").unwrap();
    let out = ferry_cmd(&[
        os("load"),
        archive.as_os_str(),
        os("--registry"),
        os(&reg.host()),
        os("--images-digests-out"),
        out_file.as_os_str(),
        os("--images-digests-from"),
        bad.as_os_str(),
    ]);
    let e = out.expect_fail("an installer file that is not YAML");
    assert!(e.contains("bad.yml is not valid YAML"), "{e}");
    assert!(reg.repositories().is_empty(), "nothing was pushed");
    // The flat form is gone: --images-digests-out needs the installer's file.
    let out = ferry_cmd(&[
        os("load"),
        archive.as_os_str(),
        os("--registry"),
        os(&reg.host()),
        os("--images-digests-out"),
        out_file.as_os_str(),
    ]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("--images-digests-from"),
        "{}",
        out.stderr
    );

    // redis was not carried: an error naming it, and no file.
    let e = load(&[]).expect_fail("an entry the load did not carry");
    assert!(
        e.contains("1 entry was not loaded: images_digests.synapse.redis (line 11): docker.io/bitnami/redis:8.2, not loaded")
            && e.contains("--allow-missing"),
        "{e}"
    );
    assert!(!out_file.exists(), "nothing half-written");
    // The images themselves were loaded all the same.
    assert!(!reg.repositories().is_empty());

    // --allow-missing keeps it unchanged.
    let out = load(&["--allow-missing"]);
    assert!(out.ok(), "{}", out.stderr);
    let text = std::fs::read_to_string(&out_file).unwrap();
    assert!(
        text.contains(&format!(
            "      image_repository_path: library/demo\n      image_repository_server: {}\n",
            reg.host()
        )),
        "{text}"
    );
    assert!(
        text.contains("      image_repository_path: bitnami/redis\n      image_repository_server: docker.io\n"),
        "{text}"
    );
    assert!(
        out.stderr.contains("1 of 2 entries of") && out.stderr.contains("1 kept unchanged"),
        "{}",
        out.stderr
    );
}
