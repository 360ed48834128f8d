//! The command line itself. Having an integration test here also makes
//! `cargo test --workspace` build the `outpost` binary that the end-to-end
//! tests in `tests/` run.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_outpost");

#[test]
fn version_and_help_name_the_subcommands() {
    let help = Command::new(BIN).arg("--help").output().unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for sub in ["run", "check", "demo"] {
        assert!(text.contains(sub), "{text}");
    }
    let version = Command::new(BIN).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("outpost "));
}

#[test]
fn check_accepts_the_demo_config_and_run_refuses_a_missing_file() {
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/examples/demo.yaml");
    let ok = Command::new(BIN).args(["check", demo]).output().unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let missing = Command::new(BIN)
        .args(["run", "--config", "/nonexistent/outpost.yaml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read the file"));
}
