//! `ferry inspect --html`: the bundle report, rendered in headless
//! Chromium (Debian's `chromium`) on the demo bundle and on a generated
//! 300-image bundle; its text after the page's script ran, its
//! screenshots, hostile names shown as text, `--verify` on a damaged
//! archive, and the sizes it reports checked against the layers
//! themselves.

// Test helpers panic on failure, like the tests that call them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::{build, demo_spec, ferry, pack_args, pack_spec, read_members, run, write_raw_tar};

/// Chromium, headless, as root needs it, with a profile of its own.
fn chromium(profile: &Path, args: &[&str], url: &str) -> support::Out {
    let bin = support::require_tool("chromium", "chromium");
    run(Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url))
}

fn url(page: &Path, fragment: &str) -> String {
    format!(
        "file://{}{fragment}",
        page.canonicalize().unwrap().display()
    )
}

/// The DOM after the page's script ran; fails on any script error.
fn dom(t: &Path, page: &Path, fragment: &str) -> String {
    let out = chromium(&t.join("profile"), &["--dump-dom"], &url(page, fragment));
    assert!(out.ok(), "chromium --dump-dom failed: {}", out.stderr);
    let console: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught"))
        .collect();
    assert!(
        console.is_empty(),
        "the page logged to its console: {console:#?}"
    );
    assert!(
        out.stdout.contains("data-script=\"ran\""),
        "the page's script did not run to its end:\n{}",
        &out.stdout[..out.stdout.len().min(2000)]
    );
    out.stdout
}

