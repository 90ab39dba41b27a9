//! A writer schema compiled once into the table of nodes its datums are read with: named types
//! resolved to indexes, record fields in name order, and the Kafka Connect semantic types
//! Debezium's converter leaves only in the schema text (`connect.name` on plain `int`s and
//! `long`s, which apache-avro drops) found by field.

use std::collections::HashMap;

use apache_avro::Schema;
use apache_avro::schema::{Name, RecordSchema};
use serde_json::Value;

use crate::document::{Token, name_hash};

/// Debezium's variable-scale decimal record, read as the decimal it holds.
const VARIABLE_SCALE_DECIMAL: &str = "io.debezium.data.VariableScaleDecimal";

#[derive(Debug, Clone)]
pub(super) enum Node {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Fixed(usize),
    Enum(Vec<String>),
    Union(Vec<usize>),
    Array(usize),
    Map(usize),
    Record(RecordNode),
    /// A decimal over `bytes` or a `fixed` (the node at `inner`): exact decimal text.
    Decimal {
        scale: usize,
        inner: usize,
    },
    Date,
    /// `time-millis`, as the number it is.
    TimeMillis,
    /// `time-micros`, as the number it is.
    TimeMicros,
    /// `timestamp-millis`: epoch milliseconds, which the mappings read as such.
    TimestampMillis,
    /// The other timestamps: RFC 3339 text at their precision; local ones without a zone.
    Timestamp {
        unit: Unit,
        utc: bool,
    },
    /// Read by apache-avro: `big-decimal`, `uuid`, `duration`.
    Leaf(Schema),
    /// A named type being compiled (replaced before compiling ends).
    Pending,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Unit {
    Millis,
    Micros,
    Nanos,
}

#[derive(Debug, Clone)]
pub(super) struct RecordNode {
    pub(super) fields: Vec<FieldNode>,
    /// The fields' positions by the hash of their names ([`name_hash`]), in hash order.
    by_hash: Vec<(u64, usize)>,
    /// Debezium's `VariableScaleDecimal`: read as decimal text when it holds `scale` and `value`.
    pub(super) variable_scale_decimal: bool,
}

impl RecordNode {
    /// The position of the field `token` names.
    pub(super) fn position(&self, token: &Token) -> Option<usize> {
        let first = self.by_hash.partition_point(|(h, _)| *h < token.hash);
        self.by_hash[first..]
            .iter()
            .take_while(|(h, _)| *h == token.hash)
            .map(|(_, i)| *i)
            .find(|i| self.fields[*i].name == token.name)
    }
}

#[derive(Debug, Clone)]
pub(super) struct FieldNode {
    pub(super) name: String,
    pub(super) node: usize,
    /// The Kafka Connect time type (`io.debezium.time.*`) of an integer field.
    pub(super) connect_time: Option<String>,
}

/// What compiling needs: the named types and the Connect time fields by record full name.
struct Compiler<'a> {
    names: &'a HashMap<Name, Schema>,
    connect_times: &'a HashMap<String, HashMap<String, String>>,
    nodes: Vec<Node>,
    named: HashMap<Name, usize>,
}

/// Compiles `schema`, whose named types (its own and its references') are `names`: its nodes
/// and the index of its own.
pub(super) fn compile(
    schema: &Schema,
    names: &HashMap<Name, Schema>,
    connect_times: &HashMap<String, HashMap<String, String>>,
) -> Result<(Vec<Node>, usize), String> {
    let mut compiler = Compiler {
        names,
        connect_times,
        nodes: Vec::new(),
        named: HashMap::new(),
    };
    let root = compiler.node(schema)?;
    Ok((compiler.nodes, root))
}

