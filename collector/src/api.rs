//! The HTTP API of `canh-collector api`: search, pivots, the alert queue and its triage, health,
//! dashboard statistics, and the dashboard pages. Every `/api/` route needs a bearer token; every
//! query is limited to the caller's tenant and written to `audit_log`.
//!
//! Each handler builds its SQL with a pure `*_sql` function (tested for tenant scoping without a
//! server) and runs it through `ApiState::rows`, which binds every value.

use crate::auth::{Principal, Role, Scope, Users};
use crate::query::{self, address_text, Sql, Value};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clickhouse::Row;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json_};
use std::sync::Arc;

/// Limits applied to every query.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_rows: u64,
    pub max_window_ns: i64,
    pub query_timeout_secs: u64,
}

#[derive(Clone)]
pub struct ApiState {
    pub db: clickhouse::Client,
    pub users: Arc<Users>,
    pub limits: Limits,
    /// Measures the collectors' Kafka lag for the sensor health page; `None` when no Kafka client
    /// could be made (the page then says so).
    pub kafka: Option<Arc<crate::lag::LagProbe>>,
}

/// The one error type of the API, turned into `{"error": "..."}` with its status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or unknown bearer token")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// Storage failed; the details are logged, not sent.
    #[error("storage error")]
    Storage(String),
}

