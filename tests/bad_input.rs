//! Bad input gets a clear message naming the thing, a non-zero exit, and
//! leaves nothing half-written that looks whole. Each test feeds one kind
//! of damage.

// Test helpers panic on failure, like the tests that call them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};

use support::*;

fn verify_fails(archive: &Path) -> String {
    ferry(["verify".as_ref(), archive.as_os_str()]).expect_fail("verify")
}

/// `ferry unpack ARCHIVE -o DIR`, which must fail with exit 1; its output.
fn unpack_fails(archive: &Path, dir: &Path) -> String {
    ferry([
        "unpack".as_ref(),
        archive.as_os_str(),
        "-o".as_ref(),
        dir.as_os_str(),
    ])
    .expect_fail("unpack")
}

/// `ferry unpack ARCHIVE --files DIR`, which must fail with exit 1; its
/// output.
fn unpack_files_fails(archive: &Path, files: &Path) -> String {
    ferry([
        "unpack".as_ref(),
        archive.as_os_str(),
        "--files".as_ref(),
        files.as_os_str(),
    ])
    .expect_fail("unpack --files")
}

/// `ferry pack SPEC -o OUT`, which must fail with exit 1; its output.
fn pack_fails(spec: &Path, out: &std::ffi::OsStr) -> String {
    ferry(["pack".as_ref(), spec.as_os_str(), "-o".as_ref(), out]).expect_fail("pack")
}

/// The demo archive's members, to damage and write back.
fn demo_members(dir: &Path) -> (PathBuf, Vec<RawMember>) {
    let archive = pack_demo(dir);
    let members = read_members(&archive);
    (archive, members)
}

/// The digest of the demo image's first gzip layer.
fn a_layer(members: &[RawMember]) -> RawMember {
    members
        .iter()
        .find(|m| {
            m.name.starts_with("blobs/") && m.data.starts_with(&[0x1f, 0x8b]) && m.data.len() > 1000
        })
        .cloned()
        .expect("a layer")
}

#[test]
fn malformed_spec_names_line_and_column() {
    let t = tempfile::tempdir().unwrap();
    let spec = t.path().join("ferry.yaml");
    std::fs::write(&spec, "name: x\nimages:\n  - nginx\n  - ref: [unclosed\n").unwrap();
    let e = pack_fails(&spec, t.path().join("o.tar").as_os_str());
    assert!(
        e.contains(&format!("invalid spec {}", spec.display())),
        "{e}"
    );
    assert!(e.contains("line 4"), "{e}");

    std::fs::write(
        &spec,
        "name: x\nimages:\n  - oci:layout\nfiles: []\nextra: 1\n",
    )
    .unwrap();
    let e = pack_fails(&spec, t.path().join("o.tar").as_os_str());
    assert!(
        e.contains("line 5 column 1") && e.contains("unknown field `extra`"),
        "{e}"
    );
    assert!(!t.path().join("o.tar").exists());
}

#[test]
fn unknown_source_path_is_named() {
    let t = tempfile::tempdir().unwrap();
    let spec = t.path().join("ferry.yaml");
    std::fs::write(&spec, "images:\n  - oci:missing-dir:app:1\n").unwrap();
    let out = t.path().join("o.tar");
    let e = pack_fails(&spec, out.as_os_str());
    assert!(e.contains("missing-dir"), "{e}");
    assert!(!out.exists());
    // No scratch or partial files are left behind.
    let left: Vec<_> = std::fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("ferry.yaml")],
        "{left:?}"
    );

    std::fs::write(&spec, "files:\n  - path: nothing-here.txt\n").unwrap();
    let e = pack_fails(&spec, out.as_os_str());
    assert!(e.contains("nothing-here.txt"), "{e}");
}

#[test]
fn unknown_image_name_in_layout_lists_what_exists() {
    let t = tempfile::tempdir().unwrap();
    let spec = t.path().join("ferry.yaml");
    let layout = repo_root().join("fixtures/demo/layout");
    std::fs::write(
        &spec,
        format!(
            "images:\n  - oci:{}:docker.io/library/nope:1\n",
            layout.display()
        ),
    )
    .unwrap();
    let e = pack_fails(&spec, t.path().join("o.tar").as_os_str());
    assert!(
        e.contains("no image named \"docker.io/library/nope:1\""),
        "{e}"
    );
    assert!(e.contains("docker.io/library/demo:1.0"), "{e}");
}

#[test]
fn corrupt_source_blob_never_becomes_an_archive() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    support::build::demo_fixtures(&src);
    // Flip a byte in a layer of the source layout (same size).
    let layer = walkdir::WalkDir::new(src.join("layout/blobs"))
        .into_iter()
        .map(|e| e.unwrap())
        .find(|e| e.file_type().is_file() && e.metadata().unwrap().len() > 1000)
        .unwrap();
    let mut bytes = std::fs::read(layer.path()).unwrap();
    bytes[500] ^= 0x01;
    std::fs::write(layer.path(), &bytes).unwrap();
    let out = t.path().join("o.tar");
    let e = ferry([
        "pack".as_ref(),
        src.join("ferry.yaml").as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ])
    .expect_fail("pack");
    let hex = layer.file_name().to_string_lossy().into_owned();
    assert!(e.contains(&hex) && e.contains("hashes to"), "{e}");
    assert!(
        !out.exists(),
        "a partial archive was left under the final name"
    );
    assert!(
        std::fs::read_dir(t.path()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".partial")),
        "temp file left behind"
    );
}

