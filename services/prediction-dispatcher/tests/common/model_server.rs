//! A small external model for tests: an axum server whose answer the test sets, counting
//! calls and keeping the last request body.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bus_core::axum::extract::State;
use bus_core::axum::http::StatusCode;
use bus_core::axum::response::{IntoResponse, Response};
use bus_core::axum::routing::post;
use bus_core::axum::{self, Json, Router};
use bus_core::serde_json::{Value, json};
use bus_core::tokio_util::sync::CancellationToken;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// What the model answers.
#[derive(Debug, Clone)]
pub enum Answer {
    /// 200 with this JSON.
    Json(Value),
    /// This status with this body.
    Status(u16, String),
    /// 200 with this JSON after this many milliseconds.
    Slow(Value, u64),
    /// Never answers.
    Hang,
}

#[derive(Default)]
struct Shared {
    answer: Mutex<Option<Answer>>,
    calls: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    last_request: Mutex<Option<Value>>,
    /// A profile whose requests always get a 500, whatever the answer for the others.
    failing_profile: Mutex<Option<String>>,
}

/// The running model.
pub struct ModelServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: Option<(CancellationToken, JoinHandle<()>)>,
}

impl ModelServer {
    /// Starts a model answering `answer` on a free port.
    pub async fn start(answer: Answer) -> ModelServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        *shared.answer.lock().unwrap() = Some(answer);
        let mut server = ModelServer {
            addr,
            shared,
            task: None,
        };
        server.serve(listener);
        server
    }

    fn serve(&mut self, listener: TcpListener) {
        let app = Router::new()
            .route("/predict", post(predict))
            .with_state(self.shared.clone());
        let stop = CancellationToken::new();
        let signal = stop.clone().cancelled_owned();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(signal)
                .await;
        });
        self.task = Some((stop, task));
    }

    pub fn url(&self) -> String {
        format!("http://{}/predict", self.addr)
    }

    /// Changes the answer from now on.
    pub fn answer(&self, answer: Answer) {
        *self.shared.answer.lock().unwrap() = Some(answer);
    }

    /// Answers 500 to every request for `profile` from now on, whatever the others get.
    pub fn fail_for(&self, profile: &str) {
        *self.shared.failing_profile.lock().unwrap() = Some(profile.to_owned());
    }

    /// Requests received so far.
    pub fn calls(&self) -> usize {
        self.shared.calls.load(Ordering::SeqCst)
    }

    /// The most requests that were being answered at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// The body of the last request.
    pub fn last_request(&self) -> Option<Value> {
        self.shared.last_request.lock().unwrap().clone()
    }

    /// Stops listening and closes open connections: calls are refused until
    /// [`ModelServer::restart`].
    pub async fn stop(&mut self) {
        if let Some((stop, mut task)) = self.task.take() {
            stop.cancel();
            if tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&mut self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        if let Some((stop, task)) = self.task.take() {
            stop.cancel();
            task.abort();
        }
    }
}

async fn predict(State(shared): State<Arc<Shared>>, Json(body): Json<Value>) -> Response {
    shared.calls.fetch_add(1, Ordering::SeqCst);
    let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let failing = shared.failing_profile.lock().unwrap().clone();
    let answer = if failing.is_some() && body["profile_id"].as_str() == failing.as_deref() {
        Some(Answer::Status(500, "this profile crashes the model".into()))
    } else {
        shared.answer.lock().unwrap().clone()
    };
    *shared.last_request.lock().unwrap() = Some(body);
    let response = respond(answer).await;
    shared.in_flight.fetch_sub(1, Ordering::SeqCst);
    response
}

async fn respond(answer: Option<Answer>) -> Response {
    match answer {
        Some(Answer::Json(value)) => Json(value).into_response(),
        Some(Answer::Status(code, body)) => {
            let status = StatusCode::from_u16(code).unwrap();
            (status, body).into_response()
        }
        Some(Answer::Slow(value, ms)) => {
            // Holds the answer back so concurrent calls overlap.
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Json(value).into_response()
        }
        Some(Answer::Hang) | None => {
            std::future::pending::<()>().await;
            Json(json!({})).into_response()
        }
    }
}