impl Compiler<'_> {
    fn push(&mut self, node: Node) -> usize {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// The node index of `schema`, compiled on first sight of a named type.
    fn node(&mut self, schema: &Schema) -> Result<usize, String> {
        let node = match schema {
            Schema::Ref { name } => {
                if let Some(i) = self.named.get(name) {
                    return Ok(*i);
                }
                let named = self
                    .names
                    .get(name)
                    .ok_or_else(|| format!("the schema names an unknown type {name}"))?;
                return self.node(named);
            }
            Schema::Record(record) => return self.record(record),
            Schema::Enum(e) => {
                let i = self.push(Node::Enum(e.symbols.clone()));
                self.named.insert(e.name.clone(), i);
                return Ok(i);
            }
            Schema::Fixed(f) => {
                let i = self.push(Node::Fixed(f.size));
                self.named.insert(f.name.clone(), i);
                return Ok(i);
            }
            Schema::Union(union) => {
                let variants = union
                    .variants()
                    .iter()
                    .map(|v| self.node(v))
                    .collect::<Result<_, _>>()?;
                Node::Union(variants)
            }
            Schema::Array(a) => Node::Array(self.node(&a.items)?),
            Schema::Map(m) => Node::Map(self.node(&m.types)?),
            Schema::Decimal(d) => Node::Decimal {
                scale: d.scale,
                inner: self.node(&d.inner)?,
            },
            Schema::Null => Node::Null,
            Schema::Boolean => Node::Boolean,
            Schema::Int => Node::Int,
            Schema::Long => Node::Long,
            Schema::Float => Node::Float,
            Schema::Double => Node::Double,
            Schema::Bytes => Node::Bytes,
            Schema::String => Node::String,
            Schema::Date => Node::Date,
            Schema::TimeMillis => Node::TimeMillis,
            Schema::TimeMicros => Node::TimeMicros,
            Schema::TimestampMillis => Node::TimestampMillis,
            Schema::TimestampMicros => timestamp_node(Unit::Micros, true),
            Schema::TimestampNanos => timestamp_node(Unit::Nanos, true),
            Schema::LocalTimestampMillis => timestamp_node(Unit::Millis, false),
            Schema::LocalTimestampMicros => timestamp_node(Unit::Micros, false),
            Schema::LocalTimestampNanos => timestamp_node(Unit::Nanos, false),
            Schema::BigDecimal | Schema::Uuid | Schema::Duration => Node::Leaf(schema.clone()),
        };
        Ok(self.push(node))
    }

    fn record(&mut self, record: &RecordSchema) -> Result<usize, String> {
        // Registered before its fields, which may name it.
        let i = self.push(Node::Pending);
        self.named.insert(record.name.clone(), i);
        let times = self.connect_times.get(&record.name.fullname(None));
        let fields = record
            .fields
            .iter()
            .map(|f| {
                Ok(FieldNode {
                    name: f.name.clone(),
                    node: self.node(&f.schema)?,
                    connect_time: times.and_then(|t| t.get(&f.name)).cloned(),
                })
            })
            .collect::<Result<_, String>>()?;
        let connect_name = record.attributes.get("connect.name");
        let mut by_hash: Vec<(u64, usize)> = record
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| (name_hash(&f.name), i))
            .collect();
        by_hash.sort_unstable();
        self.nodes[i] = Node::Record(RecordNode {
            fields,
            by_hash,
            variable_scale_decimal: connect_name.and_then(Value::as_str)
                == Some(VARIABLE_SCALE_DECIMAL),
        });
        Ok(i)
    }
}

fn timestamp_node(unit: Unit, utc: bool) -> Node {
    Node::Timestamp { unit, utc }
}

/// Collects into `out` the integer fields of the records in the schema JSON `node` whose type
/// carries a `connect.name` the Debezium converter decodes, by record full name. `namespace` is
/// the enclosing one. (apache-avro drops the properties of primitive types, so the schema text
/// is walked for them.)
pub(super) fn connect_time_fields(
    node: &Value,
    namespace: Option<&str>,
    out: &mut HashMap<String, HashMap<String, String>>,
) {
    match node {
        Value::Array(branches) => {
            for branch in branches {
                connect_time_fields(branch, namespace, out);
            }
        }
        Value::Object(object) => match object.get("type") {
            Some(Value::String(kind)) if kind == "record" || kind == "error" => {
                let Some(name) = object.get("name").and_then(Value::as_str) else {
                    return;
                };
                let (full, inner) = match name.rsplit_once('.') {
                    Some((ns, _)) => (name.to_owned(), Some(ns.to_owned())),
                    None => {
                        let ns = object
                            .get("namespace")
                            .and_then(Value::as_str)
                            .or(namespace)
                            .filter(|ns| !ns.is_empty());
                        (
                            ns.map_or_else(|| name.to_owned(), |ns| format!("{ns}.{name}")),
                            ns.map(str::to_owned),
                        )
                    }
                };
                let fields = object.get("fields").and_then(Value::as_array);
                for field in fields.into_iter().flatten() {
                    let (Some(field_name), Some(kind)) =
                        (field.get("name").and_then(Value::as_str), field.get("type"))
                    else {
                        continue;
                    };
                    let branches = match kind {
                        Value::Array(b) => b.as_slice(),
                        other => std::slice::from_ref(other),
                    };
                    let logical = branches.iter().find_map(|b| {
                        b.get("connect.name")
                            .and_then(Value::as_str)
                            .filter(|n| crate::debezium::is_integer_time(n))
                    });
                    if let Some(logical) = logical {
                        out.entry(full.clone())
                            .or_default()
                            .insert(field_name.to_owned(), logical.to_owned());
                    }
                    connect_time_fields(kind, inner.as_deref(), out);
                }
            }
            Some(Value::String(kind)) if kind == "array" => {
                if let Some(items) = object.get("items") {
                    connect_time_fields(items, namespace, out);
                }
            }
            Some(Value::String(kind)) if kind == "map" => {
                if let Some(values) = object.get("values") {
                    connect_time_fields(values, namespace, out);
                }
            }
            Some(nested @ (Value::Object(_) | Value::Array(_))) => {
                connect_time_fields(nested, namespace, out);
            }
            _ => {}
        },
        _ => {}
    }
}
