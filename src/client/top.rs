//! `conduit top deploy|pod NAME [filters]`: the most frequent requests of
//! a deployment or a pod, live, from the public API's `Tap`:
//!
//! ```text
//! SOURCE                             DESTINATION                          METHOD   PATH            COUNT   BEST    WORST   LAST    SUCCESS_RATE
//! checkout/orders-xktwmvh4pt-qsnr8   checkout/payments-q84l48szbn-cvzhx   POST     /api/payments   17      4.3ms   16ms    9.0ms   82.35%
//! checkout/orders-xktwmvh4pt-m9c2m   checkout/payments-q84l48szbn-k884j   POST     /api/payments   16      4.3ms   18ms    5.2ms   75.00%
//! ```
//!
//! A tap sends each request as up to three events (`request_init`,
//! `response_init`, `response_end`) with the stream's id; [`Top`] pairs
//! them by that id and counts the request in its row — (source,
//! destination, method, path) — when its response ends. Sources and
//! destinations are named by pod through `ListPods` ([`PodNames`],
//! refreshed every [`POD_REFRESH`]), an address no pod owns by its IP.
//!
//! On a terminal the table is redrawn in place; otherwise it is printed
//! as a block of lines each `--interval` it changed, blocks separated by
//! a blank line, and once more at the end (Ctrl-C, `--for`, or the end of the
//! tap).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{IsTerminal as _, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::tap::{FilterArgs, Resource, TargetArgs, tap_request};
use super::{ApiArgs, ApiClient, ClientError, table};
use crate::core::Shutdown;
use crate::core::units::parse_duration;
use crate::ingest::flat::End;
use crate::ingest::report::is_success;
use crate::proto::common::tap_event::http::Event;
use crate::proto::common::{TapEvent, TcpAddress, tap_event};
use crate::proto::http_api::{LIST_PODS_PATH, TAP_PATH};
use crate::proto::net::ip_from_proto;
use crate::proto::public::{Empty, ListPodsResponse, Pod};
use crate::proto::tap_match::method_name;

/// Distinct rows kept: far more than a screen shows, and at four short
/// strings a row a few MiB at most. Requests of any further row are only
/// counted, in one note under the table.
pub const MAX_TOP_ROWS: usize = 10_000;

/// Requests seen starting whose response has not ended yet. A proxy sends
/// a request's events within its latency, and a tap at `--max-rps` sends
/// at most ten seconds' worth of requests per window, so this is room for
/// seconds-long requests at thousands per second; past it the oldest is
/// forgotten (a lost `response_end` must not hold memory forever).
const MAX_IN_FLIGHT: usize = 10_000;

/// Pod IPs named: ten times the largest mesh `SCALING.md` sizes (100k
/// pods); the pods of a larger answer past it are shown by IP.
const MAX_POD_NAMES: usize = 1 << 20;

/// Longest path kept in a row, in bytes; a longer one is cut (at a
/// character boundary) and marked with `…`, so a client sending huge paths
/// cannot make each row large.
const MAX_PATH_BYTES: usize = 512;

/// Tap events read ahead of the table; the tap's own rate limit keeps the
/// stream far below what one table update per event can take.
const EVENT_BUFFER: usize = 1_024;

/// How often pod names are asked for again (new pods, reused IPs).
pub const POD_REFRESH: Duration = Duration::from_secs(5);

/// Rows shown off a terminal without `--rows`.
const DEFAULT_ROWS: usize = 20;

/// Rows shown on a terminal whose size cannot be read.
const FALLBACK_TERMINAL: (usize, usize) = (24, 80);

/// The default `--max-rps`: a top needs many requests to rank them (tap's
/// default, one a second, suits reading events one by one).
pub const DEFAULT_TOP_MAX_RPS: f32 = 100.0;

