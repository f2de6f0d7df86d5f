//! `[engine]` in `tripwire.toml`: where analysts' SQL executes
//! (docs/reference.md "`[engine]`"). Without it, in this process; with
//! `ballista = "df://host:port"`, planned here and executed on a Ballista
//! cluster (the `cluster` cargo feature).

use serde::Deserialize;
use url::Url;

/// The port a `df://` address means when it names none (Ballista's own default).
pub const DEFAULT_SCHEDULER_PORT: u16 = 50050;

/// `[engine]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEngine {
    ballista: Option<String>,
}

/// Where analysts' SQL executes. A binary built without the `cluster`
/// feature refuses `ballista` when a command starts ([`Engine::unavailable`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Engine {
    /// The Ballista scheduler (`df://host:port`), or `None`: in-process.
    pub ballista: Option<Scheduler>,
}

impl Engine {
    /// Why this binary cannot run the configured engine (it was built
    /// without the `cluster` feature), naming the key and the feature.
    pub fn unavailable(&self, built_with_cluster: bool) -> Option<String> {
        let scheduler = self.ballista.as_ref()?;
        match built_with_cluster {
            true => None,
            false => Some(format!(
                "engine.ballista: this tripwire was built without the `cluster` feature, \
                 so it cannot run queries on a Ballista cluster ({}); build it with \
                 `cargo build --release --features cluster`, or remove [engine]",
                scheduler.url()
            )),
        }
    }
}

/// A Ballista scheduler's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheduler {
    pub host: String,
    pub port: u16,
}

impl Scheduler {
    /// Parses `df://host[:port]`; errors say what is wrong, not which key.
    pub fn parse(text: &str) -> Result<Scheduler, String> {
        let url = Url::parse(text)
            .map_err(|e| format!("{text:?} is not an address like \"df://host:50050\" ({e})"))?;
        if url.scheme() != "df" {
            return Err(format!(
                "{text:?} must start with df:// (a Ballista scheduler, like \"df://host:50050\")"
            ));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("{text:?} names no host (like \"df://host:50050\")"))?;
        if !matches!(url.path(), "" | "/") || url.query().is_some() {
            return Err(format!("{text:?} must be only df://host:port"));
        }
        Ok(Scheduler {
            host: host.to_string(),
            port: url.port().unwrap_or(DEFAULT_SCHEDULER_PORT),
        })
    }

    /// The address as `[engine] ballista` writes it.
    pub fn url(&self) -> String {
        format!("df://{}:{}", self.host, self.port)
    }
}

impl RawEngine {
    pub(super) fn validate(self) -> Result<Engine, String> {
        let Some(text) = self.ballista else {
            return Ok(Engine::default());
        };
        let scheduler = Scheduler::parse(&text).map_err(|m| format!("engine.ballista: {m}"))?;
        Ok(Engine {
            ballista: Some(scheduler),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduler_addresses_parse_or_say_why_not() {
        assert_eq!(
            Scheduler::parse("df://10.0.0.5:6000"),
            Ok(Scheduler {
                host: "10.0.0.5".into(),
                port: 6000
            })
        );
        assert_eq!(Scheduler::parse("df://sched").map(|s| s.port), Ok(50050));
        let wrong = |text: &str| Scheduler::parse(text).unwrap_err();
        assert!(wrong("http://sched:50050").contains("must start with df://"));
        assert!(wrong("sched:50050").contains("must start with df://"));
        assert!(wrong("df://sched:50050/x").contains("only df://host:port"));
        assert!(wrong("df://:50050").contains("df://"));
    }

    #[test]
    fn no_engine_key_means_in_process() {
        assert_eq!(RawEngine::default().validate(), Ok(Engine::default()));
        assert_eq!(Engine::default().unavailable(false), None);
    }

    #[test]
    fn a_binary_without_the_feature_names_it() {
        let engine = RawEngine {
            ballista: Some("df://sched".into()),
        }
        .validate()
        .unwrap();
        assert_eq!(engine.unavailable(true), None);
        let why = engine.unavailable(false).unwrap();
        assert!(
            why.starts_with("engine.ballista: ") && why.contains("`cluster` feature"),
            "{why}"
        );
        assert!(why.contains("df://sched:50050"), "{why}");
    }
}
