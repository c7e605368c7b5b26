//! The cost engine (`e2e cost`): usage records + a price file → a report by day, ISO week, month,
//! tenant and cluster, Loki side and agent side, with budget alerts. Pure: no I/O, no clock.
//!
//! **Money** is integer micro-units of the price file's currency (`i128`), never floats. Prices are
//! written as decimal strings (`"0.50"`, at most 6 decimals) and parsed exactly.
//!
//! **Exactness.** Each usage record is priced once per item (ingest, storage, requests, CPU,
//! memory), rounded half-up to a micro-unit: that is a [`CostItem`], the report's atom. Every total
//! of the report (a day, a week, a month, a tenant, a cluster, a side, the whole) is a plain integer
//! sum of atoms, so every total equals the sum of its parts exactly; rounding happens once per atom.
//!
//! **Units.** GB = 10^9 bytes. Ingest is priced on `loki_bytes` (line + structured metadata, what
//! Loki's distributor counts). Storage is accrued on the day of ingest for the whole retention:
//! `loki_bytes × retention_days / 30` GB-months (a month is 30 days), retention per tenant from the
//! price file. Requests are push requests that stored data. Agent CPU: `cpu_ms / 3_600_000`
//! CPU-hours; agent memory: `byte-seconds / (10^9 × 3600)` GB-hours.
//!
//! **Grouping.** Tenants are a Loki notion: [`CostReport::by_tenant`] sums the Loki side only (its
//! total is `loki_micros`). Clusters have both sides: [`CostReport::by_cluster`] sums to `total`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};

use chrono::{Datelike, Duration as Days, NaiveDate};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// Money in micro-units (10^-6) of the report's currency.
pub type Micros = i128;

/// A decimal amount parsed exactly into micro-units (`"12.5"` → 12_500_000).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Money(pub Micros);

impl Money {
    /// Parses a non-negative decimal with at most 6 fractional digits.
    pub fn parse(s: &str) -> Result<Money, String> {
        let t = s.trim();
        let (int, frac) = t.split_once('.').unwrap_or((t, ""));
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(int) || !(frac.is_empty() || digits(frac)) {
            return Err(format!("{s:?} is not a decimal amount like \"0.50\""));
        }
        if frac.len() > 6 {
            return Err(format!(
                "{s:?} has more than 6 decimals (money is kept in exact micro-units)"
            ));
        }
        let int: i128 = int.parse().map_err(|_| format!("{s:?} is too large"))?;
        let frac_micros: i128 = format!("{frac:0<6}").parse().unwrap_or(0);
        int.checked_mul(1_000_000)
            .and_then(|v| v.checked_add(frac_micros))
            .filter(|v| *v <= i64::MAX as i128)
            .map(Money)
            .ok_or_else(|| format!("{s:?} is too large"))
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_micros(self.0))
    }
}

/// `12_345_678` → `"12.345678"`.
pub fn format_micros(m: Micros) -> String {
    let sign = if m < 0 { "-" } else { "" };
    let a = m.unsigned_abs();
    format!("{sign}{}.{:06}", a / 1_000_000, a % 1_000_000)
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Money, D::Error> {
        // Integers are exact; a YAML/JSON float is not, so it is refused with the fix.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Str(String),
            Float(f64),
        }
        match Raw::deserialize(d)? {
            Raw::Int(i) => Ok(Money(i as i128 * 1_000_000)),
            Raw::Str(s) => Money::parse(&s).map_err(serde::de::Error::custom),
            Raw::Float(v) => Err(serde::de::Error::custom(format!(
                "amount {v} is a float; quote it (\"{v}\") so it is read exactly"
            ))),
        }
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// `YYYY-MM-DD` ↔ `NaiveDate` (chrono's serde feature is not enabled in the workspace).
pub mod day_fmt {
    use chrono::NaiveDate;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &NaiveDate, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&d.format("%Y-%m-%d").to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveDate, D::Error> {
        let s = String::deserialize(d)?;
        NaiveDate::parse_from_str(&s, "%Y-%m-%d").map_err(serde::de::Error::custom)
    }
}

/// One row of fake-loki's usage ledger: one UTC day (of the push), one tenant, one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRow {
    #[serde(with = "day_fmt")]
    pub day: NaiveDate,
    /// Absent when the ledger was grouped without `tenant`.
    #[serde(default)]
    pub tenant: String,
    /// Absent when grouped without `cluster`, or empty for streams without the label.
    #[serde(default)]
    pub cluster: String,
    pub lines: u64,
    /// Line bytes.
    pub bytes: u64,
    /// Line + structured-metadata bytes (`loki_distributor_bytes_received_total`).
    pub loki_bytes: u64,
    #[serde(default)]
    pub streams: u64,
    #[serde(default)]
    pub pushes: u64,
    /// Discarded entries by Loki reason.
    #[serde(default)]
    pub rejected: BTreeMap<String, u64>,
}

