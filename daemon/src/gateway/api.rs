//! The local HTTP API: `GET /v1/status` (JSON) and `GET /metrics`
//! (Prometheus text, the daemon's one registry).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::status::Status;

/// Content type of the Prometheus text exposition (OpenMetrics).
const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the handlers read.
#[derive(Clone, Debug)]
pub struct ApiState {
    /// The latest status, published by the gateway's loop.
    pub status: watch::Receiver<Status>,
    /// Every metric of the daemon.
    pub registry: Arc<Registry>,
}

/// The API's routes; more (meter readings) are merged in by the caller.
pub fn router(state: ApiState) -> Router {
    Router::new().route("/v1/status", get(status)).route("/metrics", get(metrics)).with_state(state)
}

async fn status(State(state): State<ApiState>) -> axum::Json<Status> {
    axum::Json(state.status.borrow().clone())
}

async fn metrics(State(state): State<ApiState>) -> Response {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &state.registry) {
        Ok(()) => ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "metrics could not be encoded").into_response(),
    }
}

/// Binds `address`; fails with a message naming it when the port is taken.
pub async fn bind(address: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on api.listen = {address}: {e}; fix: choose a free port for `api.listen`"
        )
    })
}

/// Serves `router` on `listener` until `shutdown`.
pub async fn serve(listener: tokio::net::TcpListener, router: Router, shutdown: CancellationToken) {
    let result = axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned()).await;
    if let Err(error) = result {
        tracing::error!(%error, "the API server stopped");
    }
}

/// Reads `path` from a running daemon's API at `address` with a plain
/// HTTP/1.1 GET (loopback, no TLS); returns the status code and body.
pub fn get_blocking(address: SocketAddr, path: &str, timeout: Duration) -> anyhow::Result<(u16, String)> {
    request_blocking(address, "GET", path, None, timeout)
}

/// Sends `json` to `path` of a running daemon's API with a plain HTTP/1.1
/// POST (loopback, no TLS); returns the status code and body.
pub fn post_blocking(
    address: SocketAddr,
    path: &str,
    json: &str,
    timeout: Duration,
) -> anyhow::Result<(u16, String)> {
    request_blocking(address, "POST", path, Some(json), timeout)
}

fn request_blocking(
    address: SocketAddr,
    method: &str,
    path: &str,
    json: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&address, timeout).map_err(|e| {
        anyhow::anyhow!(
            "cannot reach the daemon's API at {address}: {e}; is `meshd run` running with this api.listen?"
        )
    })?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n")?;
    match json {
        Some(body) => {
            write!(stream, "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len())?
        }
        None => write!(stream, "\r\n")?,
    }
    let mut raw = Vec::new();
    // A status is a few KiB; 16 MiB bounds a misbehaving server.
    stream.take(16 << 20).read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) =
        text.split_once("\r\n\r\n").ok_or_else(|| anyhow::anyhow!("malformed HTTP response"))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| anyhow::anyhow!("malformed HTTP status line"))?;
    let chunked = head.lines().any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding: chunked"));
    let body = if chunked { dechunk(body) } else { body.to_owned() };
    Ok((code, body))
}

/// Joins the chunks of a chunked HTTP body.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        let (Some(chunk), Some(tail)) = (rest.get(..size), rest.get(size..)) else { break };
        if size == 0 {
            break;
        }
        out.push_str(chunk);
        body = tail.trim_start_matches("\r\n");
    }
    out
}
