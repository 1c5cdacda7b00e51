//! Membership: nodes register in the metadata store and heartbeat there; every
//! node reads the member list back with each heartbeat. A node is alive while its
//! heartbeat is recent, suspect after a few missed ones (no new writes go to it),
//! and dead after `dead_after` (its replicas stop counting and are re-created).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::placement::Candidate;
use super::{ClusterConfig, DataPlane};
use crate::meta::{MetaError, MetaStore, Node, NodeState, OBJECT_CACHE_LEASE, now_millis};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    Suspect,
    Dead,
}

impl Liveness {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alive => "alive",
            Self::Suspect => "suspect",
            Self::Dead => "dead",
        }
    }
}

/// The member list as of the last heartbeat, from one node's point of view.
#[derive(Debug, Clone)]
pub struct View {
    pub me: String,
    pub nodes: Vec<Node>,
    suspect_after: Duration,
}

impl View {
    pub fn new(me: &str, nodes: Vec<Node>, suspect_after: Duration) -> Self {
        Self {
            me: me.to_owned(),
            nodes,
            suspect_after,
        }
    }

    /// This node always counts itself alive: if it can run this code, it is.
    pub fn liveness(&self, node: &Node, dead_after: Duration) -> Liveness {
        liveness_at(node, &self.me, now_millis(), self.suspect_after, dead_after)
    }

    /// Nodes that take new replicas: active and not dead, in id order.
    pub fn placeable(&self, dead_after: Duration) -> Vec<&Node> {
        self.nodes
            .iter()
            .filter(|n| n.state == NodeState::Active)
            .filter(|n| self.liveness(n, dead_after) != Liveness::Dead)
            .collect()
    }

    /// Placement candidates (active, not dead).
    pub fn candidates(&self, dead_after: Duration) -> Vec<Candidate<'_>> {
        self.placeable(dead_after)
            .into_iter()
            .map(|n| Candidate {
                id: &n.id,
                zone: &n.zone,
            })
            .collect()
    }

    /// Nodes whose replicas count as copies: not dead, whatever their state.
    pub fn counted(&self, dead_after: Duration) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| self.liveness(n, dead_after) != Liveness::Dead)
            .map(|n| n.id.clone())
            .collect()
    }

    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }

    pub fn url_of(&self, id: &str) -> Option<String> {
        self.node(id).map(|n| n.url.clone())
    }
}

fn liveness_at(
    node: &Node,
    me: &str,
    now: i64,
    suspect_after: Duration,
    dead_after: Duration,
) -> Liveness {
    if node.id == me {
        return Liveness::Alive;
    }
    let age = Duration::from_millis(now.saturating_sub(node.heartbeat_at).max(0) as u64);
    if age > dead_after {
        Liveness::Dead
    } else if age > suspect_after {
        Liveness::Suspect
    } else {
        Liveness::Alive
    }
}

/// A fingerprint of the cluster secret, stored with each node so that nodes
/// configured with different secrets refuse to share a store.
pub(crate) fn secret_check(secret: Option<&str>) -> String {
    let Some(secret) = secret else {
        return String::new();
    };
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(b"coffer cluster secret check v1");
    hex::encode(&mac.finalize().into_bytes()[..12])
}

/// Registers this node, after checking that it may join: the live members must
/// share its cluster secret, and a node without a secret joins no one.
pub async fn join(meta: &MetaStore, config: &ClusterConfig) -> anyhow::Result<View> {
    let check = secret_check(config.secret.as_deref());
    let now = now_millis();
    let suspect_after = config.suspect_after();
    for node in meta.list_nodes().await? {
        let liveness = liveness_at(&node, "", now, suspect_after, config.dead_after);
        if node.id == config.node_id {
            // A restart keeps its address; another process with the same id elsewhere
            // would share this node's replica records without sharing its volume.
            if liveness == Liveness::Alive && node.url != config.advertise_url {
                anyhow::bail!(
                    "node id {} is in use by a live node at {}; give every node its own --node-id",
                    node.id,
                    node.url
                );
            }
            continue;
        }
        if liveness == Liveness::Dead {
            continue;
        }
        if config.secret.is_none() {
            anyhow::bail!(
                "node {} ({}) is a live member of this metadata store's cluster; \
                 set COFFER_CLUSTER_SECRET (the same on every node) to join it",
                node.id,
                node.url
            );
        }
        if node.secret_check != check {
            anyhow::bail!(
                "node {} ({}) uses a different COFFER_CLUSTER_SECRET; every node of a cluster needs the same one",
                node.id,
                node.url
            );
        }
    }
    meta.register_node(&config.node_id, &config.advertise_url, &config.zone, &check)
        .await?;
    let listed = Instant::now();
    let nodes = meta.list_nodes().await?;
    if nodes.iter().any(|n| n.id != config.node_id) {
        // A node that was alone until now may serve from its object cache
        // under a lease that began before it could see us: wait until every
        // such lease has ended before serving anything.
        tokio::time::sleep(OBJECT_CACHE_LEASE + LEASE_MARGIN).await;
    } else if let Some(cache) = meta.object_cache() {
        cache.renew_lease(listed);
    }
    Ok(View::new(&config.node_id, nodes, suspect_after))
}

