//! What an import shows while it runs: a progress bar on a terminal (hidden
//! otherwise), and bad lines as they are found, capped so a broken file
//! does not flood the screen.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Bad lines printed one by one before the rest are only counted.
pub const BAD_LINES_SHOWN: u64 = 20;

/// Progress of one import run.
pub struct Progress {
    bar: ProgressBar,
    /// Bytes of the files already finished.
    done: AtomicU64,
    bad: AtomicU64,
}

impl Progress {
    /// A bar on stderr when it is a terminal; silent otherwise.
    pub fn on_stderr() -> Progress {
        Progress::with_target(ProgressDrawTarget::stderr())
    }

    /// No bar at all (tests, library use); bad lines still go to stderr.
    pub fn hidden() -> Progress {
        Progress::with_target(ProgressDrawTarget::hidden())
    }

    fn with_target(target: ProgressDrawTarget) -> Progress {
        let bar = ProgressBar::with_draw_target(Some(0), target);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Progress {
            bar,
            done: AtomicU64::new(0),
            bad: AtomicU64::new(0),
        }
    }

    pub fn start(&self, total_bytes: u64) {
        self.bar.set_length(total_bytes);
        self.bar.enable_steady_tick(Duration::from_millis(200));
    }

    /// The current file is stored up to byte `offset`.
    pub fn at(&self, offset: u64) {
        self.bar
            .set_position(self.done.load(Ordering::Relaxed) + offset);
    }

    pub fn file_done(&self, size: u64) {
        self.done.fetch_add(size, Ordering::Relaxed);
        self.at(0);
    }

    /// Reports one bad line (`file:line: reason`).
    pub fn bad_line(&self, message: &str) {
        let seen = self.bad.fetch_add(1, Ordering::Relaxed) + 1;
        if seen <= BAD_LINES_SHOWN {
            self.bar.suspend(|| eprintln!("{message}"));
        } else if seen == BAD_LINES_SHOWN + 1 {
            self.bar.suspend(|| {
                eprintln!("… more bad lines: only the first {BAD_LINES_SHOWN} are shown (all are counted and quarantined)")
            });
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
