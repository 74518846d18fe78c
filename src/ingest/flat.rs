//! A `ReportRequest` decoded straight from its wire bytes into flat,
//! reusable tables: no allocation per field, strings left in the input as
//! byte ranges (checked to be UTF-8).
//!
//! Why by hand: prost builds the whole message tree (a `Vec` per repeated
//! field, a `String` per string), and for a medium report that decode costs
//! more than everything the ingester then does with it. The proxies' report
//! is the hot path of the product; this decoder reads it in one pass into
//! tables whose capacity is kept from report to report, so a steady stream
//! of reports allocates nothing here.
//!
//! Semantics follow prost's (proto3): unknown fields are skipped, a
//! repeated singular field's later occurrence overwrites scalars and merges
//! into messages, integers narrower than 64 bits are truncated, a wrong
//! wire type for a known field is an error, and strings must be UTF-8.
//! `tests::agrees_with_prost` holds it to that.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;

/// Deepest nesting the decoder follows, counted across the whole message:
/// every sub-message and every unknown group skipped inside it is one
/// level, as prost's recursion limit counts them, so both refuse the same
/// inputs (and a crafted report cannot make the skip recurse further).
const MAX_DEPTH: u32 = 100;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("truncated message")]
    Truncated,
    #[error("invalid varint")]
    BadVarint,
    #[error("invalid wire type {wire_type} for field {field}")]
    WireType { field: u32, wire_type: u32 },
    #[error("invalid tag")]
    BadTag,
    #[error("string field {0} is not UTF-8")]
    NotUtf8(u32),
    #[error("unbalanced groups")]
    Groups,
    #[error("nested more than {MAX_DEPTH} levels deep")]
    TooDeep,
}

/// A method as the report names it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Method {
    #[default]
    None,
    Registered(i32),
    /// The unregistered name, as a range of the input.
    Unregistered(Range32),
}

/// How a stream ended (`EosCtx.end`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Grpc(u32),
    Reset(u32),
    Other,
}

/// A byte range of the input (reports are at most a few MiB).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Range32 {
    pub start: u32,
    pub end: u32,
}

impl Range32 {
    fn of(r: Range<usize>) -> Self {
        Self {
            start: r.start as u32,
            end: r.end as u32,
        }
    }

    fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// An index range into one of the tables.
pub type Span = Range<u32>;

#[derive(Clone, Debug, Default)]
pub struct Scope {
    pub has_ctx: bool,
    pub source_ip: Option<IpAddr>,
    pub target_ip: Option<IpAddr>,
    pub method: Method,
    pub path: Range32,
    pub count: u32,
    pub responses: Span,
}

#[derive(Clone, Debug, Default)]
pub struct Response {
    pub has_ctx: bool,
    pub status: u32,
    pub latencies: Span,
    pub ends: Span,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Eos {
    pub has_ctx: bool,
    pub end: Option<End>,
    pub streams: u32,
}

#[derive(Clone, Debug, Default)]
pub struct Transport {
    pub ip: Option<IpAddr>,
    pub connects: u32,
    pub disconnects: Span,
}

/// One report, decoded. `clear` keeps the tables' capacity.
#[derive(Debug, Default)]
pub struct FlatReport {
    pub has_process: bool,
    pub namespace: Range32,
    pub instance: Range32,
    pub proxy: i32,
    pub scopes: Vec<Scope>,
    pub responses: Vec<Response>,
    /// `(latency in tenths of a ms, count)`, each response's in its order.
    pub latencies: Vec<(u32, u32)>,
    pub ends: Vec<Eos>,
    pub server_transports: Vec<Transport>,
    pub client_transports: Vec<Transport>,
    /// `(duration_ms, bytes_sent)`.
    pub disconnects: Vec<(u64, u64)>,
}

/// A decoded report and the bytes its strings live in.
#[derive(Clone, Copy)]
pub struct Report<'a> {
    pub flat: &'a FlatReport,
    pub bytes: &'a [u8],
}

impl<'a> Report<'a> {
    /// The text of a string range (checked UTF-8 when decoded).
    pub fn str(&self, r: Range32) -> &'a str {
        std::str::from_utf8(&self.bytes[r.range()]).unwrap_or_default()
    }

