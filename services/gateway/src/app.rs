//! The HTTP application: shared state, the route table and the middleware stack.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::http::Method;
use axum::middleware::from_fn_with_state;
use axum::routing::{MethodRouter, get, post};
use bus_core::{Producer, Redis};

use crate::error::ApiError;
use crate::metrics::GatewayMetrics;
use crate::settings::ApiToken;
use crate::{auth, docs, events, items, metrics, predictions, streams};

/// What the handlers share. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub(crate) redis: Redis,
    pub(crate) metrics: Arc<GatewayMetrics>,
    pub(crate) api_token: Option<ApiToken>,
    pub(crate) max_body_bytes: usize,
    pub(crate) max_batch: usize,
    pub(crate) max_read_count: usize,
    /// The readable streams (`STREAMS`), without prefix.
    pub(crate) streams: Arc<Vec<String>>,
    pub(crate) producers: Producers,
}

/// One producer per written stream, each trimmed to that stream's retention.
#[derive(Debug, Clone)]
pub struct Producers {
    pub(crate) events: Producer,
    pub(crate) items: Producer,
    pub(crate) predictions: Producer,
}

impl Producers {
    /// Every producer, for starting their trimmers.
    pub(crate) fn all(&self) -> [&Producer; 3] {
        [&self.events, &self.items, &self.predictions]
    }
}

/// The ops routes that `bus_core`'s ops router serves on the API listener too.
const OPS_ROUTES: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// One API route. The router is built from this table, so the table is exactly what is
/// served, and the OpenAPI document can be checked against it.
struct Route {
    method: Method,
    path: &'static str,
    handler: MethodRouter<AppState>,
}

impl Route {
    fn get<H: Handler<T, AppState>, T: 'static>(path: &'static str, handler: H) -> Route {
        Route {
            method: Method::GET,
            path,
            handler: get(handler),
        }
    }

    fn post<H: Handler<T, AppState>, T: 'static>(path: &'static str, handler: H) -> Route {
        Route {
            method: Method::POST,
            path,
            handler: post(handler),
        }
    }
}

fn api_routes() -> Vec<Route> {
    vec![
        Route::post("/api/events", events::accept),
        Route::post("/api/items", items::accept),
        Route::post("/api/predictions", predictions::request),
        Route::get("/api/streams/info", streams::info),
        Route::get("/api/streams/{name}", streams::read),
        Route::get("/api/streams/{name}/pending", streams::pending),
        Route::get("/api/openapi.json", docs::openapi),
        Route::get("/api/docs", docs::page),
    ]
}

/// Every `(method, path template)` the API listener serves, ops routes included.
pub fn served_routes() -> Vec<(Method, &'static str)> {
    let api = api_routes().into_iter().map(|r| (r.method, r.path));
    let ops = OPS_ROUTES.iter().map(|path| (Method::GET, *path));
    api.chain(ops).collect()
}

/// Routes served without the API token: the API's description, so that a browser (which
/// sends no bearer token) can read it. It holds no data.
const PUBLIC_ROUTES: [&str; 2] = ["/api/openapi.json", "/api/docs"];

/// The application: the API routes behind the optional token, its description and the ops
/// routes open, every request measured, bodies capped at `MAX_BODY_BYTES`, and JSON errors
/// for unknown routes.
pub(crate) fn router(state: AppState, ops: Router) -> Router {
    let (public, protected): (Vec<Route>, Vec<Route>) = api_routes()
        .into_iter()
        .partition(|route| PUBLIC_ROUTES.contains(&route.path));
    let mut api = Router::new();
    for route in protected {
        api = api.route(route.path, route.handler);
    }
    // A route layer covers only the routes added before it.
    api = api.route_layer(from_fn_with_state(state.clone(), auth::require_token));
    for route in public {
        api = api.route(route.path, route.handler);
    }
    api.fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .with_state(state.clone())
        .merge(ops)
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .layer(from_fn_with_state(state, metrics::track))
}

async fn no_route() -> ApiError {
    ApiError::not_found(
        None,
        "no such route; the API is described at /api/openapi.json",
    )
}

async fn wrong_method() -> ApiError {
    ApiError::method_not_allowed()
}
