//! Energy meter readings: `POST /v1/meter/readings` and an MQTT topic, both
//! carrying the JSON of `docs/meters.md`.
//!
//! Each reading goes through two stages:
//!
//! 1. **Stateless checks, here**: the JSON shape, the field ranges that need
//!    no history ([`meter::interval_sane`], [`meter::register_monotonic`]
//!    without a previous reading) and the meter's signature over the protocol
//!    envelope ([`meter::signed_by_meter`]). A failure answers at once.
//! 2. **Stateful rules, by the node**: the reading goes as a
//!    [`MeterSubmission`] into the bounded channel the daemon gives
//!    [`MeterIngest::new`]; whoever owns the meters' state (the node) runs
//!    [`meter::check`] and answers through the submission's `reply` with
//!    the attestation id or a [`MeterRejection`].
//!
//! A full channel is not waited on: the reading is refused with 503 and
//! counted (`queue_full`), and the meter sends it again later — nothing is
//! dropped without the sender knowing.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use meshd_protocol::envelope::{Domain, Envelope, VERSION};
use meshd_protocol::hash::Hash32;
use meshd_protocol::message::{Kind, Message, MeterReading, MeterStatus};
use meshd_protocol::rules::meter::{self, Params, Reason};
use meshd_protocol::{MeterId, codec};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

/// The route of the readings endpoint.
pub const PATH: &str = "/v1/meter/readings";

/// Largest request body, bytes. 4 KiB: a reading's JSON is about 400 bytes;
/// anything much larger is not a reading and is refused before parsing.
pub const MAX_BODY_LEN: usize = 4096;

/// A reading for the node to check against the meter's state.
#[derive(Debug)]
pub struct MeterSubmission {
    /// The meter-signed envelope of kind [`Kind::MeterReading`]; its
    /// signature and stateless ranges are already checked.
    pub reading: Envelope,
    /// The answer: the id of the attestation (or of the reading) accepted,
    /// or why not.
    pub reply: oneshot::Sender<Result<Hash32, MeterRejection>>,
}

/// Why the node refused a reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MeterRejection {
    /// A meter rule failed.
    #[error("meter rule failed: {0}")]
    Rule(Reason),
    /// The meter is not registered with this network.
    #[error("the meter is not registered")]
    UnknownMeter,
    /// The node cannot take readings now (not synced, shutting down).
    #[error("the node cannot take readings now")]
    Unavailable,
}

/// A meter's status as written in JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusJson {
    /// [`MeterStatus::Ok`].
    Ok,
    /// [`MeterStatus::Estimated`].
    Estimated,
    /// [`MeterStatus::Fault`].
    Fault,
}

impl From<StatusJson> for MeterStatus {
    fn from(status: StatusJson) -> MeterStatus {
        match status {
            StatusJson::Ok => MeterStatus::Ok,
            StatusJson::Estimated => MeterStatus::Estimated,
            StatusJson::Fault => MeterStatus::Fault,
        }
    }
}

/// The JSON of one reading (`docs/meters.md`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadingJson {
    /// The meter's id, `12D3KooW…` (its ed25519 public key).
    pub meter: MeterId,
    /// Strictly increasing per meter.
    pub sequence: u64,
    /// Interval start, Unix s.
    pub interval_start_s: u64,
    /// Interval end, Unix s.
    pub interval_end_s: u64,
    /// Energy register at the interval start, Wh.
    pub register_start_wh: u64,
    /// Energy register at the interval end, Wh.
    pub register_end_wh: u64,
    /// `"ok"`, `"estimated"` or `"fault"`.
    pub status: StatusJson,
    /// The meter's ed25519 signature over the envelope's signed bytes, 128
    /// hex digits (optionally `0x`-prefixed).
    pub signature: String,
}

impl ReadingJson {
    /// The reading these fields describe.
    pub fn reading(&self) -> MeterReading {
        MeterReading {
            meter: self.meter,
            sequence: self.sequence,
            interval_start_s: self.interval_start_s,
            interval_end_s: self.interval_end_s,
            register_start_wh: self.register_start_wh,
            register_end_wh: self.register_end_wh,
            status: self.status.into(),
        }
    }

    /// The JSON of `reading` with `signature`, as a meter writes it.
    pub fn new(reading: &MeterReading, signature: &[u8; 64]) -> ReadingJson {
        ReadingJson {
            meter: reading.meter,
            sequence: reading.sequence,
            interval_start_s: reading.interval_start_s,
            interval_end_s: reading.interval_end_s,
            register_start_wh: reading.register_start_wh,
            register_end_wh: reading.register_end_wh,
            status: match reading.status {
                MeterStatus::Ok => StatusJson::Ok,
                MeterStatus::Estimated => StatusJson::Estimated,
                MeterStatus::Fault => StatusJson::Fault,
            },
            signature: hex::encode(signature),
        }
    }
}

