//! Sample OMS order event streams, as the seed systems emit them: the Rozana OMS (seed 003,
//! snake_case orders with items and journey rows), the Spring microservices (seed 004, camelCase
//! `OrderPlacedEvent` / `order-status-changed` with numeric ids) and a fulfillment service with a
//! nested envelope (seed 000). Orders follow the life cycle placed → paid → fulfilled → shipped →
//! last mile → delivered, with cancellations and returns; customers and SKUs are Zipf-skewed; a
//! configurable share of records is malformed. The same seed always yields the same stream, so
//! tests can regenerate exactly what was produced.

use chrono::{DateTime, Duration, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use serde_json::{Value, json};

/// Topics the generator writes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleTopics {
    /// Seed 003 shape (snake_case orders and journey rows).
    pub orders: String,
    /// Seed 004 shape (camelCase placed and status-changed events).
    pub status: String,
    /// Fulfillment service shape (nested header + fulfillmentOrder).
    pub fulfillment: String,
}

impl SampleTopics {
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            orders: format!("{prefix}orders"),
            status: format!("{prefix}order-status"),
            fulfillment: format!("{prefix}fulfillment"),
        }
    }

    pub fn all(&self) -> [&str; 3] {
        [&self.orders, &self.status, &self.fulfillment]
    }
}

impl Default for SampleTopics {
    fn default() -> Self {
        Self::with_prefix("oms.")
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct SampleSettings {
    pub seed: u64,
    pub topics: SampleTopics,
    /// First order's placement time; orders spread evenly from here over `span`.
    pub start: DateTime<Utc>,
    pub span: Duration,
    /// Number of distinct customers (Zipf-skewed order counts).
    pub customers: u64,
    pub facilities: u32,
    pub skus: u64,
    /// Share of records (0..=1) replaced by malformed input.
    pub malformed_share: f64,
    /// Expected number of events the stream will hold (spreads orders over the span).
    pub expected_events: u64,
    /// Size of the oversize-but-valid records among the malformed share.
    pub oversize_bytes: usize,
}

impl Default for SampleSettings {
    fn default() -> Self {
        let now = Utc::now();
        Self {
            seed: 42,
            topics: SampleTopics::default(),
            start: now - Duration::days(365 * 3),
            span: Duration::days(365 * 3),
            customers: 20_000,
            facilities: 12,
            skus: 5_000,
            malformed_share: 0.01,
            expected_events: 100_000,
            oversize_bytes: 300 * 1024,
        }
    }
}

/// How a record was made, so tests know what the archive should say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKind {
    /// A well-formed event; the fields an archive row must show.
    Valid(ExpectedOrder),
    /// Deliberately bad input; the archive must keep it raw with a decode error.
    Malformed(&'static str),
    /// A null value.
    Tombstone,
}

/// Canonical values of a valid event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedOrder {
    pub order_id: String,
    pub customer_id: String,
    pub status: String,
    pub previous_status: Option<String>,
    /// Total in units of 10^-4 (only on events that carry one).
    pub total_amount: Option<i128>,
    pub items: usize,
    pub event_time_ms: i64,
}

/// One record ready to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleRecord {
    pub topic: String,
    /// The partition to produce to; `None` lets the producer's partitioner choose by key.
    pub partition: Option<i32>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub timestamp_ms: i64,
    pub kind: RecordKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channel {
    /// Seed 003 producer.
    Rozana,
    /// Seed 004 producer.
    Spring,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Placed,
    Paid,
    Fulfilled,
    Shipped,
    LastMile,
    Delivered,
    Cancelled,
    Returned,
}

impl Stage {
    fn rozana(self) -> &'static str {
        match self {
            Self::Placed => "placed",
            Self::Paid => "paid",
            Self::Fulfilled => "fulfilled",
            Self::Shipped => "shipped",
            Self::LastMile => "last_mile",
            Self::Delivered => "delivered",
            Self::Cancelled => "cancelled",
            Self::Returned => "returned",
        }
    }

