//! Any request body to `POST /api/predict`, as a multipart form or a raw
//! upload (first byte chooses), through the server's router without the
//! network: an answer with a status, never a panic or a 500.
#![no_main]

use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use emofuse::infer::Predictor;
use emofuse::serve::{ServeConfig, router};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

fn app() -> &'static (tokio::runtime::Runtime, Router) {
    static APP: OnceLock<(tokio::runtime::Runtime, Router)> = OnceLock::new();
    APP.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let config = ServeConfig {
            max_duration_s: 10.0,
            ..ServeConfig::default()
        };
        (runtime, router(Predictor::builtin(&burn::tensor::Device::flex()).unwrap(), config))
    })
}

/// libFuzzer's panic hook aborts even on panics emofuse catches (a panic inside
/// the decoder becomes an error, as in production): keep Rust's silent for
/// those; a panic that escapes still aborts and is reported.
fn quiet_caught_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::panic::set_hook(Box::new(|_| {})));
}

fuzz_target!(|data: &[u8]| {
    quiet_caught_panics();
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    let content_type = if kind % 2 == 0 {
        "multipart/form-data; boundary=B"
    } else {
        "application/octet-stream"
    };
    let request = Request::post("/api/predict")
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body.to_vec()))
        .unwrap();
    let (runtime, app) = app();
    let status = runtime.block_on(app.clone().oneshot(request)).unwrap().status();
    assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR);
});
