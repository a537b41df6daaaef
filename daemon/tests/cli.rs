//! The `meshd` command line, run as an operator would run it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

/// `meshd` with an environment free of the caller's `MESHD_*` and `RUST_LOG`.
fn meshd(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_meshd"));
    command.current_dir(dir).env_remove("RUST_LOG");
    for (name, _) in std::env::vars_os() {
        if name.as_encoded_bytes().starts_with(b"MESHD_") {
            command.env_remove(name);
        }
    }
    command
}

fn run(command: &mut Command) -> (Output, String, String) {
    let output = command.output().expect("meshd runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stdout, stderr)
}

fn succeeds(command: &mut Command) -> String {
    let (output, stdout, stderr) = run(command);
    assert!(output.status.success(), "{command:?} failed\nstdout: {stdout}\nstderr: {stderr}");
    stdout
}

fn fails(command: &mut Command) -> String {
    let (output, stdout, stderr) = run(command);
    assert_eq!(output.status.code(), Some(1), "{command:?} should fail\nstdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.is_empty(), "a failing command prints nothing on stdout: {stdout}");
    stderr
}

fn gateway_id(stdout: &str) -> String {
    let line = stdout.lines().find(|l| l.starts_with("gateway id:")).expect("a gateway id line");
    line["gateway id:".len()..].trim().to_owned()
}

#[test]
fn keys_generate_then_show_prints_the_gateway_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let generated = succeeds(meshd(dir.path()).args(["keys", "generate", "--out", "keys/gateway.key"]));
    let id = gateway_id(&generated);
    assert!(id.starts_with("12D3KooW"), "the id is a libp2p ed25519 peer id: {id}");
    assert!(generated.contains("anchor address: 0x"), "{generated}");
    let path = dir.path().join("keys/gateway.key");
    assert_eq!(fs::metadata(&path).expect("key file").permissions().mode() & 0o777, 0o600);

    let shown = succeeds(meshd(dir.path()).args(["keys", "show", "keys/gateway.key"]));
    assert_eq!(gateway_id(&shown), id);
    assert_eq!(shown.lines().nth(1), generated.lines().nth(1), "same anchor address");
}

#[test]
fn keys_generate_keeps_an_existing_file_unless_forced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = gateway_id(&succeeds(meshd(dir.path()).args(["keys", "generate", "--out", "k"])));
    let stderr = fails(meshd(dir.path()).args(["keys", "generate", "--out", "k"]));
    assert!(stderr.contains("already exists") && stderr.contains("--force"), "{stderr}");
    assert_eq!(gateway_id(&succeeds(meshd(dir.path()).args(["keys", "show", "k"]))), first);

    let second = gateway_id(&succeeds(meshd(dir.path()).args(["keys", "generate", "--out", "k", "--force"])));
    assert_ne!(second, first);
    assert_eq!(gateway_id(&succeeds(meshd(dir.path()).args(["keys", "show", "k"]))), second);
}

#[test]
fn keys_show_refuses_a_key_file_others_can_read_and_says_how_to_fix_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    succeeds(meshd(dir.path()).args(["keys", "generate", "--out", "gateway.key"]));
    let path = dir.path().join("gateway.key");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod 644");
    let stderr = fails(meshd(dir.path()).args(["keys", "show", "gateway.key"]));
    assert!(stderr.contains("chmod 600 gateway.key"), "{stderr}");
    assert!(stderr.contains("0644") && stderr.contains("secret"), "says why: {stderr}");

    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod 600");
    succeeds(meshd(dir.path()).args(["keys", "show", "gateway.key"]));
}

#[test]
fn keys_show_names_a_missing_file_and_a_bad_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stderr = fails(meshd(dir.path()).args(["keys", "show", "absent.key"]));
    assert!(stderr.contains("absent.key") && stderr.contains("meshd keys generate"), "{stderr}");

    let path = dir.path().join("bad.key");
    fs::write(&path, "# keys\ned25519 = \"not hex\"\n").expect("write");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
    let stderr = fails(meshd(dir.path()).args(["keys", "show", "bad.key"]));
    assert!(stderr.contains("bad.key: line 2"), "{stderr}");
}