    pub fn responses(&self, scope: &Scope) -> &'a [Response] {
        &self.flat.responses[span(&scope.responses)]
    }

    pub fn latencies(&self, response: &Response) -> &'a [(u32, u32)] {
        &self.flat.latencies[span(&response.latencies)]
    }

    pub fn ends(&self, response: &Response) -> &'a [Eos] {
        &self.flat.ends[span(&response.ends)]
    }

    pub fn disconnects(&self, transport: &Transport) -> &'a [(u64, u64)] {
        &self.flat.disconnects[span(&transport.disconnects)]
    }
}

fn span(s: &Span) -> Range<usize> {
    s.start as usize..s.end as usize
}

impl FlatReport {
    pub fn clear(&mut self) {
        self.has_process = false;
        self.namespace = Range32::default();
        self.instance = Range32::default();
        self.proxy = 0;
        self.scopes.clear();
        self.responses.clear();
        self.latencies.clear();
        self.ends.clear();
        self.server_transports.clear();
        self.client_transports.clear();
        self.disconnects.clear();
    }

    /// Decodes `bytes` (a whole `ReportRequest`) into `self`, replacing
    /// what it held. On error `self` holds a partial report; don't use it.
    pub fn decode(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        self.clear();
        let mut r = Reader::new(bytes);
        while let Some((field, wt)) = r.key()? {
            match field {
                1 => {
                    let mut m = r.message(field, wt)?;
                    self.has_process = true;
                    self.process(&mut m)?;
                }
                2 => self.proxy = r.varint_field(field, wt)? as i32,
                3 | 4 => {
                    let mut m = r.message(field, wt)?;
                    let t = self.transport(&mut m, field == 4)?;
                    if field == 3 {
                        self.server_transports.push(t);
                    } else {
                        self.client_transports.push(t);
                    }
                }
                5 => {
                    let mut m = r.message(field, wt)?;
                    let scope = self.scope(&mut m)?;
                    self.scopes.push(scope);
                }
                _ => r.skip(field, wt)?,
            }
        }
        Ok(())
    }

    fn process(&mut self, r: &mut Reader<'_>) -> Result<(), WireError> {
        while let Some((field, wt)) = r.key()? {
            match field {
                1 => {
                    r.string(field, wt)?;
                }
                2 => self.instance = r.string(field, wt)?,
                3 => self.namespace = r.string(field, wt)?,
                _ => r.skip(field, wt)?,
            }
        }
        Ok(())
    }

    /// A ServerTransport (`client == false`: field 1 is an IPAddress) or a
    /// ClientTransport (field 1 is a TcpAddress).
    fn transport(&mut self, r: &mut Reader<'_>, client: bool) -> Result<Transport, WireError> {
        let start = self.disconnects.len() as u32;
        let mut t = Transport::default();
        while let Some((field, wt)) = r.key()? {
            match field {
                1 => {
                    let mut m = r.message(field, wt)?;
                    if client {
                        tcp_address(&mut m, &mut t.ip)?;
                    } else {
                        ip_address(&mut m, &mut t.ip)?;
                    }
                }
                2 => t.connects = r.varint_field(field, wt)? as u32,
                3 => {
                    let [duration, bytes] = r.message(field, wt)?.varints()?;
                    self.disconnects.push((duration, bytes));
                }
                _ => r.skip(field, wt)?,
            }
        }
        t.disconnects = start..self.disconnects.len() as u32;
        Ok(t)
    }

    fn scope(&mut self, r: &mut Reader<'_>) -> Result<Scope, WireError> {
        let start = self.responses.len() as u32;
        let mut s = Scope::default();
        while let Some((field, wt)) = r.key()? {
            match field {
                1 => {
                    let mut m = r.message(field, wt)?;
                    s.has_ctx = true;
                    request_ctx(&mut m, &mut s)?;
                }
                2 => s.count = r.varint_field(field, wt)? as u32,
                3 => {
                    let mut m = r.message(field, wt)?;
                    let response = self.response(&mut m)?;
                    self.responses.push(response);
                }
                _ => r.skip(field, wt)?,
            }
        }
        s.responses = start..self.responses.len() as u32;
        Ok(s)
    }

    fn response(&mut self, r: &mut Reader<'_>) -> Result<Response, WireError> {
        let latencies = self.latencies.len() as u32;
        let ends = self.ends.len() as u32;
        let mut rsp = Response::default();
        while let Some((field, wt)) = r.key()? {
            match field {
                1 => {
                    let [status] = r.message(field, wt)?.varints()?;
                    rsp.has_ctx = true;
                    rsp.status = status as u32;
                }
                2 => {
                    let [latency, count] = r.message(field, wt)?.varints()?;
                    self.latencies.push((latency as u32, count as u32));
                }
                3 => {
                    let mut m = r.message(field, wt)?;
                    let eos = eos_scope(&mut m)?;
                    self.ends.push(eos);
                }
                _ => r.skip(field, wt)?,
            }
        }
        rsp.latencies = latencies..self.latencies.len() as u32;
        rsp.ends = ends..self.ends.len() as u32;
        Ok(rsp)
    }
}