/// `GET /fake-loki/api/v1/usage` as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageResponse {
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub by: Vec<String>,
    pub rows: Vec<UsageRow>,
}

/// One agent's resource use booked on one day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentUsage {
    #[serde(with = "day_fmt")]
    pub day: NaiveDate,
    pub cluster: String,
    /// CPU time (user + system), milliseconds.
    pub cpu_ms: u64,
    /// Resident memory integrated over time, byte-seconds.
    pub mem_byte_seconds: u64,
    #[serde(default)]
    pub peak_rss_bytes: u64,
    /// Bytes read from log files.
    #[serde(default)]
    pub read_bytes: u64,
    /// Line bytes sent to Loki.
    #[serde(default)]
    pub sent_bytes: u64,
}

/// Retention per tenant (days), for storage accrual.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    pub default_days: u32,
    #[serde(default)]
    pub tenants: BTreeMap<String, u32>,
}

impl Retention {
    pub fn days(&self, tenant: &str) -> u32 {
        self.tenants
            .get(tenant)
            .copied()
            .unwrap_or(self.default_days)
    }
}

/// Loki-side prices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LokiPrices {
    pub ingest_per_gb: Money,
    pub storage_per_gb_month: Money,
    pub per_million_requests: Money,
    pub retention: Retention,
}

/// Agent-side prices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentPrices {
    pub per_cpu_hour: Money,
    pub per_gb_hour: Money,
}

/// The price file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prices {
    pub currency: String,
    pub loki: LokiPrices,
    pub agent: AgentPrices,
}

impl Prices {
    pub fn from_yaml(text: &str) -> Result<Prices, Error> {
        serde_norway::from_str(text).map_err(|e| Error::Settings(format!("price file: {e}")))
    }
}

/// Which side of the pipeline a cost is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Loki,
    Agent,
}

/// What is priced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Item {
    Ingest,
    Storage,
    Requests,
    Cpu,
    Memory,
}

impl Item {
    pub fn side(self) -> Side {
        match self {
            Item::Ingest | Item::Storage | Item::Requests => Side::Loki,
            Item::Cpu | Item::Memory => Side::Agent,
        }
    }
}

/// The atom: one priced item of one usage record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CostItem {
    #[serde(with = "day_fmt")]
    pub day: NaiveDate,
    pub side: Side,
    pub item: Item,
    /// Empty on the agent side.
    pub tenant: String,
    pub cluster: String,
    /// In the item's base unit: bytes, byte-days, requests, CPU ms, byte-seconds.
    pub quantity: u128,
    pub micros: Micros,
}

/// `quantity × price / divisor`, rounded half-up (all operands non-negative).
fn price(quantity: u128, p: Money, divisor: u128) -> Result<Micros, Error> {
    let p = u128::try_from(p.0).map_err(|_| Error::Settings("negative price".into()))?;
    let num = quantity
        .checked_mul(p)
        .ok_or_else(|| Error::Settings(format!("cost overflow: {quantity} x {p} micros")))?;
    let q = num / divisor + u128::from(num % divisor * 2 >= divisor);
    Micros::try_from(q).map_err(|_| Error::Settings("cost overflow".into()))
}

const GB: u128 = 1_000_000_000;

/// Prices every record: the atoms every total is summed from.
pub fn price_items(
    usage: &[UsageRow],
    agents: &[AgentUsage],
    prices: &Prices,
) -> Result<Vec<CostItem>, Error> {
    let mut out = Vec::with_capacity(usage.len() * 3 + agents.len() * 2);
    for r in usage {
        let lb = u128::from(r.loki_bytes);
        let byte_days = lb * u128::from(prices.loki.retention.days(&r.tenant));
        for (item, quantity, micros) in [
            (Item::Ingest, lb, price(lb, prices.loki.ingest_per_gb, GB)?),
            (
                Item::Storage,
                byte_days,
                price(byte_days, prices.loki.storage_per_gb_month, GB * 30)?,
            ),
            (
                Item::Requests,
                u128::from(r.pushes),
                price(
                    u128::from(r.pushes),
                    prices.loki.per_million_requests,
                    1_000_000,
                )?,
            ),
        ] {
            out.push(CostItem {
                day: r.day,
                side: Side::Loki,
                item,
                tenant: r.tenant.clone(),
                cluster: r.cluster.clone(),
                quantity,
                micros,
            });
        }
    }
    for a in agents {
        let cpu = u128::from(a.cpu_ms);
        let mem = u128::from(a.mem_byte_seconds);
        for (item, quantity, micros) in [
            (
                Item::Cpu,
                cpu,
                price(cpu, prices.agent.per_cpu_hour, 3_600_000)?,
            ),
            (
                Item::Memory,
                mem,
                price(mem, prices.agent.per_gb_hour, GB * 3600)?,
            ),
        ] {
            out.push(CostItem {
                day: a.day,
                side: Side::Agent,
                item,
                tenant: String::new(),
                cluster: a.cluster.clone(),
                quantity,
                micros,
            });
        }
    }
    Ok(out)
}

