//! `/v1/billing`: usage reports, invoices, daily costs and budgets, from the
//! `metering` crate over the control plane's SQLite file.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use metering::report::GroupBy;
use metering::{MeteringError, Month, UnixMillis};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::json::ValidJson;
use crate::state::AppState;
use crate::store::now_ms;

fn metering_error(e: MeteringError) -> ApiError {
    match e {
        MeteringError::Invalid { .. } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            e.to_string(),
        ),
        other => ApiError::internal("metering", other),
    }
}

/// A range and its shape.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RangeQuery {
    /// Start (RFC 3339 or YYYY-MM-DD, UTC); default: the start of this month.
    pub from: Option<String>,
    /// End, exclusive; default: now.
    pub to: Option<String>,
    /// resource (default), meter or day.
    pub group_by: Option<String>,
    /// json (default), csv (usage) or svg (costs).
    pub format: Option<String>,
    /// Another project (admin only).
    pub project: Option<String>,
}

fn range(q: &RangeQuery) -> ApiResult<(UnixMillis, UnixMillis)> {
    let now = now_ms();
    let from = match &q.from {
        Some(t) => metering::calendar::parse_time(t)
            .map_err(|e| ApiError::invalid("from", e.to_string()))?,
        None => Month::containing(now).start(),
    };
    let to = match &q.to {
        Some(t) => {
            metering::calendar::parse_time(t).map_err(|e| ApiError::invalid("to", e.to_string()))?
        }
        None => now.max(from + 1),
    };
    if to <= from {
        return Err(ApiError::invalid("to", "must be after from"));
    }
    Ok((from, to))
}

fn project_of(caller: &Caller, asked: &Option<String>) -> ApiResult<String> {
    match asked {
        Some(p) if *p != caller.project.id => {
            caller.require_admin()?;
            Ok(p.clone())
        }
        _ => Ok(caller.project.id.clone()),
    }
}

fn wants_csv(q: Option<&str>, headers: &HeaderMap) -> bool {
    q == Some("csv")
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/csv"))
}

fn csv(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response()
}

/// Usage over a range, grouped by resource, meter or day, priced.
#[utoipa::path(get, path = "/v1/billing/usage", tag = "billing", params(RangeQuery),
    responses((status = 200, description = "usage report (JSON, or CSV with format=csv / Accept: text/csv)"),
              (status = 422, body = ErrorBody)))]
pub async fn usage(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Query<RangeQuery>,
) -> ApiResult<Response> {
    let (from, to) = range(&q)?;
    let project = project_of(&caller, &q.project)?;
    let group_by = match q.group_by.as_deref() {
        None | Some("resource") => GroupBy::Resource,
        Some("meter") => GroupBy::Meter,
        Some("day") => GroupBy::Day,
        Some(other) => {
            return Err(ApiError::invalid(
                "group_by",
                format!("resource, meter or day, not {other:?}"),
            ));
        }
    };
    let report = metering::usage_report(
        &st.store.pool,
        &st.prices,
        &project,
        from,
        to,
        group_by,
        now_ms(),
    )
    .await
    .map_err(metering_error)?;
    if wants_csv(q.format.as_deref(), &headers) {
        return Ok(csv(report.to_csv()));
    }
    Ok(Json(report).into_response())
}

/// Daily cost per meter over a range (for charts).
#[utoipa::path(get, path = "/v1/billing/costs", tag = "billing", params(RangeQuery), responses((status = 200, description = "daily cost series")))]
pub async fn costs(
    State(st): State<AppState>,
    caller: Caller,
    Query(q): Query<RangeQuery>,
) -> ApiResult<Response> {
    let (from, to) = range(&q)?;
    let project = project_of(&caller, &q.project)?;
    let series = metering::daily_costs(&st.store.pool, &st.prices, &project, from, to, now_ms())
        .await
        .map_err(metering_error)?;
    if q.format.as_deref() == Some("svg") {
        return Ok((
            [(header::CONTENT_TYPE, "image/svg+xml")],
            metering::svg_chart(&series),
        )
            .into_response());
    }
    Ok(Json(series).into_response())
}