    fn upper(self) -> &'static str {
        match self {
            Self::Placed => "CREATED",
            Self::Paid => "PAID",
            Self::Fulfilled => "FULFILLED",
            Self::Shipped => "SHIPPED",
            Self::LastMile => "LAST_MILE",
            Self::Delivered => "DELIVERED",
            Self::Cancelled => "CANCELLED",
            Self::Returned => "RETURNED",
        }
    }

    fn is_fulfillment(self) -> bool {
        matches!(
            self,
            Self::Fulfilled | Self::Shipped | Self::LastMile | Self::Delivered
        )
    }
}

#[derive(Debug, Clone)]
struct Line {
    sku: String,
    quantity: i64,
    unit_price: i128,
    sale_price: i128,
}

#[derive(Debug, Clone)]
struct Order {
    channel: Channel,
    number: u64,
    customer: u64,
    facility: u32,
    currency: &'static str,
    lines: Vec<Line>,
    stages: Vec<(Stage, DateTime<Utc>)>,
}

impl Order {
    fn id(&self) -> String {
        match self.channel {
            Channel::Rozana => format!("ORD-{:08}", self.number),
            Channel::Spring => (10_000_000 + self.number).to_string(),
        }
    }

    fn customer_id(&self) -> String {
        match self.channel {
            Channel::Rozana => format!("CUST-{:06}", self.customer),
            Channel::Spring => (500_000 + self.customer).to_string(),
        }
    }

    fn facility_id(&self) -> String {
        format!("FAC-{:02}", self.facility)
    }

    fn total(&self) -> i128 {
        self.lines
            .iter()
            .map(|l| l.sale_price * i128::from(l.quantity))
            .sum()
    }
}

/// Money as a decimal literal from units of 10^-4 (two decimals are enough for our prices).
fn money(units: i128) -> String {
    format!("{}.{:02}", units / 10_000, (units % 10_000) / 100)
}

/// An endless, deterministic stream of sample records.
#[derive(Debug)]
pub struct OrderEventGenerator {
    settings: SampleSettings,
    rng: StdRng,
    customers: Zipf<f64>,
    skus: Zipf<f64>,
    next_order: u64,
    pending: std::collections::VecDeque<SampleRecord>,
    seq: u64,
}

impl OrderEventGenerator {
    pub fn new(settings: SampleSettings) -> Self {
        let customers = Zipf::new(settings.customers.max(1) as f64, 1.07).expect("valid Zipf");
        let skus = Zipf::new(settings.skus.max(1) as f64, 1.2).expect("valid Zipf");
        Self {
            rng: StdRng::seed_from_u64(settings.seed),
            customers,
            skus,
            settings,
            next_order: 0,
            pending: std::collections::VecDeque::new(),
            seq: 0,
        }
    }

    fn sku_price(sku: u64) -> i128 {
        // Deterministic catalogue price between 1.99 and 499.99.
        i128::from(199 + (sku * 7_919) % 49_800) * 100
    }

