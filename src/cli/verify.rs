//! `ferry verify ARCHIVE`: exit 0 only when the archive is whole.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{human, progress::Bars, Settings};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The archive.
    /// For a split archive: its first volume (OUT.001), the name the
    /// volumes share (OUT), or the whole set (OUT.*).
    #[arg(required = true, num_args = 1.., value_name = "ARCHIVE")]
    pub archive: Vec<PathBuf>,
    /// Require a signature of bundle.json by this minisign public key.
    #[arg(long, value_name = "PUB")]
    pub key: Option<PathBuf>,
    /// Print the report as JSON on stdout (for auditors).
    #[arg(long)]
    pub json: bool,
    /// Also check that every image carries a good cosign signature by this
    /// public key (PEM: ECDSA P-256, Ed25519 or RSA), offline.
    #[arg(long, value_name = "PUB", conflicts_with = "cosign_ca")]
    pub cosign_key: Option<PathBuf>,
    /// Also check that every image carries a cosign signature whose
    /// embedded certificate chains to this PEM CA bundle (code signing).
    #[arg(long, value_name = "CA")]
    pub cosign_ca: Option<PathBuf>,
    /// With --cosign-ca: the certificate's subject or a SAN must be this.
    #[arg(
        long,
        value_name = "ID",
        requires = "cosign_ca",
        conflicts_with = "cosign_identity_regexp"
    )]
    pub cosign_identity: Option<String>,
    /// With --cosign-ca: the certificate's subject or a SAN must match this
    /// regular expression as a whole.
    #[arg(long, value_name = "REGEX", requires = "cosign_ca")]
    pub cosign_identity_regexp: Option<String>,
    /// With --cosign-ca: a CRL (PEM or DER) the certificate must not be on;
    /// may be repeated.
    #[arg(long, value_name = "CRL", requires = "cosign_ca")]
    pub cosign_crl: Vec<PathBuf>,
    /// With --cosign-ca: check the certificate as valid at this time
    /// (RFC 3339; default: now). Offline there is no transparency log to
    /// say when a signature was made; the pack time is a good choice.
    #[arg(long, value_name = "TIME", requires = "cosign_ca", value_parser = parse_time)]
    pub cosign_time: Option<std::time::SystemTime>,
}

fn parse_time(s: &str) -> Result<std::time::SystemTime, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(std::time::SystemTime::from)
        .map_err(|e| format!("{s:?} is not an RFC 3339 time (2026-01-31T12:00:00Z): {e}"))
}

pub fn run(args: Args, settings: &Settings) -> anyhow::Result<ExitCode> {
    let archive = super::archive_arg(&args.archive)?;
    let bars = Bars::new(settings.quiet);
    let start = std::time::Instant::now();
    // The signature decides before anything is called whole.
    let mut r = ferry::verify::verify(&archive, args.key.as_deref(), &bars)?;
    let policy = ferry::cosign::Policy::from_files(
        args.cosign_key.as_deref(),
        args.cosign_ca.as_deref(),
        args.cosign_identity.as_deref(),
        args.cosign_identity_regexp.as_deref(),
        &args.cosign_crl,
        None,
        args.cosign_time.unwrap_or_else(std::time::SystemTime::now),
    )?;
    if let Some(policy) = policy {
        r.signatures = ferry::verify::check_signatures(&archive, args.key.as_deref(), &policy)?;
    }
    let secs = start.elapsed().as_secs_f64();
    if args.json {
        super::print_json(&serde_json::to_string_pretty(&r)?)?;
    } else {
        // Human lines through print_result: names from bundle.json and the
        // signature's comment are shown, never obeyed.
        super::print_result(&lines(&r, secs))?;
    }
    Ok(if r.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// verify's result for people (also under `inspect --verify`): OK with
/// what was hashed in `secs`, or FAILED with each problem.
pub fn lines(r: &ferry::verify::VerifyReport, secs: f64) -> Vec<String> {
    let signature = r.signature.clone();
    let mut lines: Vec<String> = Vec::new();
    if r.is_ok() {
        lines.push(format!(
            "OK {}: {} members, {} artifacts, {} hashed in {:.2}s ({:.0} MB/s)",
            r.archive.display(),
            r.members_listed + 1,
            r.artifacts_ok.len(),
            human(r.bytes_hashed),
            secs,
            r.bytes_hashed as f64 / 1e6 / secs.max(1e-9)
        ));
        match (&r.sidecar, r.volumes.len()) {
            (_, 0) => {}
            (Some(s), n) => lines.push(format!(
                "{n} volumes, each intact and as {} lists it",
                s.display()
            )),
            (None, n) => lines.push(format!("{n} volumes, each intact (no checksum sidecar)")),
        }
        if let Some(d) = &r.delta {
            lines.push(format!(
                "delta against {}: expects the target to hold {} blobs ({}) it does not carry (`ferry load` checks them first)",
                d.base,
                d.absent.len(),
                human(d.absent.iter().map(|b| b.size).sum())
            ));
        }
        match (&signature, r.signed) {
            (Some(comment), _) => lines.push(format!("signature OK: {comment}")),
            (None, true) => lines.push("signed (not checked: pass --key KEY.pub)".into()),
            (None, false) => {}
        }
        for s in &r.signatures {
            lines.push(signature_line(s));
        }
    } else {
        // A failed verification is still verify's result: on stdout, like
        // OK; the exit status says it failed.
        let bad_signatures = r.signatures.iter().filter(|s| s.error.is_some()).count();
        lines.push(format!(
            "FAILED {}: {} problem(s)",
            r.archive.display(),
            r.problems.len() + bad_signatures
        ));
        for s in &r.signatures {
            lines.push(signature_line(s));
        }
        for p in &r.problems {
            let mut line = String::from("  ");
            if let Some(m) = &p.member {
                line.push_str(&format!("{m}: "));
            }
            line.push_str(&p.message);
            if !p.artifacts.is_empty() {
                line.push_str(&format!(" [needed by {}]", p.artifacts.join(", ")));
            }
            lines.push(line);
        }
        lines.push(format!(
            "{} of {} members intact; intact artifacts: {}",
            r.members_ok,
            r.members_listed,
            if r.artifacts_ok.is_empty() {
                "none".into()
            } else {
                r.artifacts_ok.join(", ")
            }
        ));
    }
    lines
}

/// One image's cosign check, for people.
fn signature_line(s: &ferry::verify::SignatureResult) -> String {
    match (&s.error, &s.signer) {
        (Some(e), _) => format!("  signature FAILED {}: {e}", s.image),
        (None, signer) => format!(
            "  signature OK {}: {} by {}{}",
            s.image,
            s.form.unwrap_or("signature"),
            signer.as_deref().unwrap_or("?"),
            s.docker_reference
                .as_deref()
                .map(|r| format!(" (signed for {r})"))
                .unwrap_or_default()
        ),
    }
}
