//! Property tests over what arrives from outside: the Report decoder, the
//! public API's bodies, destination paths and the cluster file. Inputs are
//! drawn from fixed seeds (`fastrand`), so a failure reproduces; each
//! property says what must hold for every input: never a panic, and the
//! decoder takes exactly what prost takes.

use conduit::destination::path;
use conduit::ingest::flat::FlatReport;
use conduit::proto::http_api::{self, Encoding};
use conduit::proto::proxy::telemetry::ReportRequest;
use conduit::proto::public::{MetricRequest, TapRequest};
use prost::Message as _;

const CASES: usize = 4_000;

fn pick(rng: &mut fastrand::Rng, from: &[u8]) -> u8 {
    from[rng.usize(0..from.len())]
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A message-shaped byte string: fields of random numbers (mostly the
/// Report's own) and wire types, sub-messages nested to `depth`, groups,
/// truncations and stray bytes now and then.
fn message(rng: &mut fastrand::Rng, depth: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..rng.usize(0..6) {
        let field = if rng.u8(0..8) == 0 {
            rng.u32(6..40)
        } else {
            rng.u32(1..6)
        };
        match rng.u8(0..10) {
            0..=2 => {
                varint(&mut out, u64::from(field << 3));
                varint(&mut out, rng.u64(..) >> rng.u32(0..64));
            }
            3..=6 => {
                let inner = if depth > 0 && rng.bool() {
                    message(rng, depth - 1)
                } else {
                    (0..rng.usize(0..12)).map(|_| rng.u8(..)).collect()
                };
                varint(&mut out, u64::from(field << 3 | 2));
                varint(&mut out, inner.len() as u64);
                out.extend(inner);
            }
            7 => {
                varint(&mut out, u64::from(field << 3 | 1));
                out.extend((0..8).map(|_| rng.u8(..)));
            }
            8 => {
                varint(&mut out, u64::from(field << 3 | 5));
                out.extend((0..4).map(|_| rng.u8(..)));
            }
            _ => {
                // A group, balanced or not.
                varint(&mut out, u64::from(field << 3 | 3));
                if depth > 0 {
                    out.extend(message(rng, depth - 1));
                }
                let end = if rng.u8(0..4) == 0 { field + 1 } else { field };
                varint(&mut out, u64::from(end << 3 | 4));
            }
        }
    }
    if rng.u8(0..10) == 0 && !out.is_empty() {
        out.truncate(rng.usize(0..out.len()));
    }
    if rng.u8(0..10) == 0 {
        out.insert(rng.usize(0..=out.len()), rng.u8(..));
    }
    out
}

#[test]
fn the_report_decoder_takes_exactly_what_prost_takes() {
    let mut rng = fastrand::Rng::with_seed(0x5eed_0001);
    let mut flat = FlatReport::default();
    let (mut taken, mut refused) = (0, 0);
    for case in 0..CASES {
        let bytes = if case % 4 == 0 {
            (0..rng.usize(0..64)).map(|_| rng.u8(..)).collect()
        } else {
            message(&mut rng, 5)
        };
        let ours = flat.decode(&bytes).is_ok();
        let prost = ReportRequest::decode(&bytes[..]).is_ok();
        assert_eq!(ours, prost, "case {case}: {bytes:02x?}");
        if ours {
            taken += 1;
        } else {
            refused += 1;
        }
    }
    // Both sides of the property were exercised.
    assert!(
        taken > 200 && refused > 200,
        "{taken} taken, {refused} refused"
    );
}

#[test]
fn public_api_bodies_never_panic_and_valid_ones_round_trip() {
    let mut rng = fastrand::Rng::with_seed(0x5eed_0002);
    let valid_json = br#"{"metrics":["REQUEST_RATE","LATENCY"],"window":"ONE_MIN","groupBy":"TARGET_DEPLOY","filterBy":{"targetDeploy":"shop/books"},"summarize":true}"#;
    for case in 0..CASES {
        let mut body = match case % 3 {
            0 => valid_json.to_vec(),
            1 => message(&mut rng, 3),
            _ => (0..rng.usize(0..80)).map(|_| rng.u8(..)).collect(),
        };
        for _ in 0..rng.usize(0..4) {
            if body.is_empty() {
                break;
            }
            let i = rng.usize(0..body.len());
            match rng.u8(0..3) {
                0 => body[i] = rng.u8(..),
                1 => {
                    body.remove(i);
                }
                _ => body.insert(i, pick(&mut rng, b"{}[]\":,0ax\\")),
            }
        }
        for encoding in [Encoding::Json, Encoding::Protobuf] {
            if let Ok(request) = http_api::decode::<MetricRequest>(encoding, &body) {
                let again = http_api::encode(encoding, &request).expect("a decoded body encodes");
                let again = match encoding {
                    // Responses are framed; requests are bare.
                    Encoding::Protobuf => http_api::decode_framed::<MetricRequest>(&again),
                    Encoding::Json => {
                        http_api::decode::<MetricRequest>(encoding, again.trim_ascii_end())
                    }
                };
                assert_eq!(again.ok(), Some(request), "case {case}");
            }
            let _ = http_api::decode::<TapRequest>(encoding, &body);
        }
    }
}

#[test]
fn destination_paths_never_panic_and_what_parses_is_canonical() {
    let mut rng = fastrand::Rng::with_seed(0x5eed_0003);
    let alphabet = b"ab0.-:9svcclusterlocal/ _";
    for case in 0..CASES {
        let text: String = (0..rng.usize(0..40))
            .map(|_| alphabet[rng.usize(0..alphabet.len())] as char)
            .collect();
        let Ok(target) = path::parse("k8s", &text, "cluster.local") else {
            continue;
        };
        // Its fully qualified spelling names the same target.
        let full = format!(
            "{}.{}.svc.cluster.local.:{}",
            target.service, target.namespace, target.port
        );
        assert_eq!(
            path::parse("k8s", &full, "cluster.local").as_ref(),
            Ok(&target),
            "case {case}: {text:?}"
        );
    }
    assert!(path::parse("dns", "web.shop", "cluster.local").is_err());
}

#[test]
fn the_cluster_file_never_panics_on_damaged_yaml() {
    let mut rng = fastrand::Rng::with_seed(0x5eed_0004);
    let valid = "\
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: shop, ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-5f, uid: u1, controller: true}]}
status: {phase: Running, podIP: 192.0.2.10, podIPs: [{ip: 192.0.2.10}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {ports: [{name: http, port: 80, targetPort: web-http}]}
";
    assert!(conduit::k8s::cluster_file::parse(valid).is_ok());
    for _ in 0..CASES / 4 {
        let mut text = valid.as_bytes().to_vec();
        for _ in 0..rng.usize(1..6) {
            let i = rng.usize(0..text.len());
            match rng.u8(0..3) {
                0 => text[i] = pick(&mut rng, b"{}[]:,- \n'\"&*!|>"),
                1 => {
                    text.remove(i);
                }
                _ => text.insert(i, pick(&mut rng, b"{}[]:,- \n0a")),
            }
        }
        let text = String::from_utf8_lossy(&text);
        let _ = conduit::k8s::cluster_file::parse(&text);
    }
}
