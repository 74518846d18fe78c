//! The connections forwarded `Destination.Get` streams ride to destination.
//!
//! A proxy holds one `Get` per service it talks to for as long as it runs,
//! so one proxy-api in front of a few thousand proxies holds tens of
//! thousands of them. One HTTP/2 connection cannot carry that many: the
//! destination server allows `MAX_CONCURRENT_STREAMS` (10,000) per
//! connection, and h2 queues every stream past it, unanswered, for as long
//! as the others live. So the streams are spread over several lazily
//! opened connections, each with room for a bounded number, and the total
//! is bounded too: past it a `Get` is refused with RESOURCE_EXHAUSTED (and
//! counted) rather than held in a queue no one drains.

use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;
use tonic::transport::{Channel, Endpoint};

use crate::proto::proxy::destination::destination_client::DestinationClient;

/// Forwarded streams one connection to destination carries: a tenth of
/// destination's own per-connection limit, so no connection reaches it,
/// and few enough that one connection's failure (a reset, destination
/// restarting) ends a bounded share of the proxies' streams.
pub const GET_STREAMS_PER_CONNECTION: usize = 1_000;

/// Connections to destination at most. With [`GET_STREAMS_PER_CONNECTION`]
/// this bounds the forwarded streams one proxy-api holds to 64,000: about
/// 9 kB each in destination (BENCHMARKS.md, "Destination streams"), some
/// 580 MB there, which is where a replica more is the better answer.
pub const GET_CONNECTIONS_MAX: usize = 64;

/// One connection and the room left on it.
struct Lane {
    client: DestinationClient<Channel>,
    room: Arc<Semaphore>,
}

/// Connections opened as streams need them, the first one with room taken.
pub struct GetLanes {
    endpoint: Endpoint,
    per_connection: usize,
    max_connections: usize,
    lanes: Mutex<Vec<Lane>>,
    metrics: GetMetrics,
}

/// What an operator sees of the lanes.
#[derive(Clone)]
pub struct GetMetrics {
    /// Forwarded `Get` streams open now.
    pub open: prometheus::IntGauge,
    /// Connections to destination opened (lazily: each connects on its
    /// first stream and reconnects after a failure).
    pub connections: prometheus::IntGauge,
    /// `Get`s refused because every connection was full.
    pub refused: prometheus::IntCounter,
}

impl GetMetrics {
    pub fn register(registry: &prometheus::Registry) -> prometheus::Result<Self> {
        let open = prometheus::IntGauge::new(
            "conduit_proxy_api_get_streams",
            "Destination Get streams forwarded to destination and open now.",
        )?;
        let connections = prometheus::IntGauge::new(
            "conduit_proxy_api_destination_connections",
            "Connections to destination that forwarded Get streams are spread over.",
        )?;
        let refused = prometheus::IntCounter::new(
            "conduit_proxy_api_get_refused_total",
            "Destination Get streams refused (RESOURCE_EXHAUSTED) because every connection to \
             destination carried its most streams.",
        )?;
        registry.register(Box::new(open.clone()))?;
        registry.register(Box::new(connections.clone()))?;
        registry.register(Box::new(refused.clone()))?;
        Ok(Self {
            open,
            connections,
            refused,
        })
    }
}

/// A stream's place on a connection: given back when dropped.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    open: prometheus::IntGauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.dec();
    }
}

impl GetLanes {
    pub fn new(
        endpoint: Endpoint,
        per_connection: usize,
        max_connections: usize,
        metrics: GetMetrics,
    ) -> Self {
        Self {
            endpoint,
            per_connection,
            max_connections,
            lanes: Mutex::new(Vec::new()),
            metrics,
        }
    }

    /// A client on a connection with room for one more stream, and the
    /// place it holds there until the stream ends.
    pub fn acquire(&self) -> Result<(DestinationClient<Channel>, Slot), Status> {
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        let found = lanes.iter().find_map(|lane| {
            let permit = lane.room.clone().try_acquire_owned().ok()?;
            Some((lane.client.clone(), permit))
        });
        let (client, permit) = match found {
            Some(found) => found,
            None if lanes.len() < self.max_connections => {
                let lane = Lane {
                    client: DestinationClient::new(self.endpoint.connect_lazy()),
                    room: Arc::new(Semaphore::new(self.per_connection)),
                };
                let permit = lane
                    .room
                    .clone()
                    .try_acquire_owned()
                    .expect("a new lane has room");
                let client = lane.client.clone();
                lanes.push(lane);
                self.metrics.connections.set(lanes.len() as i64);
                (client, permit)
            }
            None => {
                self.metrics.refused.inc();
                return Err(Status::resource_exhausted(format!(
                    "proxy-api forwards at most {} Get streams ({} connections to destination of \
                     {} streams each) and all are open; add a proxy-api replica",
                    self.per_connection * self.max_connections,
                    self.max_connections,
                    self.per_connection
                )));
            }
        };
        self.metrics.open.inc();
        Ok((
            client,
            Slot {
                _permit: permit,
                open: self.metrics.open.clone(),
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn streams_fill_a_connection_then_open_the_next_and_stop_at_the_bound() {
        let metrics = GetMetrics::register(&prometheus::Registry::new()).unwrap();
        // Nothing listens there: lazy channels connect only on a call.
        let endpoint = Endpoint::from_static("http://127.0.0.1:9");
        let lanes = GetLanes::new(endpoint, 2, 2, metrics.clone());
        let mut held: Vec<Slot> = (0..4).map(|_| lanes.acquire().unwrap().1).collect();
        assert_eq!(metrics.connections.get(), 2);
        assert_eq!(metrics.open.get(), 4);

        let refused = lanes.acquire().err().expect("every connection is full");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(
            refused.message().contains("at most 4 Get streams"),
            "{refused:?}"
        );
        assert_eq!(metrics.refused.get(), 1);

        // A stream that ends gives its place back, on its own connection.
        held.remove(0);
        assert_eq!(metrics.open.get(), 3);
        held.push(lanes.acquire().unwrap().1);
        assert_eq!(metrics.connections.get(), 2);
        assert_eq!(metrics.open.get(), 4);
        drop(held);
        assert_eq!(metrics.open.get(), 0);
    }
}