/// The window a report covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Day,
    Week,
    Month,
    All,
}

impl Period {
    pub fn parse(s: &str) -> Result<Period, String> {
        match s {
            "day" => Ok(Period::Day),
            "week" => Ok(Period::Week),
            "month" => Ok(Period::Month),
            "all" => Ok(Period::All),
            _ => Err(format!("period must be day, week, month or all, not {s:?}")),
        }
    }

    /// The first and last day of the period containing `at` (`All`: `None`).
    pub fn bounds(self, at: NaiveDate) -> Option<(NaiveDate, NaiveDate)> {
        match self {
            Period::Day => Some((at, at)),
            Period::Week => {
                let monday = at - Days::days(i64::from(at.weekday().num_days_from_monday()));
                Some((monday, monday + Days::days(6)))
            }
            Period::Month => {
                let first = at.with_day(1)?;
                let next = if first.month() == 12 {
                    NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)?
                } else {
                    NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)?
                };
                Some((first, next - Days::days(1)))
            }
            Period::All => None,
        }
    }

    /// The bucket key of `day` in this period: `2026-11-22`, `2026-W47`, `2026-11`, `all`.
    pub fn key(self, day: NaiveDate) -> String {
        match self {
            Period::Day => day.format("%Y-%m-%d").to_string(),
            Period::Week => {
                let w = day.iso_week();
                format!("{}-W{:02}", w.year(), w.week())
            }
            Period::Month => day.format("%Y-%m").to_string(),
            Period::All => "all".to_owned(),
        }
    }
}

/// Money and volume of one bucket or group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Amounts {
    pub loki_micros: Micros,
    pub agent_micros: Micros,
    pub total_micros: Micros,
    /// Micros per item (ingest, storage, requests, cpu, memory).
    pub items: BTreeMap<Item, Micros>,
}

impl Amounts {
    fn add(&mut self, c: &CostItem) {
        match c.side {
            Side::Loki => self.loki_micros += c.micros,
            Side::Agent => self.agent_micros += c.micros,
        }
        self.total_micros += c.micros;
        *self.items.entry(c.item).or_default() += c.micros;
    }
}

/// Volumes (from the usage rows, not the atoms) of one bucket or group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Volume {
    pub lines: u64,
    pub bytes: u64,
    pub loki_bytes: u64,
    pub pushes: u64,
    pub rejected: u64,
    pub agent_cpu_ms: u64,
    pub agent_read_bytes: u64,
    pub agent_sent_bytes: u64,
}

/// One row of a section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    pub key: String,
    #[serde(flatten)]
    pub amounts: Amounts,
    #[serde(flatten)]
    pub volume: Volume,
}

/// A budget: a limit on a scope's total over each bucket of a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    #[serde(default)]
    pub name: Option<String>,
    /// Only this tenant's (Loki-side) costs.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Only this cluster's costs.
    #[serde(default)]
    pub cluster: Option<String>,
    /// Only one side (default: both).
    #[serde(default)]
    pub side: Option<Side>,
    pub period: Period,
    pub limit: Money,
}

impl Budget {
    pub fn label(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        let mut s = String::new();
        if let Some(t) = &self.tenant {
            let _ = write!(s, "tenant={t} ");
        }
        if let Some(c) = &self.cluster {
            let _ = write!(s, "cluster={c} ");
        }
        if let Some(side) = self.side {
            let _ = write!(s, "side={side:?} ");
        }
        if s.is_empty() {
            s.push_str("total ");
        }
        let _ = write!(s, "per {:?}", self.period);
        s.to_lowercase()
    }

    /// Whether an atom counts against this budget.
    pub fn covers(&self, c: &CostItem) -> bool {
        self.tenant
            .as_ref()
            .is_none_or(|t| c.side == Side::Loki && &c.tenant == t)
            && self.cluster.as_ref().is_none_or(|x| &c.cluster == x)
            && self.side.is_none_or(|s| s == c.side)
    }
}

/// The budget file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budgets {
    #[serde(default)]
    pub currency: Option<String>,
    pub budgets: Vec<Budget>,
}

impl Budgets {
    pub fn from_yaml(text: &str) -> Result<Budgets, Error> {
        serde_norway::from_str(text).map_err(|e| Error::Settings(format!("budget file: {e}")))
    }
}

