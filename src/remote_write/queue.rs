//! The send queue between collections and the shards that send them.
//!
//! Each collection is a *generation* of batches. Shards take batches from
//! the oldest generation only, and the next generation starts once every
//! batch of the previous one is finished (sent, rejected or dropped). A
//! series appears once per generation, so however many shards send at once,
//! Prometheus receives each series' samples in time order — it rejects a
//! whole request holding one out-of-order sample, so this is what lets
//! several shards share one series set.
//!
//! The queue is bounded by samples waiting to be sent. When a collection
//! does not fit, the **oldest** waiting batches are dropped (and counted):
//! the mesh metrics are cumulative, so the newest sample of a series carries
//! everything an older one did, and dropping old samples costs resolution,
//! never totals. A batch already being retried whose generation is older
//! than one the queue had to drop from is abandoned at its next retry, for
//! the same reason. Batches being sent are at most one per shard.

use std::collections::VecDeque;
use std::time::Instant;

use parking_lot::Mutex;
use prometheus::IntGauge;
use tokio::sync::Notify;

use super::encode::Batch;

/// A batch a shard has taken, to hand back with [`Queue::done`].
#[derive(Debug)]
pub struct Taken {
    pub batch: Batch,
    pub generation: u64,
}

#[derive(Debug)]
struct Generation {
    id: u64,
    batches: VecDeque<Batch>,
    /// Batches of this generation being sent.
    in_flight: usize,
    /// Still being collected: more batches may come.
    open: bool,
}

impl Generation {
    fn is_finished(&self) -> bool {
        !self.open && self.batches.is_empty() && self.in_flight == 0
    }
}

#[derive(Debug)]
struct State {
    generations: VecDeque<Generation>,
    next_id: u64,
    /// Samples waiting to be taken (what the limit bounds).
    pending: usize,
    /// Samples taken and not yet done.
    in_flight: usize,
    /// Generations up to this one are abandoned: the queue dropped newer data.
    abandon_through: Option<u64>,
    /// Shards allowed to take batches (the rest wait).
    shards: usize,
    /// Set once the final flush has begun: its deadline.
    closing: Option<Instant>,
}

#[derive(Debug)]
pub struct Queue {
    state: Mutex<State>,
    changed: Notify,
    limit: usize,
    held: IntGauge,
}

impl Queue {
    /// A queue holding at most `limit` waiting samples, reporting what it
    /// holds (waiting and being sent) on `held`.
    pub fn new(limit: usize, shards: usize, held: IntGauge) -> Self {
        Self {
            state: Mutex::new(State {
                generations: VecDeque::new(),
                next_id: 0,
                pending: 0,
                in_flight: 0,
                abandon_through: None,
                shards: shards.max(1),
                closing: None,
            }),
            changed: Notify::new(),
            limit,
            held,
        }
    }

    fn changed(&self, s: &State) {
        self.held.set((s.pending + s.in_flight) as i64);
        self.changed.notify_waiters();
    }

    /// Samples waiting or being sent.
    pub fn held(&self) -> usize {
        let s = self.state.lock();
        s.pending + s.in_flight
    }

    /// Starts a generation: [`Self::push`] appends to it until
    /// [`Self::close_generation`].
    pub fn open_generation(&self) -> u64 {
        let mut s = self.state.lock();
        let id = s.next_id;
        s.next_id += 1;
        s.generations.push_back(Generation {
            id,
            batches: VecDeque::new(),
            in_flight: 0,
            open: true,
        });
        id
    }

    pub fn close_generation(&self) {
        let mut s = self.state.lock();
        if let Some(g) = s.generations.back_mut() {
            g.open = false;
        }
        s.generations.retain(|g| !g.is_finished());
        self.changed(&s);
    }

    /// Appends a batch to the open generation; returns the samples dropped
    /// (oldest first) to stay within the limit.
    pub fn push(&self, batch: Batch) -> usize {
        let mut guard = self.state.lock();
        let s = &mut *guard;
        s.pending += batch.samples;
        match s.generations.back_mut() {
            Some(g) if g.open => g.batches.push_back(batch),
            // No open generation: the caller broke the protocol; the batch
            // is dropped rather than sent out of order.
            _ => {
                s.pending -= batch.samples;
                return batch.samples;
            }
        }
        let mut dropped = 0;
        while s.pending > self.limit {
            let Some(g) = s.generations.iter_mut().find(|g| !g.batches.is_empty()) else {
                break;
            };
            let Some(old) = g.batches.pop_front() else {
                break;
            };
            s.pending -= old.samples;
            dropped += old.samples;
            if let Some(older) = g.id.checked_sub(1) {
                s.abandon_through = Some(s.abandon_through.map_or(older, |t| t.max(older)));
            }
        }
        if dropped > 0 {
            s.generations.retain(|g| !g.is_finished());
        }
        self.changed(s);
        dropped
    }