fn request_ctx(r: &mut Reader<'_>, s: &mut Scope) -> Result<(), WireError> {
    while let Some((field, wt)) = r.key()? {
        match field {
            1 => ip_address(&mut r.message(field, wt)?, &mut s.source_ip)?,
            2 => tcp_address(&mut r.message(field, wt)?, &mut s.target_ip)?,
            3 => {
                r.string(field, wt)?;
            }
            4 => {
                let mut m = r.message(field, wt)?;
                while let Some((field, wt)) = m.key()? {
                    match field {
                        1 => s.method = Method::Registered(m.varint_field(field, wt)? as i32),
                        2 => s.method = Method::Unregistered(m.string(field, wt)?),
                        _ => m.skip(field, wt)?,
                    }
                }
            }
            5 => s.path = r.string(field, wt)?,
            _ => r.skip(field, wt)?,
        }
    }
    Ok(())
}

fn eos_scope(r: &mut Reader<'_>) -> Result<Eos, WireError> {
    let mut eos = Eos::default();
    while let Some((field, wt)) = r.key()? {
        match field {
            1 => {
                let mut m = r.message(field, wt)?;
                eos.has_ctx = true;
                while let Some((field, wt)) = m.key()? {
                    match field {
                        1 => eos.end = Some(End::Grpc(m.varint_field(field, wt)? as u32)),
                        2 => eos.end = Some(End::Reset(m.varint_field(field, wt)? as u32)),
                        3 => {
                            m.varint_field(field, wt)?;
                            eos.end = Some(End::Other);
                        }
                        _ => m.skip(field, wt)?,
                    }
                }
            }
            2 => {
                // Only how many streams ended matters; each is still read
                // through, so a malformed one fails as prost would fail.
                r.message(field, wt)?.varints::<3>()?;
                eos.streams += 1;
            }
            _ => r.skip(field, wt)?,
        }
    }
    Ok(eos)
}

/// A `TcpAddress`: its IP (merged into `ip`); the port is not needed.
fn tcp_address(r: &mut Reader<'_>, ip: &mut Option<IpAddr>) -> Result<(), WireError> {
    while let Some((field, wt)) = r.key()? {
        match field {
            1 => ip_address(&mut r.message(field, wt)?, ip)?,
            2 => {
                r.varint_field(field, wt)?;
            }
            _ => r.skip(field, wt)?,
        }
    }
    Ok(())
}

/// An `IPAddress` oneof, merged into `ip` as prost merges: a later `ipv6`
/// occurrence merges into an earlier `ipv6`, anything else replaces.
fn ip_address(r: &mut Reader<'_>, ip: &mut Option<IpAddr>) -> Result<(), WireError> {
    while let Some((field, wt)) = r.key()? {
        match field {
            1 => *ip = Some(IpAddr::V4(Ipv4Addr::from(r.fixed32_field(field, wt)?))),
            2 => {
                let mut m = r.message(field, wt)?;
                let (mut first, mut last) = match ip {
                    Some(IpAddr::V6(v6)) => {
                        let bits = u128::from(*v6);
                        ((bits >> 64) as u64, bits as u64)
                    }
                    _ => (0, 0),
                };
                while let Some((field, wt)) = m.key()? {
                    match field {
                        1 => first = m.fixed64_field(field, wt)?,
                        2 => last = m.fixed64_field(field, wt)?,
                        _ => m.skip(field, wt)?,
                    }
                }
                let bits = (u128::from(first) << 64) | u128::from(last);
                *ip = Some(IpAddr::V6(Ipv6Addr::from(bits)));
            }
            _ => r.skip(field, wt)?,
        }
    }
    Ok(())
}

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const START_GROUP: u32 = 3;
const END_GROUP: u32 = 4;
const FIXED32: u32 = 5;

/// Reads protobuf fields from a slice; `base` is the slice's offset in the
/// whole input, so string ranges are absolute.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
    /// The whole input: a varint near the end of a short message is still
    /// read eight bytes at a time when the input goes on past it.
    all: &'a [u8],
    /// Levels of message nesting above this reader's fields.
    depth: u32,
}

