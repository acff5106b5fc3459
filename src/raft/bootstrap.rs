//! `bootstrap_expect` as Consul's `maybeBootstrap` decides it: once as many servers of the datacenter as
//! expected are alive in gossip, all expecting the same number, every one of them initializes the log
//! with the same membership (sorted by raft ID). Whether any of them already has a log is asked over
//! the server transport by the caller before it acts on [`Decision::Ready`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::ServerNode;
use super::network::Transport;
use super::rpc::{Answer, Rpc};
use crate::state::servers;
use crate::state::{MemberStatus, MemberTable};

/// A server of the datacenter as gossip shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Raft ID.
    pub id: u64,
    /// How the configuration names it.
    pub node: ServerNode,
    /// Its `expect` tag (0: none).
    pub expect: u32,
    /// It bootstraps alone (`bootstrap` tag).
    pub bootstrap: bool,
}

/// What to do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Too few servers yet.
    Wait {
        /// Alive servers seen.
        have: usize,
        /// Servers expected.
        want: u32,
    },
    /// A server expects a different number; nobody bootstraps (Consul's text).
    Conflict(String),
    /// Initialize with these servers.
    Ready(BTreeMap<u64, ServerNode>),
}

/// Decides for a server expecting `expect` servers, given the alive servers of its datacenter
/// (itself included).
pub fn decide(expect: u32, servers: &[Candidate]) -> Decision {
    if let Some(alone) = servers.iter().find(|c| c.bootstrap) {
        return Decision::Conflict(format!(
            "Member {} has bootstrap mode. Expect disabled.",
            alone.node.name
        ));
    }
    if let Some(odd) = servers.iter().find(|c| c.expect != 0 && c.expect != expect) {
        return Decision::Conflict(format!(
            "Member {} has a conflicting expect value. All nodes should expect the same number.",
            odd.node.name
        ));
    }
    if servers.len() < expect as usize {
        return Decision::Wait {
            have: servers.len(),
            want: expect,
        };
    }
    Decision::Ready(servers.iter().map(|c| (c.id, c.node.clone())).collect())
}

/// The alive servers of datacenter `dc` as gossip shows them (their `id`, `port` and `expect` tags).
pub fn gossip_servers(members: &MemberTable, dc: &str, default_port: u16) -> Vec<Candidate> {
    members
        .snapshot()
        .members
        .iter()
        .filter(|m| m.is_server() && m.status == MemberStatus::Alive && m.tag("dc") == dc)
        .filter_map(|m| {
            Some(Candidate {
                id: super::raft_id(m.tag("id"))?,
                node: ServerNode {
                    name: m.name.to_string(),
                    id: m.tag("id").to_string(),
                    addr: servers::rpc_addr(m, default_port).to_string(),
                },
                expect: m.tag("expect").parse().unwrap_or(0),
                bootstrap: m.tag("bootstrap") == "1",
            })
        })
        .collect()
}

/// How often an unbootstrapped server looks again.
const RETRY: Duration = Duration::from_millis(500);

/// Waits until `decide` says ready, checks that no other server already has a log, and returns the
/// membership to initialize with; `None` when another server has one (this one will be added by that
/// cluster's leader) or when `stop` says the agent is going.
pub async fn await_peers(
    expect: u32,
    my_id: u64,
    members: &MemberTable,
    dc: &str,
    default_port: u16,
    transport: &Transport,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Option<BTreeMap<u64, ServerNode>> {
    let mut said = String::new();
    while !*stop.borrow() {
        let found = gossip_servers(members, dc, default_port);
        let say = |said: &mut String, msg: String, warn: bool| {
            if *said != msg {
                if warn {
                    tracing::error!("{msg}");
                } else {
                    tracing::info!("{msg}");
                }
                *said = msg;
            }
        };
        match decide(expect, &found) {
            Decision::Wait { have, want } => say(
                &mut said,
                format!("bootstrap_expect: {have} of {want} servers found, waiting"),
                false,
            ),
            Decision::Conflict(msg) => say(&mut said, msg, true),
            Decision::Ready(all) => {
                let mut unanswered = false;
                for (id, node) in &all {
                    if *id == my_id {
                        continue;
                    }
                    let Ok(addr) = node.addr.parse::<SocketAddr>() else {
                        unanswered = true;
                        continue;
                    };
                    match transport
                        .call(addr, &Rpc::Status, Duration::from_secs(2))
                        .await
                    {
                        Ok(Answer::Status(s)) if s.initialized => {
                            tracing::info!(
                                "Existing Raft peers reported by {}, disabling bootstrap mode",
                                node.name
                            );
                            return None;
                        }
                        Ok(Answer::Status(_)) => {}
                        _ => unanswered = true,
                    }
                }
                if !unanswered {
                    return Some(all);
                }
                say(
                    &mut said,
                    "bootstrap_expect: waiting for every server to answer on the server port"
                        .into(),
                    false,
                );
            }
        }
        tokio::time::sleep(RETRY).await;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: u64, expect: u32) -> Candidate {
        Candidate {
            id,
            node: ServerNode {
                name: format!("s{id}"),
                id: String::new(),
                addr: format!("127.0.0.{id}:8300"),
            },
            expect,
            bootstrap: false,
        }
    }

    #[test]
    fn a_server_bootstrapping_alone_disables_expect() {
        let mut alone = c(2, 0);
        alone.bootstrap = true;
        assert_eq!(
            decide(2, &[c(1, 2), alone]),
            Decision::Conflict("Member s2 has bootstrap mode. Expect disabled.".into())
        );
    }

    #[test]
    fn waits_for_the_expected_count_then_names_everyone() {
        assert_eq!(
            decide(3, &[c(1, 3), c(2, 3)]),
            Decision::Wait { have: 2, want: 3 }
        );
        let Decision::Ready(m) = decide(3, &[c(3, 3), c(1, 3), c(2, 0)]) else {
            panic!()
        };
        assert_eq!(m.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3]);
    }

    #[test]
    fn a_different_expectation_stops_everyone() {
        let d = decide(3, &[c(1, 3), c(2, 5), c(3, 3)]);
        assert_eq!(
            d,
            Decision::Conflict(
                "Member s2 has a conflicting expect value. All nodes should expect the same number."
                    .into()
            )
        );
    }
}
