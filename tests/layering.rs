//! The crate's floors and rooms, held by reading `src/`: a small checker
//! over the source text (a `crate::name` path is how one module names
//! another inside this crate), tried first on made-up files it must refuse.
//!
//! - Rooms (the six components, `client`, `simulate`, `install`) name only
//!   the floors, never another room, `cli` or `run`.
//! - Floors (`proto`, `core`, `k8s`, `ingest`, `stat`, `remote_write`,
//!   `admin`, `grpc`, `component`) name no room, `cli` or `run`; their tests may use
//!   `simulate`'s traffic model as test data.
//! - `core` and `ingest` use neither tonic nor kube; `k8s` never tonic.
//! - Only `cli.rs`, `run.rs`, `main.rs` and `lib.rs` wire rooms together.

use std::path::Path;

const ROOMS: &[&str] = &[
    "destination",
    "proxy_api",
    "public_api",
    "tap",
    "telemetry",
    "web",
    "client",
    "simulate",
    "install",
];
const FLOORS: &[&str] = &[
    "proto",
    "core",
    "k8s",
    "ingest",
    "stat",
    "remote_write",
    "admin",
    "grpc",
    "component",
];
const WIRING: &[&str] = &["cli", "run", "main", "lib"];

/// The top-level module a file under `src/` belongs to.
fn module_of(path: &str) -> &str {
    let first = path.split('/').next().unwrap_or(path);
    first.strip_suffix(".rs").unwrap_or(first)
}

/// Whether `text` contains `word` with no identifier character either side.
fn has_word(text: &str, word: &str) -> bool {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        !before.is_some_and(ident) && !after.is_some_and(ident)
    })
}

/// Whether `text` has a path through `root` (`root::…`, not `my_root::…`).
fn names_path(text: &str, root: &str) -> bool {
    let path = format!("{root}::");
    text.match_indices(&path).any(|(i, _)| {
        !text[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

/// The `crate::X` top-level modules a text names.
fn named_modules(text: &str) -> Vec<&str> {
    let mut out: Vec<&str> = text
        .match_indices("crate::")
        .filter(|(i, _)| {
            // `crate::` itself, not the tail of e.g. `my_crate::`.
            !text[..*i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
        })
        .map(|(i, m)| {
            let rest = &text[i + m.len()..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .filter(|name| !name.is_empty())
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Every breach of the rules in `files` (paths relative to `src/`).
fn violations(files: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for (path, text) in files {
        let module = module_of(path);
        if WIRING.contains(&module) {
            continue;
        }
        // Test code is what follows the first `#[cfg(test)]` (this crate
        // keeps its test modules last).
        let (code, tests) = text
            .find("#[cfg(test)]")
            .map_or((text.as_str(), ""), |i| text.split_at(i));
        let is_room = ROOMS.contains(&module);
        let is_floor = FLOORS.contains(&module);
        if !is_room && !is_floor {
            out.push(format!(
                "{path}: module {module} is neither a floor nor a room"
            ));
            continue;
        }
        for (part, in_tests) in [(code, false), (tests, true)] {
            for named in named_modules(part) {
                if named == module || FLOORS.contains(&named) {
                    continue;
                }
                let allowed = is_floor && in_tests && named == "simulate";
                let known = ROOMS.contains(&named) || WIRING.contains(&named);
                if known && !allowed {
                    let what = if is_room { "room" } else { "floor" };
                    out.push(format!("{path}: {what} {module} names crate::{named}"));
                }
            }
        }
        let banned: &[&str] = match module {
            "core" | "ingest" => &["tonic", "kube", "k8s_openapi", "kube_runtime"],
            "k8s" => &["tonic"],
            _ => &[],
        };
        for dependency in banned {
            let uses = text.lines().any(|line| {
                let line = line.trim_start();
                if line.starts_with("//") {
                    return false;
                }
                names_path(line, dependency)
                    || (line.starts_with("use ") && has_word(line, dependency))
                    || line.starts_with(&format!("extern crate {dependency}"))
            });
            if uses {
                out.push(format!("{path}: {module} uses {dependency}"));
            }
        }
    }
    out
}

fn source_files(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.unwrap().path();
        if path.is_dir() {
            source_files(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(root).unwrap().to_string_lossy();
            let text = std::fs::read_to_string(&path).unwrap();
            out.push((relative.replace('\\', "/"), text));
        }
    }
}

#[test]
fn the_crate_keeps_its_floors_and_rooms() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&root, &root, &mut files);
    assert!(
        files.iter().any(|(p, _)| p == "proto/http_api.rs"),
        "the walk found src/"
    );
    let found = violations(&files);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_checker_refuses_each_kind_of_breach() {
    let file = |path: &str, text: &str| (path.to_string(), text.to_string());
    let cases = [
        (
            file("client/tap.rs", "use crate::tap::Target;\n"),
            "client/tap.rs: room client names crate::tap",
        ),
        (
            file("web/mod.rs", "#[arg(default_value = crate::client::X)]\n"),
            "web/mod.rs: room web names crate::client",
        ),
        (
            file("simulate/tap.rs", "fn f() { crate::telemetry::run(); }\n"),
            "simulate/tap.rs: room simulate names crate::telemetry",
        ),
        (
            file(
                "install/mod.rs",
                "#[cfg(test)]\nmod tests { use crate::cli::Cli; }\n",
            ),
            "install/mod.rs: room install names crate::cli",
        ),
        (
            file("stat/mod.rs", "use crate::public_api::Api;\n"),
            "stat/mod.rs: floor stat names crate::public_api",
        ),
        (
            file("ingest/flat.rs", "use crate::simulate::fleet;\n"),
            "ingest/flat.rs: floor ingest names crate::simulate",
        ),
        (
            file("core/mod.rs", "use tonic::Status;\n"),
            "core/mod.rs: core uses tonic",
        ),
        (
            file("ingest/mod.rs", "fn f() -> kube::Client { todo!() }\n"),
            "ingest/mod.rs: ingest uses kube",
        ),
        (
            file("k8s/watch.rs", "    let s = tonic::Status::ok(\"\");\n"),
            "k8s/watch.rs: k8s uses tonic",
        ),
        (
            file("newroom/mod.rs", "\n"),
            "newroom/mod.rs: module newroom is neither a floor nor a room",
        ),
    ];
    for (input, want) in cases {
        assert_eq!(
            violations(std::slice::from_ref(&input)),
            [want],
            "{input:?}"
        );
    }
    // And what is allowed passes.
    let fine = [
        file("client/tap.rs", "use crate::proto::tap_match::Observed;\n"),
        file(
            "ingest/flat.rs",
            "fn f() {}\n#[cfg(test)]\nmod tests { use crate::simulate::fleet; }\n",
        ),
        file("core/mod.rs", "//! Imports neither tonic nor kube.\n"),
        file("k8s/watch.rs", "use kube::Api;\n"),
        file("cli.rs", "use crate::telemetry::Args;\n"),
        file(
            "tap/service.rs",
            "use crate::tap::Target; // my_crate::web\n",
        ),
    ];
    assert_eq!(violations(&fine), Vec::<String>::new());
}
