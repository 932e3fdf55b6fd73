//! Deltas: `ferry inventory` lists what a real registry (or an earlier
//! bundle) holds, `pack --have` leaves those layers out, `verify` checks
//! what the delta carries and lists what it expects, and `load` refuses to
//! push a manifest whose left-out blobs the target lacks.

// Test helpers panic on failure, like the tests that call them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::build::{self, Flavour, LayoutBuilder};
use support::registry::DockerRegistry;
use support::*;

/// Four images sharing a base layer, each with its own app layer. The
/// images in `changed` get a new app layer and tag `:2` (the next
/// release); the others stay `:1`.
fn image_set(dir: &Path, changed: &[usize]) -> PathBuf {
    let mut l = LayoutBuilder::new(&dir.join("src"));
    let base = build::layer(&[("etc/base", &build::pseudo_random(500, 200 << 10))]);
    let mut spec = String::from("name: delta-test\nimages:\n");
    for i in 0..4u64 {
        let seed = if changed.contains(&(i as usize)) {
            900 + i
        } else {
            600 + i
        };
        let app = build::layer(&[("bin/app", &build::pseudo_random(seed, 200 << 10))]);
        let img = l.image(Flavour::Oci, "linux", "amd64", &[base.clone(), app]);
        let tag = if changed.contains(&(i as usize)) {
            2
        } else {
            1
        };
        let r = format!("registry.example.com/team/app{i}:{tag}");
        l.tag(&img, &r);
        spec.push_str(&format!("  - oci:src:{r}\n"));
    }
    l.finish();
    let path = dir.join("ferry.yaml");
    std::fs::write(&path, spec).unwrap();
    path
}

fn load(archive: &Path, registry: &str) -> support::Out {
    ferry([
        "load",
        archive.to_str().unwrap(),
        "--registry",
        registry,
        "--json",
    ])
}

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

fn inventory(args: &[&str], out: &Path) -> Value {
    let mut a: Vec<&str> = vec!["inventory"];
    a.extend(args);
    a.extend(["-o", out.to_str().unwrap()]);
    ferry(&a).expect_ok("inventory");
    serde_json::from_slice(&std::fs::read(out).unwrap()).unwrap()
}