#[test]
fn flipped_byte_in_a_layer_names_digest_and_image() {
    let t = tempfile::tempdir().unwrap();
    let (archive, members) = demo_members(t.path());
    let layer = a_layer(&members);
    // Flip one byte of that layer in place.
    let mut bytes = std::fs::read(&archive).unwrap();
    let at = bytes
        .windows(layer.data.len().min(64))
        .position(|w| w == &layer.data[..w.len()])
        .unwrap()
        + 100;
    bytes[at] ^= 0x40;
    std::fs::write(&archive, &bytes).unwrap();
    let e = verify_fails(&archive);
    assert!(e.contains(&layer.name), "{e}");
    assert!(e.contains("does not match its digest"), "{e}");
    assert!(
        e.contains("docker.io/library/demo:1.0"),
        "names the image: {e}"
    );
    // The report says which artifacts are still intact.
    assert!(e.contains("charts/demo-chart:0.1.0"), "{e}");

    // unpack refuses and leaves no usable layout.
    let dir = t.path().join("out");
    let e = unpack_fails(&archive, &dir);
    assert!(
        e.contains(&layer.name) || e.contains(layer.name.trim_start_matches("blobs/sha256/")),
        "{e}"
    );
    assert!(!dir.join("index.json").exists());
    assert!(!dir.join(&layer.name).exists());
}

#[test]
fn truncated_inside_a_blob() {
    let t = tempfile::tempdir().unwrap();
    let (archive, members) = demo_members(t.path());
    let bytes = std::fs::read(&archive).unwrap();
    let last = members.last().unwrap();
    // Cut in the middle of the last member's data.
    let start = bytes
        .windows(64)
        .rposition(|w| w == &last.data[..64])
        .unwrap();
    std::fs::write(&archive, &bytes[..start + last.data.len() / 2]).unwrap();
    let e = verify_fails(&archive);
    assert!(e.contains("is truncated"), "{e}");
    assert!(e.contains(&last.name), "{e}");
    let e = ferry(["inspect".as_ref(), archive.as_os_str()]).expect_fail("inspect");
    assert!(e.contains("is truncated"), "{e}");
    let dir = t.path().join("out");
    unpack_fails(&archive, &dir);
    assert!(!dir.join("index.json").exists());
}

/// Every member of the demo archive (oci-layout, bundle.json, index.json,
/// manifests, indexes, configs, layers, the chart): a flipped bit in its
/// header or its data, and a cut inside its header or its data, are each
/// refused by verify with the member or the byte offset named.
#[test]
fn every_member_kind_damaged_or_cut_anywhere_is_named() {
    let t = tempfile::tempdir().unwrap();
    let archive = pack_demo(t.path());
    let bytes = std::fs::read(&archive).unwrap();
    let mut places = Vec::new();
    let mut tar = tar::Archive::new(std::io::Cursor::new(&bytes));
    for e in tar.entries().unwrap() {
        let e = e.unwrap();
        places.push((
            e.path().unwrap().to_string_lossy().into_owned(),
            e.raw_header_position() as usize,
            e.raw_file_position() as usize,
            e.size() as usize,
        ));
    }
    assert!(places.len() > 10, "{places:?}");
    let damaged = t.path().join("damaged.tar");
    for (name, header, data, size) in places {
        let mut flipped = bytes.clone();
        flipped[data + size / 2] ^= 0x04;
        std::fs::write(&damaged, &flipped).unwrap();
        let e = verify_fails(&damaged);
        assert!(e.contains(&name), "flipped bit in {name}: {e}");

        let mut flipped = bytes.clone();
        flipped[header + 50] ^= 0x04;
        std::fs::write(&damaged, &flipped).unwrap();
        let e = verify_fails(&damaged);
        assert!(
            e.contains(&format!("corrupt tar header at byte {header}")),
            "flipped bit in the header of {name}: {e}"
        );

        std::fs::write(&damaged, &bytes[..header + 100]).unwrap();
        let e = verify_fails(&damaged);
        assert!(
            e.contains(&format!("a tar header at byte {header} is incomplete")),
            "cut inside the header of {name}: {e}"
        );

        std::fs::write(&damaged, &bytes[..data + size.div_ceil(2)]).unwrap();
        let e = verify_fails(&damaged);
        assert!(
            e.contains("is truncated") && e.contains(&format!("member {name} needs {size} bytes")),
            "cut inside {name}: {e}"
        );
    }
}

#[test]
fn truncated_on_a_member_boundary_without_end_marker() {
    let t = tempfile::tempdir().unwrap();
    let (archive, _) = demo_members(t.path());
    let bytes = std::fs::read(&archive).unwrap();
    // Drop exactly the two end-of-archive blocks: `tar` itself calls this fine.
    std::fs::write(&archive, &bytes[..bytes.len() - 1024]).unwrap();
    let e = verify_fails(&archive);
    assert!(e.contains("no end-of-archive marker"), "{e}");

    // Cut after a whole member in the middle: the missing members are reported.
    let (archive, members) = demo_members(&t.path().join("x").tap_mkdir());
    let keep = members.len() - 3;
    write_raw_tar(&archive, &members[..keep], true);
    let e = verify_fails(&archive);
    assert!(
        e.contains("3 member(s) listed in bundle.json are missing"),
        "{e}"
    );
    assert!(e.contains(&members[keep].name), "{e}");
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}
impl TapMkdir for PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