    fn new_order(&mut self) -> Order {
        let n = self.next_order;
        self.next_order += 1;
        // ~4.6 events per order on average: spread orders evenly over the span.
        let orders_total = (self.settings.expected_events as f64 / 4.6).max(1.0);
        let span_ms = self.settings.span.num_milliseconds().max(1) as f64;
        let offset_ms = ((n as f64 / orders_total * span_ms) as i64 / 1000
            + self.rng.random_range(0..60))
            * 1000;
        let placed = self.settings.start + Duration::milliseconds(offset_ms);
        let channel = if self.rng.random_bool(0.5) {
            Channel::Rozana
        } else {
            Channel::Spring
        };
        let lines = (0..self.rng.random_range(1..=5))
            .map(|_| {
                let sku = self.skus.sample(&mut self.rng) as u64;
                let unit_price = Self::sku_price(sku);
                let discounted = self.rng.random_bool(0.25);
                Line {
                    sku: format!("SKU-{sku:05}"),
                    quantity: self.rng.random_range(1..=4),
                    unit_price,
                    sale_price: if discounted {
                        unit_price * 9 / 10 / 100 * 100
                    } else {
                        unit_price
                    },
                }
            })
            .collect();
        let mut stages = vec![(Stage::Placed, placed)];
        let mut t = placed;
        let mut step = |rng: &mut StdRng, lo: i64, hi: i64| {
            t += Duration::minutes(rng.random_range(lo..hi));
            t
        };
        let fate: f64 = self.rng.random();
        if fate < 0.05 {
            stages.push((Stage::Cancelled, step(&mut self.rng, 5, 600)));
        } else {
            stages.push((Stage::Paid, step(&mut self.rng, 1, 30)));
            if fate < 0.09 {
                stages.push((Stage::Cancelled, step(&mut self.rng, 30, 1_440)));
            } else {
                stages.push((Stage::Fulfilled, step(&mut self.rng, 60, 1_440)));
                stages.push((Stage::Shipped, step(&mut self.rng, 60, 1_440)));
                stages.push((Stage::LastMile, step(&mut self.rng, 600, 2_880)));
                stages.push((Stage::Delivered, step(&mut self.rng, 30, 600)));
                if fate > 0.95 {
                    stages.push((Stage::Returned, step(&mut self.rng, 1_440, 20_160)));
                }
            }
        }
        Order {
            channel,
            number: n,
            customer: self.customers.sample(&mut self.rng) as u64,
            facility: self.rng.random_range(1..=self.settings.facilities.max(1)),
            currency: if self.rng.random_bool(0.8) {
                "INR"
            } else {
                "USD"
            },
            lines,
            stages,
        }
    }

