//! Series keys: typed label sets, and the label names defined once.
//!
//! A table's series all carry the same labels in the same order (its
//! [`Schema`]), and a key is read by position: [`LabelRef::get`] and
//! [`LabelRef::values`] walk the set's own text from value to value, with no
//! name matching and no copy. The values are stored in the form the text
//! exposition prints (`name="value",…`, escaped), because printing is the
//! hot path: a sample line copies a series' labels verbatim, and a scrape
//! prints hundreds of thousands of series tens of times each. Nothing else
//! is stored: the ends of the values beside the text would cost 12–16 bytes
//! per series (measured: 30 bytes per request label set in
//! `benches/memory.rs`, past its bar), while finding them is a scan for
//! closing quotes that only remote write and Stat do. Only a value that
//! needed escaping (a path with a quote, rare) is unescaped when read.
//!
//! A schema's first labels form a complete set of their own (each value is
//! closed before the next begins), which is how a workload pair (the first
//! four mesh labels) is looked up from the very buffer its request series
//! was built in.

use std::borrow::Cow;
use std::hash::{BuildHasher, Hash, Hasher};

/// Longest label value kept from a report (paths, unregistered methods):
/// longer ones are cut at a character boundary so one report cannot make a
/// series megabytes large. Kubernetes names are far shorter (253 bytes).
pub const MAX_LABEL_VALUE_BYTES: usize = 1024;

/// Most labels a schema has.
pub const MAX_LABELS: usize = 6;

/// The label names of one table's series, in the order they are stored and
/// printed, with the text the exposition writes before each value.
#[derive(Debug)]
pub struct Schema {
    pub names: &'static [&'static str],
    /// `name="` for the first label, `,name="` for the others.
    text: &'static [&'static str],
}

impl Schema {
    pub const fn len(&self) -> usize {
        self.names.len()
    }

    pub const fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Where `name` is among the labels.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| *n == name)
    }
}

/// A [`Schema`] from its label names (the exposition's text spelled out at
/// compile time).
macro_rules! schema {
    ($first:literal $(, $rest:literal)* $(,)?) => {
        Schema {
            names: &[$first $(, $rest)*],
            text: &[concat!($first, "=\""), $(concat!(",", $rest, "=\"")),*],
        }
    };
}

/// `requests_total`, `responses_total` and `response_latency_ms`.
pub static MESH: Schema = schema!(
    "source",
    "target",
    "source_deployment",
    "target_deployment",
    "method",
    "path",
);

/// A workload pair of the embedded Stat store: the first four mesh labels.
pub static PAIR: Schema = schema!("source", "target", "source_deployment", "target_deployment",);

/// A route of the embedded Stat store: the target deployment, the method
/// and the `path` label (a route template for a deployment that has them).
pub static ROUTE: Schema = schema!("target_deployment", "method", "path");

/// The `tcp_*` families.
pub static TCP: Schema = schema!(
    "direction",
    "peer",
    "source",
    "target",
    "source_deployment",
    "target_deployment",
);

/// The label value every label of an overflow series carries.
pub const OVERFLOW: &str = "__overflow__";

// Every value, escaped (at most twice its length), ends within a `u16`
// offset, names and punctuation included.
const _: () = assert!(MAX_LABELS * (2 * MAX_LABEL_VALUE_BYTES + 64) <= u16::MAX as usize);

/// A borrowed label set: its schema, and its text as the exposition prints
/// it.
#[derive(Clone, Copy, Debug)]
pub struct LabelRef<'a> {
    schema: &'static Schema,
    text: &'a str,
}

impl<'a> LabelRef<'a> {
    pub fn new(schema: &'static Schema, text: &'a str) -> Self {
        Self { schema, text }
    }

    pub fn schema(self) -> &'static Schema {
        self.schema
    }

    /// Number of values.
    pub fn len(self) -> usize {
        if self.text.is_empty() {
            0
        } else {
            self.schema.len()
        }
    }

    pub fn is_empty(self) -> bool {
        self.len() == 0
    }

    /// The labels as the exposition prints them between the braces.
    pub fn rendered(self) -> &'a str {
        self.text
    }

    /// Value `i`, unescaped (empty past the last).
    pub fn get(self, i: usize) -> Cow<'a, str> {
        self.values().nth(i).unwrap_or(Cow::Borrowed(""))
    }

    /// The values in schema order, unescaped.
    pub fn values(self) -> impl Iterator<Item = Cow<'a, str>> {
        let mut at = 0;
        (0..self.len()).map(move |i| {
            let start = (at + self.schema.text[i].len()).min(self.text.len());
            let end = closing_quote(self.text, start);
            at = end + 1;
            let value = &self.text[start..end];
            if value.contains('\\') {
                Cow::Owned(unescape(value))
            } else {
                Cow::Borrowed(value)
            }
        })
    }

    /// The values paired with their names.
    pub fn pairs(self) -> impl Iterator<Item = (&'static str, Cow<'a, str>)> {
        self.schema.names.iter().copied().zip(self.values())
    }

    /// Bytes of label text (memory accounting).
    pub fn text_len(self) -> usize {
        self.text.len()
    }

    pub(super) fn hash_with(self, hasher: &impl BuildHasher) -> u64 {
        hasher.hash_one(self)
    }
}

