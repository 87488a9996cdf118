//! The simulators: `benchrun sim inference` (an OpenAI-compatible server whose
//! latency follows a continuous-batching model, with vLLM's metrics) and
//! `benchrun sim dcgm` (a dcgm-exporter whose GPUs draw power according to the
//! inference servers they serve). They let users dry-run a benchmark pipeline
//! on a cluster without GPUs, and they are the demo's and the end-to-end tests'
//! targets: each publishes its ground truth on `/sim/truth`, so what benchrun
//! reports can be checked against what was actually done.

use std::process::ExitCode;

use clap::Subcommand;

pub mod dcgm;
pub mod inference;

#[derive(Subcommand, Debug)]
pub enum SimCommand {
    /// An OpenAI-compatible server with a continuous-batching latency model and vLLM's metrics.
    Inference(inference::InferenceOpts),
    /// A dcgm-exporter whose GPUs follow the load of the inference servers they serve.
    Dcgm(dcgm::DcgmOpts),
}

pub fn main(cmd: SimCommand) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("benchrun sim: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (what, result) = match cmd {
        SimCommand::Inference(o) => ("inference", rt.block_on(inference::run(o))),
        SimCommand::Dcgm(o) => ("dcgm", rt.block_on(dcgm::run(o))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("benchrun sim {what}: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::flags::{go_duration, probability};
    use crate::net::listen_addr;

    #[test]
    fn flags_parse_durations_and_probabilities() {
        assert_eq!(go_duration("25ms"), Ok(Duration::from_millis(25)));
        assert_eq!(go_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(go_duration("fast").unwrap_err().contains("not a duration"));
        assert_eq!(probability("0.25"), Ok(0.25));
        assert!(probability("1.5").is_err() && probability("x").is_err());
        let a = listen_addr(Some("127.0.0.1".parse().unwrap()), 9);
        assert_eq!(a.to_string(), "127.0.0.1:9");
    }
}