#[test]
fn parent_dir_member_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let (archive, mut members) = demo_members(t.path());
    members.insert(3, RawMember::file("../evil", b"pwned"));
    write_raw_tar(&archive, &members, true);
    let e = verify_fails(&archive);
    assert!(
        e.contains("\"../evil\" is not listed in bundle.json"),
        "{e}"
    );
    let dir = t.path().join("out");
    unpack_fails(&archive, &dir);
    assert!(!t.path().join("evil").exists());

    // Listing it in bundle.json does not help.
    let (archive, mut members) = demo_members(&t.path().join("y").tap_mkdir());
    let mut b = bundle_of(&members);
    b["members"][1]["path"] = "../evil".into();
    set_bundle(&mut members, &b);
    write_raw_tar(&archive, &members, true);
    let e = verify_fails(&archive);
    assert!(e.contains("\"../evil\", which is not a layout path"), "{e}");
}

#[test]
fn link_device_and_fifo_members_are_refused() {
    for (flag, kind) in [
        (b'2', "symbolic link"),
        (b'1', "hard link"),
        (b'3', "character device"),
        (b'4', "block device"),
        (b'6', "FIFO"),
        (b'5', "directory"),
        (b'x', "PAX extended header"),
    ] {
        let t = tempfile::tempdir().unwrap();
        let (archive, mut members) = demo_members(t.path());
        let victim = members.len() - 1;
        let name = members[victim].name.clone();
        members[victim] = RawMember {
            name: name.clone(),
            data: Vec::new(),
            typeflag: flag,
            link: "/etc/passwd".into(),
            header_size: None,
        };
        write_raw_tar(&archive, &members, true);
        let e = verify_fails(&archive);
        assert!(
            e.contains(&format!("member {name:?} is a {kind}")),
            "{kind}: {e}"
        );
    }
}

/// A PAX `size` record overrides the ustar size field for the member that
/// follows; a reader that believed one saying more (or less) than the data
/// would lose its place in the archive. ferry refuses PAX headers outright,
/// before reading the member they describe, so the lie is never believed.
#[test]
fn a_pax_header_that_lies_about_size_is_refused_before_it_is_believed() {
    for claimed in [1u64, 1 << 40] {
        let t = tempfile::tempdir().unwrap();
        let (archive, mut members) = demo_members(t.path());
        let layer = a_layer(&members);
        let at = members.iter().position(|m| m.name == layer.name).unwrap();
        let body = format!(" size={claimed}\n");
        let mut len = body.len() + 1;
        while format!("{len}{body}").len() != len {
            len += 1;
        }
        members.insert(
            at,
            RawMember {
                name: format!("PaxHeaders/{}", layer.name),
                data: format!("{len}{body}").into_bytes(),
                typeflag: b'x',
                link: String::new(),
                header_size: None,
            },
        );
        write_raw_tar(&archive, &members, true);
        let e = verify_fails(&archive);
        assert!(
            e.contains(&format!(
                "member \"PaxHeaders/{}\" is a PAX extended header",
                layer.name
            )),
            "size={claimed}: {e}"
        );
        let dir = t.path().join("out");
        let e = unpack_fails(&archive, &dir);
        assert!(e.contains("PAX extended header"), "{e}");
        assert!(!dir.exists() || std::fs::read_dir(&dir).unwrap().next().is_none());
    }
}

#[test]
fn duplicate_member_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let (archive, mut members) = demo_members(t.path());
    let dup = members[5].clone();
    members.insert(6, dup.clone());
    write_raw_tar(&archive, &members, true);
    let e = verify_fails(&archive);
    assert!(
        e.contains(&format!("member {} appears twice", dup.name)),
        "{e}"
    );

    // A second bundle.json too.
    let (archive, mut members) = demo_members(&t.path().join("b").tap_mkdir());
    let b = members[1].clone();
    members.push(b);
    write_raw_tar(&archive, &members, true);
    let e = verify_fails(&archive);
    assert!(e.contains("member bundle.json appears twice"), "{e}");
}

#[test]
fn members_out_of_order_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let (archive, mut members) = demo_members(t.path());
    members.swap(4, 5);
    write_raw_tar(&archive, &members, true);
    let e = verify_fails(&archive);
    assert!(e.contains("is out of order"), "{e}");
}

#[test]
fn manifest_whose_layer_is_missing() {
    let t = tempfile::tempdir().unwrap();
    let (archive, mut members) = demo_members(t.path());
    let layer = a_layer(&members);
    members.retain(|m| m.name != layer.name);
    let mut b = bundle_of(&members);
    b["members"]
        .as_array_mut()
        .unwrap()
        .retain(|m| m["path"] != layer.name.as_str());
    set_bundle(&mut members, &b);
    write_raw_tar(&archive, &members, true);
    let e = verify_fails(&archive);
    let digest = format!("sha256:{}", layer.name.trim_start_matches("blobs/sha256/"));
    assert!(
        e.contains(&format!("blob {digest}")) && e.contains("is missing from the archive"),
        "{e}"
    );
    assert!(e.contains("docker.io/library/demo:1.0"), "{e}");
}