/// Where the value starting at `from` ends: its first quote not escaped by
/// a backslash (the text's end if there is none, which the sets this module
/// builds never lack).
fn closing_quote(text: &str, from: usize) -> usize {
    let bytes = text.as_bytes();
    let mut at = from;
    while let Some(k) = text[at..].find('"') {
        let quote = at + k;
        let backslashes = bytes[from..quote]
            .iter()
            .rev()
            .take_while(|&&b| b == b'\\')
            .count();
        if backslashes % 2 == 0 {
            return quote;
        }
        at = quote + 1;
    }
    text.len()
}

/// Identity is the text: within one schema, names and quoting make it
/// unambiguous.
impl PartialEq for LabelRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for LabelRef<'_> {}

impl Hash for LabelRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(self.text.as_bytes());
    }
}

/// An owned label set, as a table keeps it: its text alone (the table knows
/// the schema).
#[derive(Clone, Debug, Default)]
pub struct LabelSet {
    text: Box<str>,
}

impl LabelSet {
    pub fn view(&self, schema: &'static Schema) -> LabelRef<'_> {
        LabelRef::new(schema, &self.text)
    }

    /// No labels: a free slot of a table.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// A set whose every value is [`OVERFLOW`].
    pub fn overflow(schema: &'static Schema) -> Self {
        let mut b = LabelBuf::default();
        b.start(schema);
        for _ in schema.names {
            b.push(OVERFLOW);
        }
        b.to_set()
    }
}

impl From<LabelRef<'_>> for LabelSet {
    fn from(r: LabelRef<'_>) -> Self {
        Self {
            text: r.text.into(),
        }
    }
}

/// Builds label sets value by value; reused across reports.
#[derive(Debug)]
pub struct LabelBuf {
    schema: &'static Schema,
    text: String,
    /// Where each pushed value's closing quote is, for [`Self::prefix`].
    ends: [u16; MAX_LABELS],
    len: usize,
}

impl Default for LabelBuf {
    fn default() -> Self {
        Self {
            schema: &MESH,
            text: String::new(),
            ends: [0; MAX_LABELS],
            len: 0,
        }
    }
}

impl LabelBuf {
    /// Starts a set of `schema`'s labels.
    pub fn start(&mut self, schema: &'static Schema) {
        self.schema = schema;
        self.text.clear();
        self.len = 0;
    }

    /// Appends the next label's value, cut at [`MAX_LABEL_VALUE_BYTES`] on a
    /// character boundary; returns whether it had to be cut.
    ///
    /// # Panics
    /// Past the schema's last label.
    pub fn push(&mut self, value: &str) -> bool {
        let (value, cut) = truncate(value);
        let name = self.schema.text[self.len];
        if needs_escape(value) {
            let mut bytes = std::mem::take(&mut self.text).into_bytes();
            bytes.extend_from_slice(name.as_bytes());
            escape(value, &mut bytes);
            self.text = String::from_utf8(bytes).expect("escaping keeps UTF-8");
        } else {
            // One reservation for the name, the value and the quote.
            self.text.reserve(name.len() + value.len() + 1);
            self.text.push_str(name);
            self.text.push_str(value);
        }
        self.ends[self.len] =
            u16::try_from(self.text.len()).expect("MAX_LABELS escaped values fit a u16");
        self.text.push('"');
        self.len += 1;
        cut
    }