impl<'a> Reader<'a> {
    fn new(all: &'a [u8]) -> Self {
        Self {
            buf: all,
            pos: 0,
            base: 0,
            all,
            depth: 0,
        }
    }

    /// Most varints of a report (tags, small counts) are one byte: that
    /// case is inline, the rest out of line.
    #[inline(always)]
    fn varint(&mut self) -> Result<u64, WireError> {
        if let Some(&byte) = self.buf.get(self.pos)
            && byte < 0x80
        {
            self.pos += 1;
            return Ok(u64::from(byte));
        }
        self.varint_slow()
    }

    /// [`Self::varint`] with two-byte values inline too: a leaf's values
    /// (latencies in tenths of a millisecond, durations, byte counts) are
    /// mostly one or two bytes.
    #[inline(always)]
    fn leaf_varint(&mut self) -> Result<u64, WireError> {
        match self.buf.get(self.pos..) {
            Some(&[low, ..]) if low < 0x80 => {
                self.pos += 1;
                Ok(u64::from(low))
            }
            Some(&[low, high, ..]) if high < 0x80 => {
                self.pos += 2;
                Ok(u64::from(low & 0x7f) | u64::from(high) << 7)
            }
            _ => self.varint_slow(),
        }
    }

    #[inline(never)]
    fn varint_slow(&mut self) -> Result<u64, WireError> {
        // Up to eight bytes at once, when the input holds eight (past this
        // message's end, too: the length is checked after): the first byte
        // without a continuation bit ends the varint, and the 7-bit groups
        // before it are packed together in three shift-and-mask steps,
        // instead of a branch and a bounds check per byte.
        let at = self.base + self.pos;
        if let Some(word) = self.all.get(at..at + 8) {
            let w = u64::from_le_bytes(word.try_into().expect("eight bytes"));
            let stops = !w & 0x8080_8080_8080_8080;
            if stops != 0 {
                let len = (stops.trailing_zeros() / 8 + 1) as usize;
                if self.pos + len > self.buf.len() {
                    return Err(WireError::Truncated);
                }
                // The bytes up to and including the last one.
                let w = w & (stops ^ (stops - 1)) & 0x7f7f_7f7f_7f7f_7f7f;
                let w = (w & 0x007f_007f_007f_007f) | ((w & 0x7f00_7f00_7f00_7f00) >> 1);
                let w = (w & 0x0000_3fff_0000_3fff) | ((w & 0x3fff_0000_3fff_0000) >> 2);
                let w = (w & 0x0000_0000_0fff_ffff) | ((w & 0x0fff_ffff_0000_0000) >> 4);
                self.pos += len;
                return Ok(w);
            }
        }
        let mut value = 0u64;
        for i in 0..10 {
            let byte = *self.buf.get(self.pos).ok_or(WireError::Truncated)?;
            self.pos += 1;
            if i == 9 && byte > 1 {
                return Err(WireError::BadVarint);
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(WireError::BadVarint)
    }

    /// The next field's number and wire type, or `None` at the end.
    #[inline(always)]
    fn key(&mut self) -> Result<Option<(u32, u32)>, WireError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        if key > u64::from(u32::MAX) {
            return Err(WireError::BadTag);
        }
        let (field, wire_type) = ((key >> 3) as u32, (key & 7) as u32);
        if field == 0 {
            return Err(WireError::BadTag);
        }
        Ok(Some((field, wire_type)))
    }

    fn expect(field: u32, wire_type: u32, want: u32) -> Result<(), WireError> {
        if wire_type == want {
            Ok(())
        } else {
            Err(WireError::WireType { field, wire_type })
        }
    }

    fn varint_field(&mut self, field: u32, wt: u32) -> Result<u64, WireError> {
        Self::expect(field, wt, VARINT)?;
        self.varint()
    }

    /// A message whose known fields are the varints numbered `1..=N`
    /// (`Latency`, `StreamSummary`, `TransportSummary`, `ResponseCtx`;
    /// `N` ≤ 3), read to its end: each field's last value (0 when absent),
    /// unknown fields skipped. These leaves are most of a report's fields,
    /// so a field's usual one-byte tag is matched here directly; any other
    /// tag (a longer encoding of the same key, a wrong wire type, an
    /// unknown field) takes the general path. The values are kept in
    /// locals, not an array indexed by field: a store at a computed index
    /// followed by the whole array's load stalls store forwarding.
    #[inline(always)]
    fn varints<const N: usize>(mut self) -> Result<[u64; N], WireError> {
        const { assert!(N <= 3) };
        let (mut first, mut second, mut third) = (0, 0, 0);
        let mut set = |slot: usize, v: u64| match slot {
            0 => first = v,
            1 => second = v,
            _ => third = v,
        };
        while let Some(&tag) = self.buf.get(self.pos) {
            let slot = usize::from(tag >> 3).wrapping_sub(1);
            if tag & 0x87 == VARINT as u8 && slot < N {
                self.pos += 1;
                set(slot, self.leaf_varint()?);
                continue;
            }
            let Some((field, wt)) = self.key()? else {
                break;
            };
            let slot = (field as usize).wrapping_sub(1);
            if slot < N {
                set(slot, self.varint_field(field, wt)?);
            } else {
                self.skip(field, wt)?;
            }
        }
        let all = [first, second, third];
        Ok(std::array::from_fn(|i| all[i]))
    }

    fn take(&mut self, n: usize) -> Result<Range<usize>, WireError> {
        let end = self.pos.checked_add(n).ok_or(WireError::Truncated)?;
        if end > self.buf.len() {
            return Err(WireError::Truncated);
        }
        let range = self.pos..end;
        self.pos = end;
        Ok(range)
    }

    fn fixed32_field(&mut self, field: u32, wt: u32) -> Result<u32, WireError> {
        Self::expect(field, wt, FIXED32)?;
        let r = self.take(4)?;
        Ok(u32::from_le_bytes(
            self.buf[r].try_into().expect("four bytes"),
        ))
    }

    fn fixed64_field(&mut self, field: u32, wt: u32) -> Result<u64, WireError> {
        Self::expect(field, wt, FIXED64)?;
        let r = self.take(8)?;
        Ok(u64::from_le_bytes(
            self.buf[r].try_into().expect("eight bytes"),
        ))
    }

    fn len_delimited(&mut self, field: u32, wt: u32) -> Result<Range<usize>, WireError> {
        Self::expect(field, wt, LEN)?;
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| WireError::Truncated)?;
        self.take(len)
    }

