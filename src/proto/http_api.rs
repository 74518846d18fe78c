//! The public API's HTTP contract (`spec/wire.md`, "public-api over HTTP"),
//! shared by the server and the CLI's client: the call paths, how a
//! Content-Type picks the encoding, the length-prefixed protobuf framing and
//! the proto3 JSON form of each message.
//!
//! Requests carry a bare message; responses carry, for protobuf, a 4-byte
//! little-endian length and the message (repeated per event on Tap), and for
//! JSON the message as proto3 JSON with default values emitted and a newline
//! (one line per event on Tap).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::proto::{common, json, public};

/// Where the CLI and the dashboard find the public API unless told:
/// `conduit run`'s (and a port-forward's) loopback address.
pub const DEFAULT_API_ADDR: &str = "127.0.0.1:8085";

pub const STAT_PATH: &str = "/api/v1/Stat";
pub const VERSION_PATH: &str = "/api/v1/Version";
pub const LIST_PODS_PATH: &str = "/api/v1/ListPods";
pub const TAP_PATH: &str = "/api/v1/Tap";
pub const STAT_SUMMARY_PATH: &str = "/api/v1/StatSummary";
pub const EDGES_PATH: &str = "/api/v1/Edges";
pub const ROUTES_PATH: &str = "/api/v1/Routes";
pub const HEALTH_PATH: &str = "/api/v1/Health";
pub const LATENCY_DISTRIBUTION_PATH: &str = "/api/v1/LatencyDistribution";
pub const LIST_POD_NODES_PATH: &str = "/api/v1/ListPodNodes";

/// The response header of a Stat or ListPods that some telemetry replicas
/// could not contribute to, e.g. `1 of 3 telemetry replicas unreachable
/// (10.0.0.7:8087: Unavailable: tcp connect error)`. A header, because
/// `MetricResponse` and `ListPodsResponse` have no field for it on the
/// wire: the body stays byte for byte what the original's clients read.
pub const PARTIAL_HEADER: &str = "conduit-partial";

pub const PROTOBUF_MEDIA_TYPE: &str = "application/octet-stream";
pub const JSON_MEDIA_TYPE: &str = "application/json";

/// Bytes of the little-endian length in front of every protobuf response.
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// How a body is encoded, from the request's Content-Type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "unsupported content type {0:?}: use {PROTOBUF_MEDIA_TYPE} (or none) for protobuf, {JSON_MEDIA_TYPE} for JSON"
)]
pub struct UnsupportedType(pub String);

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("invalid protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("a {0}-byte message does not fit the 4-byte length prefix")]
    TooLong(usize),
    #[error("a frame announces {announced} bytes but only {available} follow")]
    Truncated { announced: usize, available: usize },
}

impl Encoding {
    /// Judges a Content-Type by its media type alone (parameters such as
    /// `charset` are ignored, case does not matter): none, empty or
    /// `application/octet-stream` is protobuf, `application/json` is JSON.
    pub fn from_content_type(value: Option<&[u8]>) -> Result<Self, UnsupportedType> {
        let raw = value.unwrap_or_default();
        let text = String::from_utf8_lossy(raw);
        let media = text.split(';').next().unwrap_or_default().trim();
        if media.is_empty() || media.eq_ignore_ascii_case(PROTOBUF_MEDIA_TYPE) {
            Ok(Self::Protobuf)
        } else if media.eq_ignore_ascii_case(JSON_MEDIA_TYPE) {
            Ok(Self::Json)
        } else {
            Err(UnsupportedType(text.into_owned()))
        }
    }

    /// The Content-Type of a response in this encoding.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Protobuf => PROTOBUF_MEDIA_TYPE,
            Self::Json => JSON_MEDIA_TYPE,
        }
    }
}

/// A message of the public API that also has a proto3 JSON form: its twin in
/// [`crate::proto::json`], the same wire with serde support.
pub trait JsonForm: Message + Default + Sized {
    type Json: Message + Default + Serialize + DeserializeOwned;
}

macro_rules! json_form {
    ($($ty:ty => $json:ty),* $(,)?) => {
        $(impl JsonForm for $ty {
            type Json = $json;
        })*
    };
}

