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

/// Issue 21: every problem of a file is reported at once, each at a line
/// and column, those found after parsing (a default out of range, a
/// listener's certificate, an origin's CA file, an error page) too.
#[test]
fn every_error_is_reported_each_at_its_place() {
    let (code, stderr, path) = check(
        "listen:\n  - addr: 127.0.0.1:8443\n    tls:\n      certificates:\n        - {cert: missing.crt, key: missing.key}\ncache:\n  tag_headers: [ok, 'not a name']\n  heuristic_fraction: 3\norigins:\n  app:\n    servers: [{url: https://127.0.0.1:9000}]\n    tls: {ca_file: missing-ca.pem}\nsites:\n  - hosts: [example.com]\n    origin: app\n    error_pages:\n      502: {file: missing.html}\n",
    );
    assert_eq!(code, Some(1));
    // The file's own checks report all they find together.
    for expected in [
        format!("{path}:7:"),
        "cache.tag_headers[1]".to_owned(),
        "cache.heuristic_fraction".to_owned(),
    ] {
        assert!(stderr.contains(&expected), "{expected}\n---\n{stderr}");
    }
    assert!(!stderr.contains(":0:0:"), "{stderr}");
    // Then, with the file fixed, what only loading finds: all of it.
    let (code, stderr, path) = check(
        "listen:\n  - addr: 127.0.0.1:8443\n    tls:\n      certificates:\n        - {cert: missing.crt, key: missing.key}\norigins:\n  app:\n    servers: [{url: https://127.0.0.1:9000}]\n    tls: {ca_file: missing-ca.pem}\nsites:\n  - hosts: [example.com]\n    origin: app\n    error_pages:\n      502: {file: missing.html}\n",
    );
    assert_eq!(code, Some(1));
    for expected in [
        format!("{path}:5:"),
        format!("{path}:9:"),
        format!("{path}:14:"),
        "listen[0].tls.certificates".to_owned(),
        "origins.app.tls: tls.ca_file".to_owned(),
        "sites[0].error_pages.502.file".to_owned(),
    ] {
        assert!(stderr.contains(&expected), "{expected}\n---\n{stderr}");
    }
    assert!(!stderr.contains(":0:0:"), "{stderr}");
}

/// An origin host name that does not resolve (`.invalid` never does, RFC
/// 6761 §6.4) is a warning of `check`, placed at its URL, and `run`
/// refuses to start with it.
#[test]
fn an_origin_host_that_does_not_resolve_is_a_warning_and_run_refuses_it() {
    let yaml = "listen: [{addr: 127.0.0.1:0}]\nadmin: {addr: 127.0.0.1:0}\norigins:\n  app:\n    servers:\n      - url: http://127.0.0.1:9000\n      - url: http://origin.invalid:8080\nsites:\n  - hosts: [example.com]\n    origin: app\n";
    let (code, stderr, path) = check(yaml);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{path}:7:14: origins.app.servers[1].url: warning: host origin.invalid does not resolve"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("servers[0]"), "{stderr}");

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("outpost.yaml");
    std::fs::write(&path, yaml).expect("write config");
    let output = Command::new(outpost_bin())
        .arg("run")
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run outpost run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:7:14: origins.app.servers[1].url: host origin.invalid does not resolve",
            path.display()
        )),
        "{stderr}"
    );
}