const HEADER: [&str; 9] = [
    "SOURCE",
    "DESTINATION",
    "METHOD",
    "PATH",
    "COUNT",
    "BEST",
    "WORST",
    "LAST",
    "SUCCESS_RATE",
];

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Requests per second to sample, across all the target's pods.
    #[arg(long, default_value_t = DEFAULT_TOP_MAX_RPS)]
    pub max_rps: f32,
    #[command(flatten)]
    pub filters: FilterArgs,
    /// How often the table is redrawn (on a terminal) or printed when it
    /// changed (otherwise).
    #[arg(long, default_value = "1s", value_parser = parse_interval)]
    pub interval: Duration,
    /// Stop after this long and print the final table (default: until
    /// Ctrl-C or the end of the tap).
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
    pub run_for: Option<Duration>,
    /// Rows shown (default: as many as fit the terminal, or 20 off a
    /// terminal).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub rows: Option<u32>,
    #[command(flatten)]
    pub api: ApiArgs,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        Duration::ZERO => Err("the interval must be longer than 0s".to_string()),
        d => Ok(d),
    }
}

/// One row of the table: who called whom, how.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RowKey {
    pub source: String,
    pub destination: String,
    pub method: String,
    pub path: String,
}

/// A row's requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    pub count: u64,
    pub successes: u64,
    pub best: Duration,
    pub worst: Duration,
    pub last: Duration,
}

impl Stats {
    fn new(latency: Duration, success: bool) -> Self {
        Self {
            count: 1,
            successes: u64::from(success),
            best: latency,
            worst: latency,
            last: latency,
        }
    }

    fn add(&mut self, latency: Duration, success: bool) {
        self.count += 1;
        self.successes += u64::from(success);
        self.best = self.best.min(latency);
        self.worst = self.worst.max(latency);
        self.last = latency;
    }

    /// Successes over requests, as a ratio.
    pub fn success_rate(&self) -> f64 {
        self.successes as f64 / self.count.max(1) as f64
    }
}

/// The rows, at most [`MAX_TOP_ROWS`] of them.
#[derive(Debug, Default)]
pub struct Table {
    rows: HashMap<RowKey, Stats>,
    /// Requests of rows that did not fit.
    unkept: u64,
    total: u64,
}

impl Table {
    /// Counts one finished request in its row.
    pub fn record(&mut self, key: RowKey, latency: Duration, success: bool) {
        self.total += 1;
        if let Some(stats) = self.rows.get_mut(&key) {
            stats.add(latency, success);
        } else if self.rows.len() < MAX_TOP_ROWS {
            self.rows.insert(key, Stats::new(latency, success));
        } else {
            self.unkept += 1;
        }
    }

    /// The `n` rows with the most requests, most first; equal counts in
    /// the order of their keys, so the table does not shuffle between
    /// redraws.
    pub fn top(&self, n: usize) -> Vec<(&RowKey, &Stats)> {
        let mut rows: Vec<(&RowKey, &Stats)> = self.rows.iter().collect();
        let order = |a: &(&RowKey, &Stats), b: &(&RowKey, &Stats)| {
            b.1.count.cmp(&a.1.count).then(a.0.cmp(b.0))
        };
        if n < rows.len() {
            rows.select_nth_unstable_by(n, order);
            rows.truncate(n);
        }
        rows.sort_unstable_by(order);
        rows
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Requests counted, in rows or not.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The header, the top `n` rows, and a note line for what is left out.
    pub fn render(&self, n: usize) -> String {
        let cells: Vec<Vec<String>> = self
            .top(n)
            .into_iter()
            .map(|(key, stats)| {
                vec![
                    key.source.clone(),
                    key.destination.clone(),
                    key.method.clone(),
                    key.path.clone(),
                    stats.count.to_string(),
                    millis(stats.best),
                    millis(stats.worst),
                    millis(stats.last),
                    format!("{:.2}%", stats.success_rate() * 100.0),
                ]
            })
            .collect();
        let mut out = table::render(&HEADER, &cells);
        if self.rows.len() > cells.len() {
            let more = self.rows.len() - cells.len();
            let _ = writeln!(out, "({more} more {})", plural(more, "row"));
        }
        if self.unkept > 0 {
            let _ = writeln!(
                out,
                "({} requests of rows past the first {MAX_TOP_ROWS} are not in the table)",
                self.unkept
            );
        }
        out
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        word.to_string()
    } else {
        format!("{word}s")
    }
}

/// A latency in milliseconds: a tenth of one below 10 ms, whole ones above.
fn millis(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1_000.0;
    if ms < 10.0 {
        format!("{ms:.1}ms")
    } else {
        format!("{ms:.0}ms")
    }
}

/// Pod names by pod IP, from a `ListPods` answer.
#[derive(Clone, Debug, Default)]
pub struct PodNames {
    by_ip: HashMap<IpAddr, String>,
}

impl PodNames {
    /// When two pods list the same IP (one failed, its IP given to a new
    /// one), the running pod has it: traffic now is the new pod's.
    pub fn from_pods(pods: &[Pod]) -> Self {
        let mut by_ip: HashMap<IpAddr, (String, bool)> = HashMap::new();
        for pod in pods {
            let Ok(ip) = pod.pod_ip.parse::<IpAddr>() else {
                continue;
            };
            let running = pod.status == "Running";
            let room = by_ip.len() < MAX_POD_NAMES;
            match by_ip.get_mut(&ip) {
                Some(held) if running && !held.1 => *held = (pod.name.clone(), running),
                Some(_) => {}
                None if room => {
                    by_ip.insert(ip, (pod.name.clone(), running));
                }
                None => {}
            }
        }
        Self {
            by_ip: by_ip
                .into_iter()
                .map(|(ip, (name, _))| (ip, name))
                .collect(),
        }
    }

