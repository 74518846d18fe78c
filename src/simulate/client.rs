//! The Report client: real gRPC over tonic, sending reports encoded ahead of
//! time.
//!
//! On a small machine the load generator shares the cores with the server it
//! measures, so it must be cheap per call: it sends a pod's header bytes
//! followed by a pre-encoded body, which is exactly the encoding
//! `TelemetryClient::report` would produce for the whole `ReportRequest`
//! (see `report::header`), without cloning and re-encoding the message.

use prost::bytes::{BufMut, Bytes};
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Request, Status};

use crate::proto::codec::REPORT_PATH;
use crate::proto::proxy::telemetry::ReportResponse;

/// A `ReportRequest` as encoded bytes: a pod's identity, then a body.
#[derive(Clone, Debug)]
pub struct EncodedReport {
    pub header: Bytes,
    pub body: Bytes,
}

impl EncodedReport {
    pub fn len(&self) -> usize {
        self.header.len() + self.body.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A `Telemetry` client over one channel (one HTTP/2 connection).
#[derive(Clone, Debug)]
pub struct ReportClient {
    grpc: tonic::client::Grpc<Channel>,
}

impl ReportClient {
    pub fn new(channel: Channel) -> Self {
        Self {
            grpc: tonic::client::Grpc::new(channel),
        }
    }

    pub async fn report(&mut self, report: EncodedReport) -> Result<ReportResponse, Status> {
        self.grpc
            .ready()
            .await
            .map_err(|e| Status::unavailable(format!("service was not ready: {e}")))?;
        let path = PathAndQuery::from_static(REPORT_PATH);
        let response = self
            .grpc
            .unary(Request::new(report), path, PreEncodedCodec)
            .await?;
        Ok(response.into_inner())
    }
}

/// Encodes by copying the pre-encoded bytes; decodes the (empty) response
/// with prost.
struct PreEncodedCodec;

impl Codec for PreEncodedCodec {
    type Encode = EncodedReport;
    type Decode = ReportResponse;
    type Encoder = PreEncoded;
    type Decoder = tonic_prost::ProstDecoder<ReportResponse>;

    fn encoder(&mut self) -> Self::Encoder {
        PreEncoded
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::default()
    }
}

struct PreEncoded;

impl Encoder for PreEncoded {
    type Item = EncodedReport;
    type Error = Status;

    fn encode(&mut self, item: EncodedReport, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item.header);
        dst.put_slice(&item.body);
        Ok(())
    }
}
