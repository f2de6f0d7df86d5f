//! The analyst's web page, served by `tripwire serve` at `/`
//! (docs/reference.md "The web page"): server-rendered HTML behind a
//! workspace's `admin_secret`, with a little plain JavaScript and no
//! request leaving the page.
//!
//! - `session`: the login sessions (pure: the clock is passed in).
//! - `auth`: who is looking (session cookie or HTTP Basic), login,
//!   logout, CSRF tokens.
//! - `page`: the templates (`templates/`, in the binary), the layout,
//!   the headers every page carries, the error page.
//! - `form`: a posted form's fields.
//! - `cells`: query results and ledger rows as text for HTML tables;
//!   `ledger`: the pages' fixed reads of the runs, matches and deliveries.
//! - `chart`: the runs chart as inline SVG (pure).
//! - `triggers`: the triggers page (`/`); `trigger`: one trigger, its
//!   runs, preview, tests and diff; `preview`: a dry run and each
//!   contact's why / why-not.
//! - `query`: the SQL page; `deliveries`: the ledger and its buttons.
//! - `assets`: the stylesheet and the script.
//!
//! Every handler reads only what the admin API reads, through the same
//! functions (`trigger::status`, `run::run_trigger`, `workbench`,
//! `deliver`, `sql::plan_read_only`); nothing is looked up before the key
//! or session checks out.

mod assets;
mod auth;
mod cells;
mod chart;
mod deliveries;
mod form;
mod ledger;
mod page;
mod preview;
mod query;
mod session;
mod trigger;
mod triggers;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::{get, post};

use crate::config::Config;
use crate::http::auth::Keyring;
use crate::identity::index::IndexCache;
use crate::ingest::Ingest;
use crate::store::Store;

pub use chart::{RunPoint, runs_chart};
pub use session::{MAX_SESSIONS, SESSION_LIFETIME, Session, Sessions};

/// What the page's handlers reach: the server's config, store, keys,
/// learned schemas and identity index, and the page's own sessions and templates.
pub struct Web {
    config: Arc<Config>,
    store: Store,
    keys: Arc<Keyring>,
    ingest: Arc<Ingest>,
    /// The identity index the scheduler's runs share (previews read it).
    identities: Arc<IndexCache>,
    sessions: Mutex<Sessions>,
    /// Keys the CSRF tokens of HTTP Basic visitors (random per process).
    csrf_secret: String,
    pages: page::Pages,
}

/// The page's routes, to merge into the server's router (any state type:
/// the page carries its own).
pub fn routes<S: Clone + Send + Sync + 'static>(
    config: &Arc<Config>,
    store: &Store,
    keys: &Arc<Keyring>,
    ingest: &Arc<Ingest>,
    identities: &Arc<IndexCache>,
) -> Router<S> {
    let web = Arc::new(Web {
        config: config.clone(),
        store: store.clone(),
        keys: keys.clone(),
        ingest: ingest.clone(),
        identities: identities.clone(),
        sessions: Mutex::new(Sessions::default()),
        csrf_secret: auth::random_token(),
        pages: page::Pages::new(),
    });
    Router::new()
        .route("/", get(triggers::page))
        .route("/login", get(auth::login_form).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/triggers/{name}", get(trigger::page))
        .route("/triggers/{name}/preview", post(trigger::preview))
        .route("/triggers/{name}/test", post(trigger::test))
        .route("/triggers/{name}/diff", post(trigger::diff))
        .route("/query", get(query::page).post(query::run))
        .route("/deliveries", get(deliveries::page))
        .route("/deliveries/redeliver", post(deliveries::redeliver))
        .route("/deliveries/release", post(deliveries::release))
        .route("/deliveries/discard", post(deliveries::discard))
        .route("/static/{file}", get(assets::file))
        .with_state(web)
}
