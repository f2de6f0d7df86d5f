//! Who may call the API. Each workspace has two kinds of key: its
//! `secret` (write keys: they send events, nothing else; they ship in
//! browser apps, so they are public) and its `admin_secret` (admin keys:
//! they read and act). A key is sent as `Authorization: Bearer <key>`, as
//! HTTP Basic (the user name, or the password when the user name is empty),
//! or, for writes, in the body (`partnerSecret`, `writeKey`). Keys are held
//! as digests ([`KeySet`]), never logged.
//!
//! 401 means no key or a key of nothing; 403 means a valid key of the wrong
//! kind or of another workspace. There is no open mode: `serve` refuses to
//! start while a configured key names an unset variable, and a workspace
//! without a kind of key accepts no request that needs it.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use base64::Engine as _;

use crate::config::{Config, Workspace};
use crate::keys::KeySet;

/// Why a request was refused, with the message its answer carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 401: no key, or a key valid for nothing.
    Unauthorized(String),
    /// 403: a valid key of the wrong kind, or of another workspace.
    Forbidden(String),
    /// 400: a named workspace that is not configured (asked by a valid key).
    Unknown(String),
}

/// The keys of one workspace.
#[derive(Debug, Clone)]
struct WorkspaceKeys {
    id: String,
    write: KeySet,
    admin: KeySet,
}

/// Every workspace's keys, resolved once when the server starts.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    workspaces: Vec<WorkspaceKeys>,
}

impl Keyring {
    /// The keys of `config`; entries that resolve to nothing are left out
    /// (`serve` refuses to start before it gets here when there are any).
    pub fn new(config: &Config) -> Keyring {
        Keyring {
            workspaces: config.workspaces.iter().map(workspace_keys).collect(),
        }
    }

    fn get(&self, id: &str) -> Option<&WorkspaceKeys> {
        self.workspaces.iter().find(|w| w.id == id)
    }

    fn is_write_key(&self, key: &str) -> bool {
        self.workspaces.iter().any(|w| w.write.contains(key))
    }

    fn is_admin_key(&self, key: &str) -> bool {
        self.workspaces.iter().any(|w| w.admin.contains(key))
    }

    /// The workspaces a write goes to: every `listed` one (fan-out), each of
    /// which `key` must be a write key of; with none listed, the workspace
    /// whose write key `key` is.
    pub fn writable(&self, key: Option<&str>, listed: &[String]) -> Result<Vec<String>, Refusal> {
        let Some(key) = key else {
            return Err(Refusal::Unauthorized(
                "missing key: send the workspace's secret (Basic user name, Bearer, partnerSecret or writeKey)".into(),
            ));
        };
        if !self.is_write_key(key) {
            return Err(match self.is_admin_key(key) {
                true => Refusal::Forbidden(
                    "an admin key cannot send events: use the workspace's secret".into(),
                ),
                false => Refusal::Unauthorized("the key is not valid for any workspace".into()),
            });
        }
        if listed.is_empty() {
            let owner = self.workspaces.iter().find(|w| w.write.contains(key));
            return Ok(owner.map(|w| vec![w.id.clone()]).unwrap_or_default());
        }
        let mut chosen = Vec::new();
        for id in listed {
            let workspace = self
                .get(id)
                .ok_or_else(|| Refusal::Unknown(format!("unknown workspace {id:?}")))?;
            if !workspace.write.contains(key) {
                return Err(Refusal::Forbidden(format!(
                    "the key is not valid for workspace {id:?}"
                )));
            }
            if !chosen.contains(id) {
                chosen.push(id.clone());
            }
        }
        Ok(chosen)
    }