    /// The set (once every label is pushed).
    pub fn view(&self) -> LabelRef<'_> {
        debug_assert_eq!(self.len, self.schema.len(), "every label pushed");
        LabelRef::new(self.schema, &self.text)
    }

    /// The set of the first labels, named by `schema`.
    ///
    /// # Panics
    /// When not all of `schema`'s labels are pushed yet; in debug builds
    /// also when its names are not the first of this set's.
    pub fn prefix(&self, schema: &'static Schema) -> LabelRef<'_> {
        // Which schemas nest is fixed where they are declared: checked in
        // debug builds, by count always.
        debug_assert!(
            self.schema.names.starts_with(schema.names),
            "{:?} does not begin with {:?}",
            self.schema.names,
            schema.names
        );
        assert!(schema.len() <= self.len, "every label of the prefix pushed");
        let end = schema
            .len()
            .checked_sub(1)
            .map_or(0, |last| usize::from(self.ends[last]) + 1);
        LabelRef::new(schema, &self.text[..end])
    }

    /// The set of the last labels, named by `schema`: a route is the last
    /// three mesh labels, a workload pair the last four TCP labels, so
    /// neither is built value by value again.
    ///
    /// # Panics
    /// When not every label is pushed yet; in debug builds also when
    /// `schema`'s names are not the last of this set's.
    pub fn suffix(&self, schema: &'static Schema) -> LabelRef<'_> {
        let names = self.schema.names;
        debug_assert!(
            names.ends_with(schema.names) && !schema.is_empty(),
            "{names:?} does not end with {:?}",
            schema.names
        );
        assert!(
            self.len == names.len() && schema.len() <= names.len(),
            "every label pushed"
        );
        // Past the closing quote of the value before the suffix and the
        // comma after it; from the start when the suffix is the whole set.
        let start = (names.len() - schema.len())
            .checked_sub(1)
            .map_or(0, |before| usize::from(self.ends[before]) + 2);
        LabelRef::new(schema, &self.text[start..])
    }

    pub fn to_set(&self) -> LabelSet {
        LabelSet::from(self.view())
    }
}

fn truncate(value: &str) -> (&str, bool) {
    if value.len() <= MAX_LABEL_VALUE_BYTES {
        return (value, false);
    }
    let mut end = MAX_LABEL_VALUE_BYTES;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    (&value[..end], true)
}

/// Whether `value` holds a byte the exposition escapes (`\\`, `"`, `\n`).
///
/// By hand, eight bytes at a time: every label of every report is checked
/// (some thirty values per report), and a byte-at-a-time scan was a tenth of
/// a small report's ingest. Each of the three bytes is found with the
/// classic zero-byte test on the word XORed with it repeated (exact for
/// whether a word holds the byte, which is all that is asked).
fn needs_escape(value: &str) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let zeros = |w: u64| w.wrapping_sub(ONES) & !w & HIGHS;
    let word = |b: &[u8]| {
        let w = u64::from_le_bytes(b.try_into().expect("eight bytes"));
        let found = zeros(w ^ (ONES * u64::from(b'\\')))
            | zeros(w ^ (ONES * u64::from(b'"')))
            | zeros(w ^ (ONES * u64::from(b'\n')));
        found != 0
    };
    let bytes = value.as_bytes();
    let Some(last) = bytes.len().checked_sub(8) else {
        return bytes.iter().any(|b| matches!(b, b'\\' | b'"' | b'\n'));
    };
    // Whole words, then the last eight bytes (overlapping the words before).
    bytes.chunks_exact(8).any(word) || word(&bytes[last..])
}

/// A label value as the exposition format writes it: `\\`, `\"` and `\n`
/// escaped.
pub fn escape(value: &str, out: &mut Vec<u8>) {
    if !needs_escape(value) {
        out.extend_from_slice(value.as_bytes());
        return;
    }
    let bytes = value.as_bytes();
    let mut from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'\\' => b"\\\\",
            b'"' => b"\\\"",
            b'\n' => b"\\n",
            _ => continue,
        };
        out.extend_from_slice(&bytes[from..i]);
        out.extend_from_slice(escaped);
        from = i + 1;
    }
    out.extend_from_slice(&bytes[from..]);
}

