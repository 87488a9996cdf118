//! The commands people pipe end quietly when the reader has gone
//! (`benchrun inspect FILE | head`), instead of panicking on the closed pipe.

use std::path::PathBuf;
use std::process::Command;

/// Runs `benchrun args` with its standard output a pipe nobody reads (the
/// read end is closed before it starts, so its first write meets a closed
/// pipe); returns whether it succeeded and what it said on standard error.
fn into_closed_pipe(args: &[&str]) -> (bool, String) {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_benchrun"))
        .args(args)
        .stdout(writer)
        .output()
        .expect("benchrun runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/metrics/aiperf-dcgm-gb200-4gpu.txt");
    let fixture = fixture.to_string_lossy();
    let sample = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/samples/rate-sweep.yaml");
    let sample = sample.to_string_lossy();
    for args in [
        vec!["crd"],
        vec!["inspect", &fixture],
        vec!["inspect", "--output", "json", &fixture],
        vec!["validate", &sample],
    ] {
        let (ok, stderr) = into_closed_pipe(&args);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(ok, "{args:?} failed: {stderr}");
        assert!(stderr.is_empty(), "{args:?} said: {stderr}");
    }
}
