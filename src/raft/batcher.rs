//! The leader's group commit: writes that arrive while earlier ones are being committed go into the
//! log together, as one entry.
//!
//! Why: openraft 0.9 appends each client write inside its core task and waits there for the log's
//! flush, so one write cost one fsync in series, and the core could not take replication answers
//! meanwhile (followers were idle 13 ms between appends). perf/kv-bench.sh measured 2.2k writes/s at 64
//! clients that way. One entry per group keeps the log's order and each write's reply; the writes of a
//! group share the entry's index, as the writes of a Consul transaction do.

use std::sync::Arc;
use std::time::Instant;

use openraft::error::{ClientWriteError, Fatal};
use openraft::raft::ClientWriteResponse;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::command::{Command, Reply, Request};
use super::stats::RaftStats;
use super::{Raft, ServerNode, TypeConfig};

/// Most writes in one entry.
const MAX_WRITES: usize = 256;
/// A group stops growing at this many bytes of commands (a larger single write goes alone). With
/// openraft's 64 entries per append this keeps an append well inside the server port's frame limit.
const MAX_BYTES: usize = 512 << 10;
/// Groups being committed at once: while they are, the next group gathers.
const IN_FLIGHT: usize = 2;
/// Writes waiting for a group: past this, a writer waits to be queued (within its hold time) rather
/// than the queue growing while raft cannot keep up. Counted in writes; their bytes are bounded by
/// the HTTP API's body limits and the number of requests in flight.
const QUEUE: usize = 16 * MAX_WRITES;

/// Why a write was not committed.
#[derive(Debug)]
pub enum BatchError {
    /// This server is not (or no longer) the leader.
    NotLeader,
    /// Raft failed otherwise (stopped, storage error).
    Failed(String),
}

type Answer = Result<(u64, Reply), BatchError>;

/// Hands writes to the group-commit task.
pub struct Batcher {
    tx: mpsc::Sender<(Request, oneshot::Sender<Answer>)>,
}

impl Batcher {
    /// Starts the task that commits groups through `raft`.
    pub fn start(raft: Raft, stats: Arc<RaftStats>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(raft, rx, stats));
        Batcher { tx }
    }

    /// Commits `request` (with whatever else is waiting): the entry's index and this write's reply.
    pub async fn write(&self, request: Request) -> Answer {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send((request, tx))
            .await
            .map_err(|_| BatchError::Failed("raft has stopped".into()))?;
        rx.await
            .unwrap_or_else(|_| Err(BatchError::Failed("raft has stopped".into())))
    }
}

async fn run(
    raft: Raft,
    mut rx: mpsc::Receiver<(Request, oneshot::Sender<Answer>)>,
    stats: Arc<RaftStats>,
) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut held: Option<(Request, oneshot::Sender<Answer>)> = None;
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let first = match held.take() {
            Some(w) => w,
            None => match rx.recv().await {
                Some(w) => w,
                None => return,
            },
        };
        // Its caller gave up (the hold time passed): not proposed at all.
        if first.1.is_closed() {
            continue;
        }
        let mut bytes = first.0.body.len();
        let mut group = vec![first];
        while group.len() < MAX_WRITES && Command::groupable(&group[0].0) {
            match rx.try_recv() {
                // Its caller gave up (the hold time passed): not proposed at all.
                Ok(w) if w.1.is_closed() => {}
                Ok(w) if !Command::groupable(&w.0) || bytes + w.0.body.len() > MAX_BYTES => {
                    held = Some(w);
                    break;
                }
                Ok(w) => {
                    bytes += w.0.body.len();
                    group.push(w);
                }
                Err(_) => break,
            }
        }
        let (requests, waiters): (Vec<Request>, Vec<_>) = group.into_iter().unzip();
        // A lone write goes into the log as itself.
        let entry = match requests.as_slice() {
            [one] => one.clone(),
            many => Command::batch(many),
        };
        // Handed to raft here, in arrival order; answered by a task of its own.
        let handed = Instant::now();
        let proposed = raft.client_write_ff(entry).await;
        let stats = stats.clone();
        tokio::spawn(async move {
            let writes = waiters.len();
            if answer(proposed, waiters).await {
                stats.committed(handed.elapsed(), writes);
            }
            drop(slot);
        });
    }
}

/// What openraft answers a proposed entry with.
type Committed = Result<ClientWriteResponse<TypeConfig>, ClientWriteError<u64, ServerNode>>;

/// Waits for one group's commit and answers each of its writes; true if it committed.
async fn answer<R, E>(
    proposed: Result<R, Fatal<u64>>,
    waiters: Vec<oneshot::Sender<Answer>>,
) -> bool
where
    R: std::future::Future<Output = Result<Committed, E>>,
{
    let n = waiters.len();
    let all = |a: &dyn Fn() -> Answer| (0..n).map(|_| a()).collect::<Vec<Answer>>();
    let answers: Vec<Answer> = match proposed {
        Err(e) => all(&|| Err(BatchError::Failed(e.to_string()))),
        Ok(rx) => match rx.await {
            Err(_) => all(&|| Err(BatchError::Failed("raft has stopped".into()))),
            Ok(Err(ClientWriteError::ForwardToLeader(_))) => all(&|| Err(BatchError::NotLeader)),
            Ok(Err(e)) => all(&|| Err(BatchError::Failed(e.to_string()))),
            Ok(Ok(r)) => match r.data {
                Reply::Batch(replies) if replies.len() == n => replies
                    .into_iter()
                    .map(|reply| Ok((r.log_id.index, reply)))
                    .collect(),
                reply if n == 1 => vec![Ok((r.log_id.index, reply))],
                _ => all(&|| Err(BatchError::Failed("a batch's replies do not match".into()))),
            },
        },
    };
    let committed = answers.iter().any(Result::is_ok);
    for (w, a) in waiters.into_iter().zip(answers) {
        let _ = w.send(a);
    }
    committed
}