json_form! {
    public::MetricRequest => json::public::MetricRequest,
    public::MetricResponse => json::public::MetricResponse,
    public::Empty => json::public::Empty,
    public::VersionInfo => json::public::VersionInfo,
    public::ListPodsResponse => json::public::ListPodsResponse,
    public::Pod => json::public::Pod,
    public::TapRequest => json::public::TapRequest,
    common::TapEvent => json::common::TapEvent,
    public::StatSummaryRequest => json::public::StatSummaryRequest,
    public::StatSummaryResponse => json::public::StatSummaryResponse,
    public::EdgesRequest => json::public::EdgesRequest,
    public::EdgesResponse => json::public::EdgesResponse,
    public::RoutesRequest => json::public::RoutesRequest,
    public::RoutesResponse => json::public::RoutesResponse,
    public::HealthRequest => json::public::HealthRequest,
    public::HealthResponse => json::public::HealthResponse,
    public::LatencyDistributionRequest => json::public::LatencyDistributionRequest,
    public::LatencyDistributionResponse => json::public::LatencyDistributionResponse,
    public::ListPodNodesResponse => json::public::ListPodNodesResponse,
}

/// Converts between the two generated copies of a message through its wire
/// form (they share it, so this only fails on a bug).
fn transcode<A: Message, B: Message + Default>(a: &A) -> Result<B, prost::DecodeError> {
    B::decode(a.encode_to_vec().as_slice())
}

/// A request body as a message. An empty body (for JSON: only whitespace) is
/// the empty message in either encoding.
pub fn decode<M: JsonForm>(encoding: Encoding, body: &[u8]) -> Result<M, CodecError> {
    match encoding {
        Encoding::Protobuf => Ok(M::decode(body)?),
        Encoding::Json if body.trim_ascii().is_empty() => Ok(M::default()),
        Encoding::Json => {
            let json: M::Json = serde_json::from_slice(body)?;
            Ok(transcode(&json)?)
        }
    }
}

/// One response frame: the length-prefixed message, or a line of JSON.
pub fn encode<M: JsonForm>(encoding: Encoding, msg: &M) -> Result<Bytes, CodecError> {
    match encoding {
        Encoding::Protobuf => frame(msg),
        Encoding::Json => {
            let mut line = to_json(msg)?;
            line.push(b'\n');
            Ok(line.into())
        }
    }
}

/// A message as proto3 JSON (defaults emitted), without the newline.
pub fn to_json<M: JsonForm>(msg: &M) -> Result<Vec<u8>, CodecError> {
    let json: M::Json = transcode(msg)?;
    Ok(serde_json::to_vec(&json)?)
}

/// A message as a JSON value (for tools that print it inside other JSON).
pub fn to_json_value<M: JsonForm>(msg: &M) -> Result<serde_json::Value, CodecError> {
    let json: M::Json = transcode(msg)?;
    Ok(serde_json::to_value(&json)?)
}

/// The 4-byte little-endian length, then the message.
pub fn frame<M: Message>(msg: &M) -> Result<Bytes, CodecError> {
    let len = msg.encoded_len();
    let prefix = u32::try_from(len).map_err(|_| CodecError::TooLong(len))?;
    let mut buf = BytesMut::with_capacity(LENGTH_PREFIX_BYTES + len);
    buf.put_u32_le(prefix);
    msg.encode(&mut buf)
        .expect("the buffer was sized by encoded_len");
    Ok(buf.freeze())
}

/// The length the frame at the front of `buf` announces, once its prefix
/// has arrived.
pub fn announced_len(buf: &[u8]) -> Option<usize> {
    let prefix = buf.get(..LENGTH_PREFIX_BYTES)?;
    Some(u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize)
}

/// Takes the first complete frame off the front of `buf`: `Ok(None)` when
/// more bytes are needed.
pub fn unframe(buf: &mut BytesMut) -> Option<Bytes> {
    let len = announced_len(buf)?;
    if buf.len() < LENGTH_PREFIX_BYTES + len {
        return None;
    }
    buf.advance(LENGTH_PREFIX_BYTES);
    Some(buf.split_to(len).freeze())
}

