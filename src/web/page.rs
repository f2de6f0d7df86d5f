//! The page's HTML: minijinja templates compiled into the binary
//! (`templates/*.html`, auto-escaped as HTML), the layout every page
//! shares (workspace, navigation, logout), and the headers every answer
//! carries (no caching, no framing, no request to anywhere but here).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use minijinja::{Environment, UndefinedBehavior, Value};
use serde_json::json;

use super::auth::Viewer;

/// Every template, by name; the `.html` suffix turns HTML escaping on.
const TEMPLATES: [(&str, &str); 7] = [
    ("layout.html", include_str!("templates/layout.html")),
    ("login.html", include_str!("templates/login.html")),
    ("triggers.html", include_str!("templates/triggers.html")),
    ("trigger.html", include_str!("templates/trigger.html")),
    ("query.html", include_str!("templates/query.html")),
    ("deliveries.html", include_str!("templates/deliveries.html")),
    ("message.html", include_str!("templates/message.html")),
];

/// What the page may load: its own stylesheet and script, nothing inline
/// but SVG markup, no frames, forms only to itself.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; script-src 'self'; \
     img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The compiled templates.
pub struct Pages {
    env: Environment<'static>,
}

/// The layout's part of a page: its title, which tab is open, who is
/// looking (none on the login page), and a notice or error line.
pub struct Frame<'a> {
    pub title: &'a str,
    pub nav: &'a str,
    pub viewer: Option<&'a Viewer>,
    pub notice: Option<String>,
    pub error: Option<String>,
}

impl<'a> Frame<'a> {
    pub fn new(title: &'a str, nav: &'a str, viewer: Option<&'a Viewer>) -> Frame<'a> {
        Frame {
            title,
            nav,
            viewer,
            notice: None,
            error: None,
        }
    }

    pub fn error(mut self, error: Option<String>) -> Frame<'a> {
        self.error = error;
        self
    }

    pub fn notice(mut self, notice: Option<String>) -> Frame<'a> {
        self.notice = notice;
        self
    }
}

impl Pages {
    pub fn new() -> Pages {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        for (name, source) in TEMPLATES {
            // The templates ship in the binary; a unit test renders each.
            if let Err(e) = env.add_template(name, source) {
                tracing::error!("web template {name}: {e}");
            }
        }
        Pages { env }
    }

    /// `template` rendered with `context` (plus `csrf` and `workspace`)
    /// inside the layout, answered with `status`.
    pub fn render(
        &self,
        status: StatusCode,
        frame: Frame,
        template: &str,
        context: serde_json::Value,
    ) -> Response {
        match self.html(frame, template, context) {
            Ok(html) => {
                with_headers((status, [(header::CONTENT_TYPE, HTML)], html).into_response())
            }
            Err(e) => {
                tracing::error!("web page {template}: {e:#}");
                let text = "the page could not be rendered; the server's log says why";
                with_headers((StatusCode::INTERNAL_SERVER_ERROR, text).into_response())
            }
        }
    }

    /// A page that only says something (an error, a refusal).
    pub fn message(&self, status: StatusCode, frame: Frame, message: &str) -> Response {
        self.render(status, frame, "message.html", json!({ "message": message }))
    }

    fn html(
        &self,
        frame: Frame,
        template: &str,
        context: serde_json::Value,
    ) -> Result<String, minijinja::Error> {
        let viewer = frame.viewer;
        let mut context = match context {
            serde_json::Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        context.insert("csrf".into(), json!(viewer.map(|v| v.csrf.as_str())));
        context.insert(
            "workspace".into(),
            json!(viewer.map(|v| v.workspace.as_str())),
        );
        let content = self.env.get_template(template)?.render(&context)?;
        self.env
            .get_template("layout.html")?
            .render(minijinja::context! {
                title => frame.title,
                nav => frame.nav,
                workspace => viewer.map(|v| v.workspace.clone()),
                csrf => viewer.map(|v| v.csrf.clone()),
                notice => frame.notice,
                error => frame.error,
                content => Value::from_safe_string(content),
            })
    }
}

/// The content type of every page.
pub const HTML: &str = "text/html; charset=utf-8";

/// The headers of every page and asset: never cached, framed or sniffed,
/// and nothing loaded from elsewhere.
pub fn with_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CACHE_CONTROL, "no-store"),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles() {
        let pages = Pages::new();
        for (name, _) in TEMPLATES {
            assert!(pages.env.get_template(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn values_are_escaped_and_the_layout_shows_the_workspace() {
        let pages = Pages::new();
        let viewer = Viewer::for_tests("<b>shop</b>");
        let frame = Frame::new("t", "triggers", Some(&viewer));
        let html = pages
            .html(
                frame,
                "message.html",
                json!({ "message": "<script>alert(1)</script>" }),
            )
            .unwrap();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"),
            "{html}"
        );
        assert!(html.contains("&lt;b&gt;shop&lt;&#x2f;b&gt;"), "{html}");
    }
}