/// A screenshot of the page; returns its PNG bytes, checked non-trivial.
fn screenshot(t: &Path, page: &Path, png: &Path, size: &str) -> Vec<u8> {
    let shot = format!("--screenshot={}", png.display());
    let window = format!("--window-size={size}");
    let out = chromium(&t.join("profile"), &[&shot, &window], &url(page, ""));
    assert!(out.ok(), "chromium --screenshot failed: {}", out.stderr);
    let bytes = std::fs::read(png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    // A blank page compresses to a few KB; text, tables and bars do not.
    assert!(
        bytes.len() > 20_000,
        "a nearly empty screenshot: {} bytes",
        bytes.len()
    );
    bytes
}

/// The page refers to nothing outside itself.
fn assert_self_contained(html: &str) {
    for attr in ["src=", "href=", "url(", "@import", "srcset="] {
        for (i, _) in html.match_indices(attr) {
            let rest = &html[i + attr.len()..];
            let value = rest.trim_start_matches(['"', '\'']);
            assert!(
                attr == "href=" && value.starts_with('#'),
                "an external reference in the page: {}",
                &html[i..(i + 80).min(html.len())]
            );
        }
    }
    for scheme in ["http://", "https://", "//cdn", "ftp://"] {
        assert!(!html.contains(scheme), "{scheme} in the page");
    }
    assert!(html.contains("Content-Security-Policy\" content=\"default-src 'none';"));
}

fn sha256_of_bundle_json(archive: &Path) -> String {
    let members = read_members(archive);
    let b = members.iter().find(|m| m.name == "bundle.json").unwrap();
    ferry::digest::Digest::of(&b.data).to_string()
}

fn keygen(dir: &Path) -> (PathBuf, PathBuf) {
    let prefix = dir.join("release");
    ferry(["keygen".as_ref(), "-o".as_ref(), prefix.as_os_str()]).expect_ok("keygen");
    (dir.join("release.key"), dir.join("release.pub"))
}

#[test]
fn the_demo_bundle_report_shows_its_facts_in_chromium() {
    let t = tempfile::tempdir().unwrap();
    let (key, public) = keygen(t.path());
    let archive = t.path().join("demo.tar");
    pack_args(&demo_spec(), &archive, &["--sign", key.to_str().unwrap()]).expect_ok("pack --sign");
    let page = t.path().join("demo.html");
    let out = ferry([
        "inspect".as_ref(),
        archive.as_os_str(),
        "--key".as_ref(),
        public.as_os_str(),
        "--verify".as_ref(),
        "--html".as_ref(),
        page.as_os_str(),
    ])
    .expect_ok("inspect --html --verify");
    assert!(
        out.contains("report: ") && out.contains("2 images, 3 platforms"),
        "{out}"
    );
    assert!(out.contains("OK "), "verify's verdict on stdout: {out}");
    // Written whole, nothing left beside it.
    let names: Vec<String> = std::fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(names.is_empty(), "temp files left: {names:?}");

    let html = std::fs::read_to_string(&page).unwrap();
    assert_self_contained(&html);
    // The same archive, the same page.
    let again = t.path().join("again.html");
    ferry([
        "inspect".as_ref(),
        archive.as_os_str(),
        "--key".as_ref(),
        public.as_os_str(),
        "--verify".as_ref(),
        "--html".as_ref(),
        again.as_os_str(),
    ])
    .expect_ok("inspect --html again");
    assert_eq!(
        html,
        std::fs::read_to_string(&again).unwrap(),
        "not deterministic"
    );

    let dom = dom(t.path(), &page, "");
    for text in [
        "<h1><span class=\"name\">demo</span>",
        &sha256_of_bundle_json(&archive),
        "signed, checked",
        "docker.io/library/demo:1.0",
        "registry.example.com/tools/hello:2.1",
        "linux/amd64 linux/arm64",
        "demo-chart",
        "0.1.0",
        "README.txt",
        "manifests",
        "directory",
        "<span class=\"tag ok\">OK</span> 22 members and 5 artifacts intact",
        "No layer is used by more than one image.",
        "2 of 2 images shown",
    ] {
        assert!(dom.contains(text), "{text:?} is not in the page");
    }
    screenshot(t.path(), &page, &t.path().join("demo.png"), "1280,1400");
}

#[test]
fn a_300_image_bundle_report_filters_sorts_and_counts_shared_bytes() {
    let t = tempfile::tempdir().unwrap();
    let saved = build::many_images(&t.path().join("src"), 300);
    let archive = t.path().join("many.tar");
    pack_spec(&t.path().join("src/ferry.yaml"), &archive);
    let page = t.path().join("many.html");
    let out = ferry([
        "inspect".as_ref(),
        archive.as_os_str(),
        "--html".as_ref(),
        page.as_os_str(),
    ])
    .expect_ok("inspect --html");
    assert!(
        out.contains("300 images, 600 platforms; 20 layers shared"),
        "{out}"
    );
    let html = std::fs::read_to_string(&page).unwrap();
    assert_self_contained(&html);
    // About 1 KB an image: 3,000 stay under 5 MB.
    assert!(
        html.len() < 300 * 1400,
        "{} bytes for 300 images",
        html.len()
    );
    // Rows start collapsed.
    assert!(!html.contains("<details open><summary class=\"name\">"));

    // Filtered and sorted by the fragment, as a click would.
    let report =
        ferry::bundle_report::gather(&archive, None, false, &ferry::report::Silent).unwrap();
    let largest = report
        .images
        .iter()
        .max_by_key(|i| (i.compressed, std::cmp::Reverse(&i.reference)))
        .unwrap();
    let dom_sorted = dom(t.path(), &page, "#sort=-c");
    let first_row = dom_sorted.split("<table id=\"img\">").nth(1).unwrap();
    let first_name = first_row
        .split("<summary class=\"name\">")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap();
    assert_eq!(
        first_name, largest.reference,
        "sorted by compressed size, largest first"
    );
    let dom = dom(t.path(), &page, "#q=app0123&sort=n");
    assert!(
        dom.contains("1 of 300 images shown"),
        "the filter did not apply"
    );
    assert_eq!(
        dom.matches("data-p=\"2\" hidden=\"\"").count(),
        299,
        "299 rows hidden"
    );
    for text in [
        "<h1><span class=\"name\">many</span>",
        &sha256_of_bundle_json(&archive),
        "unsigned",
        "not run",
        "registry.example.com/team4/app0123:1.0",
        "linux/amd64 linux/arm64",
        "20 layer(s) are used by more than one image",
        &format!("({saved} bytes)"),
    ] {
        assert!(dom.contains(text), "{text:?} is not in the page");
    }
    screenshot(t.path(), &page, &t.path().join("many.png"), "1280,2000");
}

#[test]
fn uncompressed_sizes_match_the_layers_unpacked() {
    let t = tempfile::tempdir().unwrap();
    let archive = t.path().join("demo.tar");
    pack_spec(&demo_spec(), &archive);
    let report =
        ferry::bundle_report::gather(&archive, None, false, &ferry::report::Silent).unwrap();
    let layout = support::repo_root().join("fixtures/demo/layout");
    let blob = |d: &ferry::digest::Digest| std::fs::read(layout.join(d.blob_path())).unwrap();
    let mut checked = 0;
    for image in &report.images {
        for p in &image.platforms {
            let manifest: ferry::oci::Manifest = serde_json::from_slice(&blob(&p.digest)).unwrap();
            let mut unpacked = manifest.config.size;
            let mut packed = manifest.config.size;
            for l in &manifest.layers {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(&blob(&l.digest)[..])
                    .read_to_end(&mut out)
                    .unwrap();
                unpacked += out.len() as u64;
                packed += l.size;
            }
            assert_eq!(p.compressed, packed, "{} {}", image.reference, p.platform);
            assert_eq!(
                p.uncompressed.bytes, unpacked,
                "{} {}",
                image.reference, p.platform
            );
            assert!(p.uncompressed.approximate && p.uncompressed.unknown == 0);
            checked += 1;
        }
    }
    assert_eq!(checked, 3);
    assert!(report.uncompressed_note.is_none());

    // A layer split across volumes: its trailer is read from the last one.
    let mut l = build::LayoutBuilder::new(&t.path().join("big/layout"));
    let data = build::pseudo_random(7, 2_500_000);
    let big = build::layer(&[("big.bin", &data)]);
    let gz_len = big.0.len() as u64;
    let img = l.image(build::Flavour::Oci, "linux", "amd64", &[big]);
    l.tag(&img, "registry.example.com/big:1");
    l.finish();
    let spec = t.path().join("big/ferry.yaml");
    std::fs::write(
        &spec,
        "name: big\nimages:\n  - oci:layout:registry.example.com/big:1\n",
    )
    .unwrap();
    let split = t.path().join("big.tar");
    pack_args(&spec, &split, &["--volume-size", "1M"]).expect_ok("pack --volume-size 1M");
    let report = ferry::bundle_report::gather(
        &t.path().join("big.tar.001"),
        None,
        false,
        &ferry::report::Silent,
    )
    .unwrap();
    assert!(report.inspection.volumes.len() >= 3);
    let p = &report.images[0].platforms[0];
    let config = p.compressed - gz_len;
    let tar_len = build::tar_of(&[("big.bin", &data)]).len() as u64;
    assert_eq!(p.uncompressed.bytes, config + tar_len);
    assert_eq!(p.uncompressed.known, 1);

    // zstd-compressed, framed: layers are read by position through their
    // frames, so the estimates are those of the plain archive.
    let zst = t.path().join("demo.tar.zst");
    pack_args(&demo_spec(), &zst, &["--compress", "zstd"]).expect_ok("pack --compress zstd");
    let plain = t.path().join("demo.tar");
    pack_spec(&demo_spec(), &plain);
    let framed = ferry::bundle_report::gather(&zst, None, false, &ferry::report::Silent).unwrap();
    let unframed =
        ferry::bundle_report::gather(&plain, None, false, &ferry::report::Silent).unwrap();
    assert!(framed.uncompressed_note.is_none());
    let sizes = |r: &ferry::bundle_report::Report| {
        r.images
            .iter()
            .flat_map(|i| &i.platforms)
            .map(|p| (p.uncompressed.bytes, p.uncompressed.known))
            .collect::<Vec<_>>()
    };
    assert_eq!(sizes(&framed), sizes(&unframed));

    // One zstd stream (ferry before framing, or `zstd` over a plain
    // archive): layers cannot be read by position, and the page says so
    // instead of guessing.
    let zst = t.path().join("demo-stream.tar.zst");
    std::fs::write(
        &zst,
        zstd::encode_all(&std::fs::read(&plain).unwrap()[..], 3).unwrap(),
    )
    .unwrap();
    let report = ferry::bundle_report::gather(&zst, None, false, &ferry::report::Silent).unwrap();
    assert!(report.uncompressed_note.is_some());
    assert_eq!(report.images.len(), 2);
    for p in report.images.iter().flat_map(|i| &i.platforms) {
        assert_eq!(
            (p.uncompressed.known, p.uncompressed.unknown),
            (0, p.layers)
        );
        assert!(p.compressed > 0);
    }
    let html = ferry::bundle_report::html::render(&report);
    assert!(html.contains("zstd-compressed, so layers cannot be read by position"));
    assert!(html.contains(">unknown<"));
}

#[test]
fn hostile_names_from_bundle_json_show_as_text_in_the_report() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("notes.txt"), b"hello").unwrap();
    let spec = t.path().join("ferry.yaml");
    let evil = "<script>document.documentElement.setAttribute('data-pwned','1')</script><b id=injected>x</b>";
    std::fs::write(
        &spec,
        format!(
            "name: \"{evil}\"\nfiles:\n  - {{path: notes.txt, name: \"<img src=x onerror=alert(1)>\"}}\n"
        ),
    )
    .unwrap();
    let archive = t.path().join("b.tar");
    pack_spec(&spec, &archive);
    let page = t.path().join("evil.html");
    ferry([
        "inspect".as_ref(),
        archive.as_os_str(),
        "--html".as_ref(),
        page.as_os_str(),
    ])
    .expect_ok("inspect --html");
    let html = std::fs::read_to_string(&page).unwrap();
    assert_eq!(
        html.matches("<script").count(),
        1,
        "only the page's own script"
    );
    assert!(!html.contains("<img") && !html.contains("<b id"));
    assert!(html.contains("&lt;script&gt;document.documentElement"));
    let dom = dom(t.path(), &page, "");
    assert!(
        !dom.contains("data-pwned=\"1\""),
        "the name ran as a script"
    );
    assert!(!dom.contains("id=\"injected\""), "the name became markup");
    assert!(!dom.contains("<img"), "the file's name became markup");
    // Shown, as text.
    assert!(dom.contains(
        "&lt;script&gt;document.documentElement.setAttribute('data-pwned','1')&lt;/script&gt;"
    ));
    assert!(dom.contains("&lt;img src=x onerror=alert(1)&gt;"));
}