    /// The workspace an admin request works on: `requested` (`?workspace=`)
    /// or, when none is named, the one `key` is the admin key of. Nothing
    /// about the workspace's content is looked at before this succeeds.
    pub fn admin(&self, key: Option<&str>, requested: Option<&str>) -> Result<String, Refusal> {
        if let Some(closed) = self.closed_target(requested) {
            return Err(Refusal::Forbidden(format!(
                "workspace {closed:?} has no admin_secret, so its admin endpoints are closed"
            )));
        }
        let Some(key) = key else {
            return Err(Refusal::Unauthorized(
                "missing key: send the workspace's admin_secret (Bearer or Basic)".into(),
            ));
        };
        let owners: Vec<&str> = self
            .workspaces
            .iter()
            .filter(|w| w.admin.contains(key))
            .map(|w| w.id.as_str())
            .collect();
        if owners.is_empty() {
            return Err(match self.is_write_key(key) {
                true => Refusal::Forbidden(
                    "a write key (secret) cannot read or act: use the workspace's admin_secret"
                        .into(),
                ),
                false => Refusal::Unauthorized("the key is not valid for any workspace".into()),
            });
        }
        match (requested, owners.as_slice()) {
            (Some(id), _) if owners.contains(&id) => Ok(id.to_string()),
            (Some(id), _) => Err(Refusal::Forbidden(format!(
                "the key is not valid for workspace {id:?}"
            ))),
            (None, [only]) => Ok(only.to_string()),
            (None, _) => Err(Refusal::Unknown(format!(
                "the key is the admin key of several workspaces ({}): pass ?workspace=",
                owners.join(", ")
            ))),
        }
    }

    /// The workspace a request is about when it is known to have no admin
    /// key at all: the one requested, or the only one configured.
    fn closed_target(&self, requested: Option<&str>) -> Option<&str> {
        let target = match (requested, self.workspaces.as_slice()) {
            (Some(id), _) => self.get(id),
            (None, [only]) => Some(only),
            (None, _) => None,
        }?;
        target.admin.is_empty().then_some(target.id.as_str())
    }

    /// `GET /metrics`: open when `public`, else any workspace's admin key.
    pub fn metrics(&self, key: Option<&str>, public: bool) -> Result<(), Refusal> {
        match key {
            _ if public => Ok(()),
            Some(key) if self.is_admin_key(key) => Ok(()),
            Some(key) if self.is_write_key(key) => Err(Refusal::Forbidden(
                "a write key (secret) cannot read /metrics: use an admin_secret".into(),
            )),
            _ => Err(Refusal::Unauthorized(
                "/metrics needs an admin_secret (Bearer or Basic), or metrics_public = true".into(),
            )),
        }
    }
}

fn workspace_keys(workspace: &Workspace) -> WorkspaceKeys {
    WorkspaceKeys {
        id: workspace.id.clone(),
        write: KeySet::new(Workspace::resolved(&workspace.secret)),
        admin: KeySet::new(Workspace::resolved(&workspace.admin_secret)),
    }
}

/// The key in the `Authorization` header: a Bearer token, or a Basic user
/// name (the password when the user name is empty).
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
    let key = match text.split_once(':') {
        Some(("", password)) => password,
        Some((user, _)) => user,
        None => text.as_str(),
    };
    Some(key.to_string()).filter(|k| !k.is_empty())
}

