//! Source mappings: each producer spells its events differently (snake_case vs camelCase, nested
//! vs flat, numeric vs text ids), so each topic gets a mapping that says where every canonical
//! order field is found, as JSON pointers with alternatives tried in order.

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

use crate::document::{Document, Pointer};
use crate::error::{IngestError, Result};

/// One or more JSON pointers; the first that resolves to a non-null value wins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "OneOrMany", into = "Vec<String>")]
pub struct Paths {
    texts: Vec<String>,
    /// The texts parsed (those that are pointers: [`MappingSet::new`] refuses the others).
    pointers: Vec<Pointer>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl From<OneOrMany> for Paths {
    fn from(v: OneOrMany) -> Self {
        match v {
            OneOrMany::One(p) => Self::new(vec![p]),
            OneOrMany::Many(ps) => Self::new(ps),
        }
    }
}

impl From<Paths> for Vec<String> {
    fn from(p: Paths) -> Self {
        p.texts
    }
}

impl Paths {
    pub fn new(texts: Vec<String>) -> Self {
        let pointers = texts.iter().filter_map(|t| Pointer::parse(t)).collect();
        Self { texts, pointers }
    }

    fn of(paths: &[&str]) -> Self {
        Self::new(paths.iter().map(|p| (*p).to_owned()).collect())
    }

    /// The pointers as written.
    pub fn texts(&self) -> &[String] {
        &self.texts
    }

    /// The first non-null value any of the pointers finds.
    pub fn find<'v, D: Document<'v>>(&self, doc: D) -> Option<D> {
        self.pointers
            .iter()
            .filter_map(|p| p.find(doc))
            .find(|v| !v.is_null())
    }
}

/// Where each canonical order field is found in an event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FieldPaths {
    pub event_id: Paths,
    pub event_type: Paths,
    pub order_id: Paths,
    pub customer_id: Paths,
    pub facility_id: Paths,
    pub status: Paths,
    pub previous_status: Paths,
    pub total_amount: Paths,
    pub currency: Paths,
    /// ISO-8601 (with or without zone; without means UTC) or epoch milliseconds.
    pub event_time: Paths,
    /// An array of line items; each item is read with `item_fields`.
    pub items: Paths,
}

/// Where each line-item field is found, relative to one item.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ItemPaths {
    pub sku: Paths,
    pub quantity: Paths,
    pub unit_price: Paths,
    pub sale_price: Paths,
}

/// Canonical fields a mapping may require.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CanonicalField {
    EventId,
    EventType,
    OrderId,
    CustomerId,
    FacilityId,
    Status,
    PreviousStatus,
    TotalAmount,
    Currency,
    EventTime,
    Items,
}

impl CanonicalField {
    pub fn name(self) -> &'static str {
        match self {
            Self::EventId => "event_id",
            Self::EventType => "event_type",
            Self::OrderId => "order_id",
            Self::CustomerId => "customer_id",
            Self::FacilityId => "facility_id",
            Self::Status => "status",
            Self::PreviousStatus => "previous_status",
            Self::TotalAmount => "total_amount",
            Self::Currency => "currency",
            Self::EventTime => "event_time",
            Self::Items => "items",
        }
    }
}

/// How one family of topics maps onto the canonical order columns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceMapping {
    /// Name shown in logs and decode errors.
    pub name: String,
    /// Topic names or globs (`*`, `?`, `[abc]`) this mapping applies to.
    pub topics: Vec<String>,
    /// Fields a record must have; a record without one is archived with a decode error.
    #[serde(default)]
    pub required: Vec<CanonicalField>,
    /// Event type to record when the event carries none (for single-purpose topics).
    #[serde(default)]
    pub event_type_default: Option<String>,
    /// Each record is one line item (a legacy database's item table): `items` holds the one item
    /// read from the record itself with `item_fields`, and `fields.items` is not used.
    #[serde(default)]
    pub row_is_item: bool,
    #[serde(default)]
    pub fields: FieldPaths,
    #[serde(default)]
    pub item_fields: ItemPaths,
}

