//! The crate's modules are one-way layers: each module of `src/lib.rs` uses
//! only the modules declared before it there (docs/architecture.md
//! "Layers"). A use of a later module is a cycle waiting to happen.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The crate's top-level modules, in the order `lib.rs` declares them.
fn declared_modules(src: &Path) -> Vec<String> {
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    lib.lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|rest| rest.trim_end_matches(';').trim().to_string())
        .collect()
}

/// Every `.rs` file of module `name` (its file, or its folder's files).
fn files_of(src: &Path, name: &str) -> Vec<PathBuf> {
    let single = src.join(format!("{name}.rs"));
    let mut files = Vec::new();
    if single.exists() {
        files.push(single);
    }
    let mut folders = vec![src.join(name)];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files
}

/// The top-level modules a source text names as `crate::NAME`, comments
/// aside (`use crate::{a, b}` groups included).
fn used_modules(text: &str) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut used = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let names: Vec<&str> = match rest.strip_prefix('{') {
            Some(group) => group
                .split('}')
                .next()
                .unwrap_or("")
                .split(',')
                .map(|part| part.trim().split("::").next().unwrap_or("").trim())
                .collect(),
            None => vec![
                rest.split(|c: char| !c.is_alphanumeric() && c != '_')
                    .next()
                    .unwrap_or(""),
            ],
        };
        used.extend(
            names
                .into_iter()
                .filter(|n| !n.is_empty())
                .map(str::to_string),
        );
    }
    used
}

#[test]
fn every_module_uses_only_the_modules_declared_before_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let order = declared_modules(&src);
    assert!(order.len() > 10, "lib.rs declares {order:?}");
    let rank = |name: &str| order.iter().position(|m| m == name);
    let mut upward = Vec::new();
    for (at, module) in order.iter().enumerate() {
        let files = files_of(&src, module);
        assert!(!files.is_empty(), "module {module} has no files");
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for used in used_modules(&text) {
                if rank(&used).is_some_and(|r| r > at) {
                    upward.push(format!("{} uses {used}", file.display()));
                }
            }
        }
    }
    assert!(
        upward.is_empty(),
        "modules must only use modules declared before them in src/lib.rs:\n{}",
        upward.join("\n")
    );
}

#[test]
fn uses_are_found_in_paths_and_groups_but_not_in_comments() {
    let text = "use crate::store::Store;\n// crate::cli is only mentioned\n\
                use crate::{config::Config, event};\nlet x = crate::sql::new_context();";
    let found: Vec<String> = used_modules(text).into_iter().collect();
    assert_eq!(found, ["config", "event", "sql", "store"]);
}