    /// The pod at `ip`, or the IP itself; `?` for an event without one.
    pub fn name(&self, ip: Option<IpAddr>) -> String {
        match ip {
            Some(ip) => self
                .by_ip
                .get(&ip)
                .cloned()
                .unwrap_or_else(|| ip.to_string()),
            None => "?".to_string(),
        }
    }
}

/// A request's events are one stream of one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct StreamKey {
    source: Option<SocketAddr>,
    target: Option<SocketAddr>,
    base: u32,
    stream: u64,
}

/// A request seen starting.
#[derive(Debug)]
struct InFlight {
    row: RowKey,
    /// When it was seen, to forget the oldest first.
    seq: u64,
    http_status: Option<u32>,
    /// Time to the response headers.
    latency: Option<Duration>,
}

/// The table, and the requests it is waiting to count.
#[derive(Debug, Default)]
pub struct Top {
    table: Table,
    in_flight: HashMap<StreamKey, InFlight>,
    /// `in_flight` by `seq`, oldest first.
    order: BTreeMap<u64, StreamKey>,
    next_seq: u64,
}

impl Top {
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// Takes one tap event; a response's end counts its request.
    pub fn observe(&mut self, event: &TapEvent, names: &PodNames) {
        let Some(tap_event::Event::Http(http)) = &event.event else {
            return;
        };
        let (source, target) = (socket(event.source.as_ref()), socket(event.target.as_ref()));
        let key = |id: Option<&tap_event::http::StreamId>| {
            id.map(|id| StreamKey {
                source,
                target,
                base: id.base,
                stream: id.stream,
            })
        };
        match &http.event {
            Some(Event::RequestInit(req)) => {
                let Some(key) = key(req.id.as_ref()) else {
                    return;
                };
                let row = RowKey {
                    source: names.name(source.map(|s| s.ip())),
                    destination: names.name(target.map(|t| t.ip())),
                    method: method_name(req.method.as_ref()),
                    path: bounded_path(&req.path),
                };
                self.start(key, row);
            }
            Some(Event::ResponseInit(rsp)) => {
                if let Some(request) = key(rsp.id.as_ref()).and_then(|k| self.in_flight.get_mut(&k))
                {
                    request.http_status = Some(rsp.http_status);
                    request.latency = duration(rsp.since_request_init.as_ref());
                }
            }
            Some(Event::ResponseEnd(end)) => {
                let Some(request) = key(end.id.as_ref()).and_then(|k| self.finish(&k)) else {
                    return;
                };
                // The whole response when the proxy says; otherwise the
                // time to its headers and then to its end.
                let latency = duration(end.since_request_init.as_ref())
                    .or_else(|| {
                        Some(request.latency? + duration(end.since_response_init.as_ref())?)
                    })
                    .or(request.latency)
                    .unwrap_or_default();
                // The wire's gRPC status is 0 both for OK and for a
                // response that is not gRPC: then the HTTP status decides,
                // which is also what it decides for gRPC's OK.
                let grpc = (end.grpc_status != 0).then_some(End::Grpc(end.grpc_status));
                let success = is_success(grpc, request.http_status.unwrap_or_default());
                self.table.record(request.row, latency, success);
            }
            None => {}
        }
    }