#[test]
fn extra_unlisted_member_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let (archive, mut members) = demo_members(t.path());
    let d = ferry::digest::Digest::of(b"extra");
    members.push(RawMember::file(&d.blob_path(), b"extra"));
    write_raw_tar(&archive, &members, true);
    let e = verify_fails(&archive);
    assert!(
        e.contains(&format!("{:?} is not listed in bundle.json", d.blob_path())),
        "{e}"
    );
}

#[test]
fn member_larger_than_declared_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let (archive, mut members) = demo_members(t.path());
    let i = members.len() - 1;
    members[i].data.extend_from_slice(b"more");
    write_raw_tar(&archive, &members, true);
    let e = verify_fails(&archive);
    assert!(e.contains("bytes but bundle.json declares"), "{e}");
    assert!(e.contains(&members[i].name), "{e}");
}

#[test]
fn data_after_the_end_marker_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let (archive, _) = demo_members(t.path());
    let mut bytes = std::fs::read(&archive).unwrap();
    bytes.extend_from_slice(b"appended garbage");
    std::fs::write(&archive, bytes).unwrap();
    let e = verify_fails(&archive);
    assert!(
        e.contains("unexpected data after the end-of-archive marker"),
        "{e}"
    );
}

#[test]
fn bundle_json_that_does_not_match_the_schema() {
    let t = tempfile::tempdir().unwrap();
    let (archive, mut members) = demo_members(t.path());
    let mut b = bundle_of(&members);
    b.as_object_mut().unwrap().remove("members");
    set_bundle(&mut members, &b);
    write_raw_tar(&archive, &members, true);
    let e = verify_fails(&archive);
    assert!(
        e.contains("invalid bundle.json: bundle.json does not match the ferry bundle schema"),
        "{e}"
    );
    assert!(e.contains("members"), "{e}");

    // Not JSON at all.
    members[1].data = b"\x00not json".to_vec();
    write_raw_tar(&archive, &members, true);
    let e = verify_fails(&archive);
    assert!(e.contains("does not match the ferry bundle schema"), "{e}");

    // From a newer ferry.
    let mut b = bundle_of(&read_members(&pack_demo(&t.path().join("n").tap_mkdir())));
    b["format_version"] = 99.into();
    b["something_new"] = true.into();
    set_bundle(&mut members, &b);
    write_raw_tar(&archive, &members, true);
    let e = verify_fails(&archive);
    assert!(
        e.contains("format version 99") && e.contains("upgrade ferry"),
        "{e}"
    );
}

#[test]
fn not_a_ferry_archive() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("plain.tar");
    write_raw_tar(&p, &[RawMember::file("hello.txt", b"hi")], true);
    let e = verify_fails(&p);
    assert!(
        e.contains("is not a ferry archive: its first member is \"hello.txt\""),
        "{e}"
    );
    let missing = t.path().join("nope.tar");
    let e = verify_fails(&missing);
    assert!(e.contains("nope.tar"), "{e}");
}

#[test]
fn corrupt_header_checksum_is_named_with_offset() {
    let t = tempfile::tempdir().unwrap();
    let (archive, _) = demo_members(t.path());
    let mut bytes = std::fs::read(&archive).unwrap();
    bytes[512 * 3 + 10] ^= 0x01; // inside bundle.json's data? no: find index.json header instead
    std::fs::write(&archive, &bytes).unwrap();
    // Either bundle.json's content or a header is now wrong; both are refused.
    verify_fails(&archive);
    let (archive, _) = demo_members(&t.path().join("h").tap_mkdir());
    let mut bytes = std::fs::read(&archive).unwrap();
    bytes[0] ^= 0x01; // the first header's name
    std::fs::write(&archive, &bytes).unwrap();
    let e = verify_fails(&archive);
    assert!(e.contains("corrupt tar header at byte 0"), "{e}");
}

#[test]
fn unpack_into_a_non_empty_directory_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let (archive, _) = demo_members(t.path());
    let dir = t.path().join("busy");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("keep.txt"), b"mine").unwrap();
    let e = unpack_fails(&archive, &dir);
    assert!(e.contains("is not empty"), "{e}");
    assert_eq!(std::fs::read(dir.join("keep.txt")).unwrap(), b"mine");
}

#[test]
fn chart_that_is_not_a_chart_or_escapes_its_directory() {
    let t = tempfile::tempdir().unwrap();
    let spec = t.path().join("ferry.yaml");
    let out = t.path().join("o.tar");
    std::fs::write(&spec, "charts:\n  - path: bad.tgz\n").unwrap();

    std::fs::write(
        t.path().join("bad.tgz"),
        support::build::gzip(&support::build::tar_of(&[("x/values.yaml", b"a: 1\n")])),
    )
    .unwrap();
    let e = pack_fails(&spec, out.as_os_str());
    assert!(
        e.contains("is not a Helm chart: it has no <name>/Chart.yaml"),
        "{e}"
    );

    let mut raw = Vec::new();
    let tmp = t.path().join("evil.tar");
    write_raw_tar(
        &tmp,
        &[
            RawMember::file("x/Chart.yaml", b"name: x\nversion: 1.0.0\n"),
            RawMember::file("x/../../evil", b"pwned"),
        ],
        true,
    );
    raw.extend(std::fs::read(&tmp).unwrap());
    std::fs::write(t.path().join("bad.tgz"), support::build::gzip(&raw)).unwrap();
    let e = pack_fails(&spec, out.as_os_str());
    assert!(
        e.contains("contains the unsafe path \"x/../../evil\""),
        "{e}"
    );
    assert!(!out.exists());

    std::fs::write(t.path().join("bad.tgz"), b"plain text").unwrap();
    let e = pack_fails(&spec, out.as_os_str());
    assert!(e.contains("bad.tgz"), "{e}");
}

