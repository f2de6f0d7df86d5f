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

#[test]
fn engine_ballista_is_validated_naming_the_key() {
    for (engine, names) in [
        ("[engine]\nballista = \"http://x:1\"\n", "engine.ballista"),
        ("[engine]\nballista = \"df://\"\n", "engine.ballista"),
        ("[engine]\nbalista = \"df://x:1\"\n", "balista"),
    ] {
        let project = Project::with_config(&format!(
            "storage = \"./store\"\n[[workspace]]\nid = \"a\"\n{engine}"
        ));
        let out = project.run(&["query", "SELECT 1"]);
        assert_eq!(out.status.code(), Some(2), "{engine}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(names), "{engine}: {stderr}");
    }
}

/// A binary built without the `cluster` feature refuses the cluster's key
/// and commands, naming the feature (`cargo test` builds it so).
#[cfg(not(feature = "cluster"))]
#[test]
fn without_the_cluster_feature_the_engine_and_commands_name_it() {
    let project = Project::with_config(
        "storage = \"./store\"\n[[workspace]]\nid = \"a\"\n[engine]\nballista = \"df://127.0.0.1:1\"\n",
    );
    let out = project.run(&["query", "SELECT 1"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("engine.ballista") && stderr.contains("`cluster` feature"),
        "{stderr}"
    );
    let plain = Project::new();
    let out = plain.run(&["cluster", "scheduler", "--bind", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("`cluster` feature"), "{stderr}");
}
