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
    let run = Command::new(BIN).args(["help", "run"]).output().unwrap();
    let text = String::from_utf8_lossy(&run.stdout);
    for needle in ["--config", "--upgrade", "SIGHUP", "SIGUSR2", "SIGTERM"] {
        assert!(
            text.contains(needle),
            "`outpost help run` lacks {needle}: {text}"
        );
    }
}

#[test]
fn check_accepts_the_demo_config_and_run_refuses_a_missing_file() {
    // The demo's certificate is made at first start in its state
    // directory; `check` loads certificates, so it needs one there.
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo.yaml");
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/examples/demo.yaml"
    ))
    .unwrap();
    assert_eq!(
        text,
        outpost_edge::demo::DEMO_CONFIG,
        "the binary embeds config/examples/demo.yaml"
    );
    std::fs::write(&demo, text).unwrap();
    let missing_cert = Command::new(BIN).arg("check").arg(&demo).output().unwrap();
    assert_eq!(missing_cert.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing_cert.stderr).contains("demo-cert.pem"));
    outpost_edge::demo::ensure_certificate(dir.path()).unwrap();
    let ok = Command::new(BIN).arg("check").arg(&demo).output().unwrap();
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