/// How much longer than a cache lease a joining node waits: covers the
/// difference in clock rates between nodes, with a wide margin.
const LEASE_MARGIN: Duration = Duration::from_millis(250);

/// How often the object cache's lease is renewed: several times per lease, so
/// one slow query does not end it.
pub(crate) const LEASE_RENEWAL: Duration = Duration::from_millis(250);

/// Renews this node's object-cache lease if the store names no other node, and
/// ends it at once if it does. When the store cannot be read, the lease runs out.
pub(crate) async fn renew_cache_lease(meta: &MetaStore, me: &str) -> Result<(), MetaError> {
    let Some(cache) = meta.object_cache() else {
        return Ok(());
    };
    let started = Instant::now();
    let ids = meta.node_ids().await?;
    if ids.iter().all(|id| id == me) && !ids.is_empty() {
        cache.renew_lease(started);
    } else {
        cache.end_lease();
    }
    Ok(())
}

/// One heartbeat: record that this node lives (with its workers' progress) and
/// refresh the view. A node removed by an operator while running re-registers.
pub(crate) async fn heartbeat(plane: &DataPlane) -> Result<(), MetaError> {
    measure_volume(plane).await;
    let config = plane.config();
    let meta = plane.meta();
    match meta
        .heartbeat_node(&config.node_id, &plane.progress())
        .await
    {
        Err(MetaError::NoSuchNode(_)) => {
            meta.register_node(
                &config.node_id,
                &config.advertise_url,
                &config.zone,
                &secret_check(config.secret.as_deref()),
            )
            .await?;
        }
        other => other?,
    }
    let nodes = meta.list_nodes().await?;
    plane.set_view(View::new(&config.node_id, nodes, config.suspect_after()));
    Ok(())
}

/// Records the volume's size and free space for the heartbeat and `/metrics`.
/// A volume that does not answer within a second (a hung network disk) keeps
/// its last figures rather than delaying the heartbeat, and is not asked again
/// until that call returns.
async fn measure_volume(plane: &DataPlane) {
    let counters = plane.counters();
    if counters.volume_measuring.swap(true, Ordering::AcqRel) {
        return;
    }
    let local = plane.local().clone();
    let done = plane.clone();
    let measuring = tokio::task::spawn_blocking(move || {
        let space = local.space();
        let counters = done.counters();
        if let Ok(space) = &space {
            counters.volume_bytes.store(space.size, Ordering::Relaxed);
            counters
                .volume_available_bytes
                .store(space.available, Ordering::Relaxed);
        }
        counters.volume_measuring.store(false, Ordering::Release);
        space
    });
    if let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_secs(1), measuring).await {
        tracing::debug!(error = %e, "cannot read the data volume's size");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::NodeProgress;

    fn node(id: &str, heartbeat_at: i64) -> Node {
        Node {
            id: id.to_owned(),
            url: String::new(),
            zone: "z".to_owned(),
            state: NodeState::Active,
            secret_check: String::new(),
            started_at: 0,
            heartbeat_at,
            progress: NodeProgress::default(),
        }
    }

    #[test]
    fn heartbeat_age_decides_liveness_but_never_for_oneself() {
        let (suspect, dead) = (Duration::from_secs(3), Duration::from_secs(10));
        let now = 100_000;
        let at =
            |age_ms: i64, id: &str| liveness_at(&node(id, now - age_ms), "me", now, suspect, dead);
        assert_eq!(at(1_000, "a"), Liveness::Alive);
        assert_eq!(at(5_000, "a"), Liveness::Suspect);
        assert_eq!(at(11_000, "a"), Liveness::Dead);
        assert_eq!(at(11_000, "me"), Liveness::Alive);
    }

    #[test]
    fn secret_fingerprints_differ_by_secret_and_hide_it() {
        let a = secret_check(Some("alpha"));
        assert_eq!(a, secret_check(Some("alpha")));
        assert_ne!(a, secret_check(Some("beta")));
        assert!(!a.contains("alpha"));
        assert_eq!(secret_check(None), "");
    }
}
