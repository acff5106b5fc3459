//! `GET /v1/agent/monitor?loglevel=LEVEL[&logjson]`: the agent's log as it is written, streamed until
//! the client goes (Consul's monitor). The level is the watcher's own: a monitor at debug sees debug
//! lines of an agent that logs at info.

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use tokio::sync::broadcast::error::RecvError;

use super::ApiState;
use super::error::{ApiResult, bad_request};
use super::params::{Params, flag};
use crate::util::log_tap::{Watch, parse_level};

/// The level Consul's monitor defaults to.
const DEFAULT_LEVEL: &str = "INFO";

pub(super) async fn monitor(State(s): State<ApiState>, Query(q): Params) -> ApiResult {
    let name = q.get("loglevel").map_or(DEFAULT_LEVEL, String::as_str);
    let lvl = parse_level(name).ok_or_else(|| bad_request(format!("Unknown log level: {name}")))?;
    let json = flag(&q, "logjson");
    let watch = s.logs.watch(lvl);
    let stream = futures_util::stream::unfold((watch, json), |(mut w, json)| async move {
        let line = next_line(&mut w, json).await?;
        Some((Ok::<Bytes, std::convert::Infallible>(line), (w, json)))
    });
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// The next line this watcher wants, with its newline; a note when it fell behind; `None` once the
/// log is gone (the agent is stopping).
async fn next_line(w: &mut Watch, json: bool) -> Option<Bytes> {
    loop {
        match w.rx.recv().await {
            Ok(line) if w.wants(&line) => {
                let mut text = if json { line.json() } else { line.text() };
                text.push('\n');
                return Some(Bytes::from(text));
            }
            Ok(_) => {}
            Err(RecvError::Lagged(n)) => {
                return Some(Bytes::from(format!(
                    "[monitor: {n} log lines dropped, this client reads too slowly]\n"
                )));
            }
            Err(RecvError::Closed) => return None,
        }
    }
}