/// `pack SPEC` into `dir/o.tar` with a private cache and no retries, which
/// must fail; returns the messages and the archive path.
fn pack_offline(dir: &Path, spec: &Path) -> (String, std::path::PathBuf) {
    let out = dir.join("o.tar");
    let cache = dir.join("cache");
    let e = pack_args(
        spec,
        &out,
        &["--cache", cache.to_str().unwrap(), "--retries", "0"],
    )
    .expect_fail("pack from an unreachable registry");
    (e, out)
}

/// A reference that does not parse is named with its file and line, in a
/// YAML spec and in an images.txt list, before any request.
#[test]
fn references_that_do_not_parse_are_named_with_file_and_line() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("o.tar");
    let yaml = t.path().join("ferry.yaml");
    std::fs::write(
        &yaml,
        "images:\n  - 127.0.0.1:9/ok:1\n  - \"Bad Name!!:x\"\n",
    )
    .unwrap();
    let e = pack_fails(&yaml, out.as_os_str());
    assert!(
        e.contains(&format!(
            "invalid spec {} at line 3 column 5",
            yaml.display()
        )) && e.contains("invalid image reference \"Bad Name!!:x\""),
        "{e}"
    );
    let list = t.path().join("images.txt");
    std::fs::write(&list, "127.0.0.1:9/ok:1\n\nnginx:-x\n").unwrap();
    let e = pack_fails(&list, out.as_os_str());
    assert!(
        e.contains(&format!(
            "invalid spec {}:3: \"nginx:-x\" is not an image reference",
            list.display()
        )),
        "{e}"
    );
    assert!(
        !e.contains("Connection refused"),
        "no request was made: {e}"
    );
    assert!(!out.exists());
}

#[test]
fn an_unreachable_registry_is_named_and_nothing_is_written() {
    let t = tempfile::tempdir().unwrap();
    let spec = t.path().join("images.txt");
    // Port 9 (discard) on loopback: nothing listens.
    std::fs::write(&spec, "# a runbook list\n127.0.0.1:9/team/app:1.0\n").unwrap();
    let (e, out) = pack_offline(t.path(), &spec);
    assert!(
        e.contains("1 of 1 registry images and charts could not be fetched")
            && e.contains("127.0.0.1:9/team/app:1.0")
            && e.contains("Connection refused"),
        "{e}"
    );
    assert!(!out.exists());
}

#[test]
fn an_image_a_chart_names_that_cannot_be_fetched_is_named_with_its_origin() {
    let t = tempfile::tempdir().unwrap();
    let chart = t.path().join("x-1.0.0.tgz");
    std::fs::write(
        &chart,
        support::build::chart_tgz(
            "x",
            "1.0.0",
            "image:\n  repository: 127.0.0.1:9/team/app\n  tag: \"3\"\n",
        ),
    )
    .unwrap();
    let spec = t.path().join("ferry.yaml");
    std::fs::write(&spec, "charts:\n  - {path: x-1.0.0.tgz, images: true}\n").unwrap();
    let (e, out) = pack_offline(t.path(), &spec);
    assert!(
        e.contains("127.0.0.1:9/team/app:3 (named by") && e.contains("x/values.yaml:2"),
        "{e}"
    );
    assert!(!out.exists());
}

#[test]
fn duplicate_names_in_spec_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let spec = t.path().join("ferry.yaml");
    let layout = repo_root().join("fixtures/demo/layout");
    std::fs::write(
        &spec,
        format!(
            "images:\n  - oci:{l}:docker.io/library/demo:1.0\n  - ref: oci:{l}:registry.example.com/tools/hello:2.1\n    name: demo:1.0\n",
            l = layout.display()
        ),
    )
    .unwrap();
    let e = pack_fails(&spec, t.path().join("o.tar").as_os_str());
    assert!(
        e.contains("docker.io/library/demo:1.0 would be carried twice"),
        "{e}"
    );
}

