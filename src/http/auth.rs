//! Who may call the API: a workspace's secret, sent as `Authorization:
//! Bearer <secret>`, as HTTP Basic with the secret as user name (Segment's
//! write key), or in the body (`partnerSecret`, `writeKey`); compared in
//! constant time and never logged. A workspace whose secret is not
//! configured (or names an unset variable) is open, and `tripwire serve`
//! says so when it starts.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use base64::Engine as _;

use crate::config::{Config, Workspace};

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No credentials were sent.
    Missing,
    /// Credentials were sent but are not this workspace's.
    Wrong,
}

/// Why a write to some workspaces was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteRefusal {
    /// 401: no key, or a key of no workspace.
    Unauthorized(String),
    /// 403: a valid key that is not valid for this listed workspace.
    Forbidden(String),
    /// 400: a listed workspace that is not configured.
    Unknown(String),
}

/// The key in the `Authorization` header: a Bearer token, or a Basic user name.
pub fn header_key(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    if let Some(token) = value.strip_prefix("Bearer ") {
        return Some(token.trim().to_string());
    }
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let user = text.split_once(':').map_or(text.as_str(), |(user, _)| user);
    Some(user.to_string())
}

/// Checks the request's credentials against `workspace`'s secret.
pub fn authorize(headers: &HeaderMap, workspace: &Workspace) -> Result<(), Refusal> {
    check_key(header_key(headers).as_deref(), workspace)
}

/// Checks `key` against `workspace`'s secret.
pub fn check_key(key: Option<&str>, workspace: &Workspace) -> Result<(), Refusal> {
    let Some(secret) = workspace.secret.as_ref().and_then(|s| s.resolve()) else {
        return Ok(());
    };
    let sent = key.ok_or(Refusal::Missing)?;
    if constant_time_eq(sent.as_bytes(), secret.as_bytes()) {
        Ok(())
    } else {
        Err(Refusal::Wrong)
    }
}

/// The workspaces a write goes to: every `listed` one (fan-out), each of
/// which `key` must be valid for; with none listed, the workspace `key`
/// belongs to (or the only workspace, when it is open).
pub fn writable<'a>(
    config: &'a Config,
    key: Option<&str>,
    listed: &[String],
) -> Result<Vec<&'a Workspace>, WriteRefusal> {
    if listed.is_empty() {
        let owner = config
            .workspaces
            .iter()
            .find(|w| key.is_some() && w.secret.is_some() && check_key(key, w).is_ok());
        return match (owner, config.workspaces.as_slice()) {
            (Some(w), _) => Ok(vec![w]),
            (None, [only]) if check_key(key, only).is_ok() => Ok(vec![only]),
            (None, _) if key.is_none() => Err(WriteRefusal::Unauthorized(
                "missing key: send the workspace's key (Basic user name or Bearer)".into(),
            )),
            (None, _) => Err(WriteRefusal::Unauthorized(
                "the key is not valid for any workspace".into(),
            )),
        };
    }
    let mut chosen = Vec::new();
    let mut valid_anywhere = false;
    let mut forbidden = None;
    for id in listed {
        let workspace = config
            .workspace(id)
            .ok_or_else(|| WriteRefusal::Unknown(format!("unknown workspace {id:?}")))?;
        match check_key(key, workspace) {
            Ok(()) => {
                valid_anywhere = true;
                chosen.push(workspace);
            }
            Err(_) => forbidden = forbidden.or(Some(id.clone())),
        }
    }
    match forbidden {
        None => Ok(chosen),
        Some(id) if valid_anywhere => Err(WriteRefusal::Forbidden(format!(
            "the key is not valid for workspace {id:?}"
        ))),
        Some(id) if key.is_none() => Err(WriteRefusal::Unauthorized(format!(
            "missing key for workspace {id:?}"
        ))),
        Some(id) => Err(WriteRefusal::Unauthorized(format!(
            "the key is not valid for workspace {id:?}"
        ))),
    }
}

/// A comma-separated workspace list (`X-Workspaces: a,b`).
pub fn workspace_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
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

    fn two_workspaces() -> Config {
        Config::parse(
            "[[workspace]]\nid = \"a\"\nsecret = \"ka\"\n[[workspace]]\nid = \"b\"\nsecret = \"kb\"\n",
            "test",
            std::path::Path::new(""),
        )
        .unwrap()
    }

    #[test]
    fn basic_auth_carries_the_write_key_as_user_name() {
        // "ka:" base64-encoded, as Segment's libraries send it.
        assert_eq!(header_key(&bearer("Basic a2E6")), Some("ka".into()));
        assert_eq!(header_key(&bearer("Bearer ka")), Some("ka".into()));
        assert_eq!(header_key(&bearer("Basic !!!")), None);
    }

    #[test]
    fn writes_go_to_the_key_owner_or_to_every_listed_workspace() {
        let config = two_workspaces();
        let ids = |r: Result<Vec<&Workspace>, WriteRefusal>| {
            r.map(|ws| ws.iter().map(|w| w.id.clone()).collect::<Vec<_>>())
        };
        assert_eq!(
            ids(writable(&config, Some("kb"), &[])),
            Ok(vec!["b".into()])
        );
        assert!(matches!(
            writable(&config, None, &[]),
            Err(WriteRefusal::Unauthorized(_))
        ));
        assert!(matches!(
            writable(&config, Some("x"), &[]),
            Err(WriteRefusal::Unauthorized(_))
        ));
        let both = workspace_list("a, b");
        assert!(matches!(
            writable(&config, Some("ka"), &both),
            Err(WriteRefusal::Forbidden(_))
        ));
        assert!(matches!(
            writable(&config, Some("x"), &both),
            Err(WriteRefusal::Unauthorized(_))
        ));
        let unknown = workspace_list("a,zz");
        assert!(matches!(
            writable(&config, Some("ka"), &unknown),
            Err(WriteRefusal::Unknown(_))
        ));
        assert_eq!(
            ids(writable(&config, Some("ka"), &workspace_list("a"))),
            Ok(vec!["a".into()])
        );
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
