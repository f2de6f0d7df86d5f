//! The web page's login sessions: a table from random session id to the
//! workspace it opened and its CSRF token, each until an expiry. Pure: the
//! clock and the random ids are passed in, so expiry and eviction are
//! unit-tested with explicit times.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};

/// How long a login lasts (not extended by use): after it the page asks
/// for the admin key again. docs/reference.md "The web page".
pub const SESSION_LIFETIME: Duration = Duration::hours(8);

/// The most sessions kept at once; a login past it evicts the session
/// closest to its expiry, so the table stays bounded.
pub const MAX_SESSIONS: usize = 10_000;

/// One login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The workspace the admin key opened.
    pub workspace: String,
    /// Every state-changing form of this session carries it.
    pub csrf: String,
    pub expires: DateTime<Utc>,
}

/// Every live login, by session id (the cookie's value).
#[derive(Debug, Default)]
pub struct Sessions {
    by_id: HashMap<String, Session>,
}

impl Sessions {
    /// Records a login at `now` under `id` (random, made by the caller);
    /// expired sessions are dropped first, and the table never grows past
    /// [`MAX_SESSIONS`].
    pub fn open(&mut self, id: String, workspace: &str, csrf: String, now: DateTime<Utc>) {
        self.prune(now);
        while self.by_id.len() >= MAX_SESSIONS {
            let Some(oldest) = self.soonest_to_expire() else {
                break;
            };
            self.by_id.remove(&oldest);
        }
        let session = Session {
            workspace: workspace.to_string(),
            csrf,
            expires: now + SESSION_LIFETIME,
        };
        self.by_id.insert(id, session);
    }

    /// The session `id` names, if it exists and has not expired at `now`.
    pub fn get(&self, id: &str, now: DateTime<Utc>) -> Option<&Session> {
        self.by_id.get(id).filter(|s| now < s.expires)
    }

    /// Ends a session (logout); whether it existed.
    pub fn close(&mut self, id: &str) -> bool {
        self.by_id.remove(id).is_some()
    }

    /// Drops every session expired at `now`.
    pub fn prune(&mut self, now: DateTime<Utc>) {
        self.by_id.retain(|_, s| now < s.expires);
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    fn soonest_to_expire(&self) -> Option<String> {
        self.by_id
            .iter()
            .min_by_key(|(id, s)| (s.expires, (*id).clone()))
            .map(|(id, _)| id.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(hours: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap() + Duration::hours(hours)
    }

    #[test]
    fn a_session_lives_for_its_lifetime_and_not_a_moment_longer() {
        let mut sessions = Sessions::default();
        sessions.open("s1".into(), "shop", "t1".into(), at(0));
        let live = sessions.get("s1", at(0) + SESSION_LIFETIME - Duration::seconds(1));
        assert_eq!(live.map(|s| s.workspace.as_str()), Some("shop"));
        assert_eq!(live.map(|s| s.csrf.as_str()), Some("t1"));
        assert!(sessions.get("s1", at(0) + SESSION_LIFETIME).is_none());
        assert!(sessions.get("nope", at(0)).is_none());
    }

    #[test]
    fn logout_closes_only_its_session() {
        let mut sessions = Sessions::default();
        sessions.open("a".into(), "shop", "ta".into(), at(0));
        sessions.open("b".into(), "shop", "tb".into(), at(0));
        assert!(sessions.close("a"));
        assert!(!sessions.close("a"));
        assert!(sessions.get("a", at(0)).is_none());
        assert!(sessions.get("b", at(0)).is_some());
    }

    #[test]
    fn expired_sessions_are_dropped_when_someone_logs_in() {
        let mut sessions = Sessions::default();
        sessions.open("old".into(), "shop", "t".into(), at(0));
        sessions.open("new".into(), "shop", "t".into(), at(9));
        assert_eq!(sessions.len(), 1);
        assert!(sessions.get("new", at(9)).is_some());
    }

    #[test]
    fn the_table_is_bounded_and_evicts_the_session_closest_to_expiry() {
        let mut sessions = Sessions::default();
        let start = at(0);
        for i in 0..MAX_SESSIONS {
            let when = start + Duration::milliseconds(i as i64);
            sessions.open(format!("s{i}"), "shop", "t".into(), when);
        }
        assert_eq!(sessions.len(), MAX_SESSIONS);
        sessions.open("latest".into(), "shop", "t".into(), at(1));
        assert_eq!(sessions.len(), MAX_SESSIONS);
        assert!(sessions.get("s0", at(1)).is_none(), "the oldest went");
        assert!(sessions.get("s1", at(1)).is_some());
        assert!(sessions.get("latest", at(1)).is_some());
    }
}