#[test]
fn unpack_files_refuses_a_directory_tar_that_escapes_its_title() {
    let t = tempfile::tempdir().unwrap();
    let archive = pack_demo(t.path());
    let mut members = read_members(&archive);
    // The directory artifact's layer: a tar with manifests/deployment.yaml.
    let at = |d: &[u8]| {
        (0..d.len() / 512).find(|i| d[i * 512..].starts_with(b"manifests/deployment.yaml"))
    };
    let layer = members
        .iter()
        .find(|m| m.name.starts_with("blobs/") && at(&m.data).is_some())
        .expect("the directory layer")
        .clone();
    let off = at(&layer.data).unwrap() * 512;
    let mut evil = layer.data.clone();
    // Same length: "manifests/deployment.yaml" -> "manifests/../../evil.yaml".
    let name = b"manifests/../../evil.yaml";
    let mut header = [0u8; 512];
    header.copy_from_slice(&evil[off..off + 512]);
    header[..100].fill(0);
    header[..name.len()].copy_from_slice(name);
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|&b| b as u32).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    evil[off..off + 512].copy_from_slice(&header);
    swap_blob(
        &mut members,
        &ferry::digest::Digest::of(&layer.data).hex(),
        evil,
    );
    write_raw_tar(&archive, &members, true);
    ferry(["verify".as_ref(), archive.as_os_str()])
        .expect_ok("verify: the archive itself is whole");

    let files = t.path().join("out/files");
    let msg = unpack_files_fails(&archive, &files);
    assert!(
        msg.contains("files/manifests:latest could not be written")
            && msg.contains("outside manifests/"),
        "{msg}"
    );
    assert!(!t.path().join("out/evil.yaml").exists());
    assert!(!t.path().join("evil.yaml").exists());
    assert!(!files.join("manifests").exists(), "nothing half-written");
    let left: Vec<_> = std::fs::read_dir(&files)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".ferry"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn unpack_files_refuses_a_damaged_file_blob_and_writes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let archive = pack_demo(t.path());
    let mut members = read_members(&archive);
    // The directory artifact's layer: one byte of a file inside it flipped,
    // the tar itself still well-formed.
    let layer = members
        .iter_mut()
        .find(|m| {
            m.name.starts_with("blobs/")
                && (0..m.data.len() / 512)
                    .any(|i| m.data[i * 512..].starts_with(b"manifests/deployment.yaml"))
        })
        .expect("the directory layer");
    let hex = layer.name.trim_start_matches("blobs/sha256/").to_owned();
    let at = (0..layer.data.len() / 512)
        .find(|i| layer.data[i * 512..].starts_with(b"manifests/deployment.yaml"))
        .unwrap()
        * 512
        + 512
        + 3;
    layer.data[at] ^= 0x20;
    write_raw_tar(&archive, &members, true);

    let files = t.path().join("out/files");
    let msg = unpack_files_fails(&archive, &files);
    assert!(msg.contains(&hex) && msg.contains("arrived as"), "{msg}");
    assert!(!files.join("manifests").exists(), "nothing half-written");
}

#[test]
fn alias_bombs_are_never_expanded_by_rewrite() {
    let t = tempfile::tempdir().unwrap();
    // Nine levels of nine aliases: 387,420,489 strings if expanded.
    let mut bomb = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    for w in names.windows(2) {
        let (prev, next) = (w[0], w[1]);
        bomb.push_str(&format!("{next}: &{next} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"));
    }
    let values = t.path().join("values.yaml");
    std::fs::write(
        &values,
        format!("{bomb}image: docker.io/library/demo:1.0\n"),
    )
    .unwrap();
    let start = std::time::Instant::now();
    let out = ferry([
        "rewrite".as_ref(),
        "--bundle".as_ref(),
        pack_demo(t.path()).as_os_str(),
        "--registry".as_ref(),
        "registry.local:5000".as_ref(),
        "--check".as_ref(),
        values.as_os_str(),
    ])
    .expect_ok("rewrite --check of an alias bomb");
    assert!(
        out.contains("registry.local:5000/library/demo:1.0"),
        "{out}"
    );
    assert!(
        start.elapsed() < std::time::Duration::from_secs(20),
        "bounded"
    );
}

#[test]
fn one_password_is_not_sent_to_several_registries() {
    let t = tempfile::tempdir().unwrap();
    let spec = t.path().join("images.txt");
    std::fs::write(&spec, "127.0.0.1:9/a:1\n127.0.0.2:9/b:1\n").unwrap();
    let out = run(std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["--quiet", "pack"])
        .arg(&spec)
        .arg("-o")
        .arg(t.path().join("o.tar"))
        .args(["--username", "u", "--password-stdin"])
        .stdin(std::process::Stdio::null()));
    let e = out.expect_fail("--username with two registries");
    assert!(
        e.contains("--username would be sent to 2 registries (127.0.0.1:9, 127.0.0.2:9)"),
        "{e}"
    );
}

#[test]
fn an_unreadable_ca_file_or_key_file_is_named() {
    let t = tempfile::tempdir().unwrap();
    let archive = pack_demo(t.path());
    let missing = t.path().join("no-such-ca.pem");
    let e = ferry([
        "load".as_ref(),
        archive.as_os_str(),
        "--registry".as_ref(),
        "127.0.0.1:9".as_ref(),
        "--ca-file".as_ref(),
        missing.as_os_str(),
    ])
    .expect_fail("load with a missing CA file");
    assert!(
        e.contains(&format!("cannot read CA certificate {}", missing.display())),
        "{e}"
    );

    let bad_key = t.path().join("bad.pub");
    std::fs::write(&bad_key, "not a key\n").unwrap();
    let e = ferry([
        "verify".as_ref(),
        archive.as_os_str(),
        "--key".as_ref(),
        bad_key.as_os_str(),
    ])
    .expect_fail("verify with a file that is not a key");
    assert!(
        e.contains(&format!(
            "{} is not a usable minisign public key",
            bad_key.display()
        )),
        "{e}"
    );
}