    /// Waits for the next batch shard `shard` may send. `None` once the
    /// queue is closing and nothing is left for this shard.
    pub async fn take(&self, shard: usize) -> Option<Taken> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut guard = self.state.lock();
                let s = &mut *guard;
                while s.generations.front().is_some_and(Generation::is_finished) {
                    s.generations.pop_front();
                }
                if shard < s.shards {
                    match s.generations.front_mut() {
                        Some(head) => {
                            if let Some(batch) = head.batches.pop_front() {
                                head.in_flight += 1;
                                let generation = head.id;
                                s.pending -= batch.samples;
                                s.in_flight += batch.samples;
                                return Some(Taken { batch, generation });
                            }
                        }
                        None if s.closing.is_some() => return None,
                        None => {}
                    }
                } else if s.closing.is_some() {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Hands a taken batch back: sent, rejected or given up on.
    pub fn done(&self, taken: &Taken) {
        let mut s = self.state.lock();
        s.in_flight -= taken.batch.samples;
        if let Some(g) = s.generations.iter_mut().find(|g| g.id == taken.generation) {
            g.in_flight -= 1;
        }
        s.generations.retain(|g| !g.is_finished());
        self.changed(&s);
    }

    /// Whether a batch of this generation should no longer be retried.
    pub fn is_abandoned(&self, generation: u64) -> bool {
        self.state
            .lock()
            .abandon_through
            .is_some_and(|t| generation <= t)
    }

    pub fn set_shards(&self, shards: usize) {
        let mut s = self.state.lock();
        s.shards = shards.max(1);
        self.changed(&s);
    }

    pub fn shards(&self) -> usize {
        self.state.lock().shards
    }

    /// Starts the final flush: shards finish what is queued, retrying until
    /// `deadline`, then [`Self::take`] returns `None`.
    pub fn close(&self, deadline: Instant) {
        let mut s = self.state.lock();
        s.closing = Some(deadline);
        self.changed(&s);
    }

    /// The final flush's deadline, once it has begun.
    pub fn deadline(&self) -> Option<Instant> {
        self.state.lock().closing
    }

    /// Forgets everything still held (after the flush deadline); returns how
    /// many samples that was.
    pub fn clear(&self) -> usize {
        let mut s = self.state.lock();
        let held = s.pending + s.in_flight;
        s.generations.clear();
        s.pending = 0;
        s.in_flight = 0;
        self.changed(&s);
        held
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;

    fn batch(samples: usize) -> Batch {
        Batch {
            body: Bytes::from(vec![0; samples]),
            samples,
            raw_bytes: samples,
        }
    }

    fn queue(limit: usize, shards: usize) -> Queue {
        Queue::new(limit, shards, IntGauge::new("held", "held").unwrap())
    }

    /// A generation of batches of these sizes.
    fn generation(q: &Queue, sizes: &[usize]) -> (u64, usize) {
        let id = q.open_generation();
        let dropped = sizes.iter().map(|&n| q.push(batch(n))).sum();
        q.close_generation();
        (id, dropped)
    }

    async fn take_now(q: &Queue, shard: usize) -> Option<Taken> {
        tokio::time::timeout(Duration::from_millis(50), q.take(shard))
            .await
            .ok()
            .flatten()
    }

    #[tokio::test]
    async fn a_generation_starts_when_the_previous_one_is_finished() {
        let q = queue(1000, 2);
        generation(&q, &[10, 20]);
        generation(&q, &[30]);
        let a = take_now(&q, 0).await.unwrap();
        let b = take_now(&q, 1).await.unwrap();
        assert_eq!((a.generation, b.generation), (0, 0));
        assert!(
            take_now(&q, 0).await.is_none(),
            "generation 1 waits while generation 0 is being sent"
        );
        q.done(&a);
        assert!(take_now(&q, 0).await.is_none());
        q.done(&b);
        let c = take_now(&q, 0).await.unwrap();
        assert_eq!((c.generation, c.batch.samples), (1, 30));
        assert_eq!(q.held(), 30);
        q.done(&c);
        assert_eq!(q.held(), 0);
    }

    #[tokio::test]
    async fn full_queue_drops_the_oldest_batches_and_abandons_older_retries() {
        let q = queue(100, 1);
        generation(&q, &[40, 40]);
        let retrying = take_now(&q, 0).await.unwrap();
        assert_eq!(retrying.generation, 0);
        assert_eq!(generation(&q, &[40]).1, 0, "40 waiting + 40 fit");
        assert!(!q.is_abandoned(0));
        // Generation 2 does not fit: generation 0's waiting batch goes first,
        // then generation 1's — and with newer data gone, generation 0's
        // batch being retried is no longer worth retrying.
        let (_, dropped) = generation(&q, &[50, 30]);
        assert_eq!(dropped, 80);
        assert!(q.is_abandoned(0) && !q.is_abandoned(1));
        let (_, dropped) = generation(&q, &[60]);
        assert_eq!(
            dropped, 50,
            "generation 2's first batch, the oldest waiting"
        );
        assert!(q.is_abandoned(0) && q.is_abandoned(1) && !q.is_abandoned(2));
        assert_eq!(q.held(), 40 + 30 + 60, "the batch being sent is held too");
        q.done(&retrying);
        let next = take_now(&q, 0).await.unwrap();
        assert_eq!((next.generation, next.batch.samples), (2, 30));
    }

    #[tokio::test]
    async fn shards_beyond_the_count_wait() {
        let q = queue(1000, 1);
        generation(&q, &[1, 1]);
        assert!(take_now(&q, 1).await.is_none());
        q.set_shards(2);
        assert!(take_now(&q, 1).await.is_some());
        assert!(take_now(&q, 0).await.is_some());
    }

    #[tokio::test]
    async fn closing_ends_takes_once_everything_is_finished() {
        let q = queue(1000, 1);
        generation(&q, &[5]);
        q.close(Instant::now() + Duration::from_secs(1));
        let t = take_now(&q, 0).await.unwrap();
        assert!(take_now(&q, 3).await.is_none(), "an idle shard ends");
        q.done(&t);
        assert!(q.take(0).await.is_none());
        generation(&q, &[5]);
        assert_eq!(q.clear(), 5);
        assert_eq!(q.held(), 0);
    }
}