/// A whole unary response body: exactly one frame.
pub fn decode_framed<M: Message + Default>(body: &[u8]) -> Result<M, CodecError> {
    let mut buf = BytesMut::from(body);
    match unframe(&mut buf) {
        Some(msg) if buf.is_empty() => Ok(M::decode(msg)?),
        _ => {
            let announced = announced_len(body).unwrap_or(0);
            Err(CodecError::Truncated {
                announced,
                available: body.len().saturating_sub(LENGTH_PREFIX_BYTES),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::public::{
        AggregationType, Histogram, HistogramLabel, HistogramValue, MetricDatapoint,
        MetricMetadata, MetricName, MetricRequest, MetricResponse, MetricSeries, MetricValue, Pod,
        TimeWindow, VersionInfo, metric_value,
    };

    #[test]
    fn media_type_alone_decides() {
        let of = |v: &str| Encoding::from_content_type(Some(v.as_bytes()));
        assert_eq!(
            Encoding::from_content_type(None).unwrap(),
            Encoding::Protobuf
        );
        assert_eq!(of("").unwrap(), Encoding::Protobuf);
        assert_eq!(of("application/octet-stream").unwrap(), Encoding::Protobuf);
        assert_eq!(of("application/json").unwrap(), Encoding::Json);
        assert_eq!(
            of("Application/JSON; charset=utf-8").unwrap(),
            Encoding::Json
        );
        assert_eq!(of(" application/json ;q=1").unwrap(), Encoding::Json);
        assert!(of("text/plain").is_err());
        assert!(of("application/jsonx").is_err());
        assert!(of("application/x-protobuf").is_err());
    }

    #[test]
    fn frames_are_little_endian_length_prefixed() {
        let v = VersionInfo {
            go_version: "r".into(),
            build_date: String::new(),
            release_version: "1".into(),
        };
        let framed = frame(&v).unwrap();
        assert_eq!(&framed[..], b"\x06\x00\x00\x00\x0a\x01r\x1a\x011");
        assert_eq!(decode_framed::<VersionInfo>(&framed).unwrap(), v);
        assert!(decode_framed::<VersionInfo>(&framed[..5]).is_err());
        assert_eq!(&frame(&public::Empty {}).unwrap()[..], b"\0\0\0\0");
    }

    #[test]
    fn unframe_waits_for_whole_frames() {
        let mut buf = BytesMut::from(&b"\x02\x00\x00\x00\x08"[..]);
        assert_eq!(unframe(&mut buf), None);
        buf.extend_from_slice(b"\x01\x00\x00");
        assert_eq!(unframe(&mut buf).as_deref(), Some(&b"\x08\x01"[..]));
        assert_eq!(unframe(&mut buf), None);
        assert_eq!(&buf[..], b"\x00\x00");
    }

    #[test]
    fn json_emits_defaults_with_the_protos_names() {
        let line = encode(Encoding::Json, &VersionInfo::default()).unwrap();
        assert_eq!(
            &line[..],
            br#"{"goVersion":"","buildDate":"","releaseVersion":""}
"#
        );
        let rsp = MetricResponse {
            metrics: vec![MetricSeries {
                name: MetricName::Latency as i32,
                metadata: None,
                datapoints: vec![MetricDatapoint {
                    value: Some(MetricValue {
                        value: Some(metric_value::Value::Histogram(Histogram {
                            values: vec![HistogramValue {
                                label: HistogramLabel::P99 as i32,
                                value: 12,
                            }],
                        })),
                    }),
                    timestamp_ms: 1_700_000_000_000,
                }],
            }],
        };
        assert_eq!(
            String::from_utf8(to_json(&rsp).unwrap()).unwrap(),
            r#"{"metrics":[{"name":"LATENCY","datapoints":[{"value":{"histogram":{"values":[{"label":"P99","value":"12"}]}},"timestampMs":"1700000000000"}]}]}"#,
            "enums by name, int64 as strings, unset messages left out"
        );
    }

    #[test]
    fn json_requests_accept_both_proto3_spellings() {
        let by_name: MetricRequest = decode(
            Encoding::Json,
            br#"{"metrics":["LATENCY", 2],"window":"ONE_HOUR","groupBy":1,
                 "filterBy":{"targetPod":"ns/p"},"summarize":true}"#,
        )
        .unwrap();
        assert_eq!(
            by_name,
            MetricRequest {
                metrics: vec![MetricName::Latency as i32, MetricName::SuccessRate as i32],
                window: TimeWindow::OneHour as i32,
                group_by: AggregationType::TargetDeploy as i32,
                filter_by: Some(MetricMetadata {
                    target_pod: "ns/p".into(),
                    ..Default::default()
                }),
                summarize: true,
            }
        );
        assert_eq!(
            decode::<MetricRequest>(Encoding::Json, b" \n").unwrap(),
            MetricRequest::default()
        );
        assert!(decode::<MetricRequest>(Encoding::Json, br#"{"window":"NEVER"}"#).is_err());
        assert!(decode::<MetricRequest>(Encoding::Json, br#"{"nope":1}"#).is_err());
        assert!(decode::<MetricRequest>(Encoding::Protobuf, b"\xff\xff").is_err());
    }

    #[test]
    fn durations_and_int64_in_proto3_form() {
        let pod = Pod {
            name: "ns/p".into(),
            since_last_report: Some(prost_types::Duration {
                seconds: 1,
                nanos: 500_000_000,
            }),
            ..Default::default()
        };
        let json = String::from_utf8(to_json(&pod).unwrap()).unwrap();
        assert!(json.contains(r#""sinceLastReport":"1.500s""#), "{json}");
        assert!(json.contains(r#""podIP":"""#), "{json}");
        let back: Pod = decode(Encoding::Json, json.as_bytes()).unwrap();
        assert_eq!(back, pod);
    }
}