    fn event(&mut self, order: &Order, idx: usize) -> SampleRecord {
        let (stage, at) = order.stages[idx];
        let previous = idx.checked_sub(1).map(|i| order.stages[i].0);
        self.seq += 1;
        let event_id = format!("{:016x}-{:08x}", self.settings.seed, self.seq);
        let ts = at.timestamp_millis();
        let oid = order.id();
        let (topic, value, event_type, producer, status, prev) = if stage.is_fulfillment() {
            let v = json!({
                "header": {"eventId": event_id, "eventType": format!("FULFILLMENT_{}", stage.upper()), "occurredAt": ts, "source": "fulfillment-svc"},
                "fulfillmentOrder": {
                    "orderRef": oid,
                    "customer": {"id": order.customer_id()},
                    "facility": {"id": order.facility_id(), "region": format!("R{}", order.facility % 4)},
                    "status": stage.upper(),
                    "previousStatus": previous.map(Stage::upper),
                    "lines": order.lines.iter().map(|l| json!({"sku": l.sku, "quantity": l.quantity})).collect::<Vec<_>>(),
                }
            });
            (
                &self.settings.topics.fulfillment,
                v,
                format!("FULFILLMENT_{}", stage.upper()),
                "fulfillment-svc",
                stage.upper().to_owned(),
                previous.map(|p| p.upper().to_owned()),
            )
        } else {
            match order.channel {
                Channel::Rozana => {
                    let mut v = json!({
                        "event_id": event_id,
                        "order_id": oid,
                        "customer_id": order.customer_id(),
                        "facility_id": order.facility_id(),
                    });
                    let obj = v.as_object_mut().expect("object");
                    if stage == Stage::Placed {
                        let total: f64 = money(order.total()).parse().expect("decimal");
                        obj.insert("event_type".into(), json!("order_created"));
                        obj.insert("status".into(), json!(stage.rozana()));
                        obj.insert("total_amount".into(), json!(total));
                        obj.insert("currency".into(), json!(order.currency));
                        obj.insert(
                            "order_datetime".into(),
                            json!(at.format("%Y-%m-%dT%H:%M:%S").to_string()),
                        );
                        obj.insert(
                            "eta".into(),
                            json!(
                                (at + Duration::days(3))
                                    .format("%Y-%m-%dT%H:%M:%S")
                                    .to_string()
                            ),
                        );
                        obj.insert("items".into(), Value::Array(order.lines.iter().map(|l| json!({
                            "sku": l.sku,
                            "quantity": l.quantity,
                            "unit_price": money(l.unit_price).parse::<f64>().expect("decimal"),
                            "sale_price": money(l.sale_price).parse::<f64>().expect("decimal"),
                        })).collect()));
                    } else {
                        obj.insert("event_type".into(), json!("order_status_updated"));
                        obj.insert("current_status".into(), json!(stage.rozana()));
                        obj.insert("previous_status".into(), json!(previous.map(Stage::rozana)));
                        obj.insert("updated_at".into(), json!(at.to_rfc3339()));
                    }
                    (
                        &self.settings.topics.orders,
                        v.clone(),
                        obj_type(&v),
                        "oms-rozana",
                        stage.rozana().to_owned(),
                        previous.map(|p| p.rozana().to_owned()),
                    )
                }
                Channel::Spring => {
                    let v = if stage == Stage::Placed {
                        json!({
                            "eventId": event_id,
                            "eventType": "ORDER_PLACED",
                            "orderId": 10_000_000 + order.number,
                            "customerId": 500_000 + order.customer,
                            "facilityId": order.facility_id(),
                            "status": stage.upper(),
                            "totalAmount": money(order.total()),
                            "currency": order.currency,
                            "createdAt": at.with_timezone(&chrono::FixedOffset::east_opt(5 * 3600 + 1800).expect("IST")).to_rfc3339(),
                            "orderLineItems": order.lines.iter().map(|l| json!({
                                "skuCode": l.sku, "quantity": l.quantity,
                                "unitPrice": money(l.unit_price), "salePrice": money(l.sale_price),
                            })).collect::<Vec<_>>(),
                        })
                    } else {
                        json!({
                            "eventId": event_id,
                            "eventType": "ORDER_STATUS_CHANGED",
                            "orderId": 10_000_000 + order.number,
                            "customerId": 500_000 + order.customer,
                            "oldStatus": previous.map(Stage::upper),
                            "newStatus": stage.upper(),
                            "timestamp": ts,
                        })
                    };
                    (
                        &self.settings.topics.status,
                        v.clone(),
                        obj_type(&v),
                        "oms-spring",
                        stage.upper().to_owned(),
                        previous.map(|p| p.upper().to_owned()),
                    )
                }
            }
        };
        let expected = ExpectedOrder {
            order_id: oid.clone(),
            customer_id: order.customer_id(),
            status,
            previous_status: prev,
            total_amount: (stage == Stage::Placed).then(|| order.total()),
            items: order.lines.len(),
            event_time_ms: ts,
        };
        let headers = vec![
            ("event-type".to_owned(), event_type.into_bytes()),
            ("producer".to_owned(), producer.as_bytes().to_vec()),
            (
                "trace-id".to_owned(),
                self.rng.random::<[u8; 16]>().to_vec(),
            ),
        ];
        SampleRecord {
            topic: topic.clone(),
            partition: None,
            key: Some(oid.into_bytes()),
            value: Some(serde_json::to_vec(&value).expect("JSON")),
            headers,
            timestamp_ms: ts,
            kind: RecordKind::Valid(expected),
        }
    }

