//! What the source mappings read: a JSON document, or an Avro datum read in place
//! ([`crate::avro::Datum`]). Both are walked by the same JSON pointers and converted into the
//! canonical columns by the same functions, so a mapping means one thing whatever the format;
//! the Avro side just never builds a JSON document for it (the document's strings and maps were
//! most of the cost of decoding Avro, docs/benchmarks.md).

use serde_json::{Number, Value};

/// One value of a document, as the conversions into canonical columns see it.
#[derive(Debug, Clone, Copy)]
pub enum View<'v> {
    Null,
    Bool(bool),
    Number(&'v Number),
    Str(&'v str),
    /// An Avro decimal: big-endian two's-complement unscaled bytes (at most 16) and the scale.
    /// It reads as its exact decimal text wherever text is wanted.
    Decimal {
        unscaled: &'v [u8],
        scale: usize,
    },
    Array,
    Object,
}

impl View<'_> {
    /// How the value is named in a decode reason.
    pub fn kind(self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Bool(_) => "a boolean",
            Self::Number(_) => "a number",
            Self::Str(_) | Self::Decimal { .. } => "a string",
            Self::Array => "an array",
            Self::Object => "an object",
        }
    }
}

/// A position in a document: a value, with its members and items reachable from it.
pub trait Document<'v>: Copy {
    fn view(self) -> View<'v>;
    /// The member named by `token` of an object (the last one of that name).
    fn member(self, token: &Token) -> Option<Self>;
    /// Item `index` of an array.
    fn item(self, index: usize) -> Option<Self>;
    /// How many items an array holds (0 for anything else).
    fn item_count(self) -> usize;

    fn is_null(self) -> bool {
        matches!(self.view(), View::Null)
    }
}

impl<'v> Document<'v> for &'v Value {
    fn view(self) -> View<'v> {
        match self {
            Value::Null => View::Null,
            Value::Bool(b) => View::Bool(*b),
            Value::Number(n) => View::Number(n),
            Value::String(s) => View::Str(s),
            Value::Array(_) => View::Array,
            Value::Object(_) => View::Object,
        }
    }

    fn member(self, token: &Token) -> Option<Self> {
        self.as_object()?.get(&token.name)
    }

    fn item(self, index: usize) -> Option<Self> {
        self.as_array()?.get(index)
    }

    fn item_count(self) -> usize {
        self.as_array().map_or(0, Vec::len)
    }
}

/// A JSON pointer (RFC 6901) parsed once: its tokens unescaped, with the array index each
/// stands for and the hash a record's fields are found by ([`name_hash`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer(Vec<Token>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub name: String,
    /// The array index the token names (digits without a leading zero), if any.
    pub index: Option<usize>,
    pub hash: u64,
}

impl Pointer {
    /// `None` for text that is not a pointer (a non-empty one starts with `/`).
    pub fn parse(text: &str) -> Option<Self> {
        if text.is_empty() {
            return Some(Self(Vec::new()));
        }
        let tokens = text.strip_prefix('/')?.split('/').map(|raw| {
            let name = raw.replace("~1", "/").replace("~0", "~");
            let index = if name.len() > 1 && name.starts_with('0') || name.starts_with('+') {
                None
            } else {
                name.parse().ok()
            };
            let hash = name_hash(&name);
            Token { name, index, hash }
        });
        Some(Self(tokens.collect()))
    }

    /// The value of `doc` this pointer points at, as `serde_json::Value::pointer` finds it.
    pub fn find<'v, D: Document<'v>>(&self, doc: D) -> Option<D> {
        let mut value = doc;
        for token in &self.0 {
            value = match value.view() {
                View::Object => value.member(token)?,
                View::Array => value.item(token.index?)?,
                _ => return None,
            };
        }
        Some(value)
    }
}

/// The hash record fields and pointer tokens are matched by before their names are compared
/// (computed when a mapping or a schema is compiled, never per record).
pub fn name_hash(name: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    name.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_find_what_serde_json_finds() {
        let doc = serde_json::json!({
            "a": {"b/c": [10, {"d~e": 5}], "": 1, "x": null},
            "01": 2,
        });
        for p in [
            "",
            "/a",
            "/a/b~1c",
            "/a/b~1c/0",
            "/a/b~1c/1/d~0e",
            "/a/",
            "/01",
            "/a/b~1c/01",
            "/a/b~1c/+1",
            "/a/b~1c/9",
            "/a/x",
            "/missing",
            "a",
            "/a/b~1c/1/d~0e/z",
        ] {
            let found = Pointer::parse(p).and_then(|pointer| pointer.find(&doc));
            assert_eq!(found, doc.pointer(p), "{p}");
        }
    }
}