impl SourceMapping {
    /// Seed 003 (Rozana OMS): snake_case orders with items, and journey rows with
    /// current/previous status.
    pub fn seed_snake_case_orders() -> Self {
        Self {
            name: "oms-snake-case-orders".into(),
            topics: vec![
                "*orders".into(),
                "*order-events".into(),
                "*order_events".into(),
            ],
            required: vec![CanonicalField::OrderId],
            event_type_default: None,
            row_is_item: false,
            fields: FieldPaths {
                event_id: Paths::of(&["/event_id", "/id"]),
                event_type: Paths::of(&["/event_type", "/type"]),
                order_id: Paths::of(&["/order_id"]),
                customer_id: Paths::of(&["/customer_id"]),
                facility_id: Paths::of(&["/facility_id"]),
                status: Paths::of(&["/current_status", "/status"]),
                previous_status: Paths::of(&["/previous_status"]),
                total_amount: Paths::of(&["/total_amount"]),
                currency: Paths::of(&["/currency"]),
                event_time: Paths::of(&["/updated_at", "/created_at", "/order_datetime"]),
                items: Paths::of(&["/items"]),
            },
            item_fields: ItemPaths {
                sku: Paths::of(&["/sku"]),
                quantity: Paths::of(&["/quantity"]),
                unit_price: Paths::of(&["/unit_price"]),
                sale_price: Paths::of(&["/sale_price"]),
            },
        }
    }

    /// Seed 004 (Spring microservices): camelCase `OrderPlacedEvent` and
    /// `order-status-changed` with `orderId` / `oldStatus` / `newStatus` and numeric ids.
    pub fn seed_camel_case_status() -> Self {
        Self {
            name: "oms-camel-case-status".into(),
            topics: vec![
                "*order-status*".into(),
                "*order-placed*".into(),
                "*orderStatus*".into(),
            ],
            required: vec![CanonicalField::OrderId],
            event_type_default: None,
            row_is_item: false,
            fields: FieldPaths {
                event_id: Paths::of(&["/eventId", "/id"]),
                event_type: Paths::of(&["/eventType", "/type"]),
                order_id: Paths::of(&["/orderId"]),
                customer_id: Paths::of(&["/customerId", "/userId"]),
                facility_id: Paths::of(&["/facilityId", "/warehouseId"]),
                status: Paths::of(&["/newStatus", "/status"]),
                previous_status: Paths::of(&["/oldStatus"]),
                total_amount: Paths::of(&["/totalAmount", "/totalPrice"]),
                currency: Paths::of(&["/currency"]),
                event_time: Paths::of(&["/timestamp", "/updatedAt", "/createdAt"]),
                items: Paths::of(&["/items", "/orderLineItems"]),
            },
            item_fields: ItemPaths {
                sku: Paths::of(&["/skuCode", "/sku"]),
                quantity: Paths::of(&["/quantity"]),
                unit_price: Paths::of(&["/unitPrice", "/price"]),
                sale_price: Paths::of(&["/salePrice", "/price"]),
            },
        }
    }

    /// Fulfillment service (seed 000): nested envelope with a header and a fulfillment order.
    pub fn fulfillment_events() -> Self {
        Self {
            name: "fulfillment-events".into(),
            topics: vec!["*fulfillment*".into()],
            required: vec![CanonicalField::OrderId],
            event_type_default: Some("FULFILLMENT_UPDATED".into()),
            row_is_item: false,
            fields: FieldPaths {
                event_id: Paths::of(&["/header/eventId"]),
                event_type: Paths::of(&["/header/eventType"]),
                order_id: Paths::of(&["/fulfillmentOrder/orderRef"]),
                customer_id: Paths::of(&["/fulfillmentOrder/customer/id"]),
                facility_id: Paths::of(&["/fulfillmentOrder/facility/id"]),
                status: Paths::of(&["/fulfillmentOrder/status"]),
                previous_status: Paths::of(&["/fulfillmentOrder/previousStatus"]),
                total_amount: Paths::default(),
                currency: Paths::default(),
                event_time: Paths::of(&["/header/occurredAt"]),
                items: Paths::of(&["/fulfillmentOrder/lines"]),
            },
            item_fields: ItemPaths {
                sku: Paths::of(&["/sku"]),
                quantity: Paths::of(&["/quantity"]),
                unit_price: Paths::default(),
                sale_price: Paths::default(),
            },
        }
    }

    /// Any other topic: both spellings of every field, nothing required.
    pub fn generic() -> Self {
        let snake = Self::seed_snake_case_orders();
        let camel = Self::seed_camel_case_status();
        let both =
            |a: &Paths, b: &Paths| Paths::new(a.texts.iter().chain(&b.texts).cloned().collect());
        let (s, c) = (&snake.fields, &camel.fields);
        Self {
            name: "generic".into(),
            topics: vec!["*".into()],
            required: vec![],
            event_type_default: None,
            row_is_item: false,
            fields: FieldPaths {
                event_id: both(&s.event_id, &c.event_id),
                event_type: both(&s.event_type, &c.event_type),
                order_id: both(&s.order_id, &c.order_id),
                customer_id: both(&s.customer_id, &c.customer_id),
                facility_id: both(&s.facility_id, &c.facility_id),
                status: both(&s.status, &c.status),
                previous_status: both(&s.previous_status, &c.previous_status),
                total_amount: both(&s.total_amount, &c.total_amount),
                currency: both(&s.currency, &c.currency),
                event_time: both(&s.event_time, &c.event_time),
                items: both(&s.items, &c.items),
            },
            item_fields: ItemPaths {
                sku: both(&snake.item_fields.sku, &camel.item_fields.sku),
                quantity: both(&snake.item_fields.quantity, &camel.item_fields.quantity),
                unit_price: both(&snake.item_fields.unit_price, &camel.item_fields.unit_price),
                sale_price: both(&snake.item_fields.sale_price, &camel.item_fields.sale_price),
            },
        }
    }

