//! `/v1/kv/*`: Consul's KV API over the servers' replicated store (reads by consistency mode, blocking
//! on the key or prefix read, writes committed through the leader).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

use super::ApiState;
use super::blocking::{meta, store_read};
use super::body::SizedBody;
use super::error::{ApiError, ApiResult, bad_request, check_body_size, server_error, store_error};
use super::params::{Params, check_dc, flag};
use crate::state::kv::{KvAnswer, KvEntry, KvOp, KvQuery, MAX_VALUE};
use crate::state::replicated::{Change, Query as StoreQuery, ReadAnswer};

/// A KV entry as Consul shows it (api.KVPair).
pub(super) fn entry_json(e: &KvEntry) -> Value {
    let mut v = json!({
        "LockIndex": e.lock_index,
        "Key": e.key,
        "Flags": e.flags,
        "Value": e.value.as_ref().map(|v| base64::engine::general_purpose::STANDARD.encode(v)),
        "CreateIndex": e.create_index,
        "ModifyIndex": e.modify_index,
    });
    if let Some(s) = &e.session {
        v["Session"] = json!(s);
    }
    v
}

/// Consul's "Conflicting flags" error: the query string, sorted by key.
fn conflicting(q: &HashMap<String, String>) -> ApiError {
    let mut pairs: Vec<(&String, &String)> = q.iter().collect();
    pairs.sort();
    let qs: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
        .collect();
    bad_request(format!("Conflicting flags: {}", qs.join("&")))
}

fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Parses an unsigned parameter as Consul does (500 with Go's `ParseUint` text when it is not one).
fn uint(q: &HashMap<String, String>, k: &str) -> Result<Option<u64>, ApiError> {
    match q.get(k) {
        None => Ok(None),
        Some(v) => v
            .parse::<u64>()
            .map(Some)
            .map_err(|_| server_error(format!("strconv.ParseUint: parsing {v:?}: invalid syntax"))),
    }
}

pub(super) async fn get(
    State(s): State<ApiState>,
    key: Option<Path<String>>,
    Query(q): Params,
) -> ApiResult {
    let key = key.map(|Path(k)| k).unwrap_or_default();
    check_dc(&s, &q)?;
    let keys = q.contains_key("keys");
    let recurse = flag(&q, "recurse");
    if key.is_empty() && !recurse && !keys {
        return Err(bad_request("Missing key name"));
    }
    let query = if keys {
        let separator = q
            .get("separator")
            .or_else(|| q.get("seperator"))
            .cloned()
            .unwrap_or_default();
        KvQuery::Keys {
            prefix: key.clone(),
            separator,
        }
    } else if recurse {
        KvQuery::Recurse(key.clone())
    } else {
        KvQuery::Get(key.clone())
    };
    let r = store_read(&s.state, &q, StoreQuery::Kv(query)).await?;
    let headers = meta(r.index, r.known_leader, r.last_contact_ms);
    let ReadAnswer::Kv(answer) = r.answer else {
        return Err(server_error("a server answered a KV read with sessions"));
    };
    match answer {
        KvAnswer::Keys(names) => {
            if names.is_empty() && !key.is_empty() {
                return Ok((StatusCode::NOT_FOUND, headers).into_response());
            }
            Ok((headers, axum::Json(json!(names))).into_response())
        }
        KvAnswer::Entries(entries) => {
            if entries.is_empty() {
                return Ok((StatusCode::NOT_FOUND, headers).into_response());
            }
            if flag(&q, "raw") && !recurse {
                return Ok(raw(headers, &entries[0]));
            }
            let body: Vec<Value> = entries.iter().map(entry_json).collect();
            Ok((headers, axum::Json(Value::Array(body))).into_response())
        }
    }
}

/// `?raw`: the value alone, as plain text that a browser will not interpret.
fn raw(mut headers: HeaderMap, e: &KvEntry) -> Response {
    headers.insert("Content-Type", HeaderValue::from_static("text/plain"));
    headers.insert(
        "X-Content-Type-Options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        "Content-Security-Policy",
        HeaderValue::from_static("sandbox"),
    );
    (headers, e.value.clone().unwrap_or_default()).into_response()
}

pub(super) async fn put(
    State(s): State<ApiState>,
    key: Option<Path<String>>,
    Query(q): Params,
    req_headers: HeaderMap,
    body: SizedBody,
) -> ApiResult {
    let key = key.map(|Path(k)| k).unwrap_or_default();
    check_dc(&s, &q)?;
    if key.is_empty() {
        return Err(bad_request("Missing key name"));
    }
    let given = ["cas", "acquire", "release"]
        .iter()
        .filter(|k| q.contains_key(**k))
        .count();
    if given > 1 {
        return Err(conflicting(&q));
    }
    let flags = uint(&q, "flags")?.unwrap_or(0);
    let body = check_body_size(&req_headers, &body, MAX_VALUE, "kv_max_value_size")?;
    let value = (!body.is_empty()).then(|| body.to_vec());
    let session = |k: &str| -> Result<Option<String>, ApiError> {
        match q.get(k) {
            None => Ok(None),
            Some(s) if s.is_empty() => Err(server_error("missing session")),
            Some(s) => Ok(Some(s.clone())),
        }
    };
    let op = if let Some(index) = uint(&q, "cas")? {
        KvOp::Cas {
            key,
            value,
            flags,
            index,
        }
    } else if let Some(session) = session("acquire")? {
        KvOp::Lock {
            key,
            value,
            flags,
            session,
        }
    } else if let Some(session) = session("release")? {
        KvOp::Unlock {
            key,
            value,
            flags,
            session,
        }
    } else {
        KvOp::Set { key, value, flags }
    };
    let w = s
        .state
        .store
        .write(Change::Kv(op))
        .await
        .map_err(store_error)?;
    Ok(axum::Json(w.ok).into_response())
}

pub(super) async fn delete(
    State(s): State<ApiState>,
    key: Option<Path<String>>,
    Query(q): Params,
) -> ApiResult {
    let key = key.map(|Path(k)| k).unwrap_or_default();
    check_dc(&s, &q)?;
    let recurse = flag(&q, "recurse");
    if recurse && q.contains_key("cas") {
        return Err(conflicting(&q));
    }
    if key.is_empty() && !recurse {
        return Err(bad_request("Missing key name"));
    }
    let op = if recurse {
        KvOp::DeleteTree { prefix: key }
    } else if let Some(index) = uint(&q, "cas")? {
        KvOp::DeleteCas { key, index }
    } else {
        KvOp::Delete { key }
    };
    let w = s
        .state
        .store
        .write(Change::Kv(op))
        .await
        .map_err(store_error)?;
    Ok(axum::Json(w.ok).into_response())
}