    fn start(&mut self, key: StreamKey, row: RowKey) {
        self.finish(&key);
        while self.in_flight.len() >= MAX_IN_FLIGHT {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.in_flight.remove(&oldest);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, key);
        self.in_flight.insert(
            key,
            InFlight {
                row,
                seq,
                http_status: None,
                latency: None,
            },
        );
    }

    fn finish(&mut self, key: &StreamKey) -> Option<InFlight> {
        let request = self.in_flight.remove(key)?;
        self.order.remove(&request.seq);
        Some(request)
    }
}

fn socket(addr: Option<&TcpAddress>) -> Option<SocketAddr> {
    let addr = addr?;
    let ip = ip_from_proto(addr.ip.as_ref()?)?;
    Some(SocketAddr::new(ip, u16::try_from(addr.port).unwrap_or(0)))
}

fn duration(d: Option<&prost_types::Duration>) -> Option<Duration> {
    Duration::try_from(*d?).ok()
}

fn bounded_path(path: &str) -> String {
    if path.len() <= MAX_PATH_BYTES {
        return path.to_string();
    }
    let mut cut = MAX_PATH_BYTES;
    while !path.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &path[..cut])
}

/// Pod names as last fetched, and why the latest fetch failed, if it did.
#[derive(Clone, Debug, Default)]
struct Names {
    pods: PodNames,
    stale: Option<String>,
}

/// Aborts a task when dropped, so no helper outlives the command.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Where the table goes: redrawn in place on a terminal, printed as blocks
/// otherwise.
struct Screen {
    terminal: bool,
    rows: Option<usize>,
    title: String,
    /// Terminal rows and columns.
    size: (usize, usize),
    /// Requests counted when the last block was printed.
    printed: Option<u64>,
}

impl Screen {
    /// Shows the table; `false` once stdout is closed (`| head`).
    fn show(&mut self, top: &Top, names: &Names, last: bool) -> bool {
        let table = top.table();
        if !self.terminal && !last && self.printed == Some(table.total()) {
            return true;
        }
        let mut notes = String::new();
        if let Some(why) = &names.stale {
            let _ = writeln!(notes, "(pod names not refreshed: {why})");
        }
        let text = if self.terminal {
            let (height, width) = self.size;
            // The title, the header, the notes and a line for the cursor;
            // then one for "(N more rows)" if that is needed.
            let notes_lines = notes.lines().count() + usize::from(table.unkept > 0);
            let mut fit = height.saturating_sub(3 + notes_lines);
            if table.len() > fit {
                fit = fit.saturating_sub(1);
            }
            let fit = fit.max(1);
            let body = format!(
                "{}: {} requests (Ctrl-C to quit)\n{}{notes}",
                self.title,
                table.total(),
                table.render(self.rows.unwrap_or(fit))
            );
            // Home, then each line cut to the width and cleared to its
            // end, then the rest of the screen cleared: no flicker.
            let mut screen = String::from("\x1b[H");
            for line in body.lines() {
                screen.extend(line.chars().take(width));
                screen.push_str("\x1b[K\n");
            }
            screen.push_str("\x1b[J");
            screen
        } else {
            let separator = if self.printed.is_some() { "\n" } else { "" };
            format!(
                "{separator}{}{notes}",
                table.render(self.rows.unwrap_or(DEFAULT_ROWS))
            )
        };
        self.printed = Some(table.total());
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .is_ok()
    }
}

/// The terminal's rows and columns, as `stty` reads them from the
/// controlling terminal.
fn terminal_size() -> Option<(usize, usize)> {
    let tty = std::fs::File::open("/dev/tty").ok()?;
    let out = std::process::Command::new("stty")
        .arg("size")
        .stdin(tty)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let mut numbers = text.split_whitespace().map(str::parse::<usize>);
    match (numbers.next()?, numbers.next()?) {
        (Ok(rows), Ok(cols)) if rows > 0 && cols > 0 => Some((rows, cols)),
        _ => None,
    }
}

