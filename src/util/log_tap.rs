//! The agent's log as a stream others can follow (`/v1/agent/monitor`, `murmur monitor`): a tracing
//! layer that, while someone watches, copies each event at the levels the watchers asked for into a
//! broadcast channel. Watchers choose their own level, below the agent's own if they like (Consul's
//! monitor can show debug lines of an agent that logs at info); with no watcher the layer is off and
//! costs a few atomic loads per event.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::broadcast;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Lines a slow watcher may fall behind by before it misses some.
const BACKLOG: usize = 1024;

/// One log event.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// When, RFC 3339 in UTC with milliseconds.
    pub time: String,
    /// Its level.
    pub level: Level,
    /// Where it comes from (the module path).
    pub target: String,
    /// The message.
    pub message: String,
    /// Its other fields, in order.
    pub fields: Vec<(String, String)>,
}

impl LogLine {
    /// As a text line, in the shape of the agent's own log.
    pub fn text(&self) -> String {
        let mut s = format!(
            "{} [{}] {}: {}",
            self.time, self.level, self.target, self.message
        );
        for (k, v) in &self.fields {
            let _ = write!(s, " {k}={v}");
        }
        s
    }

    /// As a JSON object, with hclog's keys (`@timestamp`, `@level`, `@module`, `@message`).
    pub fn json(&self) -> String {
        let mut m = serde_json::Map::new();
        m.insert("@timestamp".into(), self.time.clone().into());
        m.insert(
            "@level".into(),
            self.level.as_str().to_ascii_lowercase().into(),
        );
        m.insert("@module".into(), self.target.clone().into());
        m.insert("@message".into(), self.message.clone().into());
        for (k, v) in &self.fields {
            m.insert(k.clone(), v.clone().into());
        }
        serde_json::Value::Object(m).to_string()
    }
}

/// Where the log is copied to, and which levels its watchers want.
#[derive(Debug)]
pub struct LogTap {
    tx: broadcast::Sender<Arc<LogLine>>,
    /// Watchers per level, most verbose (TRACE) first.
    wanted: [AtomicUsize; 5],
}

impl Default for LogTap {
    fn default() -> Self {
        LogTap {
            tx: broadcast::channel(BACKLOG).0,
            wanted: Default::default(),
        }
    }
}

/// A level by its name as Consul's flags and the monitor take it (any case; `err` for error).
pub fn parse_level(name: &str) -> Option<Level> {
    Some(match name.to_ascii_lowercase().as_str() {
        "trace" => Level::TRACE,
        "debug" => Level::DEBUG,
        "info" => Level::INFO,
        "warn" => Level::WARN,
        "err" | "error" => Level::ERROR,
        _ => return None,
    })
}

fn slot(level: Level) -> usize {
    match level {
        Level::TRACE => 0,
        Level::DEBUG => 1,
        Level::INFO => 2,
        Level::WARN => 3,
        Level::ERROR => 4,
    }
}

/// A watcher of the log at one level and above; it stops being counted when dropped.
pub struct Watch {
    tap: Arc<LogTap>,
    level: Level,
    /// The lines as they come.
    pub rx: broadcast::Receiver<Arc<LogLine>>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.tap.wanted[slot(self.level)].fetch_sub(1, Ordering::Relaxed);
    }
}

impl Watch {
    /// Whether a line is at this watcher's level or above.
    pub fn wants(&self, line: &LogLine) -> bool {
        line.level <= self.level
    }
}

impl LogTap {
    /// Follows the log from now on, at `level` and above.
    pub fn watch(self: &Arc<Self>, level: Level) -> Watch {
        self.wanted[slot(level)].fetch_add(1, Ordering::Relaxed);
        Watch {
            tap: self.clone(),
            level,
            rx: self.tx.subscribe(),
        }
    }

    /// Whether some watcher wants events of `level`.
    pub fn wanted(&self, level: Level) -> bool {
        self.wanted[..=slot(level)]
            .iter()
            .any(|w| w.load(Ordering::Relaxed) > 0)
    }

    /// The layer that feeds this tap; filter it with [`LogTap::wanted`].
    pub fn layer(self: &Arc<Self>) -> TapLayer {
        TapLayer(self.clone())
    }
}

/// The tracing layer of a [`LogTap`].
pub struct TapLayer(Arc<LogTap>);

impl<S: Subscriber> Layer<S> for TapLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if self.0.wanted(*event.metadata().level()) {
            let _ = self.0.tx.send(Arc::new(line_of(event)));
        }
    }
}

/// The agent's own log as JSON lines into a writer (standard output, the log file), with hclog's keys
/// as Consul's `-log-json` writes them (`@timestamp`, `@level`, `@module`, `@message`, then the
/// fields).
pub struct JsonLines<W>(pub W);

impl<S: Subscriber, W> Layer<S> for JsonLines<W>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + 'static,
{
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let line = format!("{}\n", line_of(event).json());
        // One write per line: the log file rotates between writes, never inside a line.
        let _ = std::io::Write::write_all(&mut self.0.make_writer(), line.as_bytes());
    }
}

fn line_of(event: &Event<'_>) -> LogLine {
    let meta = event.metadata();
    let mut v = Fields::default();
    event.record(&mut v);
    LogLine {
        time: now_rfc3339(),
        level: *meta.level(),
        target: meta.target().to_string(),
        message: v.message,
        fields: v.fields,
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    fields: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.fields
                .push((field.name().to_string(), format!("{value:?}")));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.fields
                .push((field.name().to_string(), value.to_string()));
        }
    }
}

fn now_rfc3339() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn watchers_get_the_levels_they_asked_for_and_nothing_flows_without_them() {
        let tap = Arc::new(LogTap::default());
        let subscriber = tracing_subscriber::registry().with(tap.layer());
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("before anyone watches");
            assert!(!tap.wanted(Level::ERROR));
            let mut debug = tap.watch(Level::DEBUG);
            assert!(tap.wanted(Level::DEBUG) && !tap.wanted(Level::TRACE));
            tracing::trace!("too verbose");
            tracing::debug!(node = "a", "joined {}", 2);
            let line = debug.rx.try_recv().unwrap();
            assert_eq!(line.message, "joined 2");
            assert_eq!(line.fields, [("node".to_string(), "a".to_string())]);
            assert_eq!(line.level, Level::DEBUG);
            assert!(line.text().contains("[DEBUG]") && line.text().ends_with("joined 2 node=a"));
            let j: serde_json::Value = serde_json::from_str(&line.json()).unwrap();
            assert_eq!(
                (j["@level"].as_str(), j["node"].as_str()),
                (Some("debug"), Some("a"))
            );
            assert!(
                debug.rx.try_recv().is_err(),
                "nothing else: the trace line was not wanted"
            );
            let info = tap.watch(Level::INFO);
            assert!(!info.wants(&line), "a debug line is below an info watcher");
            drop(debug);
            assert!(!tap.wanted(Level::DEBUG) && tap.wanted(Level::INFO));
        });
    }
}
