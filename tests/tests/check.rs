//! End-to-end: `outpost check` on good and bad files.

use std::process::Command;

use outpost_tests::outpost_bin;

#[test]
fn a_bad_config_fails_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "listen:\n  - addr: 127.0.0.1:8080\norigins:\n  app:\n    servers:\n      - url: http://127.0.0.1:9000\nsites:\n  - hosts: [example.com]\n    origin: app2\n",
    )
    .unwrap();
    let output = Command::new(outpost_bin())
        .arg("check")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let expected = format!(
        "{}:9:13: sites[0].origin: no origin named \"app2\" (known: app)",
        path.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
}

#[test]
fn a_bad_size_and_an_unknown_key_are_located() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "listen: [{addr: 127.0.0.1:8080}]\ncache:\n  memory: 12 parsecs\nsites: []\n",
    )
    .unwrap();
    let output = Command::new(outpost_bin())
        .arg("check")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:3:11: cache.memory: unknown size unit",
            path.display()
        )),
        "{stderr}"
    );

    std::fs::write(
        &path,
        "listen: [{addr: 127.0.0.1:8080}]\ncache:\n  memroy: 1GiB\nsites: []\n",
    )
    .unwrap();
    let output = Command::new(outpost_bin())
        .arg("check")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:3:3: cache.memroy: unknown field `memroy`",
            path.display()
        )),
        "{stderr}"
    );
}
