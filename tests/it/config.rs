//! Every command takes `--config`; bad config names the key at fault.

use crate::project::Project;

#[test]
fn unknown_keys_and_bad_values_name_the_key() {
    for (toml, key) in [
        ("storge = \"x\"\n[[workspace]]\nid = \"a\"\n", "storge"),
        (
            "identity_ttl = \"seven days\"\n[[workspace]]\nid = \"a\"\n",
            "identity_ttl",
        ),
        ("[[workspace]]\nid = \"a\"\nlearnin = true\n", "learnin"),
    ] {
        let project = Project::with_config(toml);
        let out = project.run(&["query", "SELECT 1"]);
        assert_eq!(out.status.code(), Some(2), "{toml}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(key) && stderr.contains("tripwire.toml"),
            "{toml}: {stderr}"
        );
    }
}

#[test]
fn a_missing_config_file_is_an_error_and_no_file_means_the_default() {
    let empty = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tripwire"))
        .args(["query", "SELECT 1", "--config", "absent.toml"])
        .current_dir(empty.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read config absent.toml"));
    // Without --config and without ./tripwire.toml, the embedded default (workspace "shop") applies.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tripwire"))
        .args([
            "query",
            "SELECT count(*) AS n FROM events",
            "--format",
            "csv",
        ])
        .current_dir(empty.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "n\n0\n");
}

#[test]
fn several_workspaces_need_a_choice() {
    let project = Project::with_config(
        "storage = \"./s\"\n[[workspace]]\nid = \"a\"\n[[workspace]]\nid = \"b\"\n",
    );
    let out = project.run(&["query", "SELECT 1"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("pass --workspace"));
    project.ok(&["query", "SELECT 1", "--workspace", "b"]);
    let out = project.run(&["query", "SELECT 1", "--workspace", "c"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown workspace \"c\""));
}