impl ApiError {
    /// The outcome written to the audit log.
    fn outcome(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::Storage(_) => "storage_error",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Storage(detail) => {
                tracing::error!(error = %detail, "api query failed");
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        let mut response = (status, Json(json!({ "error": self.to_string() }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<QueryRejection> for ApiError {
    fn from(err: QueryRejection) -> ApiError {
        ApiError::BadRequest(format!("query parameters: {}", err.body_text()))
    }
}

impl From<JsonRejection> for ApiError {
    fn from(err: JsonRejection) -> ApiError {
        ApiError::BadRequest(format!("request body: {}", err.body_text()))
    }
}

impl From<query::ParseError> for ApiError {
    fn from(err: query::ParseError) -> ApiError {
        ApiError::BadRequest(err.to_string())
    }
}

impl From<query::CompileError> for ApiError {
    fn from(err: query::CompileError) -> ApiError {
        ApiError::BadRequest(err.to_string())
    }
}

/// The authenticated caller of a request.
pub struct Caller(pub Principal);

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Caller, ApiError> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .ok_or(ApiError::Unauthorized)?;
        let token = crate::auth::bearer(header).ok_or(ApiError::Unauthorized)?;
        let principal = state.users.authenticate(token).ok_or(ApiError::Unauthorized)?;
        Ok(Caller(principal.clone()))
    }
}

pub fn app(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/", get(|| async { Redirect::to("/ui/overview.html") }))
        .route("/ui/{file}", get(page))
        .route("/api/me", get(me))
        .route("/api/fields", get(fields))
        .route("/api/search", get(search))
        .route("/api/pivot/community/{id}", get(pivot_community))
        .route("/api/pivot/address/{ip}", get(pivot_address))
        .route("/api/alerts", get(alerts))
        .route("/api/alerts/groups", get(alert_groups))
        .route("/api/alerts/{id}/events", get(alert_events))
        .route("/api/alerts/{id}/triage", post(triage))
        .route("/api/health/sensors", get(health_sensors))
        .route("/api/health/rules", get(health_rules))
        .route("/api/health/dead-letters", get(health_dead_letters))
        .route("/api/overview", get(overview))
        .with_state(state)
}

// ---------------------------------------------------------------- dashboard pages

/// The dashboard pages, built into the binary. They hold no data: the data comes from `/api/`
/// with the token the user enters.
const PAGES: &[(&str, &str, &str)] = &[
    ("overview.html", "text/html; charset=utf-8", include_str!("../../dashboards/overview.html")),
    ("alerts.html", "text/html; charset=utf-8", include_str!("../../dashboards/alerts.html")),
    ("search.html", "text/html; charset=utf-8", include_str!("../../dashboards/search.html")),
    ("sensors.html", "text/html; charset=utf-8", include_str!("../../dashboards/sensors.html")),
    ("rules.html", "text/html; charset=utf-8", include_str!("../../dashboards/rules.html")),
    ("canh.js", "text/javascript; charset=utf-8", include_str!("../../dashboards/canh.js")),
    ("canh.css", "text/css; charset=utf-8", include_str!("../../dashboards/canh.css")),
];

async fn page(Path(file): Path<String>) -> Response {
    match PAGES.iter().find(|(name, _, _)| *name == file) {
        Some((_, mime, body)) => {
            ([(header::CONTENT_TYPE, *mime), (header::CACHE_CONTROL, "no-cache")], *body)
                .into_response()
        }
        None => ApiError::NotFound(format!("no page {file:?}")).into_response(),
    }
}

// ---------------------------------------------------------------- running queries

impl ApiState {
    /// Run `sql` with its values bound; rows as JSON objects.
    async fn rows(&self, sql: Sql) -> Result<Vec<Json_>, ApiError> {
        let mut q = self
            .db
            .query(&sql.text)
            .with_setting("max_execution_time", self.limits.query_timeout_secs.to_string())
            .with_setting("output_format_json_quote_64bit_integers", "0");
        for value in sql.binds {
            q = match value {
                Value::Text(v) => q.bind(v),
                Value::Int(v) => q.bind(v),
                Value::UInt(v) => q.bind(v),
                Value::Texts(v) => q.bind(v),
            };
        }
        let bytes = q
            .fetch_bytes("JSONEachRow")
            .map_err(|e| ApiError::Storage(e.to_string()))?
            .collect()
            .await
            .map_err(|e| ApiError::Storage(e.to_string()))?;
        let mut out = Vec::new();
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let row = serde_json::from_slice(line)
                .map_err(|e| ApiError::Storage(format!("reading a row: {e}")))?;
            out.push(row);
        }
        Ok(out)
    }

    /// Write one audit record of what `caller` did and how it ended. A successful request whose
    /// audit record cannot be written fails: no data leaves unaudited.
    async fn audit<T>(
        &self,
        caller: &Principal,
        action: &str,
        target: &str,
        detail: &str,
        result: &Result<T, ApiError>,
    ) -> Result<(), ApiError> {
        let at_ns = now_ns();
        let row = AuditRow {
            at: u32::try_from(at_ns / 1_000_000_000).unwrap_or(0),
            at_ns,
            user: caller.name.clone(),
            role: caller.role.as_str().to_string(),
            organization_id: caller.scope.label().to_string(),
            action: action.to_string(),
            target: truncate(target, 512),
            detail: truncate(detail, 4096),
            outcome: match result {
                Ok(_) => "ok".to_string(),
                Err(e) => e.outcome().to_string(),
            },
        };
        let write = async {
            let mut insert = self.db.insert::<AuditRow>("audit_log").await?;
            insert.write(&row).await?;
            insert.end().await
        };
        match write.await {
            Ok(()) => Ok(()),
            // Nothing was disclosed: the request's own error goes back; the lost record is logged.
            Err(err) if result.is_err() => {
                tracing::error!(error = %err, user = %caller.name, action, "audit record lost for a failed request");
                Ok(())
            }
            Err(err) => Err(ApiError::Storage(format!("writing the audit log: {err}"))),
        }
    }

    fn limit(&self, asked: Option<u64>) -> u64 {
        asked.unwrap_or(100).clamp(1, self.limits.max_rows)
    }
}

#[derive(Debug, Row, Serialize)]
struct AuditRow {
    at: u32,
    at_ns: i64,
    user: String,
    role: String,
    organization_id: String,
    action: String,
    target: String,
    detail: String,
    outcome: String,
}

#[derive(Debug, Row, Serialize)]
struct TriageRow {
    alert_id: String,
    organization_id: String,
    version: i64,
    status: String,
    assignee: String,
    reason: String,
    changed_by: String,
    changed_at: u32,
}

fn truncate(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// ` AND <column> = ?` for a caller limited to one organization; nothing for the national centre.
pub fn scope(caller: &Principal, column: &str, sql: &mut Sql) {
    if let Scope::Organization(id) = &caller.scope {
        sql.push(&format!(" AND {column} = ?"), [Value::Text(id.clone())]);
    }
}

// ---------------------------------------------------------------- time ranges

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeParams {
    /// RFC 3339 time or nanoseconds since 1970.
    pub from: Option<String>,
    pub to: Option<String>,
    /// A duration before `to` ("15m", "24h") when `from` is not given; 24h by default.
    pub last: Option<String>,
}

/// A resolved time window in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub from_ns: i64,
    pub to_ns: i64,
}

impl Range {
    fn start_secs(&self) -> i64 {
        self.from_ns.div_euclid(1_000_000_000)
    }
    fn end_secs(&self) -> i64 {
        self.to_ns.div_euclid(1_000_000_000)
    }
    /// ` AND <ts> BETWEEN toDateTime(?) AND toDateTime(?) AND <ts_ns> BETWEEN ? AND ?`
    fn push(&self, sql: &mut Sql, ts: &str, ts_ns: Option<&str>) {
        sql.push(
            &format!(" AND {ts} BETWEEN toDateTime(?) AND toDateTime(?)"),
            [Value::Int(self.start_secs()), Value::Int(self.end_secs())],
        );
        if let Some(ts_ns) = ts_ns {
            sql.push(
                &format!(" AND {ts_ns} BETWEEN ? AND ?"),
                [Value::Int(self.from_ns), Value::Int(self.to_ns)],
            );
        }
    }
}

fn parse_time(field: &str, text: &str) -> Result<i64, ApiError> {
    if let Ok(ns) = text.parse::<i64>() {
        return Ok(ns);
    }
    let parsed = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| {
            ApiError::BadRequest(format!("{field}: {text:?} is neither RFC 3339 nor nanoseconds"))
        })?;
    i64::try_from(parsed.unix_timestamp_nanos())
        .map_err(|_| ApiError::BadRequest(format!("{field}: out of range")))
}

pub fn resolve_range(
    params: &RangeParams,
    now_ns: i64,
    max_window_ns: i64,
) -> Result<Range, ApiError> {
    let to_ns = match &params.to {
        Some(text) => parse_time("to", text)?,
        None => now_ns,
    };
    let from_ns = match (&params.from, &params.last) {
        (Some(text), _) => parse_time("from", text)?,
        (None, Some(last)) => {
            let d = humantime::parse_duration(last)
                .map_err(|e| ApiError::BadRequest(format!("last: {last:?}: {e}")))?;
            to_ns.saturating_sub(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        }
        (None, None) => to_ns.saturating_sub(86_400 * 1_000_000_000),
    };
    if from_ns > to_ns {
        return Err(ApiError::BadRequest("from is after to".into()));
    }
    if to_ns.saturating_sub(from_ns) > max_window_ns {
        return Err(ApiError::BadRequest(format!(
            "time window too wide: at most {} hours",
            max_window_ns / 3_600_000_000_000
        )));
    }
    Ok(Range { from_ns, to_ns })
}

/// The time range fields of a parameter struct.
fn range_of(from: &Option<String>, to: &Option<String>, last: &Option<String>) -> RangeParams {
    RangeParams { from: from.clone(), to: to.clone(), last: last.clone() }
}

impl SearchParams {
    fn range(&self) -> RangeParams {
        range_of(&self.from, &self.to, &self.last)
    }
}

impl PivotParams {
    fn range(&self) -> RangeParams {
        range_of(&self.from, &self.to, &self.last)
    }
}

impl AlertParams {
    fn range(&self) -> RangeParams {
        range_of(&self.from, &self.to, &self.last)
    }
}

// ---------------------------------------------------------------- who am I, fields

async fn me(Caller(caller): Caller) -> Json<Json_> {
    Json(
        json!({ "name": caller.name, "role": caller.role.as_str(), "tenant": caller.scope.label() }),
    )
}

async fn fields(Caller(_): Caller) -> Json<Json_> {
    let datasets: serde_json::Map<String, Json_> = query::DATASETS
        .iter()
        .map(|d| (d.name.to_string(), json!(d.all_fields().map(|f| f.name).collect::<Vec<_>>())))
        .collect();
    Json(Json_::Object(datasets))
}

// ---------------------------------------------------------------- search

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    pub q: Option<String>,
    pub dataset: Option<String>,
    pub limit: Option<u64>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub last: Option<String>,
}

pub fn search_sql(
    caller: &Principal,
    params: &SearchParams,
    range: Range,
    limit: u64,
) -> Result<Sql, ApiError> {
    let name = params.dataset.as_deref().unwrap_or("flow");
    let dataset = query::dataset(name).ok_or_else(|| {
        let known: Vec<&str> = query::DATASETS.iter().map(|d| d.name).collect();
        ApiError::BadRequest(format!("unknown dataset {name:?}; known: {}", known.join(", ")))
    })?;
    // Two steps, so a search over days reads little: the inner query finds the sorting keys of the
    // newest matches, reading only the query's columns first (PREWHERE) and then the keys of the
    // rows that passed; the outer one reads every column of those rows only, located by the
    // primary key (organization_id, ts, event_id).
    let mut inner =
        Sql::new(&format!("SELECT organization_id, ts, event_id FROM {}", dataset.table));
    if let Some(text) = params.q.as_deref().filter(|q| !q.trim().is_empty()) {
        let ast = query::parse(text)?;
        inner.push(" PREWHERE ", []);
        inner.append(query::compile(&ast, dataset)?);
    }
    inner.push(" WHERE 1", []);
    scope(caller, "organization_id", &mut inner);
    range.push(&mut inner, "ts", Some("ts_ns"));
    inner.push(" ORDER BY ts_ns DESC LIMIT 1 BY event_id LIMIT ?", [Value::UInt(limit)]);

    let mut sql = Sql::new(&format!(
        "SELECT '{}' AS dataset, {} FROM {} WHERE 1",
        dataset.name,
        dataset.select_list(),
        dataset.table
    ));
    scope(caller, "organization_id", &mut sql);
    range.push(&mut sql, "ts", Some("ts_ns"));
    sql.push(" AND (organization_id, ts, event_id) IN (", []);
    sql.append(inner);
    sql.push(") ORDER BY ts_ns DESC LIMIT 1 BY event_id LIMIT ?", [Value::UInt(limit)]);
    Ok(sql)
}

async fn search(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    params: Result<Query<SearchParams>, QueryRejection>,
) -> Result<Json<Json_>, ApiError> {
    let Query(params) = params?;
    let detail = format!(
        "dataset={} q={}",
        params.dataset.as_deref().unwrap_or("flow"),
        params.q.as_deref().unwrap_or("")
    );
    let result = async {
        let range = resolve_range(&params.range(), now_ns(), state.limits.max_window_ns)?;
        let sql = search_sql(&caller, &params, range, state.limit(params.limit))?;
        state.rows(sql).await
    }
    .await;
    state
        .audit(&caller, "search", params.dataset.as_deref().unwrap_or("flow"), &detail, &result)
        .await?;
    Ok(Json(json!({ "events": result? })))
}

// ---------------------------------------------------------------- pivots

/// Tables a pivot reads, with the text summarising each event.
const PIVOT_TABLES: &[(&str, &str, &str, &str)] = &[
    // (dataset, table, community id column, summary)
    ("flow", "flows", "community_id", "concat(transport, ' ', state, ' ', history)"),
    ("dns", "dns", "community_id", "concat(question_type, ' ', question_name, ' ', response_code)"),
    ("http", "http", "community_id", "concat(method, ' ', url_domain, url_original)"),
    ("tls", "tls", "community_id", "concat(version, ' ', server_name)"),
    ("ssh", "ssh", "community_id", "concat(client_banner, ' / ', server_banner)"),
    (
        "icmp",
        "icmp",
        "community_id",
        "concat('type ', toString(icmp_type), ' code ', toString(icmp_code))",
    ),
    ("log", "logs", "''", "message"),
];

/// One UNION ALL of the pivot tables, each filtered by `filter` (which pushes its own values)
/// and the caller's scope, ordered by time.
fn pivot_sql(
    caller: &Principal,
    tables: &[&str],
    limit: u64,
    mut filter: impl FnMut(&str, &mut Sql),
) -> Sql {
    let mut sql = Sql::new("SELECT * FROM (");
    let mut first = true;
    for (dataset, table, community, summary) in PIVOT_TABLES {
        if !tables.contains(dataset) {
            continue;
        }
        if !first {
            sql.push(" UNION ALL ", []);
        }
        first = false;
        sql.push(
            &format!(
                "SELECT '{dataset}' AS dataset, event_id AS `event.id`, ts_ns AS `@timestamp_ns`, \
                 observer_id AS `observer.id`, organization_id AS `organization.id`, \
                 {} AS `source.ip`, source_port AS `source.port`, {} AS `destination.ip`, \
                 destination_port AS `destination.port`, {community} AS `network.community_id`, \
                 {summary} AS summary FROM {table} WHERE 1",
                address_text("source_ip"),
                address_text("destination_ip"),
            ),
            [],
        );
        scope(caller, "organization_id", &mut sql);
        filter(table, &mut sql);
    }
    sql.push(
        ") ORDER BY `@timestamp_ns` LIMIT 1 BY dataset, `event.id` LIMIT ?",
        [Value::UInt(limit)],
    );
    sql
}

pub fn community_sql(caller: &Principal, id: &str, limit: u64) -> Sql {
    pivot_sql(caller, &["flow", "dns", "http", "tls", "ssh", "icmp"], limit, |_, sql| {
        sql.push(" AND community_id = ?", [Value::Text(id.to_string())]);
    })
}

pub fn address_sql(caller: &Principal, ip: std::net::IpAddr, range: Range, limit: u64) -> Sql {
    let mapped = query::mapped(ip).to_string();
    pivot_sql(caller, &["flow", "dns", "http", "tls", "ssh", "icmp", "log"], limit, |_, sql| {
        range.push(sql, "ts", Some("ts_ns"));
        sql.push(
            " AND (source_ip = IPv6StringToNum(?) OR destination_ip = IPv6StringToNum(?))",
            [Value::Text(mapped.clone()), Value::Text(mapped.clone())],
        );
    })
}

pub fn events_by_id_sql(caller: &Principal, ids: &[String], limit: u64) -> Sql {
    pivot_sql(caller, &["flow", "dns", "http", "tls", "ssh", "icmp", "log"], limit, |_, sql| {
        sql.push(" AND has(?, event_id)", [Value::Texts(ids.to_vec())]);
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PivotParams {
    pub limit: Option<u64>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub last: Option<String>,
}

async fn pivot_community(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    params: Result<Query<PivotParams>, QueryRejection>,
) -> Result<Json<Json_>, ApiError> {
    let Query(params) = params?;
    let result = async {
        if id.is_empty() || id.len() > 128 {
            return Err(ApiError::BadRequest("community id: 1 to 128 characters".into()));
        }
        state.rows(community_sql(&caller, &id, state.limit(params.limit))).await
    }
    .await;
    state.audit(&caller, "pivot_community", &id, "", &result).await?;
    Ok(Json(json!({ "community_id": id, "events": result? })))
}

async fn pivot_address(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Path(ip): Path<String>,
    params: Result<Query<PivotParams>, QueryRejection>,
) -> Result<Json<Json_>, ApiError> {
    let Query(params) = params?;
    let result = async {
        let addr: std::net::IpAddr =
            ip.parse().map_err(|_| ApiError::BadRequest(format!("{ip:?} is not an IP address")))?;
        let range = resolve_range(&params.range(), now_ns(), state.limits.max_window_ns)?;
        state.rows(address_sql(&caller, addr, range, state.limit(params.limit))).await
    }
    .await;
    state.audit(&caller, "pivot_address", &ip, "", &result).await?;
    Ok(Json(json!({ "address": ip, "events": result? })))
}

async fn alert_events(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<Json_>, ApiError> {
    let result = async {
        let mut sql = Sql::new("SELECT event_ids FROM alerts WHERE event_id = ?");
        sql.binds.push(Value::Text(id.clone()));
        scope(&caller, "organization_id", &mut sql);
        // An alert updated by later matches has one row per update until merged: the latest.
        sql.push(" ORDER BY version DESC LIMIT 1", []);
        let rows = state.rows(sql).await?;
        let Some(row) = rows.first() else {
            return Err(ApiError::NotFound(format!("no alert {id:?}")));
        };
        let ids: Vec<String> = serde_json::from_value(row["event_ids"].clone()).unwrap_or_default();
        state.rows(events_by_id_sql(&caller, &ids, state.limits.max_rows)).await
    }
    .await;
    state.audit(&caller, "alert_events", &id, "", &result).await?;
    Ok(Json(json!({ "alert_id": id, "events": result? })))
}

// ---------------------------------------------------------------- alert queue

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertParams {
    pub status: Option<String>,
    pub level: Option<String>,
    pub rule: Option<String>,
    /// Group key for `/api/alerts/groups`: rule, source or sensor.
    pub by: Option<String>,
    pub limit: Option<u64>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub last: Option<String>,
}

/// Alerts in the caller's scope and window with their current triage state, filtered.
pub fn alerts_base_sql(caller: &Principal, params: &AlertParams, range: Range) -> Sql {
    let mut sql = Sql::new(
        "SELECT event_id AS id, ts_ns, organization_id, observer_id, rule_id, rule_name, level, \
         tags, techniques, event_ids, group_keys, group_values, count, first_seen_ns, last_seen_ns, \
         if(triage_status = '', 'new', triage_status) AS status, triage_assignee AS assignee, \
         triage_reason AS reason, triage_by AS changed_by, triage_version AS version \
         FROM (SELECT * FROM alerts WHERE 1",
    );
    scope(caller, "organization_id", &mut sql);
    range.push(&mut sql, "ts", Some("ts_ns"));
    sql.push(
        " ORDER BY event_id, version DESC LIMIT 1 BY event_id) ANY LEFT JOIN (SELECT alert_id AS event_id, \
         argMax(status, version) AS triage_status, argMax(assignee, version) AS triage_assignee, \
         argMax(reason, version) AS triage_reason, argMax(changed_by, version) AS triage_by, \
         max(version) AS triage_version FROM alert_triage WHERE 1",
        [],
    );
    scope(caller, "organization_id", &mut sql);
    sql.push(" GROUP BY alert_id) USING event_id", []);
    let mut outer = Sql::new("SELECT * FROM (");
    outer.append(sql);
    outer.push(") WHERE 1", []);
    for (column, value) in
        [("status", &params.status), ("level", &params.level), ("rule_id", &params.rule)]
    {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            outer.push(&format!(" AND {column} = ?"), [Value::Text(value.to_string())]);
        }
    }
    outer
}

pub fn alerts_sql(caller: &Principal, params: &AlertParams, range: Range, limit: u64) -> Sql {
    let mut sql = alerts_base_sql(caller, params, range);
    sql.push(" ORDER BY ts_ns DESC LIMIT ?", [Value::UInt(limit)]);
    sql
}

pub fn alert_groups_sql(
    caller: &Principal,
    params: &AlertParams,
    range: Range,
    limit: u64,
) -> Result<Sql, ApiError> {
    let key = match params.by.as_deref().unwrap_or("rule") {
        "rule" => "rule_id",
        "source" => "group_values[indexOf(group_keys, 'source.ip')]",
        "sensor" => "observer_id",
        other => {
            return Err(ApiError::BadRequest(format!("by: {other:?}; use rule, source or sensor")))
        }
    };
    let mut sql = Sql::new(&format!(
        "SELECT {key} AS key, any(rule_name) AS rule_name, count() AS alerts, \
         countIf(status = 'new') AS new, groupUniqArray(level) AS levels, max(ts_ns) AS last_ns FROM ("
    ));
    sql.append(alerts_base_sql(caller, params, range));
    sql.push(") GROUP BY key ORDER BY alerts DESC LIMIT ?", [Value::UInt(limit)]);
    Ok(sql)
}

async fn alerts(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    params: Result<Query<AlertParams>, QueryRejection>,
) -> Result<Json<Json_>, ApiError> {
    let Query(params) = params?;
    let result = async {
        let range = resolve_range(&params.range(), now_ns(), state.limits.max_window_ns)?;
        state.rows(alerts_sql(&caller, &params, range, state.limit(params.limit))).await
    }
    .await;
    let detail =
        format!("status={:?} level={:?} rule={:?}", params.status, params.level, params.rule);
    state.audit(&caller, "alerts", "", &detail, &result).await?;
    Ok(Json(json!({ "alerts": result? })))
}

async fn alert_groups(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    params: Result<Query<AlertParams>, QueryRejection>,
) -> Result<Json<Json_>, ApiError> {
    let Query(params) = params?;
    let result = async {
        let range = resolve_range(&params.range(), now_ns(), state.limits.max_window_ns)?;
        state.rows(alert_groups_sql(&caller, &params, range, state.limit(params.limit))?).await
    }
    .await;
    state
        .audit(&caller, "alert_groups", params.by.as_deref().unwrap_or("rule"), "", &result)
        .await?;
    Ok(Json(json!({ "groups": result? })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriageRequest {
    /// acknowledge, assign, escalate or close.
    pub action: String,
    #[serde(default)]
    pub assignee: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// The status an action leads to from `current`, or why it may not be taken. Pure.
pub fn next_status(
    current: &str,
    request: &TriageRequest,
    role: Role,
) -> Result<&'static str, ApiError> {
    let needed = match request.action.as_str() {
        "acknowledge" | "assign" | "close" => Role::Analyst,
        "escalate" => Role::Responder,
        other => {
            return Err(ApiError::BadRequest(format!(
                "action {other:?}; use acknowledge, assign, escalate or close"
            )))
        }
    };
    if role < needed {
        return Err(ApiError::Forbidden(format!(
            "{} needs the {} role or above",
            request.action,
            needed.as_str()
        )));
    }
    if current == "closed" {
        return Err(ApiError::Conflict("the alert is closed".into()));
    }
    let text_ok = |t: &Option<String>| {
        t.as_deref().is_some_and(|t| {
            !t.trim().is_empty() && t.len() <= 1024 && !t.chars().any(char::is_control)
        })
    };
    match request.action.as_str() {
        "acknowledge" if current == "new" => Ok("acknowledged"),
        "acknowledge" => Err(ApiError::Conflict(format!("the alert is already {current}"))),
        "assign" if text_ok(&request.assignee) => Ok("assigned"),
        "assign" => Err(ApiError::BadRequest("assign needs an assignee".into())),
        "escalate" => Ok("escalated"),
        "close" if text_ok(&request.reason) => Ok("closed"),
        _ => Err(ApiError::BadRequest("close needs a reason".into())),
    }
}

async fn triage(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    body: Result<Json<TriageRequest>, JsonRejection>,
) -> Result<Json<Json_>, ApiError> {
    let Json(request) = body?;
    let result = async {
        let mut sql = Sql::new("SELECT organization_id FROM alerts WHERE event_id = ?");
        sql.binds.push(Value::Text(id.clone()));
        scope(&caller, "organization_id", &mut sql);
        sql.push(" LIMIT 1", []);
        let rows = state.rows(sql).await?;
        let Some(org) = rows.first().and_then(|r| r["organization_id"].as_str()).map(String::from)
        else {
            return Err(ApiError::NotFound(format!("no alert {id:?}")));
        };
        let mut sql = Sql::new(
            "SELECT argMax(status, version) AS current_status, argMax(assignee, version) AS current_assignee, \
             max(version) AS current_version FROM alert_triage WHERE alert_id = ? AND organization_id = ?",
        );
        sql.binds.extend([Value::Text(id.clone()), Value::Text(org.clone())]);
        let current = state.rows(sql).await?;
        let current = current.first().cloned().unwrap_or(Json_::Null);
        let status = current["current_status"].as_str().filter(|s| !s.is_empty()).unwrap_or("new");
        let version = current["current_version"].as_i64().unwrap_or(0);
        let next = next_status(status, &request, caller.role)?;
        let now = now_ns();
        let row = TriageRow {
            alert_id: id.clone(),
            organization_id: org,
            version: (version + 1).max(now),
            status: next.to_string(),
            assignee: request
                .assignee
                .clone()
                .or_else(|| current["current_assignee"].as_str().map(String::from))
                .unwrap_or_default(),
            reason: request.reason.clone().unwrap_or_default(),
            changed_by: caller.name.clone(),
            changed_at: u32::try_from(now / 1_000_000_000).unwrap_or(0),
        };
        let write = async {
            let mut insert = state.db.insert::<TriageRow>("alert_triage").await?;
            insert.write(&row).await?;
            insert.end().await
        };
        write.await.map_err(|e| ApiError::Storage(format!("writing alert_triage: {e}")))?;
        Ok(json!({ "alert_id": row.alert_id, "status": row.status, "assignee": row.assignee,
                   "reason": row.reason, "version": row.version, "changed_by": row.changed_by }))
    }
    .await;
    let detail = format!(
        "action={} assignee={:?} reason={:?}",
        request.action, request.assignee, request.reason
    );
    state.audit(&caller, "triage", &id, &detail, &result).await?;
    Ok(Json(result?))
}

// ---------------------------------------------------------------- health

pub fn sensor_events_sql(caller: &Principal, range: Range) -> Sql {
    let mut sql = Sql::new(
        "SELECT organization_id, observer_id, toInt64(toUInt32(max(minute))) * 1000000000 AS last_heard_ns, \
         sum(events) AS total_events, sumIf(events, minute >= toDateTime(?)) / 300 AS events_per_second \
         FROM events_per_minute WHERE 1",
    );
    sql.binds.push(Value::Int(range.end_secs() - 300));
    scope(caller, "organization_id", &mut sql);
    range.push(&mut sql, "minute", None);
    sql.push(" GROUP BY organization_id, observer_id ORDER BY organization_id, observer_id", []);
    sql
}

pub fn sensor_stats_sql(caller: &Principal, range: Range) -> Sql {
    let mut sql = Sql::new(
        "SELECT organization_id, observer_id, max(ts_ns) AS reported_ns, \
         argMax(packets_received, ts_ns) AS packets_received, argMax(packets_dropped, ts_ns) AS packets_dropped, \
         argMax(packets_if_dropped, ts_ns) AS packets_if_dropped, argMax(spool_bytes, ts_ns) AS spool_bytes, \
         argMax(events_sent, ts_ns) AS events_sent FROM sensor_health WHERE 1",
    );
    scope(caller, "organization_id", &mut sql);
    range.push(&mut sql, "ts", Some("ts_ns"));
    sql.push(" GROUP BY organization_id, observer_id", []);
    sql
}

/// Per sensor: events (from the per-minute aggregate) merged with its latest health report.
fn merge_sensors(events: Vec<Json_>, stats: Vec<Json_>) -> Vec<Json_> {
    let key = |r: &Json_| {
        (
            r["organization_id"].as_str().unwrap_or("").to_string(),
            r["observer_id"].as_str().unwrap_or("").to_string(),
        )
    };
    let mut out: std::collections::BTreeMap<(String, String), Json_> = Default::default();
    for row in events {
        out.insert(key(&row), row);
    }
    for row in stats {
        let entry = out.entry(key(&row)).or_insert_with(|| {
            json!({
            "organization_id": row["organization_id"], "observer_id": row["observer_id"],
            "total_events": 0, "events_per_second": 0.0, "last_heard_ns": Json_::Null })
        });
        let received = row["packets_received"].as_f64().unwrap_or(0.0);
        let dropped = row["packets_dropped"].as_f64().unwrap_or(0.0)
            + row["packets_if_dropped"].as_f64().unwrap_or(0.0);
        let drop_percent =
            if received + dropped > 0.0 { 100.0 * dropped / (received + dropped) } else { 0.0 };
        if let Some(obj) = entry.as_object_mut() {
            for field in [
                "reported_ns",
                "packets_received",
                "packets_dropped",
                "packets_if_dropped",
                "spool_bytes",
                "events_sent",
            ] {
                obj.insert(field.into(), row[field].clone());
            }
            obj.insert("capture_drop_percent".into(), json!(drop_percent));
        }
    }
    out.into_values().collect()
}

async fn health_sensors(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    params: Result<Query<RangeParams>, QueryRejection>,
) -> Result<Json<Json_>, ApiError> {
    let Query(params) = params?;
    let result = async {
        let range = resolve_range(&params, now_ns(), state.limits.max_window_ns)?;
        let events = state.rows(sensor_events_sql(&caller, range)).await?;
        let stats = state.rows(sensor_stats_sql(&caller, range)).await?;
        Ok(merge_sensors(events, stats))
    }
    .await;
    state.audit(&caller, "health_sensors", "", "", &result).await?;
    let sensors = result?;
    Ok(Json(json!({ "sensors": sensors, "kafka": kafka_lag(&state).await })))
}

/// The collectors' Kafka lag now, per topic and partition. It is pipeline-wide (the topics carry
/// every tenant's events) and holds counts only, so every caller sees it. A Kafka that does not
/// answer gives an `error` instead of failing the whole health page.
async fn kafka_lag(state: &ApiState) -> Json_ {
    let Some(probe) = state.kafka.clone() else {
        return json!({ "error": "no kafka client (see the api log)" });
    };
    let group = probe.group.clone();
    match tokio::task::spawn_blocking(move || probe.measure()).await {
        Ok(Ok(partitions)) => {
            let total: i64 = partitions.iter().map(|p| p.lag).sum();
            json!({ "group_id": group, "lag": total, "partitions": partitions, "error": null })
        }
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "measuring the kafka lag failed");
            json!({ "group_id": group, "error": err.to_string() })
        }
        Err(err) => json!({ "group_id": group, "error": format!("lag task: {err}") }),
    }
}

pub fn rules_sql(caller: &Principal, range: Range, limit: u64) -> Sql {
    let mut sql = Sql::new(
        "SELECT rule_id, any(rule_name) AS rule_name, any(level) AS level, uniqExact(event_id) AS hits, \
         uniqExact(organization_id) AS organizations, min(ts_ns) AS first_ns, max(ts_ns) AS last_ns \
         FROM alerts WHERE 1",
    );
    scope(caller, "organization_id", &mut sql);
    range.push(&mut sql, "ts", Some("ts_ns"));
    sql.push(" GROUP BY rule_id ORDER BY hits DESC LIMIT ?", [Value::UInt(limit)]);
    sql
}

/// Per-rule health the collectors wrote to `rule_stats` over the range: matches, errors, and the
/// evaluation count and time of the rule's group (its logsource family). Rules run for every
/// tenant at once, so these rows carry no organization.
pub fn rule_stats_sql(range: Range) -> Sql {
    let mut sql = Sql::new(
        "SELECT rule_id, any(rule_name) AS rule_name, any(level) AS level, \
         any(rule_group) AS rule_group, sum(hits) AS matches, sum(errors) AS errors, \
         sum(group_evaluations) AS evaluations, sum(group_eval_seconds) AS eval_seconds \
         FROM rule_stats WHERE 1",
    );
    range.push(&mut sql, "ts", Some("ts_ns"));
    sql.push(" GROUP BY rule_id ORDER BY rule_id", []);
    sql
}

/// Alert counts per rule (scoped to the caller) joined with the rule's health. Every rule with
/// health rows is listed, also those without alerts. `matches` counts events of every tenant, so
/// only the national centre sees it; errors and evaluation time are about the rule, not the data.
pub fn merge_rule_health(alerts: Vec<Json_>, stats: Vec<Json_>, national: bool) -> Vec<Json_> {
    let mut out = alerts;
    for row in &mut out {
        for (key, zero) in
            [("errors", json!(0)), ("evaluations", json!(0)), ("eval_seconds", json!(0.0))]
        {
            row[key] = zero;
        }
        row["matches"] = if national { json!(0) } else { Json_::Null };
        row["rule_group"] = json!("");
    }
    for stat in stats {
        let id = stat["rule_id"].clone();
        let index = match out.iter().position(|r| r["rule_id"] == id) {
            Some(index) => index,
            None => {
                out.push(json!({
                    "rule_id": id, "rule_name": stat["rule_name"], "level": stat["level"],
                    "hits": 0, "organizations": 0, "first_ns": null, "last_ns": null,
                }));
                out.len() - 1
            }
        };
        let row = &mut out[index];
        for key in ["errors", "evaluations", "eval_seconds", "rule_group"] {
            row[key] = stat[key].clone();
        }
        row["matches"] = if national { stat["matches"].clone() } else { Json_::Null };
    }
    out
}

async fn health_rules(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    params: Result<Query<RangeParams>, QueryRejection>,
) -> Result<Json<Json_>, ApiError> {
    let Query(params) = params?;
    let result = async {
        let range = resolve_range(&params, now_ns(), state.limits.max_window_ns)?;
        let alerts = state.rows(rules_sql(&caller, range, state.limits.max_rows)).await?;
        let stats = state.rows(rule_stats_sql(range)).await?;
        Ok(merge_rule_health(alerts, stats, caller.scope == Scope::All))
    }
    .await;
    state.audit(&caller, "health_rules", "", "", &result).await?;
    Ok(Json(json!({ "rules": result? })))
}

/// Dead letters carry no trusted organization (they could not be decoded): national scope only.
pub fn dead_letters_sql(caller: &Principal, range: Range) -> Result<Sql, ApiError> {
    if caller.scope != Scope::All {
        return Err(ApiError::Forbidden(
            "dead letters are visible to the national centre only".into(),
        ));
    }
    let mut sql = Sql::new(
        "SELECT topic, reason, count() AS records, toInt64(toUInt32(max(received_at))) * 1000000000 AS last_ns \
         FROM dead_letters WHERE 1",
    );
    range.push(&mut sql, "received_at", None);
    sql.push(" GROUP BY topic, reason ORDER BY records DESC", []);
    Ok(sql)
}

async fn health_dead_letters(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    params: Result<Query<RangeParams>, QueryRejection>,
) -> Result<Json<Json_>, ApiError> {
    let Query(params) = params?;
    let result = async {
        let range = resolve_range(&params, now_ns(), state.limits.max_window_ns)?;
        state.rows(dead_letters_sql(&caller, range)?).await
    }
    .await;
    state.audit(&caller, "health_dead_letters", "", "", &result).await?;
    Ok(Json(json!({ "dead_letters": result? })))
}

// ---------------------------------------------------------------- overview

/// Bucket width for about 60 points over the window: whole minutes, or whole hours once a bucket
/// is longer than an hour (then the overview reads the hourly rollup).
pub fn bucket_seconds(range: Range) -> i64 {
    let seconds = (range.end_secs() - range.start_secs()).max(60);
    let minutes = ((seconds / 60 + 59) / 60).max(1) * 60;
    if minutes > 3600 {
        (minutes + 3599) / 3600 * 3600
    } else {
        minutes
    }
}

/// Windows up to this long read the per-minute tables; longer ones the hourly rollups (004), whose
/// first hour may start up to 59 minutes before the window.
pub const MINUTE_TABLES_UP_TO_SECS: i64 = 6 * 3600;

pub fn overview_sql(caller: &Principal, range: Range) -> [Sql; 4] {
    let bucket = bucket_seconds(range);
    let hourly = range.end_secs() - range.start_secs() > MINUTE_TABLES_UP_TO_SECS;
    // ` AND <column> BETWEEN ... AND ...` over whole minutes or whole hours.
    let window = |sql: &mut Sql, column: &str| {
        let start = if hourly { "toStartOfHour(toDateTime(?))" } else { "toDateTime(?)" };
        sql.push(
            &format!(" AND {column} BETWEEN {start} AND toDateTime(?)"),
            [Value::Int(range.start_secs()), Value::Int(range.end_secs())],
        );
    };
    let (events_table, events_time) = if hourly && bucket % 3600 == 0 {
        ("events_per_hour", "hour")
    } else {
        ("events_per_minute", "minute")
    };
    let mut events = Sql::new(&format!(
        "SELECT intDiv(toUInt32({events_time}), ?) * ? AS t, organization_id, dataset, sum(events) AS events \
         FROM {events_table} WHERE 1"
    ));
    events.binds.extend([Value::Int(bucket), Value::Int(bucket)]);
    scope(caller, "organization_id", &mut events);
    window(&mut events, events_time);
    events.push(" GROUP BY t, organization_id, dataset ORDER BY t", []);

    let mut alerts = Sql::new(
        "SELECT intDiv(toUInt32(ts), ?) * ? AS t, level, uniqExact(event_id) AS alerts FROM alerts \
         WHERE 1",
    );
    alerts.binds.extend([Value::Int(bucket), Value::Int(bucket)]);
    scope(caller, "organization_id", &mut alerts);
    range.push(&mut alerts, "ts", Some("ts_ns"));
    alerts.push(" GROUP BY t, level ORDER BY t", []);

    let rules = rules_sql(caller, range, 10);

    let talkers = if hourly {
        // Summarized hours from their top sources, the newer ones from every source (rollup.rs).
        let mut sql = Sql::new(&format!(
            "SELECT {} AS ip, sum(bytes) AS bytes, sum(flows) AS flows FROM (\
             SELECT source_ip, bytes, flows FROM top_sources_per_hour FINAL WHERE 1",
            address_text("source_ip")
        ));
        scope(caller, "organization_id", &mut sql);
        window(&mut sql, "hour");
        sql.push(
            " UNION ALL SELECT source_ip, bytes, flows FROM source_bytes_per_hour WHERE 1",
            [],
        );
        scope(caller, "organization_id", &mut sql);
        window(&mut sql, "hour");
        sql.push(" AND hour > (SELECT max(hour) FROM top_sources_per_hour WHERE 1", []);
        scope(caller, "organization_id", &mut sql);
        sql.push(")) GROUP BY source_ip ORDER BY bytes DESC LIMIT 10", []);
        sql
    } else {
        let mut sql = Sql::new(&format!(
            "SELECT {} AS ip, sum(bytes) AS bytes, sum(flows) AS flows FROM flow_bytes_per_minute WHERE 1",
            address_text("source_ip")
        ));
        scope(caller, "organization_id", &mut sql);
        window(&mut sql, "minute");
        sql.push(" GROUP BY source_ip ORDER BY bytes DESC LIMIT 10", []);
        sql
    };
    [events, alerts, rules, talkers]
}

async fn overview(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    params: Result<Query<RangeParams>, QueryRejection>,
) -> Result<Json<Json_>, ApiError> {
    let Query(params) = params?;
    let result = async {
        let range = resolve_range(&params, now_ns(), state.limits.max_window_ns)?;
        let [events, alerts, rules, talkers] = overview_sql(&caller, range);
        // Four independent reads: ClickHouse runs them side by side.
        let (events, alerts, rules, talkers) = tokio::try_join!(
            state.rows(events),
            state.rows(alerts),
            state.rows(rules),
            state.rows(talkers)
        )?;
        Ok(json!({
            "from_ns": range.from_ns, "to_ns": range.to_ns, "bucket_seconds": bucket_seconds(range),
            "events": events, "alerts": alerts, "top_rules": rules, "top_talkers": talkers,
        }))
    }
    .await;
    state.audit(&caller, "overview", "", "", &result).await?;
    Ok(Json(result?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    fn principal(role: Role, scope: Scope) -> Principal {
        Principal { name: "t".into(), role, scope }
    }

    fn org() -> Principal {
        principal(Role::Analyst, Scope::Organization("org-a".into()))
    }

    fn users_text() -> String {
        use crate::auth::{hex, sha256};
        format!(
            "[[user]]\nname = \"viewer\"\nrole = \"viewer\"\ntenant = \"org-a\"\ntoken_sha256 = \"{}\"\n",
            hex(&sha256("viewer-token"))
        )
    }

    /// An app whose ClickHouse is unreachable: only requests refused before any query can pass.
    fn offline_app() -> Router {
        let users = Users::parse(&users_text()).expect("users");
        app(ApiState {
            db: clickhouse::Client::default().with_url("http://127.0.0.1:9"),
            users: Arc::new(users),
            limits: Limits {
                max_rows: 100,
                max_window_ns: 86_400_000_000_000 * 31,
                query_timeout_secs: 1,
            },
            kafka: None,
        })
    }

    async fn send(request: Request<Body>) -> (StatusCode, Json_) {
        let response = offline_app().oneshot(request).await.expect("response");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
        (status, serde_json::from_slice(&bytes).unwrap_or(Json_::Null))
    }

    const ROUTES: &[(&str, &str)] = &[
        ("GET", "/api/me"),
        ("GET", "/api/fields"),
        ("GET", "/api/search?q=source.port:22"),
        ("GET", "/api/pivot/community/1:abc"),
        ("GET", "/api/pivot/address/10.0.0.1"),
        ("GET", "/api/alerts"),
        ("GET", "/api/alerts/groups"),
        ("GET", "/api/alerts/x/events"),
        ("POST", "/api/alerts/x/triage"),
        ("GET", "/api/health/sensors"),
        ("GET", "/api/health/rules"),
        ("GET", "/api/health/dead-letters"),
        ("GET", "/api/overview"),
    ];

    #[tokio::test]
    async fn every_api_route_needs_a_valid_token() {
        for (method, uri) in ROUTES {
            for auth in
                [None, Some("Bearer wrong"), Some("Basic dmlld2VyLXRva2Vu"), Some("Bearer ")]
            {
                let mut request = Request::builder().method(*method).uri(*uri);
                if let Some(auth) = auth {
                    request = request.header("authorization", auth);
                }
                let (status, body) = send(request.body(Body::empty()).expect("request")).await;
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri} with {auth:?}");
                assert_eq!(body["error"], "missing or unknown bearer token");
            }
        }
    }

    #[tokio::test]
    async fn health_probe_and_pages_need_no_token() {
        let response = offline_app()
            .oneshot(Request::get("/healthz").body(Body::empty()).expect("request"))
            .await
            .expect("response");
        assert_eq!(response.status(), StatusCode::OK);
        for (name, _, _) in PAGES {
            let response = offline_app()
                .oneshot(Request::get(format!("/ui/{name}")).body(Body::empty()).expect("request"))
                .await
                .expect("response");
            assert_eq!(response.status(), StatusCode::OK, "{name}");
        }
        let (status, _) =
            send(Request::get("/ui/../Cargo.toml").body(Body::empty()).expect("r")).await;
        assert_ne!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn me_tells_role_and_tenant() {
        let request = Request::get("/api/me").header("authorization", "Bearer viewer-token");
        let (status, body) = send(request.body(Body::empty()).expect("request")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({"name": "viewer", "role": "viewer", "tenant": "org-a"}));
    }

    #[tokio::test]
    async fn viewer_cannot_triage_and_bad_bodies_are_400() {
        // The role is checked before the alert is looked up, so no storage is needed.
        let role = next_status(
            "new",
            &TriageRequest { action: "acknowledge".into(), assignee: None, reason: None },
            Role::Viewer,
        );
        assert!(matches!(role, Err(ApiError::Forbidden(_))));
        let request = Request::post("/api/alerts/x/triage")
            .header("authorization", "Bearer viewer-token")
            .header("content-type", "application/json")
            .body(Body::from("{\"action\": 1}"))
            .expect("request");
        let (status, body) = send(request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }

    #[test]
    fn triage_transitions() {
        let req = |action: &str, assignee: Option<&str>, reason: Option<&str>| TriageRequest {
            action: action.into(),
            assignee: assignee.map(String::from),
            reason: reason.map(String::from),
        };
        assert_eq!(
            next_status("new", &req("acknowledge", None, None), Role::Analyst).ok(),
            Some("acknowledged")
        );
        assert!(matches!(
            next_status("acknowledged", &req("acknowledge", None, None), Role::Analyst),
            Err(ApiError::Conflict(_))
        ));
        assert_eq!(
            next_status("new", &req("assign", Some("lan"), None), Role::Analyst).ok(),
            Some("assigned")
        );
        assert!(matches!(
            next_status("new", &req("assign", None, None), Role::Analyst),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            next_status("new", &req("escalate", None, None), Role::Analyst),
            Err(ApiError::Forbidden(_))
        ));
        assert_eq!(
            next_status("assigned", &req("escalate", None, None), Role::Responder).ok(),
            Some("escalated")
        );
        assert!(matches!(
            next_status("new", &req("close", None, Some(" ")), Role::Analyst),
            Err(ApiError::BadRequest(_))
        ));
        assert_eq!(
            next_status("escalated", &req("close", None, Some("benign scan")), Role::Admin).ok(),
            Some("closed")
        );
        assert!(matches!(
            next_status("closed", &req("close", None, Some("again")), Role::Admin),
            Err(ApiError::Conflict(_))
        ));
        assert!(matches!(
            next_status("new", &req("delete", None, None), Role::Admin),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[tokio::test]
    async fn query_language_errors_are_400_with_a_message() {
        for (q, expect) in [
            ("source.ip:", "expected a value"),
            ("nope.field:1", "unknown field"),
            ("source.port:'1' OR 1=1", "not a whole number"),
            ("(source.port:1", "expected ')'"),
        ] {
            let uri = format!("/api/search?q={}", percent(q));
            let request = Request::get(uri).header("authorization", "Bearer viewer-token");
            let (status, body) = send(request.body(Body::empty()).expect("request")).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{q}: {body}");
            assert!(body["error"].as_str().unwrap_or("").contains(expect), "{q}: {body}");
        }
        let request = Request::get("/api/search?dataset=flows%3BDROP")
            .header("authorization", "Bearer viewer-token");
        let (status, body) = send(request.body(Body::empty()).expect("request")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["error"].as_str().unwrap_or("").contains("unknown dataset"));
        let request =
            Request::get("/api/search?last=400days").header("authorization", "Bearer viewer-token");
        let (status, _) = send(request.body(Body::empty()).expect("request")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "window wider than the limit");
        let request =
            Request::get("/api/search?bogus=1").header("authorization", "Bearer viewer-token");
        let (status, _) = send(request.body(Body::empty()).expect("request")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "unknown parameter");
    }

    fn percent(text: &str) -> String {
        text.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b == b'.' {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    }

    const RANGE: Range = Range { from_ns: 1_000_000_000_000, to_ns: 2_000_000_000_000 };

    /// Every SQL the API runs, built for `caller`.
    fn all_sql(caller: &Principal) -> Vec<(&'static str, Sql)> {
        let search = SearchParams { q: Some("source.port:22".into()), ..Default::default() };
        let alerts = AlertParams { status: Some("new".into()), ..Default::default() };
        let mut out = vec![
            ("search", search_sql(caller, &search, RANGE, 10).expect("search")),
            ("community", community_sql(caller, "1:x", 10)),
            ("address", address_sql(caller, "10.0.0.1".parse().expect("ip"), RANGE, 10)),
            ("events_by_id", events_by_id_sql(caller, &["a".into()], 10)),
            ("alerts", alerts_sql(caller, &alerts, RANGE, 10)),
            ("groups", alert_groups_sql(caller, &alerts, RANGE, 10).expect("groups")),
            ("sensor_events", sensor_events_sql(caller, RANGE)),
            ("sensor_stats", sensor_stats_sql(caller, RANGE)),
            ("rules", rules_sql(caller, RANGE, 10)),
        ];
        let week = Range { from_ns: RANGE.to_ns - 7 * 86_400_000_000_000, to_ns: RANGE.to_ns };
        for range in [RANGE, week] {
            for (i, sql) in overview_sql(caller, range).into_iter().enumerate() {
                out.push((
                    ["overview_events", "overview_alerts", "overview_rules", "overview_talkers"][i],
                    sql,
                ));
            }
        }
        out
    }

    #[test]
    fn every_query_of_a_provincial_user_is_scoped_to_its_organization() {
        for (name, sql) in all_sql(&org()) {
            let placeholders = sql.text.matches('?').count();
            assert_eq!(placeholders, sql.binds.len(), "{name}: one value per placeholder");
            // Each FROM of a stored table is followed by its organization filter.
            let tables = [
                "FROM flows",
                "FROM dns",
                "FROM http",
                "FROM tls",
                "FROM ssh",
                "FROM icmp",
                "FROM logs",
                "FROM alerts",
                "FROM alert_triage",
                "FROM events_per_minute",
                "FROM sensor_health",
                "FROM flow_bytes_per_minute",
                "FROM events_per_hour",
                "FROM source_bytes_per_hour",
                "FROM top_sources_per_hour",
            ];
            let reads: usize = tables.iter().map(|t| sql.text.matches(t).count()).sum();
            let filters = sql.text.matches("organization_id = ?").count();
            assert!(reads > 0, "{name} reads a table");
            assert_eq!(filters, reads, "{name}: every table read is filtered: {}", sql.text);
            let bound = sql.binds.iter().filter(|b| **b == Value::Text("org-a".into())).count();
            assert_eq!(bound, reads, "{name}: the tenant is bound, not spliced");
            assert!(!sql.text.contains("org-a"), "{name}");
        }
    }

    #[test]
    fn national_queries_are_unfiltered_and_dead_letters_are_national_only() {
        for (name, sql) in all_sql(&principal(Role::Viewer, Scope::All)) {
            assert!(!sql.text.contains("organization_id = ?"), "{name}");
        }
        assert!(dead_letters_sql(&principal(Role::Viewer, Scope::All), RANGE).is_ok());
        assert!(matches!(dead_letters_sql(&org(), RANGE), Err(ApiError::Forbidden(_))));
    }

    #[test]
    fn ranges_default_and_are_limited() {
        let day = 86_400_000_000_000;
        let r = resolve_range(&RangeParams::default(), 10 * day, 31 * day).expect("default");
        assert_eq!(r, Range { from_ns: 9 * day, to_ns: 10 * day });
        let p = RangeParams {
            from: Some("2024-01-01T00:00:00Z".into()),
            to: Some("2024-01-02T00:00:00Z".into()),
            last: None,
        };
        let r = resolve_range(&p, 0, 31 * day).expect("rfc3339");
        assert_eq!(r.to_ns - r.from_ns, day);
        let wide = RangeParams { last: Some("40days".into()), ..Default::default() };
        assert!(resolve_range(&wide, 100 * day, 31 * day).is_err());
        let backwards = RangeParams { from: Some("5".into()), to: Some("4".into()), last: None };
        assert!(resolve_range(&backwards, 0, day).is_err());
        assert!(resolve_range(
            &RangeParams { from: Some("yesterday".into()), ..Default::default() },
            0,
            day
        )
        .is_err());
    }

    #[test]
    fn rule_health_joins_alerts_and_stats_and_hides_matches_from_tenants() {
        let sql = rule_stats_sql(RANGE);
        assert_eq!(sql.text.matches('?').count(), sql.binds.len());
        assert!(
            sql.text.contains("FROM rule_stats") && sql.text.contains("sum(group_eval_seconds)")
        );
        let alerts = vec![json!({"rule_id": "a", "rule_name": "A", "level": "high", "hits": 3})];
        let stats = vec![
            json!({"rule_id": "a", "rule_name": "A", "level": "high", "rule_group": "dns",
                   "matches": 40, "errors": 2, "evaluations": 1000, "eval_seconds": 0.25}),
            json!({"rule_id": "b", "rule_name": "B", "level": "low", "rule_group": "zeek_conn",
                   "matches": 0, "errors": 0, "evaluations": 500, "eval_seconds": 0.5}),
        ];
        let national = merge_rule_health(alerts.clone(), stats.clone(), true);
        assert_eq!(national.len(), 2);
        assert_eq!(national[0]["hits"], 3);
        assert_eq!(national[0]["matches"], 40);
        assert_eq!(national[0]["errors"], 2);
        assert_eq!(national[0]["eval_seconds"], 0.25);
        assert_eq!(national[0]["rule_group"], "dns");
        assert_eq!(national[1]["rule_id"], "b");
        assert_eq!(national[1]["hits"], 0);
        assert_eq!(national[1]["evaluations"], 500);
        let tenant = merge_rule_health(alerts.clone(), stats, false);
        assert!(tenant.iter().all(|r| r["matches"].is_null()));
        assert_eq!(tenant[0]["errors"], 2);
        let no_stats = merge_rule_health(alerts, Vec::new(), true);
        assert_eq!(
            (no_stats[0]["errors"].clone(), no_stats[0]["eval_seconds"].clone()),
            (json!(0), json!(0.0))
        );
    }

    #[test]
    fn buckets_give_about_sixty_points() {
        let hour = Range { from_ns: 0, to_ns: 3_600_000_000_000 };
        assert_eq!(bucket_seconds(hour), 60);
        let day = Range { from_ns: 0, to_ns: 86_400_000_000_000 };
        assert_eq!(bucket_seconds(day), 1440);
        let week = Range { from_ns: 0, to_ns: 7 * 86_400_000_000_000 };
        assert_eq!(bucket_seconds(week), 3 * 3600, "whole hours past one hour");
    }

    #[test]
    fn long_overviews_read_the_hourly_rollups() {
        let national = principal(Role::Viewer, Scope::All);
        let day = Range { from_ns: 0, to_ns: 86_400_000_000_000 };
        let [events, _, _, talkers] = overview_sql(&national, day);
        assert!(events.text.contains("FROM events_per_minute"), "{}", events.text);
        assert!(talkers.text.contains("FROM top_sources_per_hour FINAL"), "{}", talkers.text);
        assert!(talkers.text.contains("FROM source_bytes_per_hour"), "{}", talkers.text);
        let week = Range { from_ns: 0, to_ns: 7 * 86_400_000_000_000 };
        let [events, _, _, talkers] = overview_sql(&national, week);
        assert!(events.text.contains("FROM events_per_hour"), "{}", events.text);
        assert!(
            talkers.text.contains("hour BETWEEN toStartOfHour(toDateTime(?))"),
            "{}",
            talkers.text
        );
        let hour = Range { from_ns: 0, to_ns: 3_600_000_000_000 };
        let [events, _, _, talkers] = overview_sql(&national, hour);
        assert!(events.text.contains("FROM events_per_minute"));
        assert!(talkers.text.contains("FROM flow_bytes_per_minute"), "{}", talkers.text);
    }
}
