//! `GET /api/openapi.json` (the OpenAPI 3.1 document, hand-written in `openapi.json`) and
//! `GET /api/docs` (a self-contained page that renders it: no external scripts or styles, so
//! it works offline and behind strict content policies).

use axum::http::header;
use axum::response::{Html, IntoResponse};

/// The OpenAPI document, compiled in.
pub const OPENAPI: &str = include_str!("../openapi.json");
/// The documentation page, compiled in.
const DOCS_PAGE: &str = include_str!("../static/docs.html");

/// The OpenAPI document.
pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// The browsable documentation page.
pub async fn page() -> Html<&'static str> {
    Html(DOCS_PAGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_json() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        assert!(doc["paths"].as_object().is_some_and(|p| !p.is_empty()));
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        assert!(DOCS_PAGE.contains("openapi.json"));
        for external in ["http://", "https://", "<script src", "<link"] {
            assert!(!DOCS_PAGE.contains(external), "{external}");
        }
    }
}
