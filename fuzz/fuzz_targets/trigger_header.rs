//! Any text as a trigger file: the header parser never panics; a parsed
//! file keeps one query line per file line (so errors point at file lines);
//! a refused one names lines of the file.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tripwire_fuzz::trigger::file::TriggerFile;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.lines().count();
    match TriggerFile::parse_all(Path::new("queries/triggers/t.sql"), text) {
        Ok(trigger) => {
            assert_eq!(trigger.sql.split('\n').count(), lines.max(1));
            if let Some(schedule) = &trigger.schedule {
                assert!(
                    schedule
                        .parse::<tripwire_fuzz::schedule::Schedule>()
                        .is_ok()
                );
            }
        }
        Err(problems) => {
            assert!(!problems.is_empty());
            for problem in problems {
                assert!((1..=lines.max(1)).contains(&problem.line), "{problem}");
            }
        }
    }
});
