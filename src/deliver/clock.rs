//! The delivery worker's wall clock, read at every attempt (a signature's
//! `t`, `attempted_at`, the next try, a claim's expiry, a heartbeat), and
//! injectable so tests can pin or step it. Which deliveries are due is
//! asked at a separate, caller-given time.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};

/// A source of "now".
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>);

impl Clock {
    /// The system's wall clock.
    pub fn system() -> Clock {
        Clock(Arc::new(Utc::now))
    }

    /// Always `at`.
    pub fn fixed(at: DateTime<Utc>) -> Clock {
        Clock(Arc::new(move || at))
    }

    /// Whatever `read` says, each time it is read.
    pub fn from_fn(read: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(read))
    }

    pub fn now(&self) -> DateTime<Utc> {
        (self.0)()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}
