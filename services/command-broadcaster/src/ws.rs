//! `GET /ws?channels=a,b`: relays notification channels (only those in `WS_CHANNELS`) to
//! WebSocket clients as text frames `{"channel": …, "message": <payload>}`.
//!
//! One Redis subscription serves every client: messages fan out through a bounded broadcast
//! queue, so a slow browser loses its oldest messages (counted) and never slows the others.

use std::collections::HashSet;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use bus_core::tokio_util::sync::CancellationToken;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::{self, error::RecvError};

use crate::AppState;
use crate::api::ApiError;

/// A notification on its way to WebSocket clients (channel without tenant prefix).
#[derive(Debug, Clone)]
pub struct Relayed {
    /// The channel.
    pub channel: String,
    /// The payload, as published.
    pub payload: String,
}

/// `?channels=` of `/ws`.
#[derive(Debug, Deserialize)]
pub struct WsQuery {
    channels: Option<String>,
}

/// Checks the requested channels against the allow-list, then upgrades.
pub async fn upgrade(
    State(state): State<AppState>,
    Query(query): Query<WsQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    let wanted: HashSet<String> = match query.channels.as_deref().map(str::trim) {
        None | Some("") => state.ws_channels.iter().cloned().collect(),
        Some(list) => {
            let wanted: HashSet<String> = list
                .split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect();
            if let Some(bad) = wanted.iter().find(|c| !state.ws_channels.contains(*c)) {
                return ApiError::invalid_field(
                    "channels",
                    format!(
                        "{bad:?} is not relayed (WS_CHANNELS: {})",
                        state.ws_channels.join(",")
                    ),
                )
                .into_response();
            }
            wanted
        }
    };
    // Subscribe before answering, so nothing published after the handshake is missed.
    let rx = state.relay.subscribe();
    let shutdown = state.shutdown.clone();
    ws.on_upgrade(move |socket| client(socket, rx, wanted, state, shutdown))
}

async fn client(
    mut socket: WebSocket,
    mut rx: broadcast::Receiver<Relayed>,
    channels: HashSet<String>,
    state: AppState,
    shutdown: CancellationToken,
) {
    let metrics = state.metrics.clone();
    metrics.ws_clients.inc();
    loop {
        tokio::select! {
            relayed = rx.recv() => match relayed {
                Ok(m) if channels.contains(&m.channel) => {
                    let message = serde_json::from_str::<Value>(&m.payload)
                        .unwrap_or(Value::String(m.payload));
                    let frame = json!({ "channel": m.channel, "message": message }).to_string();
                    if socket.send(Message::Text(frame.into())).await.is_err() {
                        break;
                    }
                    metrics.ws_messages("sent", 1);
                }
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => {
                    metrics.ws_messages("dropped", n);
                    tracing::warn!(dropped = n, "slow WebSocket client lost messages");
                }
                Err(RecvError::Closed) => break,
            },
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {} // pings are answered by the library; clients do not talk
            },
            _ = shutdown.cancelled() => {
                let _ = socket.send(Message::Close(None)).await;
                break;
            }
        }
    }
    metrics.ws_clients.dec();
}
