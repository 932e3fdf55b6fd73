//! `ferry export ARCHIVE -o OUT [--format docker-archive|oci-archive]`.

use std::path::PathBuf;
use std::process::ExitCode;

use ferry::export::{export_to, ExportFormat, ExportOptions};
use ferry::mapping::TargetRegistry;
use ferry::platform::Platform;

use super::{human, progress::Bars, Settings};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// `docker save`'s form (manifest.json, repositories) with index.json:
    /// for docker load, podman load, ctr images import and k3s agent/images/.
    DockerArchive,
    /// An OCI image layout tar of the images, every platform unless
    /// --platform (ctr images import --all-platforms).
    OciArchive,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The archive.
    /// For a split archive: its first volume (OUT.001), the name the
    /// volumes share (OUT), or the whole set (OUT.*).
    #[arg(required = true, num_args = 1.., value_name = "ARCHIVE")]
    pub archive: Vec<PathBuf>,
    /// The tar to write (replaced atomically when complete), or `-` for
    /// stdout (`ferry export b.tar -o - | docker load`).
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,
    /// The form of the tar.
    #[arg(long, value_enum, default_value = "docker-archive")]
    pub format: Format,
    /// Export this platform of each image (os/arch[/variant]). A
    /// docker-archive holds one platform per image, so an image with
    /// several needs it; an oci-archive without it holds every platform.
    #[arg(long)]
    pub platform: Option<Platform>,
    /// Export only this image (repeatable), by its reference as carried,
    /// in any spelling (`redis:7.2` for `docker.io/library/redis:7.2`).
    #[arg(long, value_name = "REF")]
    pub image: Vec<String>,
    /// Name the images as `ferry load --registry` would
    /// (`localhost:5000/library/redis:7.2`) instead of their source names.
    #[arg(long, value_name = "HOST[:PORT][/PREFIX]")]
    pub registry: Option<String>,
    /// With --registry: keep the source host as the first path component.
    #[arg(long, requires = "registry")]
    pub keep_host: bool,
    /// Require a signature of bundle.json by this minisign public key,
    /// checked on the archive as read, before anything in it is used.
    #[arg(long, value_name = "PUB")]
    pub key: Option<PathBuf>,
    /// Print the summary as JSON on stdout (not with `-o -`).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args, settings: &Settings) -> anyhow::Result<ExitCode> {
    let archive = super::archive_arg(&args.archive)?;
    let to_stdout = args.output.as_os_str() == "-";
    if to_stdout && args.json {
        anyhow::bail!(
            "--json prints on stdout, which `-o -` fills with the tar; write the tar to a file"
        );
    }
    let opts = ExportOptions {
        format: match args.format {
            Format::DockerArchive => ExportFormat::DockerArchive,
            Format::OciArchive => ExportFormat::OciArchive,
        },
        platform: args.platform.clone(),
        images: args.image.clone(),
        target: match &args.registry {
            Some(r) => Some(TargetRegistry::parse(r, args.keep_host)?),
            None => None,
        },
        key: args.key.clone(),
        mtime: ferry::archive::mtime_from_env(),
    };
    let bars = Bars::new(settings.quiet);
    let s = export_to(&archive, &args.output, &opts, &bars)?;
    if args.json {
        super::print_json(&serde_json::to_string_pretty(&s)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let form = match s.format {
        ExportFormat::DockerArchive => "docker-archive",
        ExportFormat::OciArchive => "oci-archive",
    };
    let mut lines = vec![format!(
        "exported {} image{} ({} blobs, {}) into {} ({form})",
        s.images.len(),
        if s.images.len() == 1 { "" } else { "s" },
        s.blobs,
        human(s.bytes),
        if to_stdout {
            "stdout".to_owned()
        } else {
            args.output.display().to_string()
        }
    )];
    if let Some(comment) = &s.signature {
        lines.push(format!("signature OK: {comment}"));
    }
    for i in &s.images {
        let name = i.name.clone().unwrap_or_else(|| {
            format!("{} (carried by digest: no tag to load it under)", i.source)
        });
        let mut line = format!("  {name}");
        if let Some(p) = &i.platform {
            line.push_str(&format!("  {p}"));
        }
        match &i.image_id {
            Some(id) => line.push_str(&format!("  image ID {id}")),
            None => line.push_str(&format!("  {}", i.digest)),
        }
        lines.push(line);
    }
    if s.format == ExportFormat::DockerArchive {
        lines.push(
            "note: a docker-archive holds no manifest lists, and the runtime may show a manifest digest of its own; the image IDs (config digests) above are unchanged"
                .to_owned(),
        );
    }
    if to_stdout {
        // stdout holds the tar: the summary goes with the other messages.
        for l in &lines {
            eprintln!("{}", super::escape_controls(l));
        }
    } else {
        super::print_result(&lines)?;
    }
    Ok(ExitCode::SUCCESS)
}