/// A budget that was exceeded in one bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    pub budget: String,
    pub period: Period,
    pub bucket: String,
    pub amount_micros: Micros,
    pub limit_micros: Micros,
    pub over_micros: Micros,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CostReport {
    pub currency: String,
    pub period: Period,
    /// First and last day covered (`None`: no usage at all).
    pub from: Option<String>,
    pub to: Option<String>,
    pub total: Row,
    pub daily: Vec<Row>,
    pub weekly: Vec<Row>,
    pub monthly: Vec<Row>,
    /// Loki side only (tenants are a Loki notion).
    pub by_tenant: Vec<Row>,
    pub by_cluster: Vec<Row>,
    pub alerts: Vec<Alert>,
    pub items: Vec<CostItem>,
}

fn group<'a>(
    items: impl Iterator<Item = &'a CostItem>,
    key: impl Fn(&CostItem) -> String,
) -> BTreeMap<String, Amounts> {
    let mut m: BTreeMap<String, Amounts> = BTreeMap::new();
    for c in items {
        m.entry(key(c)).or_default().add(c);
    }
    m
}

fn volumes(
    usage: &[&UsageRow],
    agents: &[&AgentUsage],
    ukey: impl Fn(&UsageRow) -> Option<String>,
    akey: impl Fn(&AgentUsage) -> Option<String>,
) -> BTreeMap<String, Volume> {
    let mut m: BTreeMap<String, Volume> = BTreeMap::new();
    for r in usage {
        if let Some(k) = ukey(r) {
            let v = m.entry(k).or_default();
            v.lines += r.lines;
            v.bytes += r.bytes;
            v.loki_bytes += r.loki_bytes;
            v.pushes += r.pushes;
            v.rejected += r.rejected.values().sum::<u64>();
        }
    }
    for a in agents {
        if let Some(k) = akey(a) {
            let v = m.entry(k).or_default();
            v.agent_cpu_ms += a.cpu_ms;
            v.agent_read_bytes += a.read_bytes;
            v.agent_sent_bytes += a.sent_bytes;
        }
    }
    m
}

fn rows(amounts: BTreeMap<String, Amounts>, mut vols: BTreeMap<String, Volume>) -> Vec<Row> {
    let keys: BTreeSet<String> = amounts.keys().chain(vols.keys()).cloned().collect();
    let mut amounts = amounts;
    keys.into_iter()
        .map(|k| Row {
            amounts: amounts.remove(&k).unwrap_or_default(),
            volume: vols.remove(&k).unwrap_or_default(),
            key: k,
        })
        .collect()
}

/// Builds the report for `period` around `at` (default: the latest day with usage).
pub fn report(
    usage: &[UsageRow],
    agents: &[AgentUsage],
    prices: &Prices,
    period: Period,
    at: Option<NaiveDate>,
    budgets: &[Budget],
) -> Result<CostReport, Error> {
    let latest = usage
        .iter()
        .map(|r| r.day)
        .chain(agents.iter().map(|a| a.day))
        .max();
    let window = match (period.bounds(at.or(latest).unwrap_or_default()), latest) {
        (Some(b), _) => Some(b),
        (None, Some(_)) => {
            let first = usage
                .iter()
                .map(|r| r.day)
                .chain(agents.iter().map(|a| a.day))
                .min();
            first.zip(latest)
        }
        (None, None) => None,
    };
    let inside = |d: NaiveDate| window.is_some_and(|(a, b)| a <= d && d <= b);
    let usage: Vec<&UsageRow> = usage.iter().filter(|r| inside(r.day)).collect();
    let agents: Vec<&AgentUsage> = agents.iter().filter(|a| inside(a.day)).collect();
    let owned_u: Vec<UsageRow> = usage.iter().map(|r| (*r).clone()).collect();
    let owned_a: Vec<AgentUsage> = agents.iter().map(|a| (*a).clone()).collect();
    let items = price_items(&owned_u, &owned_a, prices)?;

    // Every day, week and month of the window gets a row, with data or not.
    let mut days = Vec::new();
    if let Some((a, b)) = window {
        let mut d = a;
        while d <= b {
            days.push(d);
            d += Days::days(1);
        }
    }
    let section = |p: Period| -> Vec<Row> {
        let mut amounts = group(items.iter(), |c| p.key(c.day));
        let mut vols = volumes(
            &usage,
            &agents,
            |r| Some(p.key(r.day)),
            |a| Some(p.key(a.day)),
        );
        for d in &days {
            amounts.entry(p.key(*d)).or_default();
            vols.entry(p.key(*d)).or_default();
        }
        rows(amounts, vols)
    };
    let daily = section(Period::Day);
    let weekly = section(Period::Week);
    let monthly = section(Period::Month);
    let total = section(Period::All).pop().unwrap_or(Row {
        key: "all".into(),
        amounts: Amounts::default(),
        volume: Volume::default(),
    });
    let by_tenant = rows(
        group(items.iter().filter(|c| c.side == Side::Loki), |c| {
            c.tenant.clone()
        }),
        volumes(&usage, &[], |r| Some(r.tenant.clone()), |_| None),
    );
    let by_cluster = rows(
        group(items.iter(), |c| c.cluster.clone()),
        volumes(
            &usage,
            &agents,
            |r| Some(r.cluster.clone()),
            |a| Some(a.cluster.clone()),
        ),
    );

    let mut alerts = Vec::new();
    for b in budgets {
        let spent = group(items.iter().filter(|c| b.covers(c)), |c| {
            b.period.key(c.day)
        });
        let buckets: BTreeSet<String> = match b.period {
            Period::Day => daily.iter().map(|r| r.key.clone()).collect(),
            Period::Week => weekly.iter().map(|r| r.key.clone()).collect(),
            Period::Month => monthly.iter().map(|r| r.key.clone()).collect(),
            Period::All => BTreeSet::from(["all".to_owned()]),
        };
        for k in buckets {
            let amount = spent.get(&k).map_or(0, |a| a.total_micros);
            // Equal is within budget.
            if amount > b.limit.0 {
                alerts.push(Alert {
                    budget: b.label(),
                    period: b.period,
                    bucket: k,
                    amount_micros: amount,
                    limit_micros: b.limit.0,
                    over_micros: amount - b.limit.0,
                });
            }
        }
    }
    let fmt_day = |d: NaiveDate| d.format("%Y-%m-%d").to_string();
    Ok(CostReport {
        currency: prices.currency.clone(),
        period,
        from: window.map(|w| fmt_day(w.0)),
        to: window.map(|w| fmt_day(w.1)),
        total,
        daily,
        weekly,
        monthly,
        by_tenant,
        by_cluster,
        alerts,
        items,
    })
}