    /// Replaces a record's value with one of the kinds of bad input producers send.
    fn spoil(&mut self, mut rec: SampleRecord) -> SampleRecord {
        let value = rec.value.take().unwrap_or_default();
        let (kind, bad): (&'static str, Option<Vec<u8>>) = match self.rng.random_range(0..8) {
            0 => ("truncated JSON", Some(value[..value.len() / 2].to_vec())),
            1 => ("not UTF-8", Some([&[0xff, 0xfe, 0x00][..], &value].concat())),
            2 => ("JSON array", Some(b"[1,2,3]".to_vec())),
            3 => ("missing order id", Some(br#"{"event_type":"order_created","status":"placed"}"#.to_vec())),
            4 => ("wrong types", Some(br#"{"order_id":"ORD-X","orderId":"ORD-X","total_amount":"lots","totalAmount":"lots","timestamp":"yesterday","updated_at":"yesterday"}"#.to_vec())),
            5 => ("empty value", Some(Vec::new())),
            6 => ("tombstone", None),
            _ => {
                let filler = "x".repeat(self.settings.oversize_bytes);
                ("oversize value", Some(format!(r#"{{"order_id":"ORD-BIG","note":"{filler}","#).into_bytes()))
            }
        };
        rec.value = bad;
        rec.kind = if rec.value.is_none() {
            RecordKind::Tombstone
        } else {
            RecordKind::Malformed(kind)
        };
        rec
    }
}

fn obj_type(v: &Value) -> String {
    v.get("event_type")
        .or_else(|| v.get("eventType"))
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_owned()
}

impl Iterator for OrderEventGenerator {
    type Item = SampleRecord;

    fn next(&mut self) -> Option<SampleRecord> {
        if self.pending.is_empty() {
            let order = self.new_order();
            for i in 0..order.stages.len() {
                let rec = self.event(&order, i);
                self.pending.push_back(rec);
            }
        }
        let rec = self.pending.pop_front()?;
        Some(
            if self
                .rng
                .random_bool(self.settings.malformed_share.clamp(0.0, 1.0))
            {
                self.spoil(rec)
            } else {
                rec
            },
        )
    }
}

/// A fixed instant, handy for reproducible tests: 2019-01-01T00:00:00Z.
pub fn reference_start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2019, 1, 1, 0, 0, 0)
        .single()
        .expect("valid date")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> SampleSettings {
        SampleSettings {
            start: reference_start(),
            expected_events: 2_000,
            malformed_share: 0.05,
            ..SampleSettings::default()
        }
    }

    #[test]
    fn same_seed_same_stream_and_all_shapes_appear() {
        let a: Vec<_> = OrderEventGenerator::new(settings()).take(2_000).collect();
        let b: Vec<_> = OrderEventGenerator::new(settings()).take(2_000).collect();
        assert_eq!(a, b);
        let t = SampleTopics::default();
        for topic in t.all() {
            assert!(
                a.iter().filter(|r| r.topic == topic).count() > 200,
                "{topic}"
            );
        }
        let malformed = a
            .iter()
            .filter(|r| !matches!(r.kind, RecordKind::Valid(_)))
            .count();
        assert!((40..=170).contains(&malformed), "{malformed}");
        assert!(a.iter().any(|r| r.kind == RecordKind::Tombstone));
    }

    #[test]
    fn orders_follow_the_life_cycle_and_span_the_years() {
        let recs: Vec<_> = OrderEventGenerator::new(SampleSettings {
            malformed_share: 0.0,
            ..settings()
        })
        .take(2_000)
        .collect();
        let first = recs.first().unwrap().timestamp_ms;
        let last = recs.last().unwrap().timestamp_ms;
        assert!(last - first > 2 * 365 * 86_400_000, "span {first}..{last}");
        let delivered = recs
            .iter()
            .filter(|r| matches!(&r.kind, RecordKind::Valid(e) if e.status == "DELIVERED"))
            .count();
        let cancelled = recs
            .iter()
            .filter(|r| matches!(&r.kind, RecordKind::Valid(e) if e.status.eq_ignore_ascii_case("cancelled")))
            .count();
        assert!(
            delivered > cancelled && cancelled > 0,
            "{delivered} {cancelled}"
        );
    }
}
