//! The metrics and dashboard server: plain HTTP on one port (so `ssh -L 8787:localhost:8787`
//! is all a remote user needs), served by tiny_http from one thread of its own that waits on
//! its socket; the page and everything it loads are inside the binary.
//!
//! | path | what |
//! |---|---|
//! | `/` | the dashboard page |
//! | `/api/state` | the run's figures as JSON (what the page shows) |
//! | `/metrics` | Prometheus text ([`super::prometheus`]) |
//! | `/graph.svg`, `/graph.dot` | the dataflow graph, operators coloured by how busy they are |
//! | `/plot/rates.svg` | events/s over time, per worker |
//! | `/plot/NAME.svg`, `/plot/NAME.png` | a published plot (series and histograms as SVG, images as PNG) |

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;
use tiny_http::{Header, Request, Response, Server};

use super::hub::{Hub, Progress};

/// The page, with its script and style inline.
const PAGE: &str = include_str!("dashboard.html");

/// A running server: its thread, and the handle that wakes it to stop.
pub(crate) struct Running {
    pub(crate) thread: JoinHandle<()>,
    server: Arc<Server>,
}

impl Running {
    /// Wakes the server's thread, which stops once the hub is closed.
    pub(crate) fn wake(&self) {
        self.server.unblock();
    }
}