/// Invoices of the caller's project: the closed (stored) ones and the
/// current month's, accruing.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvoiceList {
    /// Closed months, newest first.
    #[schema(value_type = Vec<Object>)]
    pub closed: Vec<metering::invoice::InvoiceSummary>,
    /// This month so far.
    #[schema(value_type = Object)]
    pub current: metering::invoice::Invoice,
}

/// Lists invoices.
#[utoipa::path(get, path = "/v1/billing/invoices", tag = "billing", responses((status = 200, body = InvoiceList)))]
pub async fn invoices(State(st): State<AppState>, caller: Caller) -> ApiResult<Json<InvoiceList>> {
    let project = caller.project.id.clone();
    let closed = metering::invoice::list_invoices(&st.store.pool, Some(&project))
        .await
        .map_err(metering_error)?;
    let current = metering::invoice::month_invoice(
        &st.store.pool,
        &st.prices,
        &project,
        Month::containing(now_ms()),
        now_ms(),
    )
    .await
    .map_err(metering_error)?;
    Ok(Json(InvoiceList { closed, current }))
}

/// `?format=csv`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FormatQuery {
    /// json (default) or csv.
    pub format: Option<String>,
}

/// One invoice: a stored invoice id, or a month `YYYY-MM` (computed, or
/// the stored one once the month is closed).
#[utoipa::path(get, path = "/v1/billing/invoices/{id}", tag = "billing", params(("id" = String, Path), FormatQuery),
    responses((status = 200, description = "the invoice (JSON or CSV)"), (status = 404, body = ErrorBody)))]
pub async fn invoice(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<FormatQuery>,
) -> ApiResult<Response> {
    let project = caller.project.id.clone();
    let inv = if let Ok(n) = id.parse::<i64>() {
        let inv = metering::invoice::invoice(&st.store.pool, n)
            .await
            .map_err(|_| ApiError::not_found("invoice", &id))?;
        if inv.project != project {
            return Err(ApiError::not_found("invoice", &id));
        }
        inv
    } else {
        let month: Month = id
            .parse()
            .map_err(|_| ApiError::invalid("id", "an invoice number or a month YYYY-MM"))?;
        metering::invoice::month_invoice(&st.store.pool, &st.prices, &project, month, now_ms())
            .await
            .map_err(metering_error)?
    };
    if wants_csv(q.format.as_deref(), &headers) {
        return Ok(csv(inv.to_csv()));
    }
    Ok(Json(inv).into_response())
}

/// Budget thresholds for the caller's project, in the price book's currency
/// (e.g. `["5.00", "20.00"]`).
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Monthly thresholds; crossing one emits a `billing.budget_crossed` event.
    pub thresholds: Vec<String>,
}

/// Sets the project's monthly budget thresholds.
#[utoipa::path(put, path = "/v1/billing/budget", tag = "billing", request_body = Budget,
    responses((status = 200, body = Budget), (status = 422, body = ErrorBody)))]
pub async fn set_budget(
    State(st): State<AppState>,
    caller: Caller,
    ValidJson(b): ValidJson<Budget>,
) -> ApiResult<Json<Budget>> {
    let mut amounts = Vec::new();
    for (i, t) in b.thresholds.iter().enumerate() {
        let m: metering::Money = t.parse().map_err(|_| {
            ApiError::invalid(
                &format!("thresholds[{i}]"),
                "a decimal amount such as 12.50",
            )
        })?;
        amounts.push(m);
    }
    let mut tx = st.store.write().await?;
    metering::set_budget(&mut tx, &caller.project.id, &amounts)
        .await
        .map_err(metering_error)?;
    tx.commit().await?;
    Ok(Json(b))
}

/// Budget crossings so far.
#[utoipa::path(get, path = "/v1/billing/budget-events", tag = "billing", responses((status = 200, description = "crossings")))]
pub async fn budget_events(State(st): State<AppState>, caller: Caller) -> ApiResult<Response> {
    let mut conn = st.store.pool.acquire().await?;
    let ev = metering::budget_events(&mut conn, Some(&caller.project.id))
        .await
        .map_err(metering_error)?;
    Ok(Json(serde_json::json!({ "events": ev })).into_response())
}
