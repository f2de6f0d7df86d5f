//! Who is looking at the page: a login session (the form posts the admin
//! key; a random session id goes back in an HttpOnly, SameSite=Strict
//! cookie) or HTTP Basic with the admin key on every request. Either way
//! the key is checked by the same keyring as the admin API
//! (`http::auth::Keyring::admin`: digests, constant time, fail closed), and
//! nothing is looked up before it checks out. Every state-changing form
//! carries a CSRF token: the session's, or for Basic an HMAC of the
//! workspace and the key's digest under a per-process secret.

use std::sync::Arc;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Web;
use super::form::Fields;
use super::page::{Frame, with_headers};
use super::session::SESSION_LIFETIME;
use crate::http::auth::{Refusal, header_key};

/// The session cookie's name.
pub const COOKIE: &str = "tripwire_session";

/// Someone allowed to see a workspace's page.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub workspace: String,
    /// What this viewer's forms must carry.
    pub csrf: String,
    /// The session id, when logged in with the form (none: HTTP Basic).
    session: Option<String>,
}

#[cfg(test)]
impl Viewer {
    pub fn for_tests(workspace: &str) -> Viewer {
        Viewer {
            workspace: workspace.to_string(),
            csrf: "token".into(),
            session: None,
        }
    }
}

/// Why the page is not shown: the login form answers instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    status: StatusCode,
    /// What the form says (none: a first visit).
    message: Option<String>,
}

impl From<Refusal> for Denied {
    fn from(refusal: Refusal) -> Denied {
        let (status, message) = match refusal {
            Refusal::Unauthorized(m) => (StatusCode::UNAUTHORIZED, m),
            Refusal::Forbidden(m) => (StatusCode::FORBIDDEN, m),
            Refusal::Unknown(m) => (StatusCode::BAD_REQUEST, m),
        };
        Denied {
            status,
            message: Some(message),
        }
    }
}

impl FromRequestParts<Arc<Web>> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, web: &Arc<Web>) -> Result<Viewer, Response> {
        let requested = query_workspace(parts.uri.query());
        web.viewer(&parts.headers, requested.as_deref(), Utc::now())
            .map_err(|denied| login_page(web, denied, Vec::new()))
    }
}

impl Web {
    /// The viewer a request comes from: its live session, else its
    /// `Authorization` admin key (for `requested`, or the key's only
    /// workspace), else nobody.
    fn viewer(
        &self,
        headers: &HeaderMap,
        requested: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Viewer, Denied> {
        let cookie = session_cookie(headers);
        if let Some(id) = &cookie {
            let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(session) = sessions.get(id, now) {
                return Ok(Viewer {
                    workspace: session.workspace.clone(),
                    csrf: session.csrf.clone(),
                    session: Some(id.clone()),
                });
            }
        }
        match header_key(headers) {
            Some(key) => {
                let workspace = self.keys.admin(Some(&key), requested)?;
                Ok(Viewer {
                    csrf: self.basic_csrf(&workspace, &key),
                    workspace,
                    session: None,
                })
            }
            None => Err(Denied {
                status: StatusCode::UNAUTHORIZED,
                message: cookie.map(|_| "your session has ended: log in again".to_string()),
            }),
        }
    }

    /// The CSRF token of a Basic visitor: it changes with the key and the
    /// workspace, and with every restart of the server.
    fn basic_csrf(&self, workspace: &str, key: &str) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(self.csrf_secret.as_bytes()) else {
            return random_token();
        };
        mac.update(workspace.as_bytes());
        mac.update(&[0]);
        mac.update(&Sha256::digest(key.as_bytes()));
        hex::encode(mac.finalize().into_bytes())
    }
}

impl Viewer {
    /// Whether a posted form carries this viewer's CSRF token (compared in
    /// constant time).
    fn csrf_ok(&self, form: &Fields) -> bool {
        let sent = form.get("csrf").unwrap_or("");
        !sent.is_empty() && bool::from(sent.as_bytes().ct_eq(self.csrf.as_bytes()))
    }
}

/// A posted form's fields, once its CSRF token checks out; a 403 page
/// otherwise (boxed: a response is large), and the form is not acted on.
pub fn posted(web: &Web, viewer: &Viewer, body: &[u8]) -> Result<Fields, Box<Response>> {
    let form = Fields::parse(body);
    match viewer.csrf_ok(&form) {
        true => Ok(form),
        false => Err(Box::new(web.pages.message(
            StatusCode::FORBIDDEN,
            Frame::new("Refused", "", Some(viewer)),
            "This form's CSRF token is missing or out of date, so nothing was done: \
             reload the page and try again.",
        ))),
    }
}