    fn message(&mut self, field: u32, wt: u32) -> Result<Reader<'a>, WireError> {
        let r = self.len_delimited(field, wt)?;
        if self.depth >= MAX_DEPTH {
            return Err(WireError::TooDeep);
        }
        Ok(Reader {
            buf: &self.buf[r.clone()],
            pos: 0,
            base: self.base + r.start,
            all: self.all,
            depth: self.depth + 1,
        })
    }

    fn string(&mut self, field: u32, wt: u32) -> Result<Range32, WireError> {
        let r = self.len_delimited(field, wt)?;
        std::str::from_utf8(&self.buf[r.clone()]).map_err(|_| WireError::NotUtf8(field))?;
        Ok(Range32::of(self.base + r.start..self.base + r.end))
    }

    /// Skips an unknown field (groups included, as prost does).
    fn skip(&mut self, field: u32, wt: u32) -> Result<(), WireError> {
        self.skip_depth(field, wt, self.depth)
    }

    fn skip_depth(&mut self, field: u32, wt: u32, depth: u32) -> Result<(), WireError> {
        if depth >= MAX_DEPTH {
            return Err(WireError::TooDeep);
        }
        match wt {
            VARINT => {
                self.varint()?;
            }
            FIXED64 => {
                self.take(8)?;
            }
            LEN => {
                self.len_delimited(field, wt)?;
            }
            FIXED32 => {
                self.take(4)?;
            }
            START_GROUP => loop {
                let (inner, inner_wt) = self.key()?.ok_or(WireError::Groups)?;
                if inner_wt == END_GROUP {
                    if inner != field {
                        return Err(WireError::Groups);
                    }
                    break;
                }
                self.skip_depth(inner, inner_wt, depth + 1)?;
            },
            END_GROUP => return Err(WireError::Groups),
            _ => {
                return Err(WireError::WireType {
                    field,
                    wire_type: wt,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;
    use crate::proto::common::http_method;
    use crate::proto::net::ip_from_proto;
    use crate::proto::proxy::telemetry::{ReportRequest, eos_ctx};
    use crate::simulate::{Shape, build_report, fleet, traffic};

    /// What the ingester reads of a report, in one comparable shape.
    #[derive(Debug, PartialEq)]
    struct Projection {
        process: Option<(String, String)>,
        proxy: i32,
        scopes: Vec<ScopeP>,
        transports: Vec<TransportP>,
    }

    type ScopeP = (
        bool,
        Option<IpAddr>,
        Option<IpAddr>,
        String,
        String,
        u32,
        Vec<Rsp>,
    );
    type TransportP = (bool, Option<IpAddr>, u32, Vec<(u64, u64)>);
    type Rsp = (bool, u32, Vec<(u32, u32)>, Vec<(bool, Option<End>, u32)>);

    fn method_text(m: Method, report: Report<'_>) -> String {
        match m {
            Method::None => "-".into(),
            Method::Registered(v) => format!("#{v}"),
            Method::Unregistered(r) => report.str(r).to_owned(),
        }
    }

    fn from_flat(report: Report<'_>) -> Projection {
        let f = report.flat;
        let transports = |client: bool, ts: &[Transport]| {
            ts.iter()
                .map(|t| (client, t.ip, t.connects, report.disconnects(t).to_vec()))
                .collect::<Vec<_>>()
        };
        Projection {
            process: f.has_process.then(|| {
                (
                    report.str(f.namespace).into(),
                    report.str(f.instance).into(),
                )
            }),
            proxy: f.proxy,
            scopes: f
                .scopes
                .iter()
                .map(|s| {
                    let rsps = report
                        .responses(s)
                        .iter()
                        .map(|r| {
                            let ends = report
                                .ends(r)
                                .iter()
                                .map(|e| (e.has_ctx, e.end, e.streams))
                                .collect();
                            (r.has_ctx, r.status, report.latencies(r).to_vec(), ends)
                        })
                        .collect();
                    (
                        s.has_ctx,
                        s.source_ip,
                        s.target_ip,
                        method_text(s.method, report),
                        report.str(s.path).to_owned(),
                        s.count,
                        rsps,
                    )
                })
                .collect(),
            transports: [
                transports(false, &f.server_transports),
                transports(true, &f.client_transports),
            ]
            .concat(),
        }
    }

    fn from_prost(r: &ReportRequest) -> Projection {
        let ip = |a: Option<&crate::proto::common::IpAddress>| a.and_then(ip_from_proto);
        let mut transports: Vec<_> = r
            .server_transports
            .iter()
            .map(|t| {
                let d = t.disconnects.iter().map(|d| (d.duration_ms, d.bytes_sent));
                (false, ip(t.source_ip.as_ref()), t.connects, d.collect())
            })
            .collect();
        transports.extend(r.client_transports.iter().map(|t| {
            let d = t.disconnects.iter().map(|d| (d.duration_ms, d.bytes_sent));
            let addr = t.target_addr.as_ref().and_then(|a| a.ip.as_ref());
            (true, ip(addr), t.connects, d.collect())
        }));
        Projection {
            process: r
                .process
                .as_ref()
                .map(|p| (p.scheduled_namespace.clone(), p.scheduled_instance.clone())),
            proxy: r.proxy,
            scopes: r
                .requests
                .iter()
                .map(|s| {
                    let ctx = s.ctx.clone().unwrap_or_default();
                    let method = match ctx.method.and_then(|m| m.r#type) {
                        None => "-".into(),
                        Some(http_method::Type::Registered(v)) => format!("#{v}"),
                        Some(http_method::Type::Unregistered(u)) => u,
                    };
                    let rsps = s
                        .responses
                        .iter()
                        .map(|r| {
                            let ends = r
                                .ends
                                .iter()
                                .map(|e| {
                                    let end =
                                        e.ctx.as_ref().and_then(|c| c.end).map(|end| match end {
                                            eos_ctx::End::GrpcStatusCode(c) => End::Grpc(c),
                                            eos_ctx::End::ResetErrorCode(c) => End::Reset(c),
                                            eos_ctx::End::Other(_) => End::Other,
                                        });
                                    (e.ctx.is_some(), end, e.streams.len() as u32)
                                })
                                .collect();
                            let lats = r
                                .response_latencies
                                .iter()
                                .map(|l| (l.latency, l.count))
                                .collect();
                            (
                                r.ctx.is_some(),
                                r.ctx.map_or(0, |c| c.http_status_code),
                                lats,
                                ends,
                            )
                        })
                        .collect();
                    (
                        s.ctx.is_some(),
                        ip(ctx.source_ip.as_ref()),
                        ip(ctx.target_addr.as_ref().and_then(|t| t.ip.as_ref())),
                        method,
                        ctx.path,
                        s.count,
                        rsps,
                    )
                })
                .collect(),
            transports,
        }
    }

    /// Decodes `bytes` both ways: both fail, or both give the same report.
    fn agree(bytes: &[u8], flat: &mut FlatReport) -> bool {
        let ours = flat.decode(bytes);
        let theirs = ReportRequest::decode(bytes);
        match (ours, theirs) {
            (Ok(()), Ok(r)) => {
                assert_eq!(from_flat(Report { flat, bytes }), from_prost(&r));
                true
            }
            (Err(_), Err(_)) => false,
            (ours, theirs) => panic!("disagree on {bytes:02x?}: ours {ours:?}, prost {theirs:?}"),
        }
    }

    /// How many of `inputs` both decoders took, and how many both refused.
    fn outcomes(
        inputs: impl IntoIterator<Item = Vec<u8>>,
        flat: &mut FlatReport,
    ) -> (usize, usize) {
        let (mut decoded, mut refused) = (0, 0);
        for bytes in inputs {
            if agree(&bytes, flat) {
                decoded += 1;
            } else {
                refused += 1;
            }
        }
        (decoded, refused)
    }

    fn reports() -> Vec<Vec<u8>> {
        let f = fleet(20, 5, "sim", 3);
        let mut rng = fastrand::Rng::with_seed(9);
        let mut out: Vec<Vec<u8>> = [Shape::Small, Shape::Medium, Shape::Large]
            .into_iter()
            .flat_map(|shape| (0..4).map(move |i| (shape, i)))
            .map(|(shape, i)| build_report(&f, shape, i, &mut rng).encode_to_vec())
            .collect();
        let model = traffic::model(&f, 3);
        out.extend(
            (0..4).map(|pod| traffic::inbound_body(&model, &f, pod, 1.0, &mut rng).encode_to_vec()),
        );
        out
    }

    #[test]
    fn agrees_with_prost() {
        let mut flat = FlatReport::default();
        for bytes in reports() {
            assert!(agree(&bytes, &mut flat), "a valid report decodes");
        }
        assert!(agree(&[], &mut flat), "the empty message");
    }

    #[test]
    fn agrees_with_prost_on_damaged_input() {
        let mut flat = FlatReport::default();
        let mut rng = fastrand::Rng::with_seed(17);
        let damaged = reports()
            .into_iter()
            .flat_map(|bytes| (0..300).map(move |_| bytes.clone()));
        let damaged = damaged.map(|mut damaged| {
            match rng.u8(0..3) {
                0 => damaged.truncate(rng.usize(0..damaged.len())),
                1 => {
                    for _ in 0..rng.usize(1..4) {
                        let i = rng.usize(0..damaged.len());
                        damaged[i] = rng.u8(..);
                    }
                }
                _ => {
                    let i = rng.usize(0..damaged.len());
                    damaged.insert(i, rng.u8(..));
                }
            }
            damaged
        });
        let (decoded, refused) = outcomes(damaged, &mut flat);
        // Both outcomes were exercised.
        assert!(
            decoded > 100 && refused > 100,
            "{decoded} decoded, {refused} refused"
        );
    }

    #[test]
    fn unknown_fields_and_groups_are_skipped() {
        // Field 9 (varint 1), field 10 (a group holding field 1 = 5), then
        // proxy = 1.
        let bytes = [0x48, 0x01, 0x53, 0x08, 0x05, 0x54, 0x10, 0x01];
        let mut flat = FlatReport::default();
        assert!(agree(&bytes, &mut flat));
        assert_eq!(flat.proxy, 1);
        // A group that never ends, and one ended by another field's tag.
        assert!(!agree(&[0x53, 0x08, 0x05], &mut flat));
        assert!(!agree(&[0x53, 0x08, 0x05, 0x5c], &mut flat));
    }

    /// `k` nested empty groups of unknown field 15, inside the sub-messages
    /// `path` names (field numbers from the top): prost's recursion limit
    /// counts both, and so does ours.
    fn nested_groups(path: &[u32], k: usize) -> Vec<u8> {
        wrap(
            path,
            [vec![(15 << 3) | 3; k], vec![(15 << 3) | 4; k]].concat(),
        )
    }

    /// `bytes` as the body of the sub-messages `path` names (field numbers
    /// from the top, each below 16).
    fn wrap(path: &[u32], mut bytes: Vec<u8>) -> Vec<u8> {
        for &field in path.iter().rev() {
            let mut wrapped = vec![(field << 3) as u8 | 2];
            push_varint(&mut wrapped, bytes.len() as u64);
            wrapped.extend_from_slice(&bytes);
            bytes = wrapped;
        }
        bytes
    }

    fn push_varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    #[test]
    fn leaves_agree_with_prost_however_encoded() {
        // The all-varint leaves are read by a path of their own: a
        // TransportSummary (under a ServerTransport), a Latency and a
        // ResponseCtx (under a ResponseScope), an EosScope's StreamSummary.
        let leaves: [&[u32]; 4] = [&[3, 3], &[5, 3, 2], &[5, 3, 1], &[5, 3, 3, 2]];
        let mut bodies: Vec<Vec<u8>> = Vec::new();
        // Every varint length, for each field and an unknown one; the
        // varint ends exactly where the message does.
        for field in 1..=4u8 {
            for len in 1..=10 {
                let mut body = vec![field << 3];
                let v = if len == 10 {
                    u64::MAX
                } else {
                    1 << (7 * (len - 1))
                };
                push_varint(&mut body, v);
                assert_eq!(body.len(), len + 1);
                bodies.push(body);
            }
        }
        bodies.extend([
            // A longer encoding of a small value, and of a field's key.
            vec![0x08, 0x85, 0x80, 0x80, 0x00],
            vec![0x88, 0x00, 0x07, 0x90, 0x80, 0x00, 0x09],
            // A value past 64 bits, and an eleven-byte varint.
            [vec![0x08], vec![0xff; 9], vec![0x02]].concat(),
            [vec![0x08], vec![0x80; 10], vec![0x00]].concat(),
            // A field repeated (the last wins), and field 0.
            vec![0x08, 0x01, 0x10, 0x02, 0x08, 0x03],
            vec![0x00, 0x01],
            // A known field with another wire type; an unknown one with
            // each wire type.
            vec![0x09, 1, 2, 3, 4, 5, 6, 7, 8],
            vec![0x0a, 0x01, 0x00],
            vec![0x79, 1, 2, 3, 4, 5, 6, 7, 8, 0x08, 0x01],
            vec![0x7a, 0x02, 0xff, 0xff, 0x10, 0x05],
            vec![0x7d, 1, 2, 3, 4, 0x18, 0x07],
            vec![0x7b, 0x08, 0x01, 0x7c, 0x08, 0x02],
            // Varints cut off by the message's end.
            vec![0x08, 0x80],
            vec![0x08, 0x80, 0x80, 0x80],
            [vec![0x10], vec![0xff; 8]].concat(),
            vec![0x08],
        ]);
        // What follows the report: nothing, a field whose bytes look like
        // the end of a varint, or like more of one. A varint cut off by a
        // message's end must not be finished by the bytes after it.
        let trailers: [&[u8]; 3] = [
            &[],
            &[0x10, 0x01],
            &[0x48, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
        ];
        let inputs = leaves.iter().flat_map(|path| {
            bodies.iter().flat_map(move |body| {
                trailers
                    .into_iter()
                    .map(move |trailer| [wrap(path, body.clone()), trailer.to_vec()].concat())
            })
        });
        let (decoded, refused) = outcomes(inputs, &mut FlatReport::default());
        assert!(
            decoded > 100 && refused > 50,
            "{decoded} decoded, {refused} refused"
        );
    }

    #[test]
    fn one_depth_limit_across_messages_and_groups_as_prost_has() {
        let mut flat = FlatReport::default();
        // Top level; in a RequestScope; its ResponseScope; its EosScope;
        // that one's EosCtx; a ServerTransport's TransportSummary.
        let paths: [&[u32]; 6] = [&[], &[5], &[5, 3], &[5, 3, 3], &[5, 3, 3, 1], &[3, 3]];
        for path in paths {
            // Around the limit prost puts at this depth, both decoders take
            // and refuse the same inputs (`agree` fails on any difference).
            let near = MAX_DEPTH as usize - path.len();
            let accepted: Vec<bool> = (near - 4..=near + 4)
                .map(|k| agree(&nested_groups(path, k), &mut flat))
                .collect();
            assert!(
                accepted[0] && !accepted[8],
                "{path:?}: the limit lies in {}..={}: {accepted:?}",
                near - 4,
                near + 4
            );
            assert_eq!(
                flat.decode(&nested_groups(path, 1000)),
                Err(WireError::TooDeep)
            );
        }
    }

    #[test]
    fn tables_are_reused() {
        let mut flat = FlatReport::default();
        let all = reports();
        flat.decode(&all[8]).unwrap();
        let capacity = flat.latencies.capacity();
        flat.decode(&all[0]).unwrap();
        assert!(flat.latencies.len() < capacity);
        assert_eq!(flat.latencies.capacity(), capacity, "no reallocation");
    }
}