#[test]
fn inspect_verify_writes_the_report_of_a_damaged_archive_and_exits_1() {
    let t = tempfile::tempdir().unwrap();
    let archive = support::pack_demo(t.path());
    // Flip a byte of the largest layer: same size, other bytes.
    let mut members = read_members(&archive);
    let victim = members
        .iter_mut()
        .filter(|m| m.name.starts_with("blobs/"))
        .max_by_key(|m| m.data.len())
        .unwrap();
    let name = victim.name.clone();
    victim.data[100] ^= 0xff;
    let bad = t.path().join("bad.tar");
    write_raw_tar(&bad, &members, true);
    let page = t.path().join("bad.html");
    let html_args = |page: &Path, verify: bool| {
        let mut a: Vec<std::ffi::OsString> = vec![
            "inspect".into(),
            bad.clone().into(),
            "--html".into(),
            page.into(),
        ];
        if verify {
            a.push("--verify".into());
        }
        a
    };
    // Without --verify nothing hashes the layer: the report is written.
    ferry(html_args(&page, false)).expect_ok("inspect --html of a damaged layer");
    let out = ferry(html_args(&page, true)).expect_fail("inspect --html --verify");
    assert!(out.contains("FAILED"), "{out}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("<span class=\"tag bad\">FAILED</span>"));
    assert!(html.contains(&name), "the damaged member is named");
    assert!(html.contains("Verify: FAILED, 1 problem(s)"));

    // --json --verify: the inspection, and verify's report under "verify".
    let json = ferry([
        "inspect".as_ref(),
        bad.as_os_str(),
        "--json".as_ref(),
        "--verify".as_ref(),
    ]);
    assert_eq!(json.code, Some(1), "{}", json.stderr);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["name"], "demo");
    assert_eq!(v["verify"]["problems"][0]["member"], name.as_str());
    let plain = support::inspect_json(&archive);
    assert!(plain.get("verify").is_none(), "--json alone is unchanged");

    // Truncated: refused without --verify (as inspect refuses it), nothing
    // written; reported with it.
    let bytes = std::fs::read(&archive).unwrap();
    let cut = t.path().join("cut.tar");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let cut_page = t.path().join("cut.html");
    let refused = ferry([
        "inspect".as_ref(),
        cut.as_os_str(),
        "--html".as_ref(),
        cut_page.as_os_str(),
    ])
    .expect_fail("inspect --html of a truncated archive");
    assert!(refused.contains("cut.tar"), "{refused}");
    assert!(!cut_page.exists(), "a refused archive leaves no report");
    let out = ferry([
        "inspect".as_ref(),
        cut.as_os_str(),
        "--html".as_ref(),
        cut_page.as_os_str(),
        "--verify".as_ref(),
    ])
    .expect_fail("inspect --html --verify of a truncated archive");
    assert!(out.contains("FAILED"), "{out}");
    let html = std::fs::read_to_string(&cut_page).unwrap();
    assert!(html.contains("<th>damage</th>") && html.contains("FAILED"));
}

