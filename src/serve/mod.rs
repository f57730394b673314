//! `emofuse serve`: the model behind a JSON API and a page for people.
//!
//! The model is loaded once and shared. Inference runs on tokio's blocking
//! pool behind a semaphore (`max_concurrent` at a time), with at most
//! `max_queue` requests waiting for it; beyond that a request is refused at
//! once (429), never queued without bound. Every refusal is JSON
//! `{"error": "..."}` with the status saying which limit was hit.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde::Serialize;
use serde_json::json;
use tokio::sync::Semaphore;
use tower_http::timeout::TimeoutBody;

use crate::audio::{self, AudioError, LoadOptions, Waveform};
use crate::explain::{self, ExplainError, ExplainOptions, Explanation};
use crate::infer::{InferError, LabelledPrediction, Predictor, Timeline};

mod openapi;

pub use openapi::openapi;

const PAGE: &str = include_str!("page.html");

/// The server's limits; every one has a safe default.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    /// Largest request body, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Longest audio, in seconds (413 beyond).
    pub max_duration_s: f64,
    /// Longest audio `/api/explain` takes, in seconds (413 beyond): an
    /// explanation costs hundreds of forward passes.
    pub max_explain_duration_s: f64,
    /// Time a request may wait and run before it is answered 503.
    pub request_timeout: Duration,
    /// Inferences running at once.
    pub max_concurrent: usize,
    /// Requests waiting for an inference slot before new ones get 429.
    pub max_queue: usize,
    /// Timeline windows for audio longer than one window.
    pub window_s: f64,
    pub hop_s: f64,
    /// What the page calls the model: `default`, or its folder's name.
    pub model_name: String,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 20 * 1024 * 1024,
            max_duration_s: 120.0,
            max_explain_duration_s: 30.0,
            request_timeout: Duration::from_secs(30),
            max_concurrent: std::thread::available_parallelism().map_or(2, usize::from),
            max_queue: 64,
            window_s: 3.0,
            hop_s: 1.0,
            model_name: "default".into(),
        }
    }
}

/// A refusal: the status and what was wrong.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// A fault of the server, not of the request: logged in full, answered
    /// with a generic 500 that tells the client nothing of the internals.
    fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!("internal error: {detail}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error: the request could not be completed (the server's log says why)",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

struct AppState {
    predictor: Predictor,
    config: ServeConfig,
    slots: Arc<Semaphore>,
    /// Requests holding or waiting for a slot.
    in_flight: AtomicUsize,
}

/// The routes, on a model: what `emofuse serve` runs and the tests call.
pub fn router(predictor: Predictor, config: ServeConfig) -> Router {
    let state = Arc::new(AppState {
        slots: Arc::new(Semaphore::new(config.max_concurrent.max(1))),
        in_flight: AtomicUsize::new(0),
        predictor,
        config: config.clone(),
    });
    Router::new()
        .route("/", get(page))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/healthz", get(healthz))
        .route("/api/model", get(model_info))
        .route("/api/openapi.json", get(|| async { Json(openapi()) }))
        .route("/api/predict", post(predict))
        .route("/api/explain", post(explain_route))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route; see /api/openapi.json") })
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        // A body that trickles in (slowloris) is cut off at the request time limit.
        .layer(axum::middleware::map_request(move |request: Request| async move {
            request.map(|body| axum::body::Body::new(TimeoutBody::new(config.request_timeout, body)))
        }))
        .with_state(state)
}

/// Serves until Ctrl-C, then lets requests in progress finish.
pub async fn serve(predictor: Predictor, config: ServeConfig, addr: SocketAddr) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    eprintln!("emofuse serving on http://{}", listener.local_addr()?);
    axum::serve(listener, router(predictor, config))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
            eprintln!("shutting down: finishing requests in progress");
        })
        .await
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// The model as a user should see it: what it knows, how well it did on
/// speakers it never heard, and the limits. No local paths and no command
/// line (they say more about the machine than the model).
async fn model_info(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let config = state.predictor.config();
    let training = config.training.as_ref().map(|t| {
        json!({
            "corpora": t.corpora(),
            "train_clips": t.train_clips,
            "validation_clips": t.validation_clips,
            "validation": t.validation,
            "best_validation_ua": t.best_validation_ua,
            "cross_validation": t.cross_validation,
            "seed": t.seed,
            "version": t.version,
            "commit": t.commit,
        })
    });
    Json(json!({
        "name": state.config.model_name,
        "kind": config.model.kind.as_str(),
        "labels": config.labels,
        "calibrated": config.temperature != 1.0,
        "temperature": config.temperature,
        "features": config.features,
        "training": training,
        "limits": {
            "max_body_bytes": state.config.max_body_bytes,
            "max_duration_s": state.config.max_duration_s,
            "max_explain_duration_s": state.config.max_explain_duration_s,
            "request_timeout_s": state.config.request_timeout.as_secs_f64(),
            "max_concurrent": state.config.max_concurrent,
            "max_queue": state.config.max_queue,
        },
    }))
}

/// `POST /api/predict` answer.
#[derive(Debug, Serialize)]
pub struct PredictResponse {
    #[serde(flatten)]
    pub prediction: LabelledPrediction,
    pub duration_s: f64,
    /// Audio longer than one window: a prediction per window.
    pub timeline: Option<Timeline>,
}

async fn predict(State(state): State<Arc<AppState>>, request: Request) -> Result<Json<PredictResponse>, ApiError> {
    let (name, bytes) = upload(request, &state).await?;
    let limit = state.config.max_duration_s;
    let response = run_inference(&state, move |state| {
        let waveform = decode(&bytes, &name, limit)?;
        let prediction = state.predictor.predict(&waveform, &name).map_err(infer_error)?;
        let duration_s = waveform.duration_s();
        let timeline = (duration_s > state.config.window_s)
            .then(|| {
                state
                    .predictor
                    .timeline(&waveform, &name, state.config.window_s, state.config.hop_s)
            })
            .transpose()
            .map_err(infer_error)?;
        Ok(PredictResponse {
            prediction: state.predictor.labelled(prediction),
            duration_s,
            timeline,
        })
    })
    .await?;
    Ok(Json(response))
}

