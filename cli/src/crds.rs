//! `ringrift crds`: print the CRDs, or write the files committed in the Helm chart.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use ringrift_crds::render;

/// Options of `ringrift crds`.
#[derive(Debug, clap::Args)]
pub struct CrdsArgs {
    /// Write one `<plural>.ringrift.ai.yaml` per CRD into this directory, removing stale
    /// generated files there, instead of printing a YAML stream. The chart's copy lives in
    /// `charts/ringrift/files/crds`.
    #[arg(long, env = "RINGRIFT_CRDS_OUTPUT_DIR", value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
}

pub(crate) fn run(args: CrdsArgs) -> anyhow::Result<ExitCode> {
    let CrdsArgs { output_dir } = args;
    match output_dir {
        None => {
            let stream = render::render_stream().context("failed to render the CRDs")?;
            std::io::stdout()
                .lock()
                .write_all(stream.as_bytes())
                .context("failed to write to stdout")?;
        }
        Some(dir) => write_dir(&dir)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn write_dir(dir: &Path) -> anyhow::Result<()> {
    let files = render::render_all().context("failed to render the CRDs")?;
    std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
    for entry in std::fs::read_dir(dir).with_context(|| format!("failed to read {}", dir.display()))? {
        let path = entry
            .with_context(|| format!("failed to read {}", dir.display()))?
            .path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let generated = name.ends_with(&format!(".{}.yaml", ringrift_crds::GROUP));
        if generated && !files.iter().any(|f| f.file_name == name) {
            std::fs::remove_file(&path)
                .with_context(|| format!("failed to remove stale {}", path.display()))?;
            eprintln!("removed {}", path.display());
        }
    }
    for file in files {
        let path = dir.join(&file.file_name);
        std::fs::write(&path, &file.content)
            .with_context(|| format!("failed to write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
