//! The analyst's workbench on a real project: `tripwire test` runs the
//! trigger tests in queries/tests/ on a throwaway store (the example
//! project's pass), a wrong expectation prints a readable diff and exits
//! non-zero, and `check` runs the tests too.

use std::path::Path;

use crate::project::Project;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A project with the repository's example triggers, flows, segments and tests.
fn example_project() -> Project {
    let project = Project::with_config("storage = \"./store\"\n[[workspace]]\nid = \"shop\"\n");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    copy_dir(&repo.join("queries"), &project.path("queries"));
    copy_dir(&repo.join("flows"), &project.path("flows"));
    project
}

#[test]
fn the_example_projects_trigger_tests_pass() {
    let project = example_project();
    let out = project.ok(&["test"]);
    assert!(!out.contains("FAIL"), "{out}");
    for trigger in [
        "cart_abandoned",
        "deposit_started",
        "sku_reorder",
        "vip_cart_abandoned",
    ] {
        assert!(
            out.contains(&format!("ok   {trigger}: ")),
            "{trigger} has tests: {out}"
        );
    }
    assert!(out.contains("8 of 8 case(s) passed"), "{out}");
    // The throwaway stores leave nothing in the project.
    assert!(!project.path("store").exists());
}

#[test]
fn a_wrong_expectation_prints_a_diff_and_exits_non_zero() {
    let project = example_project();
    std::fs::write(
        project.path("queries/tests/vip_cart_abandoned.toml"),
        r#"
[[case]]
name = "expects the wrong value and a contact that never comes"
events = [{ name = "vip_cart_abandoned", payload = { cart_value = 420.0 }, email = "eve@example.com", timestamp = "2026-11-04T10:00:00Z" }]

[[case.expect]]
contact = "email:eve@example.com"
data = { cart_value = 999.0 }

[[case.expect]]
contact = "email:nobody@example.com"
"#,
    )
    .unwrap();
    let out = project.run(&["test", "vip_cart_abandoned"]);
    assert_eq!(out.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("FAIL vip_cart_abandoned: expects the wrong value"),
        "{stdout}"
    );
    assert!(
        stdout.contains("~ email:eve@example.com: data.cart_value: expected 999.0, got 420.0"),
        "{stdout}"
    );
    assert!(
        stdout.contains("- a match for email:nobody@example.com: none"),
        "{stdout}"
    );
    assert!(stdout.contains("0 of 1 case(s) passed"), "{stdout}");
    // check runs the tests too.
    let checked = project.run(&["check"]);
    assert!(!checked.status.success());
    assert!(String::from_utf8_lossy(&checked.stderr).contains("FAIL vip_cart_abandoned"));
}