async fn read_terminal_size() -> (usize, usize) {
    tokio::task::spawn_blocking(terminal_size)
        .await
        .ok()
        .flatten()
        .unwrap_or(FALLBACK_TERMINAL)
}

/// Why the table stopped.
enum Stop {
    /// Ctrl-C, `--for`, or the tap's end.
    Done,
    /// stdout closed: nothing more can be shown.
    Closed,
}

impl Args {
    /// Shows the table until Ctrl-C (or SIGTERM), `--for`, or the end of
    /// the tap, then once more; a failure of the API is one line and a
    /// non-zero exit.
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        self.filters.check()?;
        let client = ApiClient::new(&self.api.api_addr)?;
        let terminal = std::io::stdout().is_terminal();
        let mut screen = Screen {
            terminal,
            rows: self.rows.map(|r| r as usize),
            title: format!(
                "{} {}",
                match self.target.resource {
                    Resource::Deploy => "deploy",
                    Resource::Pod => "pod",
                },
                self.target.qualified_name()
            ),
            size: if terminal {
                read_terminal_size().await
            } else {
                FALLBACK_TERMINAL
            },
            printed: None,
        };
        let mut top = Top::default();
        let (names_tx, names) = watch::channel(Names::default());
        let deadline = async {
            match self.run_for {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        let result = tokio::select! {
            result = self.watch(client, &mut top, &mut screen, names_tx) => result,
            () = shutdown.signaled() => Ok(Stop::Done),
            () = deadline => Ok(Stop::Done),
        };
        let names = names.borrow().clone();
        match result {
            Ok(Stop::Done) => {
                screen.show(&top, &names, true);
                Ok(())
            }
            Ok(Stop::Closed) => Ok(()),
            Err(error) => {
                if !top.table().is_empty() {
                    screen.show(&top, &names, true);
                }
                Err(error.into())
            }
        }
    }

    async fn watch(
        &self,
        client: ApiClient,
        top: &mut Top,
        screen: &mut Screen,
        names: watch::Sender<Names>,
    ) -> Result<Stop, ClientError> {
        let pods: ListPodsResponse = client.call(LIST_PODS_PATH, &Empty {}).await?;
        names.send_replace(Names {
            pods: PodNames::from_pods(&pods.pods),
            stale: None,
        });
        let _refresh = AbortOnDrop(tokio::spawn(refresh_names(
            ApiClient::new(&self.api.api_addr)?,
            names.clone(),
        )));
        let (tx, mut events) = mpsc::channel(EVENT_BUFFER);
        let _tap = AbortOnDrop(tokio::spawn(read_tap(
            client,
            tap_request(&self.target, self.max_rps, &self.filters),
            tx,
        )));
        let mut resized =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()).ok();
        let start = tokio::time::Instant::now() + self.interval;
        let mut ticks = tokio::time::interval_at(start, self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        if screen.terminal && !screen.show(top, &names.borrow(), false) {
            return Ok(Stop::Closed);
        }
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Some(Ok(event)) => top.observe(&event, &names.borrow().pods),
                    Some(Err(error)) => return Err(error),
                    None => return Ok(Stop::Done),
                },
                _ = ticks.tick() => {
                    if !screen.show(top, &names.borrow(), false) {
                        return Ok(Stop::Closed);
                    }
                }
                Some(()) = async {
                    match resized.as_mut() {
                        Some(signal) => signal.recv().await,
                        None => std::future::pending().await,
                    }
                }, if screen.terminal => {
                    screen.size = read_terminal_size().await;
                    if !screen.show(top, &names.borrow(), false) {
                        return Ok(Stop::Closed);
                    }
                }
            }
        }
    }
}