/// The inverse of [`escape`].
fn unescape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match (c, c == '\\') {
            (_, true) => match chars.next() {
                Some('n') => out.push('\n'),
                Some(c) => out.push(c),
                None => {}
            },
            (c, false) => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(values: &[&str]) -> LabelBuf {
        let mut b = LabelBuf::default();
        b.start(&MESH);
        for v in values {
            b.push(v);
        }
        b
    }

    #[test]
    fn suffixes_are_the_sets_of_their_values() {
        let values = ["shop/web-1", "", "shop/web", "é\\\"", "GET", "/a\"b\nc"];
        let b = set(&values);
        let mut route = LabelBuf::default();
        route.start(&ROUTE);
        for v in &values[3..] {
            route.push(v);
        }
        assert_eq!(b.suffix(&ROUTE), route.view(), "the last three values");
        assert_eq!(b.suffix(&ROUTE).values().collect::<Vec<_>>(), values[3..]);

        let mut tcp = LabelBuf::default();
        tcp.start(&TCP);
        let tcp_values = ["inbound", "src", "a\"", "", "x/y", "é"];
        for v in tcp_values {
            tcp.push(v);
        }
        let mut pair = LabelBuf::default();
        pair.start(&PAIR);
        for v in &tcp_values[2..] {
            pair.push(v);
        }
        assert_eq!(tcp.suffix(&PAIR), pair.view(), "the last four values");
        assert_eq!(b.suffix(&MESH), b.view(), "the whole set is its own suffix");
    }

    #[test]
    #[should_panic(expected = "does not end with")]
    fn a_suffix_must_name_the_last_labels() {
        let b = set(&["a", "b", "c", "d", "e", "f"]);
        let _ = b.suffix(&PAIR);
    }

    #[test]
    fn the_word_scan_finds_every_escaped_byte_anywhere() {
        let naive = |v: &str| v.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n'));
        // Every position in values of every length up to three words, each
        // escaped byte and its neighbours (which a borrow in the zero-byte
        // test could mistake for it), over ASCII and multibyte text.
        for len in 0..24 {
            for fill in ['a', '[', ']', '!', '#', '\x0b', '\t', '\u{e9}'] {
                let base: String = std::iter::repeat_n(fill, len).collect();
                assert_eq!(needs_escape(&base), naive(&base), "{base:?}");
                for at in 0..=base.chars().count() {
                    for c in ['\\', '"', '\n', '\x00', '\x01', '\u{80}', '\u{5c5c}'] {
                        let mut v: String = base.chars().take(at).collect();
                        v.push(c);
                        v.extend(base.chars().skip(at));
                        assert_eq!(needs_escape(&v), naive(&v), "{v:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn values_come_back_as_pushed_and_prefixes_are_sets() {
        let values = ["shop/web-1", "", "shop/web", "é\\", "GET", "/a\"b\nc"];
        let b = set(&values);
        let owned = b.to_set();
        let r = owned.view(&MESH);
        assert_eq!(r, b.view());
        assert_eq!(r.values().collect::<Vec<_>>(), values);
        assert_eq!(r.get(9), "");
        assert_eq!(
            r.rendered(),
            r#"source="shop/web-1",target="",source_deployment="shop/web",target_deployment="é\\",method="GET",path="/a\"b\nc""#
        );
        let pair = b.prefix(&PAIR);
        assert_eq!(pair.len(), 4);
        assert_eq!(pair.get(3), "é\\");
        let mut short = LabelBuf::default();
        short.start(&PAIR);
        for v in &values[..4] {
            short.push(v);
        }
        assert_eq!(pair, short.view(), "a prefix is the set of its values");
        assert_eq!(
            LabelRef::new(&MESH, "").values().count(),
            0,
            "a free slot has no values"
        );
        assert_eq!(
            pair.pairs()
                .map(|(n, v)| format!("{n}={v}"))
                .collect::<Vec<_>>(),
            [
                "source=shop/web-1",
                "target=",
                "source_deployment=shop/web",
                "target_deployment=é\\"
            ]
        );
    }

    #[test]
    fn sets_differing_only_in_where_values_split_differ() {
        let a = set(&["ab", "c", "", "", "", ""]);
        let b = set(&["a", "bc", "", "", "", ""]);
        assert_ne!(a.view(), b.view());
        let h = foldhash::quality::RandomState::default();
        assert_ne!(a.view().hash_with(&h), b.view().hash_with(&h));
    }

    #[test]
    fn long_values_are_cut_on_a_character_boundary() {
        let mut b = LabelBuf::default();
        b.start(&PAIR);
        assert!(b.push(&"é".repeat(MAX_LABEL_VALUE_BYTES)));
        for _ in 0..3 {
            assert!(!b.push("x"));
        }
        let v = b.view().get(0);
        assert_eq!(v.len(), MAX_LABEL_VALUE_BYTES);
        assert!(v.chars().all(|c| c == 'é'));
    }

    #[test]
    fn the_longest_escaped_values_fit() {
        let mut b = LabelBuf::default();
        b.start(&MESH);
        for _ in 0..MESH.len() {
            b.push(&"\"".repeat(2 * MAX_LABEL_VALUE_BYTES));
        }
        assert_eq!(b.view().get(5), "\"".repeat(MAX_LABEL_VALUE_BYTES));
    }

    #[test]
    fn escaping_covers_exactly_the_three_characters() {
        let mut out = Vec::new();
        escape("/a\"b\\c\nd,e=f", &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), r#"/a\"b\\c\nd,e=f"#);
        assert_eq!(unescape(r#"/a\"b\\c\nd,e=f"#), "/a\"b\\c\nd,e=f");
    }
}