/// The bytes a meter signs for `reading` in `domain`: the envelope's signed
/// bytes ([`Domain::sign_bytes`] of version, kind and the encoded body).
pub fn signed_bytes(domain: &Domain, reading: &MeterReading) -> Result<Vec<u8>, codec::CodecError> {
    let body = codec::encode_body(&Message::MeterReading(reading.clone()))?;
    Ok(domain.sign_bytes(VERSION, Kind::MeterReading, &body))
}

/// Why a reading was refused, as answered: the HTTP status and the JSON
/// body `{ "error", "rule", "message" }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// The HTTP status code.
    #[serde(skip)]
    pub status: u16,
    /// A stable code: `malformed_json`, `bad_signature_encoding`,
    /// `rule_failed`, `unknown_meter`, `queue_full`, `unavailable`.
    pub error: String,
    /// The meter rule that failed ([`Reason::as_str`]), when one did.
    pub rule: Option<String>,
    /// A human-readable explanation.
    pub message: String,
}

impl Refusal {
    fn new(status: StatusCode, error: &str, rule: Option<Reason>, message: String) -> Refusal {
        Refusal {
            status: status.as_u16(),
            error: error.to_owned(),
            rule: rule.map(|rule| rule.as_str().to_owned()),
            message,
        }
    }

    fn rule(reason: Reason) -> Refusal {
        // A rule that compares with the meter's history conflicts with the
        // state; the others make the reading itself unacceptable.
        let status = match reason {
            Reason::SequenceNotIncreasing | Reason::IntervalOverlap | Reason::RegisterWentBack => {
                StatusCode::CONFLICT
            }
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        Refusal::new(
            status,
            "rule_failed",
            Some(reason),
            format!("the reading breaks a meter rule: {reason}"),
        )
    }

    /// The metrics label of this refusal: the rule, else the error code.
    pub fn label(&self) -> String {
        self.rule.clone().unwrap_or_else(|| self.error.clone())
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        (status, axum::Json(self)).into_response()
    }
}

/// The answer to an accepted reading: `{ "id": "0x…" }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptedJson {
    /// The id the node gave the accepted reading's attestation.
    pub id: Hash32,
}

type LabelSet = Vec<(&'static str, String)>;

/// Counters of the meter ingest, by source (`http`, `mqtt`). Clones share them.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    /// Readings received, valid or not, by `source`.
    pub received: Family<LabelSet, Counter>,
    /// Readings the node accepted, by `source`.
    pub accepted: Family<LabelSet, Counter>,
    /// Readings refused, by `source` and `reason` (a rule or an error code).
    pub rejected: Family<LabelSet, Counter>,
}

impl Metrics {
    /// Registers every counter into `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register("meter_readings_received", "Meter readings received", self.received.clone());
        registry.register("meter_readings_accepted", "Meter readings accepted", self.accepted.clone());
        registry.register(
            "meter_readings_rejected",
            "Meter readings refused, by reason",
            self.rejected.clone(),
        );
    }

    /// How many readings from `source` were refused for `reason`.
    pub fn rejected(&self, source: &'static str, reason: &str) -> u64 {
        self.rejected.get_or_create(&vec![("source", source.to_owned()), ("reason", reason.to_owned())]).get()
    }

    /// How many readings from `source` were accepted.
    pub fn accepted(&self, source: &'static str) -> u64 {
        self.accepted.get_or_create(&vec![("source", source.to_owned())]).get()
    }
}

/// The meter ingest shared by the HTTP route and the MQTT subscriber;
/// cheap to clone.
#[derive(Clone, Debug)]
pub struct MeterIngest {
    domain: Domain,
    params: Params,
    submit: mpsc::Sender<MeterSubmission>,
    metrics: Metrics,
}

impl MeterIngest {
    /// Checks readings signed in `domain` (the network's) and sends those
    /// that pass to `submit`. `params` are the network's meter rule
    /// parameters (the interval length bound is checked here).
    pub fn new(
        domain: Domain,
        params: Params,
        submit: mpsc::Sender<MeterSubmission>,
        metrics: Metrics,
    ) -> Self {
        MeterIngest { domain, params, submit, metrics }
    }