#[test]
fn delta_against_a_registry_carries_only_new_layers_and_loads_on_top_of_the_base() {
    let t = tempfile::tempdir().unwrap();
    let g1 = t.path().join("g1");
    let g2 = t.path().join("g2");
    let base_spec = image_set(&g1, &[]);
    let next_spec = image_set(&g2, &[2]);
    let base = t.path().join("base.tar");
    pack_spec(&base_spec, &base);
    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    let host = reg.host();
    load(&base, &format!("{host}/mirror")).expect_ok("load of the base");

    // Everything under the prefix, through the catalog.
    let have = t.path().join("have.json");
    let inv = inventory(&["--registry", &format!("{host}/mirror")], &have);
    assert_eq!(inv["format"], "ferry-inventory");
    let held = inv["blobs"].as_array().unwrap();
    // 1 base + 4 app layers + 4 configs.
    assert_eq!(held.len(), 9, "{inv:#}");
    assert!(held
        .iter()
        .all(|b| b["repositories"].as_array().is_some_and(|r| !r.is_empty())));

    // Next month: only image 2's new layer travels.
    let full = t.path().join("full.tar");
    pack_spec(&next_spec, &full);
    let delta = t.path().join("delta.tar");
    pack_args(&next_spec, &delta, &["--have", have.to_str().unwrap()]).expect_ok("pack --have");
    let i = inspect_json(&delta);
    let absent = i["delta"]["absent"].as_array().unwrap();
    assert_eq!(absent.len(), 4, "base + three unchanged app layers: {i:#}");
    assert!(i["delta"]["base"]
        .as_str()
        .unwrap()
        .contains(&format!("{host}/mirror")));
    assert!(
        size(&delta) < size(&full) * 35 / 100,
        "delta {} vs full {}",
        size(&delta),
        size(&full)
    );

    // verify checks what it carries and names what it expects.
    let out = ferry(["verify", delta.to_str().unwrap()]).expect_ok("verify of a delta");
    assert!(out.contains("expects the target to hold 4 blobs"), "{out}");

    // Loading into the base's registry works, and every image pulls whole.
    load(&delta, &format!("{host}/mirror")).expect_ok("load of the delta");
    for (n, tag) in [(0, 1), (1, 1), (2, 2), (3, 1)] {
        let o = run(skopeo().args([
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{host}/mirror/team/app{n}:{tag}"),
            &format!("oci:{}:app{n}", t.path().join("pulled").display()),
        ]));
        assert!(o.ok(), "app{n}: {}", o.stderr);
    }

    // A different prefix of the same registry: the left-out blobs are
    // mounted from the repositories the inventory names.
    load(&delta, &format!("{host}/other")).expect_ok("load of the delta under another prefix");

    // An empty registry lacks the base: every artifact fails, naming the
    // blob, and no manifest or tag is pushed.
    let empty = DockerRegistry::start(&t.path().join("empty"), false);
    let o = load(&delta, &empty.host());
    assert_eq!(o.code, Some(1), "{}{}", o.stdout, o.stderr);
    let report: Value = serde_json::from_str(&o.stdout).unwrap();
    let first_absent = absent[0]["digest"].as_str().unwrap();
    let all = o.stdout.clone();
    assert!(all.contains("left out of this delta"), "{all}");
    assert!(all.contains(first_absent), "{all}");
    assert!(report["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["ok"] == false));
    let o = registry_manifest(&format!("{}/team/app2:2", empty.host()), None);
    assert!(!o.ok(), "no tag may point at an incomplete image");
    // The new layer itself did travel.
    assert!(!empty.linked_blobs("team/app2").is_empty());
}

#[test]
fn inventory_of_an_earlier_bundle_or_of_the_repositories_it_maps_to() {
    let t = tempfile::tempdir().unwrap();
    let base_spec = image_set(&t.path().join("g1"), &[]);
    let next_spec = image_set(&t.path().join("g2"), &[0, 3]);
    let base = t.path().join("base.tar");
    pack_spec(&base_spec, &base);

    // From the bundle: every blob member it carried.
    let have = t.path().join("have.json");
    let inv = inventory(&["--bundle", base.to_str().unwrap()], &have);
    assert!(inv["source"].as_str().unwrap().contains("delta-test"));
    let delta = t.path().join("delta.tar");
    pack_args(&next_spec, &delta, &["--have", have.to_str().unwrap()]).expect_ok("pack --have");
    let i = inspect_json(&delta);
    assert_eq!(i["delta"]["absent"].as_array().unwrap().len(), 3);
    assert_eq!(i["format_version"], 2);

    // From the registry, for the repositories the base maps to (no catalog).
    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    load(&base, &reg.host()).expect_ok("load of the base");
    let have2 = t.path().join("have2.json");
    let inv2 = inventory(
        &["--registry", &reg.host(), "--for", base.to_str().unwrap()],
        &have2,
    );
    assert_eq!(inv2["blobs"].as_array().unwrap().len(), 9, "{inv2:#}");
    let delta2 = t.path().join("delta2.tar");
    pack_args(&next_spec, &delta2, &["--have", have2.to_str().unwrap()]).expect_ok("pack --have");
    load(&delta2, &reg.host()).expect_ok("load of the delta");
    // A delta of a delta: the earlier delta's left-out blobs count as held.
    let have3 = t.path().join("have3.json");
    let inv3 = inventory(&["--bundle", delta2.to_str().unwrap()], &have3);
    assert!(inv3["blobs"].as_array().unwrap().len() >= 6, "{inv3:#}");
}

#[test]
fn a_bad_inventory_is_named() {
    let t = tempfile::tempdir().unwrap();
    let spec = image_set(&t.path().join("g"), &[]);
    let bad = t.path().join("have.json");
    std::fs::write(&bad, "{\"format\": \"something-else\"}").unwrap();
    let m = pack_args(
        &spec,
        &t.path().join("d.tar"),
        &["--have", bad.to_str().unwrap()],
    )
    .expect_fail("pack with a foreign inventory");
    assert!(m.contains("have.json is format \"something-else\""), "{m}");
    std::fs::write(&bad, "not json").unwrap();
    let m = pack_args(
        &spec,
        &t.path().join("d.tar"),
        &["--have", bad.to_str().unwrap()],
    )
    .expect_fail("pack with a broken inventory");
    assert!(m.contains("have.json is not a ferry inventory"), "{m}");
    assert!(!t.path().join("d.tar").exists());
    // No catalog and nothing listening: one clear error naming the registry.
    let m = ferry([
        "inventory",
        "--registry",
        "127.0.0.1:9",
        "-o",
        t.path().join("x.json").to_str().unwrap(),
    ])
    .expect_fail("inventory of nothing");
    assert!(m.contains("127.0.0.1:9"), "{m}");
}

/// A registry sending a 100 MB catalog page, or a 100 MB tag list
/// (streamed by the proxy, never held by the test): each is refused at its
/// 16 MiB limit, named, and nothing near the whole is read.
#[test]
fn catalog_and_tag_list_pages_over_their_limits_are_refused_naming_the_limit() {
    let t = tempfile::tempdir().unwrap();
    let spec = image_set(&t.path().join("g"), &[]);
    let bundle = t.path().join("b.tar");
    pack_spec(&spec, &bundle);
    let reg = DockerRegistry::start(&t.path().join("reg"), false);
    for (needle, declared, want) in [
        ("/v2/_catalog", false, "the catalog is larger than ferry's limit of 16 MiB; stopped reading past the limit"),
        ("/tags/list", true, "the tag list is larger than ferry's limit of 16 MiB (it declared Content-Length 104857600)"),
    ] {
        let huge = 100 << 20;
        let proxy = support::registry::FaultProxy::start(
            reg.addr,
            needle,
            support::registry::Fault::Huge {
                method: "GET",
                status: 200,
                bytes: huge,
                declared,
            },
            u64::MAX,
        );
        let mut args = vec![
            "inventory".to_owned(),
            "--registry".to_owned(),
            proxy.addr.to_string(),
            "-o".to_owned(),
            t.path().join("inv.json").display().to_string(),
        ];
        if needle == "/tags/list" {
            args.extend(["--for".to_owned(), bundle.display().to_string()]);
        }
        let msg = ferry(&args).expect_fail(needle);
        assert!(msg.contains(want), "{needle}: {msg}");
        let sent = proxy
            .body_sent
            .load(std::sync::atomic::Ordering::Relaxed);
        assert!(sent < 64 << 20, "{needle}: read {sent} of {huge} bytes");
        assert!(!t.path().join("inv.json").exists());
    }
}