/// Reads the tap into `tx`: every event, then the error if the stream
/// broke; a clean end closes the channel.
async fn read_tap(
    client: ApiClient,
    request: crate::proto::public::TapRequest,
    tx: mpsc::Sender<Result<TapEvent, ClientError>>,
) {
    let mut frames = match client.stream::<_, TapEvent>(TAP_PATH, &request).await {
        Ok(frames) => frames,
        Err(error) => {
            let _ = tx.send(Err(error)).await;
            return;
        }
    };
    loop {
        match frames.next().await {
            Ok(Some(event)) => {
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
            }
            Ok(None) => return,
            Err(error) => {
                let _ = tx.send(Err(error)).await;
                return;
            }
        }
    }
}

/// Asks for the pods every [`POD_REFRESH`]; a failed ask keeps the names
/// it had and says why under the table.
async fn refresh_names(client: ApiClient, names: watch::Sender<Names>) {
    loop {
        tokio::time::sleep(POD_REFRESH).await;
        match client
            .call::<_, ListPodsResponse>(LIST_PODS_PATH, &Empty {})
            .await
        {
            Ok(rsp) => {
                names.send_replace(Names {
                    pods: PodNames::from_pods(&rsp.pods),
                    stale: None,
                });
            }
            Err(error) => names.send_modify(|n| n.stale = Some(error.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::common::tap_event::http::{RequestInit, ResponseEnd, ResponseInit, StreamId};
    use crate::proto::common::{HttpMethod, http_method};
    use crate::proto::net::ip_to_proto;

    const WEB: &str = "192.0.2.10";
    const BOOKS: &str = "192.0.2.20";
    /// No pod has it.
    const OUTSIDE: &str = "198.51.100.7";

    fn pods() -> PodNames {
        let pod = |name: &str, ip: &str, status: &str| Pod {
            name: name.into(),
            pod_ip: ip.into(),
            status: status.into(),
            ..Pod::default()
        };
        PodNames::from_pods(&[
            pod("shop/web-1", WEB, "Running"),
            // BOOKS was a failed pod's before the running one's.
            pod("shop/books-old", BOOKS, "Failed"),
            pod("shop/books-2", BOOKS, "Running"),
            pod("shop/books-older", BOOKS, "Failed"),
            pod("shop/pending", "", "Pending"),
        ])
    }

    fn ms(ms: u64) -> prost_types::Duration {
        Duration::from_millis(ms).try_into().unwrap()
    }

    /// The three events of one request from `src` to `dst`.
    struct Request<'a> {
        src: &'a str,
        dst: &'a str,
        stream: u64,
        method: http_method::Registered,
        path: &'a str,
        status: u32,
        grpc: u32,
        latency_ms: u64,
    }

    impl Request<'_> {
        fn events(&self) -> [TapEvent; 3] {
            let tcp = |ip: &str, port| TcpAddress {
                ip: Some(ip_to_proto(ip.parse().unwrap())),
                port,
            };
            let id = Some(StreamId {
                base: 7,
                stream: self.stream,
            });
            let event = |e| TapEvent {
                source: Some(tcp(self.src, 40312)),
                target: Some(tcp(self.dst, 8080)),
                event: Some(tap_event::Event::Http(tap_event::Http { event: Some(e) })),
            };
            [
                event(Event::RequestInit(RequestInit {
                    id,
                    method: Some(HttpMethod {
                        r#type: Some(http_method::Type::Registered(self.method as i32)),
                    }),
                    scheme: None,
                    authority: "books.shop:8080".into(),
                    path: self.path.into(),
                })),
                event(Event::ResponseInit(ResponseInit {
                    id,
                    since_request_init: Some(ms(self.latency_ms / 2)),
                    http_status: self.status,
                })),
                event(Event::ResponseEnd(ResponseEnd {
                    id,
                    since_request_init: Some(ms(self.latency_ms)),
                    since_response_init: Some(ms(self.latency_ms - self.latency_ms / 2)),
                    response_bytes: 100,
                    grpc_status: self.grpc,
                })),
            ]
        }
    }

    fn get(stream: u64, latency_ms: u64) -> Request<'static> {
        Request {
            src: WEB,
            dst: BOOKS,
            stream,
            method: http_method::Registered::Get,
            path: "/books",
            status: 200,
            grpc: 0,
            latency_ms,
        }
    }

    fn feed(top: &mut Top, requests: &[Request<'_>]) {
        let names = pods();
        for r in requests {
            for event in r.events() {
                top.observe(&event, &names);
            }
        }
    }

    fn key(source: &str, destination: &str, method: &str, path: &str) -> RowKey {
        RowKey {
            source: source.into(),
            destination: destination.into(),
            method: method.into(),
            path: path.into(),
        }
    }

    #[test]
    fn a_row_keeps_count_best_worst_last_and_success() {
        let mut top = Top::default();
        feed(
            &mut top,
            &[
                get(1, 12),
                Request {
                    status: 500,
                    ..get(2, 250)
                },
                get(3, 3),
                get(4, 40),
            ],
        );
        let rows = top.table().top(10);
        assert_eq!(rows.len(), 1);
        let (row, stats) = rows[0];
        // Pod names, not IPs; the running pod has the reused IP.
        assert_eq!(row, &key("shop/web-1", "shop/books-2", "GET", "/books"));
        assert_eq!(
            *stats,
            Stats {
                count: 4,
                successes: 3,
                best: Duration::from_millis(3),
                worst: Duration::from_millis(250),
                last: Duration::from_millis(40),
            }
        );
        assert_eq!(stats.success_rate(), 0.75);
        assert!(top.in_flight.is_empty() && top.order.is_empty());
    }

    #[test]
    fn success_is_judged_as_the_ingester_judges_it() {
        let mut top = Top::default();
        feed(
            &mut top,
            &[
                // gRPC's NotFound fails whatever the HTTP status.
                Request {
                    grpc: 5,
                    path: "/grpc",
                    ..get(1, 5)
                },
                // No gRPC status: HTTP below 500 succeeds...
                Request {
                    status: 404,
                    path: "/missing",
                    ..get(2, 5)
                },
                // ... and 5xx fails.
                Request {
                    status: 503,
                    path: "/down",
                    ..get(3, 5)
                },
            ],
        );
        let by_path: HashMap<&str, u64> = top
            .table()
            .top(10)
            .into_iter()
            .map(|(k, s)| (k.path.as_str(), s.successes))
            .collect();
        assert_eq!(
            by_path,
            HashMap::from([("/grpc", 0), ("/missing", 1), ("/down", 0)])
        );
    }

    #[test]
    fn rows_sort_by_count_then_by_key() {
        let mut table = Table::default();
        let ms = Duration::from_millis(1);
        for (path, n) in [("/b", 2), ("/a", 2), ("/c", 5), ("/d", 1)] {
            for _ in 0..n {
                table.record(key("s", "d", "GET", path), ms, true);
            }
        }
        let order: Vec<&str> = table.top(10).iter().map(|(k, _)| k.path.as_str()).collect();
        assert_eq!(order, ["/c", "/a", "/b", "/d"]);
        let top2: Vec<&str> = table.top(2).iter().map(|(k, _)| k.path.as_str()).collect();
        assert_eq!(top2, ["/c", "/a"]);
        assert_eq!(table.top(0).len(), 0);
    }

    #[test]
    fn the_table_renders_in_stable_columns() {
        let mut top = Top::default();
        feed(
            &mut top,
            &[
                get(1, 12),
                Request {
                    status: 500,
                    ..get(2, 250)
                },
                Request {
                    src: OUTSIDE,
                    method: http_method::Registered::Post,
                    ..get(3, 3)
                },
            ],
        );
        assert_eq!(
            top.table().render(1),
            "\
SOURCE       DESTINATION    METHOD   PATH     COUNT   BEST   WORST   LAST    SUCCESS_RATE
shop/web-1   shop/books-2   GET      /books   2       12ms   250ms   250ms   50.00%
(1 more row)
"
        );
        assert!(
            top.table()
                .render(5)
                .contains("\n198.51.100.7   shop/books-2   POST     /books   1       3.0ms")
        );
    }

    #[test]
    fn rows_past_the_bound_are_counted_not_kept() {
        let mut table = Table::default();
        let ms = Duration::from_millis(1);
        for i in 0..MAX_TOP_ROWS + 5 {
            table.record(key("s", "d", "GET", &format!("/{i}")), ms, true);
        }
        // A kept row still counts.
        table.record(key("s", "d", "GET", "/0"), ms, true);
        assert_eq!(table.len(), MAX_TOP_ROWS);
        assert_eq!(table.unkept, 5);
        assert_eq!(table.total(), MAX_TOP_ROWS as u64 + 6);
        assert_eq!(table.top(1)[0].1.count, 2);
        assert!(table.render(1).ends_with(&format!(
            "({} more rows)\n(5 requests of rows past the first {MAX_TOP_ROWS} are not in the table)\n",
            MAX_TOP_ROWS - 1
        )));
    }

    #[test]
    fn requests_waiting_for_their_end_are_bounded() {
        let mut top = Top::default();
        let names = pods();
        let requests: Vec<Request> = (0..MAX_IN_FLIGHT as u64 + 1).map(|i| get(i, 5)).collect();
        for r in &requests {
            let [init, _, _] = r.events();
            top.observe(&init, &names);
        }
        assert_eq!(top.in_flight.len(), MAX_IN_FLIGHT);
        assert_eq!(top.order.len(), MAX_IN_FLIGHT);
        // The oldest was forgotten: its end counts nothing; the newest's does.
        let [_, _, end] = requests[0].events();
        top.observe(&end, &names);
        assert_eq!(top.table().total(), 0);
        let [_, _, end] = requests[MAX_IN_FLIGHT].events();
        top.observe(&end, &names);
        assert_eq!(top.table().total(), 1);
        // An end without its request, or an event with no id, is ignored.
        top.observe(&TapEvent::default(), &names);
        assert_eq!(top.table().total(), 1);
    }

    #[test]
    fn long_paths_are_cut_at_a_character() {
        let long = "/é".repeat(MAX_PATH_BYTES);
        let cut = bounded_path(&long);
        assert!(cut.len() <= MAX_PATH_BYTES + '…'.len_utf8());
        assert!(cut.ends_with('…') && long.starts_with(cut.trim_end_matches('…')));
        assert_eq!(bounded_path("/books"), "/books");
    }

    #[test]
    fn names_fall_back_to_the_ip() {
        let names = pods();
        assert_eq!(names.name(Some(WEB.parse().unwrap())), "shop/web-1");
        assert_eq!(names.name(Some(BOOKS.parse().unwrap())), "shop/books-2");
        assert_eq!(names.name(Some(OUTSIDE.parse().unwrap())), OUTSIDE);
        assert_eq!(
            names.name(Some("2001:db8::1".parse().unwrap())),
            "2001:db8::1"
        );
        assert_eq!(names.name(None), "?");
    }

    #[test]
    fn latencies_show_in_milliseconds() {
        assert_eq!(millis(Duration::from_micros(2_150)), "2.1ms");
        assert_eq!(millis(Duration::from_micros(9_940)), "9.9ms");
        assert_eq!(millis(Duration::from_micros(183_400)), "183ms");
        assert_eq!(millis(Duration::ZERO), "0.0ms");
    }

    #[test]
    fn flags_are_tap_s_with_top_s_own() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let parse = |argv: &[&str]| Cli::try_parse_from(argv).map(|c| c.args);
        let args = parse(&[
            "top", "deploy", "web", "-n", "shop", "--method", "post", "--path", "/api", "--for",
            "10s", "--rows", "5",
        ])
        .unwrap();
        let req = tap_request(&args.target, args.max_rps, &args.filters);
        assert_eq!(
            req.target,
            Some(crate::proto::public::tap_request::Target::Deployment(
                "shop/web".into()
            ))
        );
        assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/api"));
        assert_eq!(req.max_rps, DEFAULT_TOP_MAX_RPS);
        assert_eq!(args.interval, Duration::from_secs(1));
        assert_eq!(args.run_for, Some(Duration::from_secs(10)));
        assert_eq!(args.rows, Some(5));
        assert!(parse(&["top", "deploy", "web", "--interval", "0s"]).is_err());
        assert!(parse(&["top", "deploy", "web", "--rows", "0"]).is_err());
        let args = parse(&["top", "po", "shop/web-1", "--method", "FETCH"]).unwrap();
        assert!(args.filters.check().is_err());
    }
}
