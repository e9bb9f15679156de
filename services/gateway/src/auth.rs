//! The optional bearer token on `/api/*`.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::error::ApiError;

/// Requires `Authorization: Bearer <API_TOKEN>` when a token is configured.
pub async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(expected) = &state.api_token
        && !bus_core::auth::bearer_matches(request.headers(), expected.expose())
    {
        return ApiError::unauthorized().into_response();
    }
    next.run(request).await
}
