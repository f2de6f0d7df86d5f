//! The analyst's workbench (docs/reference.md "Trigger tests"): proving a
//! trigger right before it fires.
//!
//! - `spec`: trigger test files, `queries/tests/TRIGGER.toml`.
//! - `runner`: one case on a throwaway store.
//! - `compare`: expected against observed, as readable lines.
//! - `diff`: an edited trigger against what its committed runs matched.
//! - `backfill`: a trigger over the events from before it started, shadow or live.

pub mod backfill;
pub mod compare;
pub mod diff;
pub mod runner;
pub mod spec;

use crate::config::Config;
use crate::project::FileError;
use crate::trigger::load_triggers;

/// One case's outcome: its name and its differences (none: it passed).
#[derive(Debug, Clone, PartialEq)]
pub struct CaseResult {
    pub trigger: String,
    pub case: String,
    /// Why it could not run, if it could not.
    pub error: Option<String>,
    pub differences: Vec<String>,
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.error.is_none() && self.differences.is_empty()
    }
}

/// Everything `tripwire test` found.
#[derive(Debug, Clone, Default)]
pub struct TestReport {
    pub results: Vec<CaseResult>,
    /// Test files that do not parse, or name no trigger.
    pub errors: Vec<FileError>,
}

impl TestReport {
    pub fn failed(&self) -> usize {
        self.results.iter().filter(|r| !r.passed()).count() + self.errors.len()
    }

    /// The report as people read it: a line per case, its differences
    /// indented under it, and a summary.
    pub fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.errors.iter().map(ToString::to_string).collect();
        for result in &self.results {
            let mark = if result.passed() { "ok  " } else { "FAIL" };
            lines.push(format!("{mark} {}: {}", result.trigger, result.case));
            if let Some(error) = &result.error {
                lines.push(format!("       could not run: {error}"));
            }
            lines.extend(result.differences.iter().map(|d| format!("       {d}")));
        }
        let passed = self.results.iter().filter(|r| r.passed()).count();
        lines.push(format!(
            "{passed} of {} case(s) passed{}",
            self.results.len(),
            match self.errors.len() {
                0 => String::new(),
                n => format!("; {n} test file(s) do not load"),
            }
        ));
        lines
    }
}

/// Runs the test cases of the named triggers (all when none is named).
pub async fn run_tests(config: &Config, names: &[String]) -> TestReport {
    let (files, mut errors) = spec::load_tests(&config.project_dir);
    let (triggers, _) = load_triggers(&config.project_dir);
    let mut results = Vec::new();
    for file in files
        .iter()
        .filter(|f| names.is_empty() || names.contains(&f.trigger))
    {
        let Some(trigger) = triggers.iter().find(|t| t.name == file.trigger) else {
            errors.push(FileError::whole_file(
                &file.path,
                format!("there is no trigger {:?} to test", file.trigger),
            ));
            continue;
        };
        for case in &file.cases {
            let outcome = runner::run_case(config, trigger, case).await;
            results.push(CaseResult {
                trigger: file.trigger.clone(),
                case: case.name.clone(),
                differences: outcome
                    .as_ref()
                    .map(|observed| compare::differences(case, observed))
                    .unwrap_or_default(),
                error: outcome.err(),
            });
        }
    }
    TestReport { results, errors }
}