    /// The mappings used when the config names none, most specific first.
    pub fn defaults() -> Vec<Self> {
        vec![
            Self::seed_camel_case_status(),
            Self::fulfillment_events(),
            Self::seed_snake_case_orders(),
            Self::generic(),
        ]
    }
}

/// Mappings compiled for lookup by topic: the first mapping whose globs match wins.
#[derive(Debug, Clone)]
pub struct MappingSet {
    mappings: Vec<SourceMapping>,
    globs: Vec<GlobSet>,
}

impl MappingSet {
    pub fn new(mappings: Vec<SourceMapping>) -> Result<Self> {
        let mut globs = Vec::with_capacity(mappings.len());
        for (i, m) in mappings.iter().enumerate() {
            if m.topics.is_empty() {
                return Err(IngestError::Mapping {
                    mapping: m.name.clone(),
                    reason: format!("mapping #{i} lists no topics"),
                });
            }
            let mut set = GlobSetBuilder::new();
            for t in &m.topics {
                set.add(Glob::new(t).map_err(|e| IngestError::Mapping {
                    mapping: m.name.clone(),
                    reason: format!("topic pattern `{t}`: {e}"),
                })?);
            }
            for p in mapping_pointers(m) {
                if !p.is_empty() && !p.starts_with('/') {
                    return Err(IngestError::Mapping {
                        mapping: m.name.clone(),
                        reason: format!("`{p}` is not a JSON pointer (they start with `/`)"),
                    });
                }
            }
            globs.push(set.build().map_err(|e| IngestError::Mapping {
                mapping: m.name.clone(),
                reason: e.to_string(),
            })?);
        }
        Ok(Self { mappings, globs })
    }

    pub fn get(&self, index: usize) -> &SourceMapping {
        &self.mappings[index]
    }

    /// Index of the first mapping called `name`.
    pub fn index_of(&self, name: &str) -> usize {
        self.mappings
            .iter()
            .position(|m| m.name == name)
            .expect("mapping names come from this set")
    }

    pub fn mappings(&self) -> &[SourceMapping] {
        &self.mappings
    }

    /// The mapping for `topic`, if any matches.
    pub fn for_topic(&self, topic: &str) -> Option<&SourceMapping> {
        self.globs
            .iter()
            .position(|g| g.is_match(topic))
            .map(|i| &self.mappings[i])
    }
}

fn mapping_pointers(m: &SourceMapping) -> impl Iterator<Item = &String> {
    let f = &m.fields;
    let i = &m.item_fields;
    [
        &f.event_id,
        &f.event_type,
        &f.order_id,
        &f.customer_id,
        &f.facility_id,
        &f.status,
        &f.previous_status,
        &f.total_amount,
        &f.currency,
        &f.event_time,
        &f.items,
        &i.sku,
        &i.quantity,
        &i.unit_price,
        &i.sale_price,
    ]
    .into_iter()
    .flat_map(|p| p.texts.iter())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_pick_the_first_matching_mapping() {
        let set = MappingSet::new(SourceMapping::defaults()).unwrap();
        assert_eq!(
            set.for_topic("oms.orders").unwrap().name,
            "oms-snake-case-orders"
        );
        assert_eq!(
            set.for_topic("oms.order-status").unwrap().name,
            "oms-camel-case-status"
        );
        assert_eq!(
            set.for_topic("wms.fulfillment").unwrap().name,
            "fulfillment-events"
        );
        assert_eq!(set.for_topic("anything").unwrap().name, "generic");
    }

    #[test]
    fn a_bad_pointer_or_glob_names_the_mapping() {
        let mut m = SourceMapping::generic();
        m.name = "mine".into();
        m.fields.order_id = Paths::new(vec!["order_id".into()]);
        let err = MappingSet::new(vec![m]).unwrap_err().to_string();
        assert!(
            err.contains("mine") && err.contains("JSON pointer"),
            "{err}"
        );
    }
}