#[test]
fn a_report_into_a_missing_directory_fails_naming_it() {
    let t = tempfile::tempdir().unwrap();
    let archive = support::pack_demo(t.path());
    let page = t.path().join("no/such/dir/report.html");
    let out = ferry([
        "inspect".as_ref(),
        archive.as_os_str(),
        "--html".as_ref(),
        page.as_os_str(),
    ])
    .expect_fail("inspect --html into a missing directory");
    assert!(out.contains("report.html"), "{out}");
    assert!(!page.exists());
    // `-` writes the page to stdout instead.
    let out = ferry([
        "inspect".as_ref(),
        archive.as_os_str(),
        "--html".as_ref(),
        "-".as_ref(),
    ])
    .expect_ok("inspect --html -");
    assert!(out.starts_with("<!doctype html>") && out.ends_with("</html>\n"));
}

#[test]
fn referrers_are_listed_under_their_subject() {
    use support::hand::{desc, hand_archive, Root};
    let t = tempfile::tempdir().unwrap();
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec();
    let image = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}}"#,
        desc("application/vnd.oci.image.config.v1+json", &config)
    )
    .into_bytes();
    let empty = b"{}".to_vec();
    let sbom = b"{\"spdxVersion\":\"SPDX-2.3\"}".to_vec();
    let referrer = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/spdx+json","config":{},"layers":[{}],"subject":{}}}"#,
        desc("application/vnd.oci.empty.v1+json", &empty),
        desc("application/spdx+json", &sbom),
        desc("application/vnd.oci.image.manifest.v1+json", &image)
    )
    .into_bytes();
    let archive = t.path().join("refs.tar");
    hand_archive(
        &archive,
        &[
            Root {
                reference: "registry.example.com/app:1",
                media_type: "application/vnd.oci.image.manifest.v1+json",
                bytes: image,
            },
            Root {
                reference: "registry.example.com/app:sbom",
                media_type: "application/vnd.oci.image.manifest.v1+json",
                bytes: referrer,
            },
        ],
        &[config, empty, sbom],
    );
    let report =
        ferry::bundle_report::gather(&archive, None, false, &ferry::report::Silent).unwrap();
    assert_eq!(report.referrers.len(), 1);
    let r = &report.referrers[0];
    assert_eq!(r.reference, "registry.example.com/app:sbom");
    assert_eq!(r.artifact_type, "application/spdx+json");
    assert_eq!(
        r.subject_reference.as_deref(),
        Some("registry.example.com/app:1")
    );
    let html = ferry::bundle_report::html::render(&report);
    assert!(html.contains("<section id=\"referrers\">"));
    assert!(html.contains("Referrers (1)"));

    // Without a subject anywhere, no section.
    let plain = ferry::bundle_report::gather(
        &support::pack_demo(t.path()),
        None,
        false,
        &ferry::report::Silent,
    )
    .unwrap();
    assert!(plain.referrers.is_empty());
    assert!(!ferry::bundle_report::html::render(&plain).contains("id=\"referrers\""));
}
