//! `kubectl benchrun plot RUN [RUN…]`: a run's results as images (SVG or
//! PNG) in a folder; several runs overlay their curves. The figures are
//! [`crate::plot`]'s; here they are fetched, rendered and written.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::plot::draw::{self, Format};
use crate::plot::{Input, read_timeseries};

#[derive(clap::Args, Debug)]
pub struct PlotOpts {
    /// The runs: `NAME`, `NAMESPACE/NAME`, or a folder holding a saved
    /// `summary.json` (`results -o json`) and, if kept, `timeseries.jsonl`
    /// (`results -o timeseries`). Several overlay their curves.
    #[arg(num_args = 1.., required = true)]
    pub runs: Vec<String>,
    /// The namespace of runs named without one (default: the kubeconfig's).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// The folder the images are written to (made when missing).
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Svg)]
    pub format: Format,
}

/// A saved run: `summary.json` and, when there, `timeseries.jsonl`.
pub fn read_saved(dir: &Path) -> Result<Input, String> {
    let read = |f: &str| std::fs::read_to_string(dir.join(f));
    let summary = read("summary.json").map_err(|e| format!("summary.json: {e}"))?;
    let doc: crate::results::ResultsDocument =
        serde_json::from_str(&summary).map_err(|e| format!("summary.json: {e}"))?;
    let timeseries = match read(crate::measure::timeseries::FILE) {
        Ok(text) => Some(read_timeseries(&text)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(format!("{}: {e}", crate::measure::timeseries::FILE));
        }
    };
    Ok(Input {
        name: format!("{}/{}", doc.run.namespace, doc.run.name),
        doc,
        timeseries,
    })
}

/// One run from the cluster.
async fn fetch(arg: &str, namespace: Option<&str>) -> Result<Input, String> {
    let files = super::results::fetch_arg(arg, namespace).await?;
    let doc = super::results::document(&files)?;
    let timeseries = files
        .get(crate::measure::timeseries::FILE)
        .map(|t| read_timeseries(t))
        .transpose()?;
    Ok(Input {
        name: format!("{}/{}", doc.run.namespace, doc.run.name),
        doc,
        timeseries,
    })
}

/// The files' common prefix: the runs' names.
fn prefix(runs: &[Input]) -> String {
    runs.iter()
        .map(|r| r.doc.run.name.as_str())
        .collect::<Vec<_>>()
        .join("_vs_")
}

/// Renders every figure of `runs` into `out`; the paths written.
pub fn write(
    runs: &[Input],
    out: &Path,
    format: Format,
) -> Result<(Vec<PathBuf>, Vec<String>), String> {
    let plots = crate::plot::figures(runs);
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let prefix = prefix(runs);
    let mut written = Vec::new();
    for f in &plots.figures {
        let path = out.join(format!("{prefix}-{}.{}", f.file, format.extension()));
        match format {
            Format::Svg => {
                let svg = draw::svg(f)?;
                std::fs::write(&path, svg).map_err(|e| format!("{}: {e}", path.display()))?;
            }
            Format::Png => draw::png(f, &path)?,
        }
        written.push(path);
    }
    Ok((written, plots.notes))
}

/// `kubectl benchrun plot`: exit 0 with the images written, 1 otherwise.
pub async fn main(opts: &PlotOpts) -> ExitCode {
    let mut runs = Vec::new();
    for arg in &opts.runs {
        // A folder, or what can only be a path (a run is NAME or NAMESPACE/NAME).
        let path =
            Path::new(arg).is_dir() || arg.starts_with(['/', '.']) || arg.matches('/').count() > 1;
        let run = if path {
            read_saved(Path::new(arg))
        } else {
            fetch(arg, opts.namespace.as_deref()).await
        };
        match run {
            Ok(r) => runs.push(r),
            Err(e) => {
                eprintln!("kubectl benchrun plot: {arg}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    match write(&runs, &opts.out, opts.format) {
        Ok((written, notes)) => {
            for n in notes {
                eprintln!("note: {n}");
            }
            for p in written {
                crate::out!("{}\n", p.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kubectl benchrun plot: {e}");
            ExitCode::FAILURE
        }
    }
}
