//! Who may call the API: a workspace's secret, sent as `Authorization:
//! Bearer <secret>`, compared in constant time and never logged. A workspace
//! whose secret is not configured (or names an unset variable) is open, and
//! `tripwire serve` says so when it starts.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;

use crate::config::Workspace;

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No credentials were sent.
    Missing,
    /// Credentials were sent but are not this workspace's.
    Wrong,
}

/// Checks the request's credentials against `workspace`'s secret.
pub fn authorize(headers: &HeaderMap, workspace: &Workspace) -> Result<(), Refusal> {
    let Some(secret) = workspace.secret.as_ref().and_then(|s| s.resolve()) else {
        return Ok(());
    };
    let sent = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(Refusal::Missing)?;
    if constant_time_eq(sent.trim().as_bytes(), secret.as_bytes()) {
        Ok(())
    } else {
        Err(Refusal::Wrong)
    }
}

/// Equality whose time depends only on the lengths, not on where the
/// inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn workspace(secret: Option<&str>) -> Workspace {
        Workspace {
            id: "shop".into(),
            secret: secret.map(|s| Secret::Literal(s.into())),
            signing_secret: None,
            learning: false,
            quarantine: true,
        }
    }

    fn bearer(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, value.parse().unwrap());
        headers
    }

    #[test]
    fn the_workspace_secret_is_required_when_configured() {
        let shop = workspace(Some("s3cret"));
        assert_eq!(authorize(&HeaderMap::new(), &shop), Err(Refusal::Missing));
        assert_eq!(
            authorize(&bearer("Basic abc"), &shop),
            Err(Refusal::Missing)
        );
        assert_eq!(
            authorize(&bearer("Bearer s3cre"), &shop),
            Err(Refusal::Wrong)
        );
        assert_eq!(authorize(&bearer("Bearer s3cret"), &shop), Ok(()));
        assert_eq!(authorize(&HeaderMap::new(), &workspace(None)), Ok(()));
    }
}
