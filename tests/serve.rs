//! The JSON API as a client sees it: answers, the OpenAPI document, and every
//! limit answered with the right status and a JSON error.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use emofuse::infer::Predictor;
use emofuse::serve::{ServeConfig, openapi, router};

use crate::util::{shared_data, sine, wav16};

fn clip_bytes() -> Vec<u8> {
    let path = shared_data().join("ravdess/Audio_Speech_Actors_01-24/Actor_04/03-01-04-01-02-01-04.flac");
    std::fs::read(path).unwrap()
}

/// One second at ±2 LSB of 16 bits: silence as a recorder writes it (−84 dBFS peak).
fn dithered_silence() -> Vec<f32> {
    (0..16_000)
        .map(|i| [2.0, -1.0, 0.0, 1.0, -2.0][i % 5] / 32768.0)
        .collect()
}

fn app(config: ServeConfig) -> Router {
    router(Predictor::builtin(&burn::tensor::Device::flex()).unwrap(), config)
}

fn multipart(bytes: &[u8], name: &str) -> (String, Vec<u8>) {
    let boundary = "emofuse-test-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, json)
}

fn post(path: &str, content_type: &str, body: Vec<u8>) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap()
}

#[tokio::test]
async fn predict_answers_as_the_library_does_from_a_form_and_a_raw_body() {
    let app = app(ServeConfig::default());
    let bytes = clip_bytes();
    let (content_type, form) = multipart(&bytes, "clip.flac");
    let (status, from_form) = send(&app, post("/api/predict", &content_type, form)).await;
    assert_eq!(status, StatusCode::OK, "{from_form}");
    let (status, from_raw) = send(&app, post("/api/predict", "application/octet-stream", bytes.clone())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(from_form["label"], from_raw["label"]);

    let predictor = Predictor::builtin(&burn::tensor::Device::flex()).unwrap();
    let waveform = emofuse::audio::load_bytes(&bytes, "clip", &Default::default()).unwrap();
    let expected = predictor.predict(&waveform, "clip").unwrap();
    assert_eq!(from_form["label"], expected.label.as_str());
    let p = from_form["probabilities"][expected.label.as_str()].as_f64().unwrap();
    assert!((p - f64::from(expected.confidence)).abs() < 1e-6);
    assert!(
        from_form["timeline"].is_object(),
        "a 3.3 s clip is longer than one 3 s window"
    );
    let window = &from_form["timeline"]["windows"][0];
    let label = window["label"].as_str().unwrap();
    assert_eq!(window["probabilities"][label], window["confidence"], "{window}");
}

#[tokio::test]
async fn the_model_is_described_without_local_paths_or_the_command_line() {
    let app = app(ServeConfig::default());
    let (status, model) = send(&app, Request::get("/api/model").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(model["name"], "default");
    assert_eq!(model["calibrated"], true, "the built-in model has a fitted temperature");
    let training = &model["training"];
    assert!(
        training["corpora"][0].as_str().unwrap().starts_with("ravdess, "),
        "{training}"
    );
    let cross_validation = &training["cross_validation"][0];
    assert!(cross_validation["ua_mean"].as_f64().unwrap() > 0.3, "{training}");
    let text = model.to_string();
    for leak in ["../", "/tmp", "--out", "emofuse train"] {
        assert!(!text.contains(leak), "/api/model shows {leak:?}: {text}");
    }
}

#[tokio::test]
async fn explain_returns_the_numbers_and_a_png() {
    let app = app(ServeConfig::default());
    let (content_type, form) = multipart(&clip_bytes(), "clip.flac");
    let (status, e) = send(&app, post("/api/explain", &content_type, form)).await;
    assert_eq!(status, StatusCode::OK, "{e}");
    for key in ["streams", "feature_groups", "time_segments", "spectral"] {
        assert!(e[key].is_object(), "{key} missing");
    }
    use base64::Engine;
    let png = base64::engine::general_purpose::STANDARD
        .decode(e["png_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(&png[..4], b"\x89PNG");
}

#[tokio::test]
async fn every_openapi_route_answers() {
    let app = app(ServeConfig::default());
    let (status, served) = send(&app, Request::get("/api/openapi.json").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(served, openapi());
    let paths = served["paths"].as_object().unwrap();
    assert!(paths.len() >= 6);
    for (path, methods) in paths {
        for method in methods.as_object().unwrap().keys() {
            let request = match method.as_str() {
                "get" => Request::get(path).body(Body::empty()).unwrap(),
                "post" => {
                    let (content_type, form) = multipart(&clip_bytes(), "clip.flac");
                    post(path, &content_type, form)
                }
                other => panic!("{path}: method {other} not tested"),
            };
            let response = app.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{method} {path}");
        }
    }
    let (status, error) = send(&app, Request::get("/api/nothing").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(error["error"].is_string());
}

#[tokio::test]
async fn bad_uploads_are_refused_with_the_reason() {
    let app = app(ServeConfig {
        max_body_bytes: 200_000,
        max_duration_s: 2.0,
        ..ServeConfig::default()
    });
    let cases: Vec<(&str, String, Vec<u8>, StatusCode, &str)> = vec![
        (
            "garbage",
            "application/octet-stream".into(),
            b"this is not audio at all".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not a recognised audio format",
        ),
        (
            "empty",
            "application/octet-stream".into(),
            Vec::new(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "empty",
        ),
        (
            "too big a body",
            "application/octet-stream".into(),
            vec![0u8; 300_000],
            StatusCode::PAYLOAD_TOO_LARGE,
            "larger than",
        ),
        (
            "too long",
            "application/octet-stream".into(),
            wav16(&sine(220.0, 0.3, 16_000, 16_000 * 3), 16_000),
            StatusCode::PAYLOAD_TOO_LARGE,
            "",
        ),
        (
            "silence",
            "application/octet-stream".into(),
            wav16(&vec![0.0; 16_000], 16_000),
            StatusCode::UNPROCESSABLE_ENTITY,
            "silent",
        ),
        (
            "dithered silence (issue 20)",
            "application/octet-stream".into(),
            wav16(&dithered_silence(), 16_000),
            StatusCode::UNPROCESSABLE_ENTITY,
            "no speech to judge",
        ),
        (
            "truncated form",
            "multipart/form-data; boundary=xyz".into(),
            b"--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\nRIFF".to_vec(),
            StatusCode::BAD_REQUEST,
            "",
        ),
        (
            "form without a file",
            "multipart/form-data; boundary=xyz".into(),
            b"--xyz\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nhello\r\n--xyz--\r\n".to_vec(),
            StatusCode::BAD_REQUEST,
            "no `file` field",
        ),
    ];
    for (what, content_type, body, want, says) in cases {
        let (status, json) = send(&app, post("/api/predict", &content_type, body)).await;
        assert_eq!(status, want, "{what}: {json}");
        let message = json["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no JSON error: {json}"));
        assert!(message.contains(says), "{what}: {message:?} does not say {says:?}");
    }
    // Still serving after all that.
    let small = wav16(&sine(220.0, 0.3, 16_000, 16_000), 16_000);
    let (status, _) = send(&app, post("/api/predict", "application/octet-stream", small)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_refused_at_once_and_a_slow_answer_times_out() {
    let app = app(ServeConfig {
        max_concurrent: 1,
        max_queue: 0,
        ..ServeConfig::default()
    });
    // Explanations hold the only slot for many forward passes: of several
    // sent at once, one is served and the others are refused at once.
    let requests: Vec<_> = (0..4)
        .map(|_| {
            let (content_type, form) = multipart(&clip_bytes(), "clip.flac");
            let app = app.clone();
            let request = post("/api/explain", &content_type, form);
            tokio::spawn(async move { send(&app, request).await })
        })
        .collect();
    let mut statuses = Vec::new();
    for request in requests {
        let (status, json) = request.await.unwrap();
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert!(json["error"].as_str().unwrap().contains("busy"), "{json}");
        }
        statuses.push(status);
    }
    assert!(statuses.contains(&StatusCode::OK), "{statuses:?}");
    assert!(statuses.contains(&StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
    assert!(
        statuses
            .iter()
            .all(|s| [StatusCode::OK, StatusCode::TOO_MANY_REQUESTS].contains(s))
    );

    let hurried = self::app(ServeConfig {
        request_timeout: Duration::from_millis(1),
        ..ServeConfig::default()
    });
    let (content_type, form) = multipart(&clip_bytes(), "clip.flac");
    let (status, json) = send(&hurried, post("/api/explain", &content_type, form)).await;
    // The limit is met while the upload is read (408) or while it is explained (503).
    let error = json["error"].as_str().unwrap();
    match status {
        StatusCode::SERVICE_UNAVAILABLE => assert!(error.contains("no answer within"), "{json}"),
        StatusCode::REQUEST_TIMEOUT => assert!(error.contains("did not arrive within"), "{json}"),
        _ => panic!("{status}: {json}"),
    }
}

/// Over a real socket: a body that trickles in is cut off at the time limit,
/// clients that vanish mid-upload cost nothing, and valid requests are served
/// throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_vanishing_clients_do_not_hold_the_server() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = app(ServeConfig {
        request_timeout: Duration::from_millis(500),
        ..ServeConfig::default()
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let head = "POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n";

    // Vanishing clients: half a body, then gone.
    for _ in 0..20 {
        let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        socket.write_all(head.as_bytes()).await.unwrap();
        socket.write_all(&[0u8; 5000]).await.unwrap();
        drop(socket);
    }
    // A slow client: the answer comes at the time limit, not never.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(b"RIFF").await.unwrap();
    let mut answer = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut answer))
        .await
        .expect("the server answers a stalled upload within its time limit")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]).into_owned();
    let status: u16 = answer.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_eq!(status, 408, "{answer}");

    // Still serving.
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let clip = clip_bytes();
    let request = format!(
        "POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        clip.len()
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    socket.write_all(&clip).await.unwrap();
    let mut response = Vec::new();
    socket.read_to_end(&mut response).await.unwrap();
    assert!(String::from_utf8_lossy(&response).starts_with("HTTP/1.1 200"));
}
