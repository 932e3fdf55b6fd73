//! `ferry completion SHELL` and `ferry man`: the completion script works in
//! a real bash, and the man pages checked in under `docs/man/` are the ones
//! the current definitions make (`FERRY_BLESS=1` rewrites them).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::*;

/// What bash offers for `words` with the cursor at the end of the last.
fn bash_complete(script: &std::path::Path, words: &[&str]) -> Vec<String> {
    let line = words.join(" ");
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        "source '{}'\nCOMP_WORDS=({})\nCOMP_CWORD={}\nCOMP_LINE='{line}'\nCOMP_POINT={}\n_ferry ferry '{}' '{}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script.display(),
        quoted.join(" "),
        words.len() - 1,
        line.len(),
        words.last().unwrap(),
        words.get(words.len().wrapping_sub(2)).unwrap_or(&"ferry"),
    );
    let out = run(std::process::Command::new(require_tool("bash", "bash"))
        .arg("--norc")
        .arg("-c")
        .arg(program));
    assert!(out.ok(), "bash: {}", out.stderr);
    out.stdout.lines().map(str::to_owned).collect()
}

#[test]
fn bash_completion_loads_in_a_real_bash_and_completes_subcommands_and_flags() {
    let t = tempfile::tempdir().unwrap();
    let script = t.path().join("ferry.bash");
    let text = ferry(["completion", "bash"]).expect_ok("completion bash");
    std::fs::write(&script, &text).unwrap();
    assert_eq!(bash_complete(&script, &["ferry", "ver"]), ["verify"]);
    let all = bash_complete(&script, &["ferry", ""]);
    for c in ["pack", "verify", "load", "serve", "completion", "man"] {
        assert!(all.iter().any(|w| w == c), "{c} not offered: {all:?}");
    }
    let flags = bash_complete(&script, &["ferry", "verify", "--k"]);
    assert_eq!(flags, ["--key"]);
}

#[test]
fn every_shell_gets_a_script_naming_the_commands() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let text = ferry(["completion", shell]).expect_ok(&format!("completion {shell}"));
        assert!(
            text.contains("verify") && text.contains("key"),
            "{shell}: {text}"
        );
    }
    let o = ferry(["completion", "tcsh"]);
    assert_eq!(
        o.code,
        Some(2),
        "a shell clap does not know is a usage error"
    );
    assert!(o.stderr.contains("tcsh"), "{}", o.stderr);
}

#[test]
fn the_man_pages_in_docs_man_are_current() {
    let t = tempfile::tempdir().unwrap();
    let out = ferry(["man", "-o", t.path().to_str().unwrap()]).expect_ok("man");
    assert!(out.contains("man pages into"), "{out}");
    let checked_in = repo_root().join("docs/man");
    let mut made: Vec<String> = std::fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    made.sort();
    assert!(
        made.contains(&"ferry.1".to_owned()) && made.contains(&"ferry-verify.1".to_owned()),
        "{made:?}"
    );
    let verify = std::fs::read_to_string(t.path().join("ferry-verify.1")).unwrap();
    assert!(
        verify.contains(".TH ferry-verify") && verify.contains("key"),
        "{verify}"
    );
    if std::env::var_os("FERRY_BLESS").is_some() {
        let _ = std::fs::remove_dir_all(&checked_in);
        std::fs::create_dir_all(&checked_in).unwrap();
        for f in &made {
            std::fs::copy(t.path().join(f), checked_in.join(f)).unwrap();
        }
    }
    let mut have: Vec<String> = std::fs::read_dir(&checked_in)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (FERRY_BLESS=1 cargo test --test completion makes it)",
                checked_in.display()
            )
        })
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    have.sort();
    assert_eq!(
        have, made,
        "docs/man is stale: FERRY_BLESS=1 cargo test --test completion"
    );
    for f in &made {
        // As text, so that a failure shows the lines that differ.
        assert_eq!(
            String::from_utf8_lossy(&std::fs::read(t.path().join(f)).unwrap()),
            String::from_utf8_lossy(&std::fs::read(checked_in.join(f)).unwrap()),
            "docs/man/{f} is stale: FERRY_BLESS=1 cargo test --test completion"
        );
    }
}
