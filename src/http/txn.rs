//! `PUT /v1/txn`: Consul's KV transactions. A transaction with a write goes through the log as one
//! entry (all or none); one that only reads and compares is a read, by the request's consistency mode.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

use super::ApiState;
use super::body::SizedBody;
use super::error::{ApiError, ApiResult, bad_request, check_body_size, store_error};
use super::kv::entry_json;
use super::params::{Params, check_dc, consistency};
use crate::state::kv::{KvOp, MAX_VALUE};
use crate::state::replicated::{Change, Query as StoreQuery, ReadAnswer, ReadRequest};
use crate::state::txn::{MAX_OPS, TxnCheck, TxnError, TxnOp, TxnOutcome};

/// Largest request body (Consul's `txn_max_req_len` default, which is also `kv_max_value_size`).
const MAX_BODY: usize = MAX_VALUE;

fn too_large(what: String) -> ApiError {
    ApiError(StatusCode::PAYLOAD_TOO_LARGE, what)
}

fn parse_error(e: impl std::fmt::Display) -> ApiError {
    bad_request(format!("Failed to parse body: {e}"))
}

/// An object's fields by lower-cased name (Go matches JSON keys case-insensitively).
fn fields(v: &Value, what: &str) -> Result<HashMap<String, Value>, ApiError> {
    let Value::Object(o) = v else {
        return Err(parse_error(format!(
            "json: cannot decode {what}: not an object"
        )));
    };
    Ok(o.iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect())
}

/// One KV operation as the request spells it.
struct KvRequest {
    verb: String,
    key: String,
    value: Option<Vec<u8>>,
    flags: u64,
    index: u64,
    session: String,
}

fn kv_request(v: &Value) -> Result<KvRequest, ApiError> {
    let f = fields(v, "KV")?;
    for (k, v) in &f {
        match k.as_str() {
            "verb" | "key" | "value" | "flags" | "index" | "session" => {}
            // Enterprise fields: only the default (or none) is served here.
            "namespace" | "partition" => {
                if !matches!(v.as_str(), None | Some("") | Some("default")) {
                    return Err(bad_request(format!(
                        "murmur does not implement {k}s yet (only the default)"
                    )));
                }
            }
            _ => return Err(parse_error(format!("json: unknown field {k:?}"))),
        }
    }
    let string = |k: &str| -> Result<String, ApiError> {
        match f.get(k) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(parse_error(format!(
                "json: cannot unmarshal into field KV.{k} of type string"
            ))),
        }
    };
    let number = |k: &str| -> Result<u64, ApiError> {
        match f.get(k) {
            None | Some(Value::Null) => Ok(0),
            Some(v) => v.as_u64().ok_or_else(|| {
                parse_error(format!(
                    "json: cannot unmarshal {v} into field KV.{k} of type uint64"
                ))
            }),
        }
    };
    let value = match f.get("value") {
        None | Some(Value::Null) => None,
        Some(Value::String(b64)) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| parse_error(format!("illegal base64 data: {e}")))?,
        ),
        Some(_) => {
            return Err(parse_error(
                "json: cannot unmarshal into field KV.Value of type []uint8",
            ));
        }
    };
    Ok(KvRequest {
        verb: string("verb")?,
        key: string("key")?,
        value,
        flags: number("flags")?,
        index: number("index")?,
        session: string("session")?,
    })
}

/// The operation a request names, or Consul's text for why it cannot be run.
fn operation(r: KvRequest) -> Result<TxnOp, String> {
    if r.key.is_empty() && r.verb != "delete-tree" {
        return Err("Must provide key".into());
    }
    let KvRequest {
        verb,
        key,
        value,
        flags,
        index,
        session,
    } = r;
    let write = |op| Ok(TxnOp::Write(op));
    let check = |c| Ok(TxnOp::Check(c));
    match verb.as_str() {
        "set" => write(KvOp::Set { key, value, flags }),
        "cas" => write(KvOp::Cas {
            key,
            value,
            flags,
            index,
        }),
        "lock" => write(KvOp::Lock {
            key,
            value,
            flags,
            session,
        }),
        "unlock" => write(KvOp::Unlock {
            key,
            value,
            flags,
            session,
        }),
        "delete" => write(KvOp::Delete { key }),
        "delete-cas" => write(KvOp::DeleteCas { key, index }),
        "delete-tree" => write(KvOp::DeleteTree { prefix: key }),
        "get" => check(TxnCheck::Get { key }),
        "get-tree" => check(TxnCheck::GetTree { prefix: key }),
        "check-index" => check(TxnCheck::Index { key, index }),
        "check-session" => check(TxnCheck::Session { key, session }),
        "check-not-exists" => check(TxnCheck::NotExists { key }),
        other => Err(format!("unknown KV verb {other:?}")),
    }
}