#[test]
fn default_config_passes_the_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (output, default, stderr) = run(meshd(dir.path()).args(["config", "default"]));
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.is_empty(), "stdout stays clean and nothing is logged: {stderr}");
    fs::write(dir.path().join("c.toml"), &default).expect("write");
    let stdout = succeeds(meshd(dir.path()).args(["config", "check", "c.toml"]));
    assert!(stdout.starts_with("OK c.toml: "), "{stdout}");
    assert_eq!(stdout.lines().count(), 1, "a one-line summary: {stdout}");
}

#[test]
fn misspelled_key_fails_naming_file_line_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("c.toml"), "[network]\nname = \"testnet\"\nepoch_lenght_s = 600\n")
        .expect("write");
    let stderr = fails(meshd(dir.path()).args(["config", "check", "c.toml"]));
    assert!(stderr.contains("c.toml: line 3"), "{stderr}");
    assert!(stderr.contains("`network.epoch_lenght_s`"), "{stderr}");
    assert!(stderr.contains("fix:"), "{stderr}");
}

#[test]
fn invalid_value_fails_naming_the_key_and_the_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("c.toml"), "[network]\nepoch_length_s = 5\n").expect("write");
    let stderr = fails(meshd(dir.path()).args(["config", "check", "c.toml"]));
    assert!(stderr.contains("c.toml") && stderr.contains("`network.epoch_length_s` = 5"), "{stderr}");
    assert!(stderr.contains("fix:"), "{stderr}");
}

#[test]
fn environment_overrides_apply_and_bad_ones_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("c.toml"), "").expect("write");
    let stdout = succeeds(
        meshd(dir.path()).args(["config", "check", "c.toml"]).env("MESHD_API__LISTEN", "127.0.0.1:9000"),
    );
    assert!(stdout.contains("api 127.0.0.1:9000"), "{stdout}");

    let stderr = fails(
        meshd(dir.path()).args(["config", "check", "c.toml"]).env("MESHD_NETWORK__EPOCH_LENGTH_S", "an hour"),
    );
    assert!(
        stderr.contains("MESHD_NETWORK__EPOCH_LENGTH_S") && stderr.contains("network.epoch_length_s"),
        "{stderr}"
    );

    let stderr = fails(meshd(dir.path()).args(["config", "check", "c.toml"]).env("MESHD_API__LISTN", "x"));
    assert!(stderr.contains("MESHD_API__LISTN") && stderr.contains("LISTEN"), "{stderr}");

    let stderr = fails(
        meshd(dir.path()).args(["config", "check", "c.toml"]).env("MESHD_NETWORK__EPOCH_LENGTH_S", "5"),
    );
    assert!(
        stderr.contains("MESHD_NETWORK__EPOCH_LENGTH_S") && stderr.contains("network.epoch_length_s"),
        "{stderr}"
    );
}

#[test]
fn logs_go_to_stderr_in_the_configured_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("c.toml"), "").expect("write");
    let (output, stdout, stderr) =
        run(meshd(dir.path()).args(["-v", "config", "check", "c.toml"]).env("MESHD_LOG__FORMAT", "json"));
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.starts_with("OK "), "{stdout}");
    let line = stderr.lines().next().expect("a debug log line");
    assert!(line.starts_with('{') && line.contains("\"level\":\"DEBUG\""), "{stderr}");
}

#[test]
fn version_is_printed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stdout = succeeds(meshd(dir.path()).arg("--version"));
    assert_eq!(stdout.trim(), format!("meshd {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn usage_errors_exit_with_status_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (output, _, stderr) = run(meshd(dir.path()).args(["keys", "generate"]));
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--out"), "{stderr}");
}

#[test]
fn container_runs_as_a_non_root_user_with_a_data_volume() {
    let dockerfile = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Dockerfile");
    let text = fs::read_to_string(&dockerfile).expect("Dockerfile at the repository root");
    let instruction = |name: &str| text.lines().any(|l| l.trim_start().starts_with(name));
    assert!(instruction("USER ") && !instruction("USER root"), "runs as a non-root user");
    assert!(instruction("VOLUME "), "keeps data and keys in a volume");
    assert!(instruction("ENTRYPOINT "), "has an entrypoint");
}
