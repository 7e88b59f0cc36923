//! Content negotiation for protobuf: request bodies in `application/vnd.kubernetes.protobuf`
//! are read into JSON before anything else sees them, and a response is re-encoded as protobuf
//! when the client's `Accept` names protobuf first and the response's kind has a message
//! ([`crate::proto`]); otherwise it stays JSON, which every client that asks for protobuf
//! also accepts.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Response;
use hyper::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};

use super::reply::Body;
use super::status::ApiError;
use crate::proto::{self, DecodeError, MEDIA_TYPE};

/// Whether the first media type the client accepts is protobuf.
pub(crate) fn wants_protobuf(headers: &HeaderMap) -> bool {
    headers
        .get(ACCEPT)
        .and_then(|a| a.to_str().ok())
        .and_then(|a| a.split(',').next())
        .and_then(|first| first.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case(MEDIA_TYPE))
}

/// Whether the body is protobuf.
pub(crate) fn is_protobuf(headers: &HeaderMap) -> bool {
    super::admission::content_type(headers) == MEDIA_TYPE
}

/// A protobuf request body as JSON, with headers that say so.
///
/// # Errors
/// 400 for a malformed body, 415 for a kind not read as protobuf.
pub(crate) fn to_json(headers: &HeaderMap, body: &[u8]) -> Result<(HeaderMap, Bytes), ApiError> {
    let object = proto::decode(body).map_err(|e| match e {
        DecodeError::Malformed(_) => ApiError::bad_request(e.to_string()),
        DecodeError::Unsupported { .. } => ApiError {
            code: 415,
            reason: "UnsupportedMediaType",
            message: e.to_string(),
            details: None,
        },
    })?;
    let mut headers = headers.clone();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let json = serde_json::to_vec(&object).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok((headers, Bytes::from(json)))
}

/// The response as protobuf, when it is a JSON object whose kind has a message.
pub(crate) async fn encode_response(response: Response<Body>) -> Response<Body> {
    let json = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes() == b"application/json");
    if !json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(collected) = body.collect().await;
    let bytes = collected.to_bytes();
    let encoded = serde_json::from_slice(&bytes)
        .ok()
        .and_then(|value| proto::encode(&value));
    match encoded {
        Some(encoded) => {
            parts
                .headers
                .insert(CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE));
            parts.headers.remove(hyper::header::CONTENT_LENGTH);
            Response::from_parts(parts, Full::new(Bytes::from(encoded)).boxed())
        }
        None => Response::from_parts(parts, Full::new(bytes).boxed()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn protobuf_only_when_named_first() {
        assert!(wants_protobuf(&accept(
            "application/vnd.kubernetes.protobuf,application/json"
        )));
        assert!(wants_protobuf(&accept(
            "application/vnd.kubernetes.protobuf; q=1, */*"
        )));
        assert!(!wants_protobuf(&accept(
            "application/json, application/vnd.kubernetes.protobuf"
        )));
        assert!(!wants_protobuf(&accept(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
        )));
        assert!(!wants_protobuf(&HeaderMap::new()));
    }

    #[tokio::test]
    async fn known_kinds_are_encoded_and_others_stay_json() {
        let secret = serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}});
        let response = encode_response(super::super::reply::json_response(
            hyper::StatusCode::CREATED,
            &secret,
        ))
        .await;
        assert_eq!(response.status(), hyper::StatusCode::CREATED);
        assert_eq!(response.headers()[CONTENT_TYPE], MEDIA_TYPE);
        let Ok(body) = response.into_body().collect().await;
        assert_eq!(proto::decode(&body.to_bytes()), Ok(secret));

        let job = serde_json::json!({"apiVersion": "ringrift.ai/v1alpha1", "kind": "SelfplayJob"});
        let response = encode_response(super::super::reply::json_response(hyper::StatusCode::OK, &job)).await;
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        let Ok(body) = response.into_body().collect().await;
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&body.to_bytes()).ok(),
            Some(job)
        );
    }
}