/// `POST /api/explain` answer: the explanation and its picture.
#[derive(Debug, Serialize)]
pub struct ExplainResponse {
    #[serde(flatten)]
    pub explanation: Explanation,
    /// The PNG, base64-encoded.
    pub png_base64: String,
}

async fn explain_route(
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Result<Json<ExplainResponse>, ApiError> {
    let (name, bytes) = upload(request, &state).await?;
    let limit = state.config.max_explain_duration_s.min(state.config.max_duration_s);
    let response = run_inference(&state, move |state| {
        let waveform = decode(&bytes, &name, limit)?;
        let (explanation, png) =
            explain::explain_with_picture(&state.predictor, &waveform, &name, &ExplainOptions::default()).map_err(
                |e| match e {
                    ExplainError::Draw { .. } | ExplainError::Write { .. } => ApiError::internal(e),
                    _ => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
                },
            )?;
        Ok(ExplainResponse {
            explanation,
            png_base64: base64::engine::general_purpose::STANDARD.encode(png),
        })
    })
    .await?;
    Ok(Json(response))
}

/// The uploaded file: the `file` field of a multipart form, or the raw body.
async fn upload(request: Request, state: &Arc<AppState>) -> Result<(String, Bytes), ApiError> {
    let is_multipart = content_type(request.headers()).starts_with("multipart/form-data");
    if !is_multipart {
        let body = Bytes::from_request(request, state).await.map_err(body_error)?;
        return non_empty("upload".into(), body);
    }
    let mut form = Multipart::from_request(request, state)
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("not a multipart form: {e}")))?;
    loop {
        let field = form.next_field().await.map_err(|e| {
            let status = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            };
            read_error(&e, status, format!("bad multipart body: {}", e.body_text()))
        })?;
        let Some(field) = field else {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "the form has no `file` field with the audio",
            ));
        };
        if field.name() == Some("file") {
            let name = field.file_name().unwrap_or("upload").to_owned();
            let bytes = field.bytes().await.map_err(|e| {
                let status = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    StatusCode::PAYLOAD_TOO_LARGE
                } else {
                    StatusCode::BAD_REQUEST
                };
                read_error(&e, status, format!("cannot read the uploaded file: {}", e.body_text()))
            })?;
            return non_empty(name, bytes);
        }
    }
}

fn non_empty(name: String, bytes: Bytes) -> Result<(String, Bytes), ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{name}: the upload is empty"),
        ));
    }
    Ok((name, bytes))
}

fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn body_error(e: axum::extract::rejection::BytesRejection) -> ApiError {
    let status = e.status();
    let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "the request body is larger than this server accepts".to_owned()
    } else {
        format!("cannot read the request body: {}", e.body_text())
    };
    read_error(&e, status, message)
}

/// An error reading the body: 408 when it is the time limit that cut the body
/// off (a slow client), else `status` and `message`.
fn read_error(error: &(dyn std::error::Error + 'static), status: StatusCode, message: String) -> ApiError {
    let timed_out =
        std::iter::successors(Some(error), |e| e.source()).any(|e| e.is::<tower_http::timeout::TimeoutError>());
    if timed_out {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "the upload did not arrive within the request time limit",
        )
    } else {
        ApiError::new(status, message)
    }
}

fn decode(bytes: &[u8], name: &str, max_duration_s: f64) -> Result<Waveform, ApiError> {
    let options = LoadOptions {
        max_duration_s,
        ..LoadOptions::default()
    };
    audio::load_bytes(bytes, name, &options).map_err(|e| match e {
        AudioError::TooLong { .. } => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
        _ => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    })
}

fn infer_error(e: InferError) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
}

/// Runs `work` on the blocking pool once a slot is free; refuses at once
/// when the queue is full and answers 503 when the time limit passes.
async fn run_inference<T: Send + 'static>(
    state: &Arc<AppState>,
    work: impl FnOnce(&AppState) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let limit = state.config.max_concurrent.max(1) + state.config.max_queue;
    if state.in_flight.fetch_add(1, Ordering::SeqCst) >= limit {
        state.in_flight.fetch_sub(1, Ordering::SeqCst);
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("the server is busy ({limit} requests in progress or waiting); try again shortly"),
        ));
    }
    let guard = InFlight(state.clone());
    let timeout = state.config.request_timeout;
    let state = state.clone();
    let job = async move {
        let _guard = guard;
        let permit = state
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let task_state = state.clone();
        let result = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work(&task_state)
        })
        .await;
        match result {
            Ok(result) => result,
            Err(e) => Err(ApiError::internal(format!("inference failed: {e}"))),
        }
    };
    tokio::time::timeout(timeout, job).await.unwrap_or_else(|_| {
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "no answer within {:.0} s; the server is overloaded",
                timeout.as_secs_f64()
            ),
        ))
    })
}

/// Counts a request as in flight until it is answered or abandoned.
struct InFlight(Arc<AppState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_internal_error_tells_the_client_nothing_of_the_internals() {
        let response = ApiError::internal("/secret/path/model.safetensors: checksum mismatch").into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let body = runtime
            .block_on(axum::body::to_bytes(response.into_body(), 1 << 16))
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let message = body["error"].as_str().unwrap();
        assert!(message.starts_with("internal error"), "{message}");
        assert!(
            !message.contains("secret") && !message.contains("checksum"),
            "{message}"
        );
    }
}