/// A write that fails part-way (the disk fills up) must leave neither an
/// archive under its final name nor a temp file. RLIMIT_FSIZE makes writes
/// past the limit fail (EFBIG) the way a full disk does (ENOSPC): the same
/// error path, with no root needed.
#[test]
fn a_failed_write_while_packing_leaves_no_archive_and_no_temp_file() {
    let t = tempfile::tempdir().unwrap();
    for (name, extra) in [
        ("plain.tar", ""),
        ("split.tar", "--volume-size 1M"),
        ("packed.tar.zst", "--compress zstd"),
    ] {
        let out = t.path().join(name);
        let o = run(std::process::Command::new("sh").arg("-c").arg(format!(
            "trap '' XFSZ; ulimit -f 16; exec '{}' --quiet pack '{}' -o '{}' {extra}",
            env!("CARGO_BIN_EXE_ferry"),
            demo_spec().display(),
            out.display()
        )));
        let m = format!("{}{}", o.stdout, o.stderr);
        assert_eq!(o.code, Some(1), "{name}: {m}");
        assert!(m.contains(name), "{name}: the output is named: {m}");
        assert!(
            m.contains("File too large"),
            "{name}: the cause is given: {m}"
        );
        let left: Vec<String> = std::fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(left.is_empty(), "{name}: left behind: {left:?}");
    }
}

/// A four-level index graph that names the same child 60 times at each
/// level: 60^4 paths, 5 documents.
fn fan_out_layout(dir: &Path) -> PathBuf {
    use support::build::{self, Flavour, LayoutBuilder};
    let mut l = LayoutBuilder::new(&dir.join("src"));
    let layer = build::layer(&[("etc/leaf", b"leaf")]);
    let mut node = l.image(Flavour::Oci, "linux", "amd64", &[layer]);
    for _ in 0..4 {
        node = l.index(Flavour::Oci, vec![node; 60]);
    }
    l.tag(&node, "docker.io/library/fan:1");
    l.finish();
    let spec = dir.join("ferry.yaml");
    std::fs::write(&spec, "images:\n  - oci:src:docker.io/library/fan:1\n").unwrap();
    spec
}

/// The ferry binary under a 120 s limit (`timeout` exits 124 past it).
fn ferry_limited(args: &[&std::ffi::OsStr]) -> Out {
    run(
        std::process::Command::new(require_tool("timeout", "coreutils"))
            .arg("120")
            .arg(env!("CARGO_BIN_EXE_ferry"))
            .arg("--quiet")
            .args(args),
    )
}

#[test]
fn a_graph_naming_one_child_many_times_is_walked_once_per_document() {
    let t = tempfile::tempdir().unwrap();
    let spec = fan_out_layout(t.path());
    let out = t.path().join("fan.tar");
    let o = ferry_limited(&[
        "pack".as_ref(),
        spec.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    assert_eq!(o.code, Some(0), "pack: {}", o.stderr);
    let o = ferry_limited(&["verify".as_ref(), out.as_os_str()]);
    assert_eq!(o.code, Some(0), "verify: {}{}", o.stdout, o.stderr);

    // The leaf's layer missing: named once, not once per path.
    let mut members = read_members(&out);
    let layer = build_layer_name(&members);
    members.retain(|m| m.name != layer);
    write_raw_tar(&out, &members, true);
    let o = ferry_limited(&["verify".as_ref(), out.as_os_str(), "--json".as_ref()]);
    assert_eq!(o.code, Some(1), "verify: {}", o.stderr);
    let report: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let hex = layer.trim_start_matches("blobs/sha256/");
    let named = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["message"].as_str().unwrap_or_default().contains(hex))
        .count();
    assert_eq!(named, 1, "{report:#}");

    // From a registry: pack pulls each document once, and so does
    // inventory. (load already walked with a visited set.)
    let whole = t.path().join("whole.tar");
    let o = ferry_limited(&[
        "pack".as_ref(),
        spec.as_os_str(),
        "-o".as_ref(),
        whole.as_os_str(),
    ]);
    assert_eq!(o.code, Some(0), "pack: {}", o.stderr);
    let reg = support::registry::DockerRegistry::start(&t.path().join("reg"), false);
    let target = format!("{}/x", reg.host());
    let o = ferry_limited(&[
        "load".as_ref(),
        whole.as_os_str(),
        "--registry".as_ref(),
        target.as_ref(),
    ]);
    assert_eq!(o.code, Some(0), "load: {}", o.stderr);
    let remote_spec = t.path().join("remote.yaml");
    std::fs::write(
        &remote_spec,
        format!("images:\n  - {target}/library/fan:1\n"),
    )
    .unwrap();
    let (cache, again) = (t.path().join("cache"), t.path().join("again.tar"));
    let o = run(
        std::process::Command::new(require_tool("timeout", "coreutils"))
            .arg("120")
            .arg(env!("CARGO_BIN_EXE_ferry"))
            .args(["--quiet", "pack"])
            .arg(&remote_spec)
            .arg("-o")
            .arg(&again)
            .arg("--cache")
            .arg(&cache)
            .env("DOCKER_CONFIG", t.path().join("no-docker-config")),
    );
    assert_eq!(o.code, Some(0), "pack from the registry: {}", o.stderr);
    let inv = t.path().join("inv.json");
    let o = ferry_limited(&[
        "inventory".as_ref(),
        "--registry".as_ref(),
        target.as_ref(),
        "-o".as_ref(),
        inv.as_os_str(),
    ]);
    assert_eq!(o.code, Some(0), "inventory: {}", o.stderr);
}

/// The member holding the fan-out leaf's only layer (the one gzip blob).
fn build_layer_name(members: &[RawMember]) -> String {
    members
        .iter()
        .find(|m| m.name.starts_with("blobs/") && m.data.starts_with(&[0x1f, 0x8b]))
        .expect("the gzip layer")
        .name
        .clone()
}

#[test]
fn control_characters_from_bundle_json_are_shown_escaped_by_inspect() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("notes.txt"), b"hello").unwrap();
    let spec = t.path().join("ferry.yaml");
    // A name that would clear the screen and forge a line.
    std::fs::write(
        &spec,
        "name: \"evil\\e[2J\\nformat:   1 (written by ferry 9.9)\"\nfiles:\n  - {path: notes.txt}\n",
    )
    .unwrap();
    let archive = t.path().join("b.tar");
    pack_spec(&spec, &archive);
    let out = ferry(["inspect".as_ref(), archive.as_os_str()]).expect_ok("inspect");
    assert!(!out.contains('\u{1b}'), "{out:?}");
    assert!(out.contains("evil\\u{1b}[2J\\u{a}format:"), "{out}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("format:")).count(),
        1,
        "no forged line: {out}"
    );
    // JSON stays exact.
    let json = ferry(["inspect".as_ref(), archive.as_os_str(), "--json".as_ref()])
        .expect_ok("inspect --json");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        v["name"],
        "evil\u{1b}[2J\nformat:   1 (written by ferry 9.9)"
    );
}

