//! Which workspace an imported event belongs to, and whether its
//! `partnerSecret` is one of its write keys (`secret`). Pure decisions, no I/O.

use std::collections::HashMap;

use crate::config::{Config, Workspace};
use crate::event::ParsedEvent;
use crate::keys::KeySet;

/// Routes events to workspaces for one import.
#[derive(Debug, Clone)]
pub struct Router {
    /// `--workspace`, or the only configured workspace.
    default: Option<String>,
    /// Whether `--workspace` was given (then a differing `partnerId` is an error).
    forced: bool,
    /// Each workspace's write keys that resolve (`None`: none configured,
    /// or every entry names an unset variable: then nothing is checked).
    secrets: HashMap<String, Option<KeySet>>,
}

impl Router {
    /// `workspace` is `--workspace`; it must be configured.
    pub fn new(config: &Config, workspace: Option<&str>) -> Result<Router, String> {
        let default = match workspace {
            Some(id) => Some(config.pick_workspace(Some(id))?.id.clone()),
            None => config.pick_workspace(None).ok().map(|w| w.id.clone()),
        };
        let secrets = config
            .workspaces
            .iter()
            .map(|w| {
                let keys = Some(Workspace::resolved(&w.secret)).filter(|k| !k.is_empty());
                (w.id.clone(), keys.map(KeySet::new))
            })
            .collect();
        Ok(Router {
            default,
            forced: workspace.is_some(),
            secrets,
        })
    }

    /// Where rejected input goes when the event itself names no valid workspace.
    pub fn default_workspace(&self) -> Option<&str> {
        self.default.as_deref()
    }

    /// The workspace `event` is stored in (its configured id), or why it
    /// cannot be.
    pub fn route(&self, event: &ParsedEvent) -> Result<&str, String> {
        let Some(named) = event.workspace.as_deref() else {
            return self.default.as_deref().ok_or_else(|| {
                "the event names no workspace (no partnerId) and several are configured: pass --workspace".to_string()
            });
        };
        let Some((id, secret)) = self.secrets.get_key_value(named) else {
            return Err(format!("partnerId {named:?} is not a configured workspace"));
        };
        if self.forced && self.default.as_deref() != Some(named) {
            return Err(format!(
                "partnerId {named:?} does not match --workspace {:?}",
                self.default.as_deref().unwrap_or_default()
            ));
        }
        if let Some(keys) = secret
            && !event
                .secret
                .as_deref()
                .is_some_and(|sent| keys.contains(sent))
        {
            return Err(format!(
                "partnerSecret does not match the secret configured for workspace {named:?}"
            ));
        }
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;
    use std::path::Path;

    fn config() -> Config {
        let text =
            "[[workspace]]\nid = \"a\"\nsecret = [\"sa\", \"sa2\"]\n[[workspace]]\nid = \"b\"\n";
        Config::parse(text, "t", Path::new("/")).unwrap()
    }

    fn event(partner: Option<&str>, secret: Option<&str>) -> ParsedEvent<'static> {
        let mut e = ParsedEvent::new(EventKind::Track);
        e.workspace = partner.map(|p| p.to_string().into());
        e.secret = secret.map(|s| s.to_string().into());
        e
    }

    #[test]
    fn partner_id_names_the_workspace_and_the_secret_must_match() {
        let r = Router::new(&config(), None).unwrap();
        assert_eq!(r.route(&event(Some("a"), Some("sa"))), Ok("a"));
        assert_eq!(r.route(&event(Some("a"), Some("sa2"))), Ok("a"));
        assert!(r.route(&event(Some("a"), None)).is_err());
        assert!(
            r.route(&event(Some("a"), Some("no")))
                .unwrap_err()
                .contains("partnerSecret")
        );
        assert_eq!(r.route(&event(Some("b"), None)), Ok("b"));
        assert!(
            r.route(&event(Some("c"), None))
                .unwrap_err()
                .contains("not a configured")
        );
        assert!(
            r.route(&event(None, None))
                .unwrap_err()
                .contains("--workspace")
        );
    }

    #[test]
    fn forced_workspace() {
        let r = Router::new(&config(), Some("b")).unwrap();
        assert_eq!(r.route(&event(None, None)), Ok("b"));
        assert!(
            r.route(&event(Some("a"), Some("sa")))
                .unwrap_err()
                .contains("--workspace")
        );
        assert!(Router::new(&config(), Some("zz")).is_err());
    }
}
