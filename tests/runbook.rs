//! docs/runbook.md, step by step, on the bundled fixtures against a real
//! `docker-registry` (and, for the no-registry variant, `ferry serve`):
//! pack → verify → carry → verify → load → unpack charts and files →
//! rewrite --check → rewrite → every image the rewritten manifests name is
//! pullable from the local registry.

// Test helpers panic on failure, like the tests that call them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::registry::DockerRegistry;
use support::*;

fn image_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("image: "))
        .map(|s| s.trim_matches('"').to_owned())
        .collect()
}

fn ferry_ok(args: &[&std::ffi::OsStr], what: &str) -> String {
    ferry(args).expect_ok(what)
}

fn os(s: &str) -> &std::ffi::OsStr {
    s.as_ref()
}

#[test]
fn runbook_steps_work_end_to_end_on_the_fixtures() {
    let t = tempfile::tempdir().unwrap();
    let connected = t.path().join("connected");
    let usb = t.path().join("usb");
    let airgap = t.path().join("airgap");
    for d in [&connected, &usb, &airgap] {
        std::fs::create_dir_all(d).unwrap();
    }

    // 1-2. Prepare with internet: pack the spec, verify the archive.
    let archive = connected.join("platform.tar");
    ferry_ok(
        &[
            os("pack"),
            demo_spec().as_os_str(),
            os("-o"),
            archive.as_os_str(),
        ],
        "pack",
    );
    ferry_ok(
        &[os("verify"), archive.as_os_str()],
        "verify before carrying",
    );

    // 3-4. Carry, and verify on arrival.
    let carried = usb.join("platform.tar");
    std::fs::copy(&archive, &carried).unwrap();
    ferry_ok(&[os("verify"), carried.as_os_str()], "verify on arrival");

    // 5-6. A local registry; load, writing the map.
    let reg = DockerRegistry::start(&airgap.join("registry"), false);
    let map = airgap.join("map.json");
    ferry_ok(
        &[
            os("load"),
            carried.as_os_str(),
            os("--registry"),
            os(&reg.host()),
            os("--map-out"),
            map.as_os_str(),
        ],
        "load",
    );

    // 7. Take the manifests and charts out of the same verified archive.
    let (files, charts) = (airgap.join("deploy"), airgap.join("helm-charts"));
    ferry_ok(
        &[
            os("unpack"),
            carried.as_os_str(),
            os("--files"),
            files.as_os_str(),
            os("--charts"),
            charts.as_os_str(),
        ],
        "unpack --files --charts",
    );
    assert!(charts.join("demo-chart-0.1.0.tgz").is_file());
    let manifests = files.join("manifests");
    assert_eq!(
        image_lines(&std::fs::read_to_string(manifests.join("deployment.yaml")).unwrap()),
        ["docker.io/library/demo:1.0"]
    );

    // 8. Air-gap readiness check, then rewrite.
    ferry_ok(
        &[
            os("rewrite"),
            os("--map"),
            map.as_os_str(),
            os("--check"),
            manifests.as_os_str(),
        ],
        "rewrite --check",
    );
    let local = airgap.join("deploy-local");
    ferry_ok(
        &[
            os("rewrite"),
            os("--map"),
            map.as_os_str(),
            manifests.as_os_str(),
            os("-o"),
            local.as_os_str(),
        ],
        "rewrite -o",
    );
    let rewritten = walkdir::WalkDir::new(&local)
        .into_iter()
        .filter_map(|e| e.ok())
        .find(|e| e.file_name() == "deployment.yaml")
        .expect("the rewritten deployment")
        .into_path();
    let images = image_lines(&std::fs::read_to_string(&rewritten).unwrap());
    assert_eq!(images, [format!("{}/library/demo:1.0", reg.host())]);

    // 9. Deploy: every image the manifests now name is pullable.
    for image in &images {
        run(skopeo().args([
            "inspect",
            "--tls-verify=false",
            &format!("docker://{image}"),
        ]))
        .expect_ok(&format!("pull {image} from the local registry"));
    }

    // The check fails, naming the image, when a manifest needs something
    // the bundle does not carry.
    let extra = airgap.join("extra");
    std::fs::create_dir_all(&extra).unwrap();
    std::fs::write(
        extra.join("pod.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  containers:\n    - name: x\n      image: quay.io/not/carried:9\n",
    )
    .unwrap();
    let msg = ferry([
        os("rewrite"),
        os("--map"),
        map.as_os_str(),
        os("--check"),
        extra.as_os_str(),
    ])
    .expect_fail("rewrite --check of a missing image");
    assert!(msg.contains("quay.io/not/carried:9"), "{msg}");
}

#[test]
fn runbook_without_a_registry_serves_the_archive_itself() {
    let t = tempfile::tempdir().unwrap();
    let archive = pack_demo(t.path());
    let served = Served::start(&archive, ferry::mapping::TargetRules::default());
    // The chart repository and the files the runbook points Helm and curl at.
    let index = http(served.addr, "GET", "/charts/index.yaml", &[]);
    assert!(
        String::from_utf8_lossy(&index.body).contains("- demo-chart-0.1.0.tgz"),
        "{}",
        String::from_utf8_lossy(&index.body)
    );
    let chart = http(served.addr, "GET", "/charts/demo-chart-0.1.0.tgz", &[]);
    assert_eq!(
        chart.body,
        std::fs::read(repo_root().join("fixtures/demo/charts/demo-chart-0.1.0.tgz")).unwrap()
    );
    assert_eq!(
        http(served.addr, "GET", "/files/README.txt", &[]).body,
        std::fs::read(repo_root().join("fixtures/demo/files/README.txt")).unwrap()
    );
    let files = t.path().join("deploy");
    ferry_ok(
        &[
            os("unpack"),
            archive.as_os_str(),
            os("--files"),
            files.as_os_str(),
        ],
        "unpack --files",
    );
    let out = t.path().join("local");
    let host = served.addr.to_string();
    ferry_ok(
        &[
            os("rewrite"),
            os("--bundle"),
            archive.as_os_str(),
            os("--registry"),
            os(&host),
            files.join("manifests").as_os_str(),
            os("-o"),
            out.as_os_str(),
        ],
        "rewrite --bundle",
    );
    let rewritten = walkdir::WalkDir::new(&out)
        .into_iter()
        .filter_map(|e| e.ok())
        .find(|e| e.file_name() == "deployment.yaml")
        .unwrap()
        .into_path();
    let images = image_lines(&std::fs::read_to_string(rewritten).unwrap());
    assert_eq!(images, [format!("{host}/library/demo:1.0")]);
    for image in &images {
        run(skopeo().args([
            "inspect",
            "--tls-verify=false",
            &format!("docker://{image}"),
        ]))
        .expect_ok(&format!("pull {image} from ferry serve"));
    }
}