#[test]
fn a_blob_missing_from_several_artifacts_is_reported_once_naming_them_all() {
    use support::build::{self, Flavour, LayoutBuilder};
    let t = tempfile::tempdir().unwrap();
    let mut l = LayoutBuilder::new(&t.path().join("src"));
    let shared = build::layer(&[("etc/shared", b"shared by both")]);
    let a = l.image(
        Flavour::Oci,
        "linux",
        "amd64",
        std::slice::from_ref(&shared),
    );
    let b = l.image(
        Flavour::Docker,
        "linux",
        "arm64",
        std::slice::from_ref(&shared),
    );
    l.tag(&a, "docker.io/library/a:1");
    l.tag(&b, "docker.io/library/b:1");
    l.finish();
    let spec = t.path().join("ferry.yaml");
    std::fs::write(
        &spec,
        "images:\n  - oci:src:docker.io/library/a:1\n  - oci:src:docker.io/library/b:1\n",
    )
    .unwrap();
    let out = t.path().join("b.tar");
    pack_spec(&spec, &out);
    let path = ferry::digest::Digest::of(&shared.0).blob_path();
    let mut members = read_members(&out);
    members.retain(|m| m.name != path);
    let mut bundle = bundle_of(&members);
    bundle["members"]
        .as_array_mut()
        .unwrap()
        .retain(|m| m["path"] != path.as_str());
    set_bundle(&mut members, &bundle);
    write_raw_tar(&out, &members, true);
    let o = ferry(["verify", out.to_str().unwrap(), "--json"]);
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    let r: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let about: Vec<&serde_json::Value> = r["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["member"] == path.as_str())
        .collect();
    assert_eq!(about.len(), 1, "{r:#}");
    let mut artifacts: Vec<&str> = about[0]["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    artifacts.sort();
    assert_eq!(
        artifacts,
        ["docker.io/library/a:1", "docker.io/library/b:1"],
        "{r:#}"
    );
}

#[test]
fn an_empty_platform_list_is_refused_instead_of_packing_an_empty_index() {
    let t = tempfile::tempdir().unwrap();
    let layout = support::repo_root().join("fixtures/demo/layout");
    let image = format!("oci:{}:docker.io/library/demo:1.0", layout.display());
    for (name, text) in [
        ("top.yaml", format!("platforms: []\nimages:\n  - {image}\n")),
        (
            "entry.yaml",
            format!("images:\n  - ref: {image}\n    platforms: []\n"),
        ),
    ] {
        let spec = t.path().join(name);
        std::fs::write(&spec, &text).unwrap();
        let out = t.path().join("b.tar");
        let msg = ferry(["pack", spec.to_str().unwrap(), "-o", out.to_str().unwrap()])
            .expect_fail("pack with platforms: []");
        assert!(
            msg.contains("`platforms: []`") && msg.contains("keeps no platform"),
            "{msg}"
        );
        assert!(!out.exists());
    }
}

#[test]
fn a_layer_size_past_int64_is_refused_naming_the_manifest() {
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| -> String {
        let d = ferry::digest::Digest::of(bytes);
        std::fs::write(blobs.join(d.hex()), bytes).unwrap();
        d.to_string()
    };
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_digest = put(config);
    let huge = r#"{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":9223372036854775808}"#;
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{huge},{huge}]}}"#,
        config.len()
    );
    let manifest_digest = put(manifest.as_bytes());
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    std::fs::write(
        layout.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{manifest_digest}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"docker.io/library/huge:1"}}}}]}}"#,
            manifest.len()
        ),
    )
    .unwrap();
    let spec = t.path().join("ferry.yaml");
    std::fs::write(
        &spec,
        format!(
            "images:\n  - oci:{}:docker.io/library/huge:1\n",
            layout.display()
        ),
    )
    .unwrap();
    let out = t.path().join("o.tar");
    let e = pack_fails(&spec, out.as_os_str());
    assert!(e.contains("int64"), "{e}");
    assert!(e.contains(&manifest_digest), "names the manifest: {e}");
    assert!(!out.exists(), "no archive is written");
}
