//! The proxies' `Report` method: its path, and the two codecs a server of
//! it decodes with.
//!
//! [`SliceCodec`] is the generated server's (`build.rs` names it).
//! tonic's prost codec decodes straight from its receive buffer through the
//! `Buf` trait, paying a bookkeeping call per field; a report is thousands
//! of small fields, and that cost showed as 8% of the server's CPU under
//! load. This codec takes the message as one contiguous slice and decodes
//! from it, which is prost's fast path. It also answers a body that is not
//! a `ReportRequest` with INVALID_ARGUMENT (tonic's says INTERNAL), as a
//! caller is owed.

use std::marker::PhantomData;

use bytes::{Buf as _, Bytes};
use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

use super::proxy::telemetry::ReportResponse;

/// The method's full path, as the proxies call it.
pub const REPORT_PATH: &str = "/conduit.proxy.telemetry.Telemetry/Report";

/// The internal method proxy-api forwards reports over
/// (`proto/controller/ingest/ingest.proto`).
pub const FORWARD_PATH: &str = "/conduit.controller.ingest.Ingest/Reports";

/// The response header of [`FORWARD_PATH`] that announces the largest report
/// telemetry applies (its `-max-report-bytes`), so the forwarder refuses
/// larger ones as telemetry would without sending them.
pub const MAX_REPORT_BYTES_HEADER: &str = "conduit-max-report-bytes";

/// The first word of the message of every undecodable-body error (one word:
/// the header percent-encodes spaces), which the gRPC layer counts.
pub const UNDECODABLE: &str = "undecodable";

#[derive(Debug)]
pub struct SliceCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for SliceCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for SliceCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = tonic_prost::ProstEncoder<T>;
    type Decoder = SliceDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        SliceDecoder(PhantomData)
    }
}

#[derive(Debug)]
pub struct SliceDecoder<U>(PhantomData<U>);

impl<U: Message + Default> Decoder for SliceDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        let bytes = buf.copy_to_bytes(buf.remaining());
        U::decode(&bytes[..])
            .map(Some)
            .map_err(|e| Status::invalid_argument(format!("{UNDECODABLE} message: {e}")))
    }
}

/// Hands the request body over undecoded, as one contiguous slice (for a
/// server that decodes it itself); encodes the (empty) response with prost.
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = ReportResponse;
    type Decode = Bytes;
    type Encoder = tonic_prost::ProstEncoder<ReportResponse>;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}

pub struct RawDecoder;

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(buf.copy_to_bytes(buf.remaining())))
    }
}

/// A client's side of [`RawCodec`]: sends a report body that is already
/// encoded, as is (a forwarder that never decodes it); decodes the (empty)
/// response with prost.
pub struct RawClientCodec;

impl Codec for RawClientCodec {
    type Encode = Bytes;
    type Decode = ReportResponse;
    type Encoder = RawEncoder;
    type Decoder = tonic_prost::ProstDecoder<ReportResponse>;

    fn encoder(&mut self) -> Self::Encoder {
        RawEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::new(BufferSettings::default())
    }
}

pub struct RawEncoder;

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        bytes::BufMut::put_slice(buf, &item);
        Ok(())
    }
}