/// The operations of a request body, with Consul's status codes and texts for a body it refuses
/// (outer error: the request is refused; inner: operations that cannot run, answered with 409).
pub fn parse(body: &[u8]) -> Result<Result<Vec<TxnOp>, Vec<TxnError>>, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(parse_error)?;
    let Value::Array(items) = v else {
        return Err(parse_error(
            "json: cannot unmarshal into Go value of type structs.TxnOps (a list is expected)",
        ));
    };
    if items.len() > MAX_OPS {
        return Err(too_large(format!(
            "Transaction contains too many operations ({} > {MAX_OPS})",
            items.len()
        )));
    }
    let mut ops = Vec::new();
    let mut errors = Vec::new();
    for item in &items {
        let f = fields(item, "operation")?;
        let mut kv = None;
        for (k, v) in &f {
            match k.as_str() {
                "kv" => kv = Some(v),
                // Consul's Go client sends every kind, the unused ones as null.
                "node" | "service" | "check" if v.is_null() => {}
                "node" | "service" | "check" => {
                    return Err(bad_request(format!(
                        "murmur does not implement {k} operations in transactions yet (only KV)"
                    )));
                }
                other => return Err(parse_error(format!("json: unknown field {other:?}"))),
            }
        }
        // As Consul: an element naming no operation is dropped, and later positions move up.
        let Some(kv) = kv.filter(|v| !v.is_null()) else {
            continue;
        };
        let r = kv_request(kv)?;
        if let Some(v) = &r.value
            && v.len() > MAX_VALUE
        {
            return Err(too_large(format!(
                "Value for key {:?} is too large ({} > {MAX_VALUE} bytes)",
                r.key,
                v.len()
            )));
        }
        match operation(r) {
            Ok(op) => ops.push(op),
            Err(what) => errors.push(TxnError {
                op_index: ops.len() + errors.len(),
                what,
            }),
        }
    }
    Ok(if errors.is_empty() {
        Ok(ops)
    } else {
        Err(errors)
    })
}

/// Consul's reply: 200 with the results, or 409 with every failure and nothing applied.
fn reply(outcome: TxnOutcome, headers: HeaderMap) -> Response {
    match outcome {
        Ok(entries) => {
            let results: Vec<Value> = entries
                .iter()
                .map(|e| json!({"KV": entry_json(e)}))
                .collect();
            let body = json!({"Results": results, "Errors": null});
            (StatusCode::OK, headers, axum::Json(body)).into_response()
        }
        Err(errors) => {
            let errors: Vec<Value> = errors
                .iter()
                .map(|e| json!({"OpIndex": e.op_index, "What": e.what}))
                .collect();
            let body = json!({"Results": null, "Errors": errors});
            (StatusCode::CONFLICT, headers, axum::Json(body)).into_response()
        }
    }
}

/// `PUT /v1/txn`.
pub(super) async fn txn(
    State(s): State<ApiState>,
    Query(q): Params,
    req_headers: HeaderMap,
    body: SizedBody,
) -> ApiResult {
    check_dc(&s, &q)?;
    let body = check_body_size(&req_headers, &body, MAX_BODY, "txn_max_req_len")?;
    let ops = match parse(body)? {
        Ok(ops) => ops,
        Err(errors) => return Ok(reply(Err(errors), HeaderMap::new())),
    };
    if ops.iter().any(TxnOp::writes) {
        // Consistency parameters do not apply to writes (as in Consul).
        let w = s
            .state
            .store
            .write(Change::Txn(ops))
            .await
            .map_err(store_error)?;
        let outcome = w.txn.unwrap_or(Ok(Vec::new()));
        return Ok(reply(outcome, HeaderMap::new()));
    }
    let checks = ops
        .into_iter()
        .filter_map(|op| match op {
            TxnOp::Check(c) => Some(c),
            TxnOp::Write(_) => None,
        })
        .collect();
    let r = s
        .state
        .store
        .read(ReadRequest {
            query: StoreQuery::Txn(checks),
            consistency: consistency(&q)?,
            min_index: None,
            wait: Duration::ZERO,
        })
        .await
        .map_err(store_error)?;
    let ReadAnswer::Txn(outcome) = r.answer else {
        return Err(store_error(
            crate::state::replicated::StoreError::Unavailable(
                "a server answered a transaction with something else".into(),
            ),
        ));
    };
    // A read-only transaction carries the leader headers, not an index (as Consul's).
    let mut headers = HeaderMap::new();
    headers.insert(
        "X-Consul-KnownLeader",
        HeaderValue::from_static(if r.known_leader { "true" } else { "false" }),
    );
    headers.insert("X-Consul-LastContact", HeaderValue::from(r.last_contact_ms));
    Ok(reply(outcome, headers))
}