/// A comma-separated workspace list (`X-Workspaces: a,b`).
pub fn workspace_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, value.parse().unwrap());
        headers
    }

    fn keyring(text: &str) -> Keyring {
        Keyring::new(&Config::parse(text, "test", std::path::Path::new("")).unwrap())
    }

    /// `a` and `b` with write and admin keys; `c` with a write key only.
    fn three_workspaces() -> Keyring {
        keyring(
            "[[workspace]]\nid = \"a\"\nsecret = [\"ka\", \"ka2\"]\nadmin_secret = \"aa\"\n\
             [[workspace]]\nid = \"b\"\nsecret = \"kb\"\nadmin_secret = \"ab\"\n\
             [[workspace]]\nid = \"c\"\nsecret = \"kc\"\n",
        )
    }

    fn list(text: &str) -> Vec<String> {
        workspace_list(text)
    }

    #[test]
    fn basic_auth_carries_the_key_as_user_name_or_password() {
        // "ka:" and ":ka" base64-encoded.
        assert_eq!(header_key(&header("Basic a2E6")), Some("ka".into()));
        assert_eq!(header_key(&header("Basic Omth")), Some("ka".into()));
        assert_eq!(header_key(&header("Bearer ka")), Some("ka".into()));
        assert_eq!(header_key(&header("Basic !!!")), None);
        assert_eq!(header_key(&header("Basic Og==")), None, "\":\" is no key");
    }

    #[test]
    fn writes_go_to_the_key_owner_or_to_every_listed_workspace() {
        let keys = three_workspaces();
        assert_eq!(keys.writable(Some("kb"), &[]), Ok(vec!["b".into()]));
        assert_eq!(keys.writable(Some("ka2"), &[]), Ok(vec!["a".into()]));
        assert!(matches!(
            keys.writable(None, &[]),
            Err(Refusal::Unauthorized(_))
        ));
        assert!(matches!(
            keys.writable(Some("x"), &[]),
            Err(Refusal::Unauthorized(_))
        ));
        assert!(matches!(
            keys.writable(Some("ka"), &list("a,b")),
            Err(Refusal::Forbidden(_))
        ));
        assert!(matches!(
            keys.writable(Some("x"), &list("a,b")),
            Err(Refusal::Unauthorized(_))
        ));
        assert!(matches!(
            keys.writable(Some("ka"), &list("a,zz")),
            Err(Refusal::Unknown(_))
        ));
        assert_eq!(
            keys.writable(Some("ka"), &list("a, a")),
            Ok(vec!["a".into()])
        );
    }

    #[test]
    fn a_key_of_one_workspace_writing_to_another_is_forbidden() {
        let keys = three_workspaces();
        let refused = keys.writable(Some("ka"), &list("b"));
        assert_eq!(
            refused,
            Err(Refusal::Forbidden(
                "the key is not valid for workspace \"b\"".into()
            ))
        );
    }

    #[test]
    fn an_admin_key_cannot_write_and_a_write_key_cannot_read() {
        let keys = three_workspaces();
        assert!(matches!(
            keys.writable(Some("aa"), &[]),
            Err(Refusal::Forbidden(_))
        ));
        assert!(matches!(
            keys.admin(Some("ka"), Some("a")),
            Err(Refusal::Forbidden(_))
        ));
        assert!(matches!(
            keys.admin(Some("ka"), None),
            Err(Refusal::Forbidden(_))
        ));
        assert!(matches!(
            keys.metrics(Some("ka"), false),
            Err(Refusal::Forbidden(_))
        ));
    }

    #[test]
    fn admin_requests_work_on_the_key_owners_workspace() {
        let keys = three_workspaces();
        assert_eq!(keys.admin(Some("aa"), None), Ok("a".into()));
        assert_eq!(keys.admin(Some("ab"), Some("b")), Ok("b".into()));
        assert!(matches!(
            keys.admin(Some("aa"), Some("b")),
            Err(Refusal::Forbidden(_))
        ));
        assert!(matches!(
            keys.admin(Some("aa"), Some("nope")),
            Err(Refusal::Forbidden(_))
        ));
        assert!(matches!(
            keys.admin(None, Some("a")),
            Err(Refusal::Unauthorized(_))
        ));
        assert!(matches!(
            keys.admin(Some("zz"), None),
            Err(Refusal::Unauthorized(_))
        ));
        let closed = keys.admin(Some("aa"), Some("c"));
        assert!(
            matches!(&closed, Err(Refusal::Forbidden(m)) if m.contains("no admin_secret")),
            "{closed:?}"
        );
    }

    #[test]
    fn a_lone_workspace_without_an_admin_secret_answers_403() {
        let keys = keyring("[[workspace]]\nid = \"shop\"\nsecret = \"k\"\n");
        assert!(matches!(keys.admin(None, None), Err(Refusal::Forbidden(_))));
        assert!(matches!(
            keys.admin(Some("k"), None),
            Err(Refusal::Forbidden(_))
        ));
    }

    #[test]
    fn metrics_need_an_admin_key_unless_public() {
        let keys = three_workspaces();
        assert_eq!(keys.metrics(Some("ab"), false), Ok(()));
        assert!(matches!(
            keys.metrics(None, false),
            Err(Refusal::Unauthorized(_))
        ));
        assert_eq!(keys.metrics(None, true), Ok(()));
    }
}