/// Starts serving `hub` at `addr` (`what` names the option in errors) until the hub closes.
pub(crate) fn serve(
    addr: SocketAddr,
    what: &'static str,
    hub: Arc<Hub>,
) -> Result<Running, String> {
    let server = Arc::new(
        Server::http(addr).map_err(|e| format!("--{what} {addr}: cannot listen there: {e}"))?,
    );
    let listening = Arc::clone(&server);
    let thread = std::thread::Builder::new()
        .name(format!("shotflow-{what}"))
        .spawn(move || {
            while !hub.closed() {
                match listening.recv_timeout(Duration::from_millis(500)) {
                    Ok(Some(request)) => answer(&hub, request),
                    Ok(None) => {}
                    Err(e) => {
                        eprintln!("shotflow: warning: {what} server at {addr}: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })
        .map_err(|e| format!("cannot start the {what} server thread: {e}"))?;
    Ok(Running { thread, server })
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("a valid header")
}

fn answer(hub: &Hub, request: Request) {
    let path = request.url().split('?').next().unwrap_or("/").to_string();
    let (status, kind, body): (u16, &str, Vec<u8>) = match path.as_str() {
        "/" | "/index.html" => (200, "text/html; charset=utf-8", PAGE.as_bytes().to_vec()),
        "/api/state" => (
            200,
            "application/json",
            serde_json::to_vec(&state(hub)).unwrap_or_default(),
        ),
        "/metrics" => (
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            super::prometheus(hub).into_bytes(),
        ),
        "/graph.dot" => (200, "text/vnd.graphviz", graph_dot(hub).into_bytes()),
        "/graph.svg" => match super::draw::graph(&graph_dot(hub)) {
            Ok(svg) => (200, "image/svg+xml", svg.into_bytes()),
            Err(e) => (500, "text/plain", e.into_bytes()),
        },
        "/plot/rates.svg" => (200, "image/svg+xml", rates_svg(hub).into_bytes()),
        other => match other.strip_prefix("/plot/").map(decode) {
            Some(name) => plot(hub, &name),
            None => (404, "text/plain", b"not found".to_vec()),
        },
    };
    let response = Response::from_data(body)
        .with_status_code(status)
        .with_header(header("Content-Type", kind))
        .with_header(header("Cache-Control", "no-store"));
    // A browser that went away is no error of the run's.
    let _ = request.respond(response);
}

fn graph_dot(hub: &Hub) -> String {
    let seconds = hub.seconds() * hub.snapshots().len().max(1) as f64;
    hub.merged_log().dot_coloured(Some(seconds))
}

fn rates_svg(hub: &Hub) -> String {
    let rates = hub.rates();
    // One x axis for all workers: the times of the worker with the most points; the others
    // are sampled at the same moments (they snapshot at the same pace).
    let x: Vec<f64> = rates
        .values()
        .max_by_key(|p| p.len())
        .map(|p| p.iter().map(|(t, _)| *t).collect())
        .unwrap_or_default();
    let lines: Vec<(String, Vec<f64>)> = rates
        .iter()
        .map(|(w, points)| {
            let y = x
                .iter()
                .map(|t| {
                    let i = points.partition_point(|(s, _)| s < t).min(points.len() - 1);
                    points.get(i).map_or(f64::NAN, |(_, r)| *r)
                })
                .collect();
            (format!("worker {w}"), y)
        })
        .collect();
    super::draw::lines("seconds", "events/s", &x, &lines)
}

fn plot(hub: &Hub, file: &str) -> (u16, &'static str, Vec<u8>) {
    let (name, extension) = file.rsplit_once('.').unwrap_or((file, ""));
    let Some(plot) = hub.plot(name) else {
        return (404, "text/plain", format!("no plot {name:?}").into_bytes());
    };
    match extension {
        "svg" => match super::draw::plot_svg(&plot) {
            Some(svg) => (200, "image/svg+xml", svg.into_bytes()),
            None => (404, "text/plain", b"an image: ask for .png".to_vec()),
        },
        "png" => match super::draw::image_png(&plot) {
            Some(png) => (200, "image/png", png),
            None => (404, "text/plain", b"not an image: ask for .svg".to_vec()),
        },
        _ => (404, "text/plain", b"ask for .svg or .png".to_vec()),
    }
}

/// A URL path segment with its %XX escapes decoded.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap() * 16 + hex(l).unwrap()) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What the page shows.
#[derive(Serialize)]
struct State {
    progress: Progress,
    line: String,
    workers: Vec<WorkerState>,
    operators: Vec<OperatorState>,
    losses: Vec<(String, u64)>,
    plots: Vec<PlotState>,
}

#[derive(Serialize)]
struct WorkerState {
    worker: usize,
    process: usize,
    events: u64,
    events_per_second: f64,
    bytes_read: u64,
    held: bool,
}

#[derive(Serialize)]
struct OperatorState {
    id: usize,
    name: String,
    busy_seconds: f64,
    busy_share: f64,
    backpressured_share: f64,
    records_in: i64,
    records_out: i64,
}

#[derive(Serialize)]
struct PlotState {
    name: String,
    kind: &'static str,
    version: u64,
}

fn state(hub: &Hub) -> State {
    let progress = hub.progress();
    let snapshots = hub.snapshots();
    let rates = hub.recent_rates();
    let totals = hub.totals();
    let merged = hub.merged_log();
    let workers_seconds = hub.seconds().max(1e-9) * snapshots.len().max(1) as f64;
    let mut operators: Vec<OperatorState> = merged
        .operators()
        .filter(|o| o.addr.len() > 1)
        .map(|o| {
            let (records_in, _, records_out, _) = merged.flow_of(o.id);
            let held = totals.held_back_ns.get(&o.name).copied().unwrap_or(0) as f64 * 1e-9;
            OperatorState {
                id: o.id,
                name: o.name.clone(),
                busy_seconds: o.busy.as_secs_f64(),
                busy_share: o.busy.as_secs_f64() / workers_seconds,
                backpressured_share: held / workers_seconds,
                records_in,
                records_out,
            }
        })
        .collect();
    operators.sort_by(|a, b| b.busy_seconds.total_cmp(&a.busy_seconds));
    State {
        line: super::text::line(&progress),
        progress,
        workers: snapshots
            .iter()
            .map(|s| WorkerState {
                worker: s.worker,
                process: s.process,
                events: s.counters.events,
                events_per_second: rates.get(&s.worker).copied().unwrap_or(0.0),
                bytes_read: s.counters.bytes_read,
                held: s.counters.held_now > 0,
            })
            .collect(),
        operators,
        losses: totals.losses.into_iter().collect(),
        plots: hub
            .plots()
            .into_iter()
            .map(|(name, plot, version)| PlotState {
                name,
                kind: plot.kind(),
                version,
            })
            .collect(),
    }
}