    /// The stateless checks: the envelope the meter signed, or why not.
    pub fn verify(&self, json: &[u8]) -> Result<Envelope, Refusal> {
        let parsed: ReadingJson = serde_json::from_slice(json).map_err(|error| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                None,
                format!("not a meter reading (see docs/meters.md): {error}"),
            )
        })?;
        let mut signature = [0u8; 64];
        let digits = parsed.signature.strip_prefix("0x").unwrap_or(&parsed.signature);
        hex::decode_to_slice(digits, &mut signature).map_err(|_| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                "bad_signature_encoding",
                None,
                "`signature` must be 64 bytes as 128 hex digits".to_owned(),
            )
        })?;
        let reading = parsed.reading();
        meter::interval_sane(&reading, &self.params).map_err(Refusal::rule)?;
        meter::register_monotonic(&reading, None).map_err(Refusal::rule)?;
        let body = codec::encode_body(&Message::MeterReading(reading.clone())).map_err(|error| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                None,
                format!("unencodable reading: {error}"),
            )
        })?;
        let envelope =
            Envelope { version: VERSION, kind: Kind::MeterReading, body, signer: reading.meter.0, signature };
        meter::signed_by_meter(&self.domain, &envelope, &reading).map_err(Refusal::rule)?;
        Ok(envelope)
    }

    /// Checks `json` and, when it passes, submits it and waits for the
    /// node's answer. Counts the outcome under `source`.
    pub async fn ingest(&self, source: &'static str, json: &[u8]) -> Result<Hash32, Refusal> {
        self.metrics.received.get_or_create(&vec![("source", source.to_owned())]).inc();
        let result = self.verify_and_submit(json).await;
        match &result {
            Ok(_) => {
                self.metrics.accepted.get_or_create(&vec![("source", source.to_owned())]).inc();
            }
            Err(refusal) => {
                tracing::debug!(source, error = %refusal.error, message = %refusal.message, "meter reading refused");
                self.metrics
                    .rejected
                    .get_or_create(&vec![("source", source.to_owned()), ("reason", refusal.label())])
                    .inc();
            }
        }
        result
    }

    async fn verify_and_submit(&self, json: &[u8]) -> Result<Hash32, Refusal> {
        let reading = self.verify(json)?;
        let (reply, answer) = oneshot::channel();
        let unavailable = || {
            Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                None,
                "the node is not taking readings; send it again later".to_owned(),
            )
        };
        self.submit.try_send(MeterSubmission { reading, reply }).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "queue_full",
                None,
                "too many readings waiting; send it again later".to_owned(),
            ),
            mpsc::error::TrySendError::Closed(_) => unavailable(),
        })?;
        match answer.await {
            Ok(Ok(id)) => Ok(id),
            Ok(Err(MeterRejection::Rule(reason))) => Err(Refusal::rule(reason)),
            Ok(Err(MeterRejection::UnknownMeter)) => Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "unknown_meter",
                None,
                "the meter is not registered with this network".to_owned(),
            )),
            Ok(Err(MeterRejection::Unavailable)) | Err(_) => Err(unavailable()),
        }
    }
}

/// The `POST /v1/meter/readings` route, for the daemon to merge into its API.
pub fn router(ingest: MeterIngest) -> Router {
    Router::new()
        .route(PATH, post(post_reading))
        .layer(DefaultBodyLimit::max(MAX_BODY_LEN))
        .with_state(ingest)
}

async fn post_reading(State(ingest): State<MeterIngest>, body: Bytes) -> Response {
    match ingest.ingest("http", &body).await {
        Ok(id) => (StatusCode::OK, axum::Json(AcceptedJson { id })).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

/// Readings received over MQTT and waiting for their checks. 64: the
/// subscriber keeps polling the broker (keep-alives) while the node answers;
/// beyond this, readings are refused as `queue_full` and counted.
pub const MQTT_QUEUE: usize = 64;

/// Subscribes to `topic` on the broker of `options` and ingests every
/// message as one reading's JSON, until `cancel` fires. Reconnects with
/// [`Backoff`](super::mqtt::Backoff); outcomes are counted under source
/// `mqtt` (MQTT has no answer to the meter: it re-sends what was not
/// accepted, which the sequence rule makes harmless).
pub async fn run_mqtt(
    ingest: MeterIngest,
    options: rumqttc::MqttOptions,
    topic: String,
    cancel: tokio_util::sync::CancellationToken,
) {
    use rumqttc::{AsyncClient, Event, Incoming, QoS};

    let (client, mut events) = AsyncClient::new(options, super::mqtt::REQUESTS_CAPACITY);
    let (queue, mut queued) = mpsc::channel::<Bytes>(MQTT_QUEUE);
    let worker = {
        let ingest = ingest.clone();
        tokio::spawn(async move {
            while let Some(payload) = queued.recv().await {
                let _ = ingest.ingest("mqtt", &payload).await;
            }
        })
    };
    let mut backoff = super::mqtt::Backoff::default();
    loop {
        let event = tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            event = events.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                backoff.reset();
                if let Err(error) = client.try_subscribe(topic.clone(), QoS::AtLeastOnce) {
                    tracing::warn!(%error, %topic, "could not subscribe to meter readings");
                }
            }
            Ok(Event::Incoming(Incoming::Publish(publish))) if publish.topic == topic => {
                if queue.try_send(publish.payload).is_err() {
                    ingest.metrics.received.get_or_create(&vec![("source", "mqtt".to_owned())]).inc();
                    ingest
                        .metrics
                        .rejected
                        .get_or_create(&vec![
                            ("source", "mqtt".to_owned()),
                            ("reason", "queue_full".to_owned()),
                        ])
                        .inc();
                }
            }
            Ok(_) => {}
            Err(error) => {
                let delay = backoff.next_delay();
                tracing::warn!(%error, ?delay, "meter readings broker connection failed; retrying");
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    drop(queue);
    let _ = worker.await;
}
