//! The command line: one binary, several roles.
//!
//! Also answers as `kubectl-benchrun` when invoked under that name, so that a link
//! on the PATH makes it a kubectl plugin.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::controller::ControllerOpts;

pub mod compare;
pub mod inspect;
pub mod logs;
pub mod out;
pub mod plot;
pub mod results;
pub mod tables;
pub mod validate;

/// benchrun: benchmark LLM inference on Kubernetes, with the GPU energy it costs.
#[derive(Parser, Debug)]
#[command(name = "benchrun", version, about, long_about = None)]
pub struct Cli {
    /// Log filter, in tracing's env-filter syntax (e.g. "info,benchrun=debug").
    #[arg(long, global = true, env = "BENCHRUN_LOG", default_value = "info")]
    pub log: String,
    /// Log format.
    #[arg(long, global = true, env = "BENCHRUN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// Log line format.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the operator.
    Controller(ControllerOpts),
    /// Generate load against an OpenAI-compatible endpoint (standalone, or as a Job worker).
    Loadgen(Box<crate::worker::LoadgenOpts>),
    /// Simulators for dry runs without GPUs: `sim inference` and `sim dcgm`.
    #[command(subcommand)]
    Sim(crate::sim::SimCommand),
    /// Serve dcgm-exporter-compatible GPU metrics read through NVML.
    GpuExporter(crate::gpu_exporter::GpuExporterOpts),
    /// Parse one /metrics payload (file or URL) and show what benchrun would collect.
    Inspect(inspect::InspectOpts),
    /// Print the BenchmarkRun CustomResourceDefinition as YAML.
    Crd,
    /// Check BenchmarkRun manifests offline: admission's rules, then what an
    /// install's policy would refuse.
    Validate(validate::ValidateOpts),
    /// kubectl plugin commands (also run as `kubectl benchrun ...`).
    #[command(disable_help_flag = true)]
    Kubectl {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// The arguments, rewritten when the binary runs as `kubectl-benchrun`.
pub fn effective_args(args: Vec<OsString>) -> Vec<OsString> {
    let invoked = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if invoked.starts_with("kubectl-benchrun") {
        let mut out = vec![OsString::from("benchrun"), OsString::from("kubectl")];
        out.extend(args.into_iter().skip(1));
        out
    } else {
        args
    }
}

fn init_tracing(filter: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = format == LogFormat::Json;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(move || logs::Scrubbed { json });
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Parses the command line and runs the chosen role.
pub fn main() -> ExitCode {
    let cli = Cli::parse_from(effective_args(std::env::args_os().collect()));
    match cli.command {
        Command::Crd => match crate::api::crd_yaml() {
            Ok(yaml) => {
                crate::out!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("benchrun crd: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Controller(opts) => {
            init_tracing(&cli.log, cli.log_format);
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("benchrun controller: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(crate::controller::run(opts)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("benchrun controller: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Validate(opts) => validate::main(&opts),
        Command::Loadgen(opts) => crate::worker::main(*opts),
        Command::Sim(cmd) => {
            init_tracing(&cli.log, cli.log_format);
            crate::sim::main(cmd)
        }
        Command::GpuExporter(opts) => {
            init_tracing(&cli.log, cli.log_format);
            crate::gpu_exporter::main(opts)
        }
        Command::Inspect(opts) => inspect::main(opts),
        Command::Kubectl { args } => results::main(args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_plugin_name_maps_to_the_kubectl_subcommand() {
        let args = effective_args(vec![
            "/usr/local/bin/kubectl-benchrun".into(),
            "results".into(),
            "r1".into(),
        ]);
        let cli = Cli::try_parse_from(args).unwrap();
        assert!(matches!(cli.command, Command::Kubectl { args } if args == ["results", "r1"]));
        let args = effective_args(vec!["benchrun".into(), "crd".into()]);
        assert!(matches!(
            Cli::try_parse_from(args).unwrap().command,
            Command::Crd
        ));
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
