//! `GET /static/{file}`: the page's stylesheet and script, compiled into
//! the binary. They hold no data, so they are served without a key.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::page::with_headers;

/// Every asset: name, content type, text.
const ASSETS: [(&str, &str, &str); 2] = [
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("templates/style.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("templates/app.js"),
    ),
];

pub async fn file(Path(name): Path<String>) -> Response {
    let response = match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, kind, text)) => ([(header::CONTENT_TYPE, *kind)], *text).into_response(),
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    };
    with_headers(response)
}
