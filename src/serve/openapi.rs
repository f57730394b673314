//! The OpenAPI 3.1 document of the server's routes (`GET /api/openapi.json`).
//! Written by hand, beside the router it describes; a test sends a request to
//! every path and method listed here and checks the status codes.

use serde_json::{Value, json};

pub fn openapi() -> Value {
    let error = json!({ "$ref": "#/components/schemas/Error" });
    let refusal = |what: &str| json!({ "description": what, "content": { "application/json": { "schema": error } } });
    let audio_body = json!({
        "required": true,
        "description": "The audio file (WAV, FLAC, MP3, OGG/Vorbis or AIFF; recognised by content): a multipart form with a `file` field, or the raw file as the body.",
        "content": {
            "multipart/form-data": {
                "schema": { "type": "object", "required": ["file"], "properties": { "file": { "type": "string", "format": "binary" } } }
            },
            "application/octet-stream": { "schema": { "type": "string", "format": "binary" } }
        }
    });
    let refusals = |ok: Value| {
        json!({
            "200": ok,
            "400": refusal("The body is not a readable upload (e.g. a truncated multipart form)."),
            "408": refusal("The upload did not arrive within the request time limit (a slow client)."),
            "413": refusal("The body or the audio is longer than the server accepts."),
            "422": refusal("The upload is not audio emofuse can use (named problem)."),
            "429": refusal("Too many requests in progress or waiting."),
            "503": refusal("No answer within the request time limit."),
        })
    };
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "emofuse",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Speech emotion recognition: the emotion of a recording and why the model said so."
        },
        "paths": {
            "/": { "get": { "summary": "The web page", "responses": { "200": { "description": "HTML", "content": { "text/html": {} } } } } },
            "/healthz": { "get": { "summary": "Liveness", "responses": { "200": { "description": "`{\"status\": \"ok\"}`", "content": { "application/json": { "schema": { "type": "object", "properties": { "status": { "type": "string" } } } } } } } } },
            "/api/model": { "get": { "summary": "Labels, feature settings, provenance and limits of the loaded model", "responses": { "200": { "description": "The model", "content": { "application/json": { "schema": { "type": "object" } } } } } } },
            "/api/openapi.json": { "get": { "summary": "This document", "responses": { "200": { "description": "OpenAPI 3.1", "content": { "application/json": { "schema": { "type": "object" } } } } } } },
            "/api/predict": {
                "post": {
                    "summary": "The emotion of a recording; a timeline of windows for long ones",
                    "requestBody": audio_body,
                    "responses": refusals(json!({ "description": "The prediction", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Prediction" } } } }))
                }
            },
            "/api/explain": {
                "post": {
                    "summary": "Why the model said so: SHAP, Score-CAM saliency, pooling weights and the picture",
                    "requestBody": audio_body,
                    "responses": refusals(json!({ "description": "The explanation with `png_base64`", "content": { "application/json": { "schema": { "type": "object", "required": ["predicted", "probabilities", "streams", "time_segments", "png_base64"] } } } }))
                }
            }
        },
        "components": {
            "schemas": {
                "Error": { "type": "object", "required": ["error"], "properties": { "error": { "type": "string" } } },
                "Prediction": {
                    "type": "object",
                    "required": ["label", "confidence", "probabilities", "duration_s"],
                    "properties": {
                        "label": { "type": "string" },
                        "confidence": { "type": "number" },
                        "probabilities": { "type": "object", "additionalProperties": { "type": "number" } },
                        "duration_s": { "type": "number" },
                        "timeline": {
                            "type": ["object", "null"],
                            "properties": {
                                "window_s": { "type": "number" },
                                "hop_s": { "type": "number" },
                                "windows": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "description": "A window with too little speech has speech = false and no prediction",
                                        "required": ["start_s", "end_s", "speech"],
                                        "properties": {
                                            "start_s": { "type": "number" },
                                            "end_s": { "type": "number" },
                                            "speech": { "type": "boolean" },
                                            "label": { "type": "string" },
                                            "confidence": { "type": "number" },
                                            "probabilities": { "type": "object", "additionalProperties": { "type": "number" }, "description": "Class name → probability, as at the top level" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    })
}
