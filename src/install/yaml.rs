//! A small YAML writer for the install manifests: a tree of [`Node`]s,
//! written in the block style `kubectl` users read and write (sequences of
//! a mapping at the mapping's own indent, two spaces a level, keys in the
//! order given). Any string that a YAML 1.1 reader (Kubernetes' own) or a
//! YAML 1.2 reader could take for something else — a number, a boolean,
//! null, an indicator — is double-quoted; everything else stays plain, so
//! the output reads like a hand-written manifest and is the same bytes on
//! every run.

use std::borrow::Cow;

/// One YAML value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Str(String),
    Int(i64),
    Bool(bool),
    /// Entries in the order they are written.
    Map(Vec<(&'static str, Node)>),
    Seq(Vec<Node>),
    /// Multi-line text written as a literal block (`|`), e.g. a file in a
    /// ConfigMap.
    Block(String),
}

/// A string node.
pub fn s(value: impl Into<String>) -> Node {
    Node::Str(value.into())
}

/// An integer node.
pub fn int(value: impl Into<i64>) -> Node {
    Node::Int(value.into())
}

/// A mapping node.
pub fn map(entries: impl IntoIterator<Item = (&'static str, Node)>) -> Node {
    Node::Map(entries.into_iter().collect())
}

/// A sequence node.
pub fn seq(items: impl IntoIterator<Item = Node>) -> Node {
    Node::Seq(items.into_iter().collect())
}

/// A sequence of strings.
pub fn strs<S: Into<String>>(items: impl IntoIterator<Item = S>) -> Node {
    seq(items.into_iter().map(s))
}

/// Indentation of one level.
const INDENT: usize = 2;

/// `node` as the body of a YAML document (no `---`), ending in a newline.
pub fn to_string(node: &Node) -> String {
    let mut out = String::new();
    match node {
        Node::Map(entries) if !entries.is_empty() => write_map(&mut out, entries, 0, false),
        Node::Seq(items) if !items.is_empty() => write_seq(&mut out, items, 0),
        other => {
            write_inline(&mut out, other, 0);
            out.push('\n');
        }
    }
    out
}

/// Entries at column `indent`; with `continues_line`, the first entry goes
/// where the cursor is (after a sequence's `- `).
fn write_map(out: &mut String, entries: &[(&str, Node)], indent: usize, continues_line: bool) {
    for (i, (key, value)) in entries.iter().enumerate() {
        if i > 0 || !continues_line {
            pad(out, indent);
        }
        out.push_str(&scalar(key));
        out.push(':');
        match value {
            Node::Map(inner) if !inner.is_empty() => {
                out.push('\n');
                write_map(out, inner, indent + INDENT, false);
            }
            // Kubernetes style: a key's sequence items at the key's column.
            Node::Seq(items) if !items.is_empty() => {
                out.push('\n');
                write_seq(out, items, indent);
            }
            other => {
                out.push(' ');
                write_inline(out, other, indent + INDENT);
                out.push('\n');
            }
        }
    }
}

/// Items at column `indent`, each after `- `.
fn write_seq(out: &mut String, items: &[Node], indent: usize) {
    for item in items {
        pad(out, indent);
        out.push_str("- ");
        match item {
            Node::Map(entries) if !entries.is_empty() => {
                write_map(out, entries, indent + INDENT, true);
            }
            Node::Seq(inner) if !inner.is_empty() => {
                out.push('\n');
                write_seq(out, inner, indent + INDENT);
            }
            other => {
                write_inline(out, other, indent + INDENT);
                out.push('\n');
            }
        }
    }
}

/// A scalar, an empty collection, or a block whose lines go at
/// `block_indent`; the caller ends the line.
fn write_inline(out: &mut String, node: &Node, block_indent: usize) {
    match node {
        Node::Str(value) => out.push_str(&scalar(value)),
        Node::Int(value) => out.push_str(&value.to_string()),
        Node::Bool(value) => out.push_str(if *value { "true" } else { "false" }),
        Node::Map(_) => out.push_str("{}"),
        Node::Seq(_) => out.push_str("[]"),
        // A block needs a line of text; empty text is clearer quoted.
        Node::Block(text) if text.trim_end_matches('\n').is_empty() => out.push_str(&scalar(text)),
        Node::Block(text) => write_block(out, text, block_indent),
    }
}

/// A literal block: its chomping indicator keeps the text's trailing
/// newlines exactly, and an explicit indentation indicator is given when
/// the first line starts with a space (YAML would take that space for the
/// block's indentation). The final newline is left to the caller.
fn write_block(out: &mut String, text: &str, indent: usize) {
    let body = text.trim_end_matches('\n');
    let trailing = text.len() - body.len();
    out.push('|');
    if body.starts_with(' ') || body.starts_with('\n') {
        out.push_str(&INDENT.to_string());
    }
    out.push_str(match trailing {
        0 => "-",
        1 => "",
        _ => "+",
    });
    for line in body.split('\n') {
        out.push('\n');
        if !line.is_empty() {
            pad(out, indent);
            out.push_str(line);
        }
    }
    // `+` keeps the extra newlines: write all but the one the caller adds.
    for _ in 1..trailing {
        out.push('\n');
    }
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

/// Words YAML 1.1 reads as booleans or null (any case).
const SPECIAL_WORDS: [&str; 11] = [
    "y", "n", "yes", "no", "on", "off", "true", "false", "null", "nil", "~",
];

/// `value` as a YAML scalar: plain when no YAML reader can take it for
/// anything but this string, double-quoted (JSON escapes, which YAML
/// shares) otherwise.
pub fn scalar(value: &str) -> Cow<'_, str> {
    if is_plain_safe(value) {
        Cow::Borrowed(value)
    } else {
        Cow::Owned(serde_json::to_string(value).expect("a string always serializes to JSON"))
    }
}

fn is_plain_safe(value: &str) -> bool {
    let Some(first) = value.chars().next() else {
        return false;
    };
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._/:@-".contains(c);
    if !value.chars().all(allowed) || value.ends_with(':') {
        return false;
    }
    if first.is_ascii_digit() {
        // Quantities and durations such as `32Mi`, `10s`: digits then
        // letters is never a number, a date or a base-60 integer.
        let letters = value.trim_start_matches(|c: char| c.is_ascii_digit());
        return !letters.is_empty() && letters.chars().all(|c| c.is_ascii_alphabetic());
    }
    (first.is_ascii_alphabetic() || first == '_' || first == '/')
        && !SPECIAL_WORDS.iter().any(|w| w.eq_ignore_ascii_case(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_only_where_nothing_else_can_be_read() {
        for plain in [
            "conduit",
            "gcr.io/runconduit/controller:v0.1.0",
            "http://prometheus.conduit.svc.cluster.local:9090",
            "32Mi",
            "10s",
            "/ready",
            "__meta_kubernetes_pod_name",
            "conduit.io/plane",
        ] {
            assert_eq!(scalar(plain), plain);
        }
        for quoted in [
            "",
            "-addr=:8085",
            "1",
            "0.5",
            "1e3",
            "0x1f",
            "1:20",
            "yes",
            "No",
            "null",
            "~",
            "a b",
            "a: b",
            "key:",
            "#x",
            "*x",
            "&x",
            "!x",
            "'x",
            "\"x",
            ".inf",
            "[x]",
            "{x}",
            "a\nb",
        ] {
            assert!(scalar(quoted).starts_with('"'), "{quoted:?} must be quoted");
            let back: String = serde_yaml::from_str(&scalar(quoted)).unwrap();
            assert_eq!(back, quoted);
        }
    }

    #[test]
    fn kubernetes_block_style() {
        let doc = map([
            ("kind", s("Pod")),
            (
                "spec",
                map([
                    (
                        "containers",
                        seq([map([
                            ("name", s("a")),
                            ("args", strs(["run", "-addr=:1"])),
                            ("ports", seq([map([("containerPort", int(80))])])),
                        ])]),
                    ),
                    ("volumes", seq([])),
                    ("nodeSelector", map([])),
                    ("hostNetwork", Node::Bool(false)),
                ]),
            ),
        ]);
        assert_eq!(
            to_string(&doc),
            "kind: Pod\n\
             spec:\n\
             \x20 containers:\n\
             \x20 - name: a\n\
             \x20   args:\n\
             \x20   - run\n\
             \x20   - \"-addr=:1\"\n\
             \x20   ports:\n\
             \x20   - containerPort: 80\n\
             \x20 volumes: []\n\
             \x20 nodeSelector: {}\n\
             \x20 hostNetwork: false\n"
        );
    }

    #[test]
    fn blocks_keep_their_text_exactly() {
        for text in [
            "a: 1\n",
            "a: 1",
            "a: 1\n\n",
            "  indented\nb\n",
            "x\n\n  y\n",
            "",
            "\n",
        ] {
            let doc = map([("data", map([("file", Node::Block(text.to_string()))]))]);
            let yaml = to_string(&doc);
            let back: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
            assert_eq!(back["data"]["file"].as_str(), Some(text), "{yaml}");
        }
    }
}
