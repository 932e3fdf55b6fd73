//! Build script: gives the binary its commit and build date for
//! `ferry --version`, reproducibly. The date is `SOURCE_DATE_EPOCH` when set,
//! else the commit's own time, never the clock; `FERRY_BUILD_COMMIT`
//! names the commit for builds outside a git checkout (a source tarball).
//! Neither reaches bundle.json, which records only the package version, so
//! archives stay byte-identical across builds of one version.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (out.status.success() && !text.is_empty()).then(|| text.to_owned())
}

/// The civil date (UTC) of a Unix time, as YYYY-MM-DD (Howard Hinnant's
/// days-to-civil algorithm).
fn date(epoch: i64) -> String {
    let z = epoch.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

fn main() {
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    println!("cargo:rerun-if-env-changed=FERRY_BUILD_COMMIT");
    // Rebuild when HEAD moves: HEAD itself, the branch it names, and the
    // packed refs (only files that exist: a missing one would rerun always).
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            if Path::new(&path).is_file() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
    let commit = std::env::var("FERRY_BUILD_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .or_else(|| git(&["log", "-1", "--format=%ct"])?.parse().ok());
    let built = epoch.map(date).unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=FERRY_COMMIT={commit}");
    println!("cargo:rustc-env=FERRY_BUILD_DATE={built}");
}
