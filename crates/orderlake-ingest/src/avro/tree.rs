//! One Avro datum read in place: its values in two flat vectors, strings and bytes borrowed from
//! the record and field names from the compiled schema, so that reading a record allocates a
//! handful of vectors instead of a string per field and a map per record. The mappings read it
//! as a [`Document`]; [`Datum::to_json`] gives the JSON document the Debezium envelope and the
//! tests read.

use serde_json::{Map, Number, Value};

use super::compile::RecordNode;
use super::decimal_text;
use crate::document::{Document, Token, View};

/// A datum's values. Containers come after their members (they are pushed when complete), and
/// the members of each are one run of `members`.
#[derive(Debug, Default)]
pub struct Datum<'a> {
    values: Vec<Item<'a>>,
    members: Vec<Member<'a>>,
    /// The members of the containers being read, moved to `members` as each is complete.
    pending: Vec<Member<'a>>,
}

#[derive(Debug)]
pub(super) enum Item<'a> {
    Null,
    Bool(bool),
    Number(Number),
    Str(&'a str),
    /// At most 16 bytes (checked when read), so its text always exists.
    Decimal {
        unscaled: &'a [u8],
        scale: usize,
    },
    /// The rarer kinds (dates, finer timestamps, base64 bytes, Connect's time types) as the
    /// JSON they read as.
    Json(Value),
    Array(Run),
    /// A record's fields, in the schema's order.
    Record(Run, &'a RecordNode),
    /// A map's entries, in the order read (the last of a key wins, as in a JSON object).
    Map(Run),
}

/// A run of `members`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Run {
    start: u32,
    len: u32,
}

/// A member of a container: its name (empty for array items) and the index of its value.
#[derive(Debug, Clone, Copy)]
struct Member<'a> {
    name: &'a str,
    value: u32,
}

impl<'a> Datum<'a> {
    pub(super) fn with_capacity(values: usize, members: usize) -> Self {
        Self {
            values: Vec::with_capacity(values),
            members: Vec::with_capacity(members),
            pending: Vec::with_capacity(members),
        }
    }

    /// How many values and members it holds.
    pub(super) fn sizes(&self) -> (usize, usize) {
        (self.values.len(), self.members.len())
    }

    /// Adds a complete value; its index.
    pub(super) fn push(&mut self, item: Item<'a>) -> u32 {
        self.values.push(item);
        u32::try_from(self.values.len() - 1).expect("a datum's values are bounded by its bytes")
    }

    /// Where the members of a container about to be read start.
    pub(super) fn open(&self) -> usize {
        self.pending.len()
    }

    /// Adds a member to the innermost container being read.
    pub(super) fn member(&mut self, name: &'a str, value: u32) {
        self.pending.push(Member { name, value });
    }

    /// Completes the container opened at `base`.
    pub(super) fn close(&mut self, base: usize) -> Run {
        let start = self.members.len();
        self.members.extend(self.pending.drain(base..));
        Run {
            start: u32::try_from(start).expect("bounded by the datum's bytes"),
            len: u32::try_from(self.members.len() - start).expect("bounded by the datum's bytes"),
        }
    }

    /// The value at `index` as JSON.
    pub(super) fn json(&self, index: u32) -> Value {
        match &self.values[index as usize] {
            Item::Null => Value::Null,
            Item::Bool(b) => Value::Bool(*b),
            Item::Number(n) => Value::Number(n.clone()),
            Item::Str(s) => Value::String((*s).to_owned()),
            Item::Decimal { unscaled, scale } => Value::String(
                decimal_text(unscaled, *scale).expect("decimals are checked when read"),
            ),
            Item::Json(v) => v.clone(),
            Item::Array(run) => Value::Array(self.run(*run).map(|m| self.json(m.value)).collect()),
            Item::Record(run, _) | Item::Map(run) => Value::Object(
                self.run(*run)
                    .map(|m| (m.name.to_owned(), self.json(m.value)))
                    .collect::<Map<_, _>>(),
            ),
        }
    }

    /// Replaces the value at `index`.
    pub(super) fn replace(&mut self, index: u32, item: Item<'a>) {
        self.values[index as usize] = item;
    }

    /// The datum as the JSON document it reads as.
    pub fn to_json(&self) -> Value {
        self.json(self.root_index())
    }

    /// The whole datum, for the mappings.
    pub fn root(&self) -> Node<'_, 'a> {
        Node::Datum(self, self.root_index())
    }

    fn root_index(&self) -> u32 {
        u32::try_from(self.values.len() - 1).expect("a datum holds at least one value")
    }

    fn run(&self, run: Run) -> impl Iterator<Item = &Member<'a>> {
        self.members[run.start as usize..][..run.len as usize].iter()
    }
}

/// A value of a [`Datum`], or of a JSON value inside one.
#[derive(Debug, Clone, Copy)]
pub enum Node<'t, 'a> {
    Datum(&'t Datum<'a>, u32),
    Json(&'t Value),
}

impl<'t> Document<'t> for Node<'t, '_> {
    fn view(self) -> View<'t> {
        let (datum, index) = match self {
            Self::Json(v) => return v.view(),
            Self::Datum(datum, index) => (datum, index),
        };
        match &datum.values[index as usize] {
            Item::Null => View::Null,
            Item::Bool(b) => View::Bool(*b),
            Item::Number(n) => View::Number(n),
            Item::Str(s) => View::Str(s),
            Item::Decimal { unscaled, scale } => View::Decimal {
                unscaled,
                scale: *scale,
            },
            Item::Json(v) => v.view(),
            Item::Array(_) => View::Array,
            Item::Record(..) | Item::Map(_) => View::Object,
        }
    }

    fn member(self, token: &Token) -> Option<Self> {
        let (datum, index) = match self {
            Self::Json(v) => return v.member(token).map(Self::Json),
            Self::Datum(datum, index) => (datum, index),
        };
        let found = match &datum.values[index as usize] {
            Item::Record(run, record) => {
                let position = record.position(token)?;
                datum.run(*run).nth(position).map(|m| m.value)
            }
            Item::Map(run) => datum
                .run(*run)
                .filter(|m| m.name == token.name)
                .last()
                .map(|m| m.value),
            Item::Json(v) => return v.member(token).map(Self::Json),
            _ => None,
        }?;
        Some(Self::Datum(datum, found))
    }

    fn item(self, index: usize) -> Option<Self> {
        let (datum, at) = match self {
            Self::Json(v) => return v.item(index).map(Self::Json),
            Self::Datum(datum, at) => (datum, at),
        };
        match &datum.values[at as usize] {
            Item::Array(run) => datum
                .run(*run)
                .nth(index)
                .map(|m| Self::Datum(datum, m.value)),
            Item::Json(v) => v.item(index).map(Self::Json),
            _ => None,
        }
    }

    fn item_count(self) -> usize {
        match self {
            Self::Json(v) => v.item_count(),
            Self::Datum(datum, at) => match &datum.values[at as usize] {
                Item::Array(run) => run.len as usize,
                Item::Json(v) => v.item_count(),
                _ => 0,
            },
        }
    }
}
