//! The tail every catalog and health list read shares: `?filter`, then `?near`, then the index
//! headers.

use std::collections::HashMap;

use serde_json::Value;

use super::ApiState;
use super::blocking::with_index;
use super::error::ApiResult;
use super::filter::{self, Filter};

/// The response to a list read of `items` at catalog `index`: those `filter` keeps, sorted as `?near`
/// asks.
pub(super) async fn respond(
    s: &ApiState,
    q: &HashMap<String, String>,
    filter: Option<Filter>,
    items: Vec<Value>,
    index: u64,
) -> ApiResult {
    let mut items = filter::keep(&filter, items)?;
    super::near::sort(s, q, &mut items).await;
    Ok(with_index(
        index,
        s.state.store.known_leader(),
        Value::Array(items),
    ))
}