fn name_or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// The report as a table.
pub fn render_table(r: &CostReport) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "cost report ({}), period {}: {} .. {}",
        r.currency,
        format!("{:?}", r.period).to_lowercase(),
        r.from.as_deref().unwrap_or("-"),
        r.to.as_deref().unwrap_or("-")
    );
    let head = |o: &mut String, title: &str| {
        let _ = writeln!(o, "\n{title}");
        let _ = writeln!(
            o,
            "  {:<24} {:>16} {:>16} {:>16} {:>12} {:>14} {:>14}",
            "key", "loki", "agent", "total", "lines", "bytes", "loki_bytes"
        );
    };
    let line = |o: &mut String, row: &Row| {
        let _ = writeln!(
            o,
            "  {:<24} {:>16} {:>16} {:>16} {:>12} {:>14} {:>14}",
            name_or_dash(&row.key),
            format_micros(row.amounts.loki_micros),
            format_micros(row.amounts.agent_micros),
            format_micros(row.amounts.total_micros),
            row.volume.lines,
            row.volume.bytes,
            row.volume.loki_bytes
        );
    };
    for (title, sec) in [
        ("daily", &r.daily),
        ("weekly (ISO)", &r.weekly),
        ("monthly", &r.monthly),
        ("by tenant (Loki side)", &r.by_tenant),
        ("by cluster", &r.by_cluster),
    ] {
        head(&mut o, title);
        for row in sec {
            line(&mut o, row);
        }
    }
    head(&mut o, "total");
    line(&mut o, &r.total);
    let items: Vec<String> = r
        .total
        .amounts
        .items
        .iter()
        .map(|(i, m)| format!("{i:?} {}", format_micros(*m)).to_lowercase())
        .collect();
    let _ = writeln!(o, "  items: {}", items.join(", "));
    let _ = writeln!(o);
    if r.alerts.is_empty() {
        let _ = writeln!(o, "BUDGETS: ok");
    } else {
        for a in &r.alerts {
            let _ = writeln!(o, "{}", alert_line(a, &r.currency));
        }
        let _ = writeln!(o, "BUDGETS: {} over", r.alerts.len());
    }
    o
}

/// One alert as a line.
pub fn alert_line(a: &Alert, currency: &str) -> String {
    format!(
        "OVER BUDGET: {} in {}: {} > {} {currency} (by {})",
        a.budget,
        a.bucket,
        format_micros(a.amount_micros),
        format_micros(a.limit_micros),
        format_micros(a.over_micros)
    )
}

