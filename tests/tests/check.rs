//! End-to-end: `outpost check` on bad files.

use std::process::Command;

use outpost_tests::outpost_bin;

/// Writes `yaml` to a temp file and runs `outpost check` on it: exit code,
/// stderr, and the path errors are reported against.
fn check(yaml: &str) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("outpost.yaml");
    std::fs::write(&path, yaml).expect("write config");
    let output = Command::new(outpost_bin())
        .arg("check")
        .arg(&path)
        .output()
        .expect("run outpost check");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code(), stderr, path.display().to_string())
}

#[test]
fn a_bad_config_fails_with_file_line_and_column() {
    let (code, stderr, path) = check(
        "listen:\n  - addr: 127.0.0.1:8080\norigins:\n  app:\n    servers:\n      - url: http://127.0.0.1:9000\nsites:\n  - hosts: [example.com]\n    origin: app2\n",
    );
    assert_eq!(code, Some(1));
    let expected = format!("{path}:9:13: sites[0].origin: no origin named \"app2\" (known: app)");
    assert!(stderr.contains(&expected), "{stderr}");
}

#[test]
fn a_bad_size_is_located() {
    let (code, stderr, path) =
        check("listen: [{addr: 127.0.0.1:8080}]\ncache:\n  memory: 12 parsecs\nsites: []\n");
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains(&format!("{path}:3:11: cache.memory: unknown size unit")),
        "{stderr}"
    );
}

#[test]
fn an_unknown_key_is_located() {
    let (code, stderr, path) =
        check("listen: [{addr: 127.0.0.1:8080}]\ncache:\n  memroy: 1GiB\nsites: []\n");
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains(&format!("{path}:3:3: cache.memroy: unknown field `memroy`")),
        "{stderr}"
    );
}

#[test]
fn a_missing_error_page_and_an_unknown_template_variable_are_located() {
    let base = "listen: [{addr: 127.0.0.1:8080}]\norigins:\n  app: {servers: [{url: http://127.0.0.1:9000}]}\nsites:\n  - hosts: [example.com]\n    origin: app\n";
    let (code, stderr, path) = check(&format!(
        "{base}    error_pages:\n      502: {{file: errors/502.html}}\n"
    ));
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains(&format!(
            "{path}:8:12: sites[0].error_pages.502.file: cannot read "
        )),
        "{stderr}"
    );
    let (code, stderr, path) = check(&format!(
        "{base}    rules:\n      - redirect: {{to: \"https://{{hostname}}/\"}}\n"
    ));
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains(&format!(
            "{path}:8:19: sites[0].rules[0].redirect.to: unknown variable {{hostname}}"
        )),
        "{stderr}"
    );
}