/// `GET /login`: the form (the page itself when already logged in).
pub async fn login_form(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    match web.viewer(&headers, None, Utc::now()) {
        Ok(_) => Redirect::to("/").into_response(),
        Err(_) => login_page(
            &web,
            Denied {
                status: StatusCode::OK,
                message: None,
            },
            Vec::new(),
        ),
    }
}

/// `POST /login` with `key` (the admin key) and, when the key opens
/// several workspaces, `workspace`: a session and its cookie, then the page.
pub async fn login(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let form = Fields::parse(&body);
    let Some(key) = form.get("key").filter(|k| !k.is_empty()) else {
        let denied = Denied {
            status: StatusCode::UNAUTHORIZED,
            message: Some("key: enter the workspace's admin key (admin_secret)".into()),
        };
        return login_page(&web, denied, Vec::new());
    };
    let requested = form.filled("workspace");
    let workspace = match web.keys.admin(Some(key), requested) {
        Ok(workspace) => workspace,
        Err(Refusal::Unknown(_)) if requested.is_none() => {
            let denied = Denied {
                status: StatusCode::BAD_REQUEST,
                message: Some("workspace: this key opens several workspaces; choose one".into()),
            };
            return login_page(&web, denied, web.keys.admin_workspaces(key));
        }
        Err(refusal) => return login_page(&web, refusal.into(), Vec::new()),
    };
    let id = random_token();
    web.sessions.lock().unwrap_or_else(|p| p.into_inner()).open(
        id.clone(),
        &workspace,
        random_token(),
        Utc::now(),
    );
    let cookie = format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
        SESSION_LIFETIME.num_seconds(),
        secure_attribute(&headers)
    );
    redirect_with_cookie("/", &cookie)
}

/// `POST /logout`: the session ends and its cookie is cleared.
pub async fn logout(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(refused) = posted(&web, &viewer, &body) {
        return *refused;
    }
    if let Some(id) = &viewer.session {
        web.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .close(id);
    }
    let cookie = format!(
        "{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{}",
        secure_attribute(&headers)
    );
    redirect_with_cookie("/login", &cookie)
}

fn redirect_with_cookie(to: &str, cookie: &str) -> Response {
    let mut response = Redirect::to(to).into_response();
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    with_headers(response)
}

/// The login form, with why it is shown and, for a key of several
/// workspaces, their names to choose from.
fn login_page(web: &Web, denied: Denied, workspaces: Vec<String>) -> Response {
    web.pages.render(
        denied.status,
        Frame::new("Log in", "", None).error(denied.message),
        "login.html",
        json!({ "workspaces": workspaces }),
    )
}

/// `; Secure` when the page is served over https (directly, or behind a
/// proxy that says so with `X-Forwarded-Proto: https`).
fn secure_attribute(headers: &HeaderMap) -> &'static str {
    let forwarded = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    match forwarded {
        true => "; Secure",
        false => "",
    }
}

/// The session id in the request's cookies, if any.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// `?workspace=W` of a page's address (for HTTP Basic visitors whose key
/// opens several workspaces).
fn query_workspace(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(name, _)| name == "workspace")
        .map(|(_, value)| value.into_owned())
        .filter(|v| !v.is_empty())
}

/// 64 hex digits from the system's random source (two v4 UUIDs: 244
/// random bits).
pub fn random_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let h = headers(&[("cookie", "a=1; tripwire_session=abc ; b=2")]);
        assert_eq!(session_cookie(&h), Some("abc".into()));
        let h = headers(&[("cookie", "a=1"), ("cookie", "tripwire_session=xyz")]);
        assert_eq!(session_cookie(&h), Some("xyz".into()));
        assert_eq!(
            session_cookie(&headers(&[("cookie", "tripwire_session=")])),
            None
        );
        assert_eq!(session_cookie(&HeaderMap::new()), None);
    }

    #[test]
    fn cookies_are_secure_behind_an_https_proxy() {
        assert_eq!(
            secure_attribute(&headers(&[("x-forwarded-proto", "https")])),
            "; Secure"
        );
        assert_eq!(
            secure_attribute(&headers(&[("x-forwarded-proto", "http")])),
            ""
        );
        assert_eq!(secure_attribute(&HeaderMap::new()), "");
    }

    #[test]
    fn tokens_are_long_and_fresh() {
        let (a, b) = (random_token(), random_token());
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn a_form_passes_only_with_the_viewers_token() {
        let viewer = Viewer::for_tests("shop");
        assert!(viewer.csrf_ok(&Fields::parse(b"csrf=token")));
        assert!(!viewer.csrf_ok(&Fields::parse(b"csrf=tokem")));
        assert!(!viewer.csrf_ok(&Fields::parse(b"other=1")));
        assert_eq!(
            query_workspace(Some("a=1&workspace=b%20c")),
            Some("b c".into())
        );
        assert_eq!(query_workspace(Some("workspace=")), None);
    }
}