/// The report as CSV: one line per row of every section, then one per alert.
pub fn render_csv(r: &CostReport) -> String {
    let mut o =
        String::from("section,key,loki,agent,total,lines,bytes,loki_bytes,pushes,agent_cpu_ms\n");
    let esc = |s: &str| {
        if s.contains([',', '"', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_owned()
        }
    };
    let mut put = |section: &str, row: &Row| {
        let _ = writeln!(
            o,
            "{section},{},{},{},{},{},{},{},{},{}",
            esc(&row.key),
            format_micros(row.amounts.loki_micros),
            format_micros(row.amounts.agent_micros),
            format_micros(row.amounts.total_micros),
            row.volume.lines,
            row.volume.bytes,
            row.volume.loki_bytes,
            row.volume.pushes,
            row.volume.agent_cpu_ms
        );
    };
    for (s, sec) in [
        ("day", &r.daily),
        ("week", &r.weekly),
        ("month", &r.monthly),
        ("tenant", &r.by_tenant),
        ("cluster", &r.by_cluster),
    ] {
        for row in sec {
            put(s, row);
        }
    }
    put("total", &r.total);
    for a in &r.alerts {
        let _ = writeln!(
            o,
            "alert,{},,,{},,,,,",
            esc(&format!("{} {}", a.budget, a.bucket)),
            format_micros(a.amount_micros)
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn prices() -> Prices {
        Prices::from_yaml(include_str!("../examples/prices.yaml")).expect("example prices")
    }

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("day")
    }

    #[test]
    fn money_parses_exactly_and_refuses_floats_and_excess_precision() {
        assert_eq!(Money::parse("0.50"), Ok(Money(500_000)));
        assert_eq!(Money::parse("12"), Ok(Money(12_000_000)));
        assert_eq!(Money::parse("0.000001"), Ok(Money(1)));
        assert!(Money::parse("0.0000001").is_err());
        assert!(Money::parse("-1").is_err());
        assert!(Money::parse("1e3").is_err());
        assert!(Money::parse(".5").is_err());
        assert_eq!(format_micros(12_345_678), "12.345678");
        assert_eq!(format_micros(-5), "-0.000005");
        let err = serde_norway::from_str::<Money>("0.5").expect_err("float");
        assert!(err.to_string().contains("quote it"), "{err}");
        assert_eq!(
            serde_norway::from_str::<Money>("\"0.5\"").ok(),
            Some(Money(500_000))
        );
        assert_eq!(
            serde_norway::from_str::<Money>("3").ok(),
            Some(Money(3_000_000))
        );
    }

    #[test]
    fn example_files_parse_and_retention_is_per_tenant() {
        let p = prices();
        assert_eq!(p.loki.retention.days("ops"), 30);
        assert_eq!(p.loki.retention.days("dev"), 7);
        assert_eq!(p.loki.retention.days("prod"), 90);
        let b = Budgets::from_yaml(include_str!("../examples/budgets.yaml")).expect("budgets");
        assert!(!b.budgets.is_empty());
    }

    #[test]
    fn one_gb_is_priced_by_hand() {
        let p = Prices {
            currency: "USD".into(),
            loki: LokiPrices {
                ingest_per_gb: Money(500_000),
                storage_per_gb_month: Money(30_000),
                per_million_requests: Money(2_000_000),
                retention: Retention {
                    default_days: 30,
                    tenants: BTreeMap::from([("dev".into(), 7)]),
                },
            },
            agent: AgentPrices {
                per_cpu_hour: Money(40_000),
                per_gb_hour: Money(10_000),
            },
        };
        let row = |tenant: &str| UsageRow {
            day: day("2026-11-22"),
            tenant: tenant.into(),
            cluster: "c".into(),
            lines: 10,
            bytes: 900_000_000,
            loki_bytes: 1_000_000_000,
            streams: 1,
            pushes: 500_000,
            rejected: BTreeMap::new(),
        };
        let agent = AgentUsage {
            day: day("2026-11-22"),
            cluster: "c".into(),
            cpu_ms: 1_800_000,
            mem_byte_seconds: 2 * 1_000_000_000 * 3600,
            peak_rss_bytes: 0,
            read_bytes: 0,
            sent_bytes: 0,
        };
        let items = price_items(&[row("ops"), row("dev")], &[agent], &p).expect("price");
        let m: Vec<(Item, Micros)> = items.iter().map(|c| (c.item, c.micros)).collect();
        assert_eq!(
            m,
            vec![
                (Item::Ingest, 500_000),
                (Item::Storage, 30_000),
                (Item::Requests, 1_000_000),
                (Item::Ingest, 500_000),
                // 7 days of a 30-day month: 0.03 * 7 / 30 = 0.007
                (Item::Storage, 7_000),
                (Item::Requests, 1_000_000),
                (Item::Cpu, 20_000),
                (Item::Memory, 20_000),
            ]
        );
    }

    #[test]
    fn week_and_month_keys_and_bounds() {
        // 2027-01-01 is a Friday in ISO week 2026-W53.
        assert_eq!(Period::Week.key(day("2027-01-01")), "2026-W53");
        assert_eq!(Period::Month.key(day("2027-01-01")), "2027-01");
        assert_eq!(
            Period::Week.bounds(day("2026-11-22")),
            Some((day("2026-11-16"), day("2026-11-22")))
        );
        assert_eq!(
            Period::Month.bounds(day("2026-12-05")),
            Some((day("2026-12-01"), day("2026-12-31")))
        );
        assert_eq!(
            Period::Month.bounds(day("2028-02-10")),
            Some((day("2028-02-01"), day("2028-02-29")))
        );
    }

    #[test]
    fn equal_is_not_over_and_over_is_listed() {
        let usage = vec![UsageRow {
            day: day("2026-11-22"),
            tenant: "ops".into(),
            cluster: "ops".into(),
            lines: 1,
            bytes: 1_000_000_000,
            loki_bytes: 1_000_000_000,
            streams: 1,
            pushes: 0,
            rejected: BTreeMap::new(),
        }];
        let mut p = prices();
        p.loki.storage_per_gb_month = Money(0);
        p.loki.ingest_per_gb = Money(1_000_000);
        let budget = |limit| Budget {
            name: None,
            tenant: Some("ops".into()),
            cluster: None,
            side: None,
            period: Period::Day,
            limit: Money(limit),
        };
        let r = report(&usage, &[], &p, Period::All, None, &[budget(1_000_000)]).expect("r");
        assert!(r.alerts.is_empty());
        let r = report(&usage, &[], &p, Period::All, None, &[budget(999_999)]).expect("r");
        assert_eq!(r.alerts.len(), 1);
        assert_eq!(r.alerts[0].over_micros, 1);
        assert_eq!(r.alerts[0].bucket, "2026-11-22");
    }

    fn arb_day() -> impl Strategy<Value = NaiveDate> {
        // About 14 months from a Monday near a year end, so weeks and months straddle each other.
        (0i64..430).prop_map(|d| day("2025-12-01") + Days::days(d))
    }

    fn arb_usage() -> impl Strategy<Value = UsageRow> {
        (
            arb_day(),
            prop::sample::select(vec!["ops", "dev", "prod", "x"]),
            prop::sample::select(vec!["c1", "c2", "c3", ""]),
            0u64..10_000_000,
            0u64..50_000_000_000,
            0u64..1_000_000,
        )
            .prop_map(|(day, tenant, cluster, lines, bytes, pushes)| UsageRow {
                day,
                tenant: tenant.into(),
                cluster: cluster.into(),
                lines,
                bytes,
                loki_bytes: bytes + lines * 3,
                streams: 1,
                pushes,
                rejected: BTreeMap::new(),
            })
    }

    fn arb_agent() -> impl Strategy<Value = AgentUsage> {
        (
            arb_day(),
            prop::sample::select(vec!["c1", "c2", "c4"]),
            0u64..100_000_000,
            0u64..1_000_000_000_000_000,
        )
            .prop_map(|(day, cluster, cpu_ms, mem)| AgentUsage {
                day,
                cluster: cluster.into(),
                cpu_ms,
                mem_byte_seconds: mem,
                peak_rss_bytes: 0,
                read_bytes: 0,
                sent_bytes: 0,
            })
    }

    fn arb_period() -> impl Strategy<Value = Period> {
        prop::sample::select(vec![Period::Day, Period::Week, Period::Month, Period::All])
    }

    fn arb_budget() -> impl Strategy<Value = Budget> {
        (
            prop::option::of(prop::sample::select(vec!["ops", "dev", "nope"])),
            prop::option::of(prop::sample::select(vec!["c1", "c2", ""])),
            prop::option::of(prop::sample::select(vec![Side::Loki, Side::Agent])),
            arb_period(),
            0i128..5_000_000_000,
        )
            .prop_map(|(t, c, side, period, limit)| Budget {
                name: None,
                tenant: t.map(str::to_owned),
                cluster: c.map(str::to_owned),
                side,
                period,
                limit: Money(limit),
            })
    }

    fn sum(rows: &[Row]) -> (Micros, Micros, Micros, u64, u64) {
        rows.iter().fold((0, 0, 0, 0, 0), |a, r| {
            (
                a.0 + r.amounts.loki_micros,
                a.1 + r.amounts.agent_micros,
                a.2 + r.amounts.total_micros,
                a.3 + r.volume.lines,
                a.4 + r.volume.bytes,
            )
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// For any usage: every total equals the sum of its parts exactly, and the daily, weekly
        /// and monthly sections are all there.
        #[test]
        fn every_total_is_the_exact_sum_of_its_parts(
            usage in prop::collection::vec(arb_usage(), 0..25),
            agents in prop::collection::vec(arb_agent(), 0..10),
            period in arb_period(),
            at in prop::option::of(arb_day()),
        ) {
            let r = report(&usage, &agents, &prices(), period, at, &[]).expect("report");
            let t = &r.total;
            let atoms: Micros = r.items.iter().map(|c| c.micros).sum();
            prop_assert_eq!(t.amounts.total_micros, atoms);
            prop_assert_eq!(t.amounts.total_micros, t.amounts.loki_micros + t.amounts.agent_micros);
            prop_assert_eq!(t.amounts.items.values().sum::<Micros>(), t.amounts.total_micros);
            let whole = (t.amounts.loki_micros, t.amounts.agent_micros, t.amounts.total_micros,
                t.volume.lines, t.volume.bytes);
            for sec in [&r.daily, &r.weekly, &r.monthly, &r.by_cluster] {
                prop_assert_eq!(sum(sec), whole);
            }
            let (tl, _, tt, tlines, tbytes) = sum(&r.by_tenant);
            prop_assert_eq!((tl, tt, tlines, tbytes),
                (t.amounts.loki_micros, t.amounts.loki_micros, t.volume.lines, t.volume.bytes));
            for row in r.daily.iter().chain(&r.weekly).chain(&r.monthly).chain(&r.by_tenant).chain(&r.by_cluster) {
                prop_assert_eq!(row.amounts.total_micros, row.amounts.loki_micros + row.amounts.agent_micros);
            }
            // Sections: present whenever there is a window, and consistent with each other.
            let has_window = r.from.is_some();
            prop_assert_eq!(has_window, !(usage.is_empty() && agents.is_empty()) || period != Period::All);
            if has_window {
                prop_assert!(!r.daily.is_empty() && !r.weekly.is_empty() && !r.monthly.is_empty());
                let from = r.from.clone().unwrap_or_default();
                let to = r.to.clone().unwrap_or_default();
                prop_assert_eq!(r.daily.first().map(|d| d.key.clone()), Some(from));
                prop_assert_eq!(r.daily.last().map(|d| d.key.clone()), Some(to));
            }
            // In the window: the usage the report covers is exactly the usage of those days.
            let in_window: u64 = usage.iter()
                .filter(|u| r.from.as_deref().is_some_and(|f| f <= u.day.format("%Y-%m-%d").to_string().as_str())
                    && r.to.as_deref().is_some_and(|x| x >= u.day.format("%Y-%m-%d").to_string().as_str()))
                .map(|u| u.lines).sum();
            prop_assert_eq!(t.volume.lines, in_window);
        }

        /// Per-cluster grouping covers every cluster of the window and only those.
        #[test]
        fn per_cluster_rows_are_exactly_the_clusters_seen(
            usage in prop::collection::vec(arb_usage(), 0..25),
            agents in prop::collection::vec(arb_agent(), 0..10),
        ) {
            let r = report(&usage, &agents, &prices(), Period::All, None, &[]).expect("report");
            let want: BTreeSet<String> = usage.iter().map(|u| u.cluster.clone())
                .chain(agents.iter().map(|a| a.cluster.clone())).collect();
            let got: BTreeSet<String> = r.by_cluster.iter().map(|c| c.key.clone()).collect();
            prop_assert_eq!(got.len(), r.by_cluster.len());
            prop_assert_eq!(got, want);
            let tenants: BTreeSet<String> = usage.iter().map(|u| u.tenant.clone()).collect();
            let got: BTreeSet<String> = r.by_tenant.iter().map(|c| c.key.clone()).collect();
            prop_assert_eq!(got, tenants);
        }

        /// An alert fires exactly when a scope's total in a bucket is over its budget.
        #[test]
        fn an_alert_fires_exactly_when_over_budget(
            usage in prop::collection::vec(arb_usage(), 0..20),
            agents in prop::collection::vec(arb_agent(), 0..8),
            budgets in prop::collection::vec(arb_budget(), 0..6),
            period in arb_period(),
        ) {
            let r = report(&usage, &agents, &prices(), period, None, &budgets).expect("report");
            let mut want = Vec::new();
            for b in &budgets {
                let buckets: Vec<String> = match b.period {
                    Period::Day => r.daily.iter().map(|x| x.key.clone()).collect(),
                    Period::Week => r.weekly.iter().map(|x| x.key.clone()).collect(),
                    Period::Month => r.monthly.iter().map(|x| x.key.clone()).collect(),
                    Period::All => vec!["all".to_owned()],
                };
                for k in buckets {
                    // Independently: filter atoms by hand.
                    let amount: Micros = r.items.iter().filter(|c| {
                        b.period.key(c.day) == k
                            && b.tenant.as_ref().is_none_or(|t| c.side == Side::Loki && &c.tenant == t)
                            && b.cluster.as_ref().is_none_or(|x| &c.cluster == x)
                            && b.side.is_none_or(|s| s == c.side)
                    }).map(|c| c.micros).sum();
                    if amount > b.limit.0 {
                        want.push((b.label(), k, amount));
                    }
                }
            }
            let mut got: Vec<(String, String, Micros)> = r.alerts.iter()
                .map(|a| (a.budget.clone(), a.bucket.clone(), a.amount_micros)).collect();
            got.sort();
            want.sort();
            prop_assert_eq!(got, want);
            for a in &r.alerts {
                prop_assert!(a.amount_micros > a.limit_micros);
            }
        }
    }
}
