//! The administration methods (extension; README, *License administration*): licenses,
//! pools, hosts, the audit trail, borrow search and license checks. Parameters are
//! decoded here; what they may do is decided in `app` and at apply.

use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::app::{App, LicenseCheck, Principal};
use crate::borrow::check::BorrowError;
use crate::borrow::host_id::HostId;
use crate::borrow::license::LicenseKey;
use crate::borrow::pool::{parse_duration_secs, pool_from_json, LicenseEntry};
use crate::borrow::time::{format_instant, parse_instant, DateRole, UnixSeconds};
use crate::state::audit::{Actor, AuditEntry, AuditFilter, AuditKind};
use crate::state::hosts::{HostEdit, HostRecord};
use crate::state::pool_plan::PoolPlan;
use crate::state::{BorrowFilter, BorrowRecord, BorrowStatus, HostChange, LicenseUpdate};

use super::cursor;
use super::error::RpcError;
use super::methods::{to_json, RpcResult};
use super::params::Params;

/// Default page size of the listing methods.
pub const DEFAULT_PAGE: u64 = 100;
/// Largest page size.
pub const MAX_PAGE: u64 = 1000;

/// `AddLicenseV1 {license, force?}`.
pub async fn add_license(
    app: &App,
    who: &Principal,
    params: Params<'_>,
) -> Result<RpcResult, RpcError> {
    let entry: LicenseEntry = decode_object(&params, "license")?;
    let license = entry
        .into_license()
        .map_err(|reason| RpcError::invalid_params(format!("license: {reason}")))?;
    let changed = app.add_license(who, license, params.flag("force")?).await?;
    to_json(json!({
        "license": LicenseEntry::from(&changed.license),
        "overBooked": changed.over_booked.iter().map(|b| borrow_json(b, Some(crate::borrow::time::now()))).collect::<Vec<_>>(),
    }))
}

/// `UpdateLicenseV1 {feature, uuid, set, force?}`.
pub async fn update_license(
    app: &App,
    who: &Principal,
    params: Params<'_>,
) -> Result<RpcResult, RpcError> {
    let key = license_key(&params)?;
    let Some(Value::Object(set)) = params.raw("set") else {
        return Err(RpcError::invalid_params(
            "UpdateLicenseV1 requires parameter \"set\": an object of the fields to change",
        ));
    };
    let update = decode_update(set)?;
    if update == LicenseUpdate::default() {
        return Err(RpcError::invalid_params("\"set\" changes no field"));
    }
    let changed = app
        .update_license(who, key, update, params.flag("force")?)
        .await?;
    to_json(json!({
        "license": LicenseEntry::from(&changed.license),
        "overBooked": changed.over_booked.iter().map(|b| borrow_json(b, Some(crate::borrow::time::now()))).collect::<Vec<_>>(),
    }))
}

/// `RemoveLicenseV1 {feature, uuid, force?}`.
pub async fn remove_license(
    app: &App,
    who: &Principal,
    params: Params<'_>,
) -> Result<RpcResult, RpcError> {
    let key = license_key(&params)?;
    let changed = app.remove_license(who, key, params.flag("force")?).await?;
    to_json(json!({
        "license": LicenseEntry::from(&changed.license),
        "overBooked": changed.over_booked.iter().map(|b| borrow_json(b, Some(crate::borrow::time::now()))).collect::<Vec<_>>(),
    }))
}

/// `PlanPoolV1 {pool}`.
pub async fn plan_pool(
    app: &App,
    who: &Principal,
    params: Params<'_>,
) -> Result<RpcResult, RpcError> {
    let pool = decode_pool(&params)?;
    let plan = app.plan_pool(who, &pool).await?;
    to_json(plan_json(&plan, false))
}

/// `ApplyPoolV1 {pool, force?}`.
pub async fn apply_pool(
    app: &App,
    who: &Principal,
    params: Params<'_>,
) -> Result<RpcResult, RpcError> {
    let pool = decode_pool(&params)?;
    let plan = app.apply_pool(who, pool, params.flag("force")?).await?;
    to_json(plan_json(&plan, true))
}

/// `ListHostsV1 {hostId?, blocked?, limit?, cursor?}`.
pub async fn list_hosts(
    app: &App,
    who: &Principal,
    params: Params<'_>,
) -> Result<RpcResult, RpcError> {
    let limit = page_size(&params)?;
    let blocked = params.optional_bool("blocked")?;
    if let Some(host) = params.optional_str("hostId")? {
        // One host: a page of at most one, no cursor.
        let host = host_id(host)?;
        let found: Vec<Value> = app
            .host(who, &host)
            .await?
            .filter(|record| blocked.is_none_or(|wanted| record.blocked.is_some() == wanted))
            .map(|record| host_json(&record))
            .into_iter()
            .collect();
        return to_json(json!({ "hosts": found }));
    }
    let after = match params.optional_str("cursor")? {
        Some(text) => Some(cursor::decode_host(text)?),
        None => None,
    };
    let (hosts, next) = app.hosts_page(who, blocked, after, limit).await?;
    let mut answer = json!({ "hosts": hosts.iter().map(|h| host_json(h)).collect::<Vec<_>>() });
    if let Some(next) = next {
        answer["nextCursor"] = Value::String(cursor::encode_host(&next));
    }
    to_json(answer)
}

/// `SetHostV1 {hostId, name?, notes?}`.
pub async fn set_host(
    app: &App,
    who: &Principal,
    params: Params<'_>,
) -> Result<RpcResult, RpcError> {
    let host = host_id(params.required_str("hostId")?)?;
    let edit = HostEdit {
        name: nullable_text(&params, "name")?,
        notes: nullable_text(&params, "notes")?,
    };
    let changed = app.change_host(who, host, HostChange::Edit(edit)).await?;
    to_json(json!({ "host": host_json(&changed.host) }))
}

/// `BlockHostV1 {hostId, reason?}`.
pub async fn block_host(
    app: &App,
    who: &Principal,
    params: Params<'_>,
) -> Result<RpcResult, RpcError> {
    let host = host_id(params.required_str("hostId")?)?;
    let reason = params.optional_str("reason")?.map(str::to_string);
    let changed = app
        .change_host(who, host, HostChange::Block { reason })
        .await?;
    to_json(json!({
        "host": host_json(&changed.host),
        "borrows": changed.borrows.iter().map(|b| borrow_json(b, Some(crate::borrow::time::now()))).collect::<Vec<_>>(),
    }))
}

/// `UnblockHostV1 {hostId}`.
pub async fn unblock_host(
    app: &App,
    who: &Principal,
    params: Params<'_>,
) -> Result<RpcResult, RpcError> {
    let host = host_id(params.required_str("hostId")?)?;
    let changed = app.change_host(who, host, HostChange::Unblock).await?;
    to_json(json!({ "host": host_json(&changed.host) }))
}

/// `ListAuditV1 {since?, until?, kind?, hostId?, feature?, borrowId?, actor?, limit?, cursor?}`.
pub async fn list_audit(
    app: &App,
    who: &Principal,
    params: Params<'_>,
) -> Result<RpcResult, RpcError> {
    let limit = page_size(&params)?;
    let kind = match params.optional_str("kind")? {
        Some(text) => Some(AuditKind::parse(text).ok_or_else(|| {
            RpcError::invalid_params(format!(
                "kind {text:?} is not one of borrow, refusal, return, license-add, license-update, license-remove, pool-apply, host-update, host-block, host-unblock, api-key-create, api-key-revoke, membership"
            ))
        })?),
        None => None,
    };
    let actor = match params.optional_str("actor")? {
        Some(text) => Some(Actor::parse(text).ok_or_else(|| {
            RpcError::invalid_params(format!(
                "actor {text:?} is not one of client, admin, key:<keyId>, node:<id>, system"
            ))
        })?),
        None => None,
    };
    let filter = AuditFilter {
        since: optional_instant(&params, "since", DateRole::Start)?,
        until: optional_instant(&params, "until", DateRole::End)?,
        kind,
        host_id: params.optional_str("hostId")?.map(host_id).transpose()?,
        feature: params.optional_str("feature")?.map(str::to_string),
        borrow_id: params
            .optional_str("borrowId")?
            .map(borrow_id)
            .transpose()?,
        actor,
    };
    let after = match params.optional_str("cursor")? {
        Some(text) => Some(cursor::decode_seq(text)?),
        None => None,
    };
    let (entries, next) = app.audit_page(who, &filter, after, limit).await?;
    let mut answer =
        json!({ "entries": entries.iter().map(|e| audit_json(e)).collect::<Vec<_>>() });
    if let Some(next) = next {
        answer["nextCursor"] = Value::String(cursor::encode_seq(next));
    }
    to_json(answer)
}

/// `ListBorrowsV1 {hostId?, feature?, uuid?, userInfo?, status?, from?, until?, limit?, cursor?}`.
pub async fn list_borrows(
    app: &App,
    who: &Principal,
    params: Params<'_>,
) -> Result<RpcResult, RpcError> {
    let limit = page_size(&params)?;
    let status = match params.optional_str("status")? {
        Some(text) => Some(BorrowStatus::parse(text).ok_or_else(|| {
            RpcError::invalid_params(format!(
                "status {text:?} is not one of upcoming, active, returned, expired"
            ))
        })?),
        None => None,
    };
    let filter = BorrowFilter {
        host_id: params.optional_str("hostId")?.map(host_id).transpose()?,
        feature: params.optional_str("feature")?.map(str::to_string),
        uuid: params.optional_str("uuid")?.map(str::to_string),
        user_info: params.optional_str("userInfo")?.map(str::to_string),
        status,
        from: optional_instant(&params, "from", DateRole::Start)?,
        until: optional_instant(&params, "until", DateRole::End)?,
        visible_features: None,
    };
    let after = match params.optional_str("cursor")? {
        Some(text) => Some(cursor::decode_borrow(text)?),
        None => None,
    };
    let (page, now) = app.borrows_page(who, filter, after, limit).await?;
    let mut answer = json!({
        "borrows": page.borrows.iter().map(|b| borrow_json(b, Some(now))).collect::<Vec<_>>(),
    });
    if let Some(next) = page.next {
        answer["nextCursor"] = Value::String(cursor::encode_borrow(next));
    }
    to_json(answer)
}

/// `CheckLicenseV1 {license}`.
pub async fn check_license(
    app: &App,
    who: &Principal,
    params: Params<'_>,
) -> Result<RpcResult, RpcError> {
    let license = params.required_str("license")?.trim();
    let check: LicenseCheck = app.check_license(who, license).await?;
    let mut answer = json!({
        "signature": if check.signature_valid { "valid" } else { "invalid" },
        "status": check.status.map_or("unknown", BorrowStatus::as_str),
        "reason": check.reason,
    });
    if let Some(borrow) = &check.borrow {
        let now = crate::borrow::time::now();
        answer["borrow"] = borrow_json(borrow, Some(now));
    }
    to_json(answer)
}

/// A borrow as the administration methods show it; `status` when `now` is given.
pub fn borrow_json(record: &BorrowRecord, now: Option<UnixSeconds>) -> Value {
    let mut value = json!({
        "borrowId": record.borrow_id.to_string(),
        "feature": record.key.feature,
        "uuid": record.key.uuid,
        "hostId": record.host_id.to_string(),
        "validFrom": format_instant(record.valid_from),
        "validUntil": format_instant(record.valid_until),
        "issuedAt": format_instant(record.issued_at),
    });
    if let Some(user_info) = &record.user_info {
        value["userInfo"] = Value::String(user_info.clone());
    }
    if let Some(at) = record.returned_at {
        value["returnedAt"] = Value::String(format_instant(at));
    }
    if let Some(now) = now {
        value["status"] = Value::String(BorrowStatus::of(record, now).as_str().to_string());
    }
    value
}

fn host_json(record: &HostRecord) -> Value {
    let mut value = json!({ "hostId": record.host_id.to_string(), "borrows": record.borrows });
    if let Some(at) = record.first_borrow {
        value["firstBorrow"] = Value::String(format_instant(at));
    }
    if let Some(at) = record.last_borrow {
        value["lastBorrow"] = Value::String(format_instant(at));
    }
    if let Some(name) = &record.name {
        value["name"] = Value::String(name.clone());
    }
    if let Some(notes) = &record.notes {
        value["notes"] = Value::String(notes.clone());
    }
    if let Some(blocked) = &record.blocked {
        let mut block = json!({ "at": format_instant(blocked.at) });
        if let Some(reason) = &blocked.reason {
            block["reason"] = Value::String(reason.clone());
        }
        value["blocked"] = block;
    }
    value
}

fn audit_json(entry: &AuditEntry) -> Value {
    let event = &entry.event;
    let mut value = json!({
        "seq": entry.seq,
        "at": format_instant(entry.at),
        "actor": entry.actor.to_string(),
        "kind": event.kind().to_string(),
        "detail": event.detail(),
    });
    if let Some(node) = entry.node {
        value["node"] = json!(node);
    }
    if let Some(id) = event.borrow_id() {
        value["borrowId"] = Value::String(id.to_string());
    }
    if let Some(key) = event.license() {
        value["feature"] = Value::String(key.feature.clone());
        value["uuid"] = Value::String(key.uuid.clone());
    }
    if let Some(host) = event.host_id() {
        value["hostId"] = Value::String(host.to_string());
    }
    if let Some(code) = event.code() {
        value["code"] = json!(code);
    }
    value
}

fn plan_json(plan: &PoolPlan, applied: bool) -> Value {
    let entry = |license| serde_json::to_value(LicenseEntry::from(license)).unwrap_or(Value::Null);
    json!({
        "added": plan.added.iter().map(entry).collect::<Vec<_>>(),
        "changed": plan.changed.iter().map(|diff| json!({
            "feature": diff.after.key.feature,
            "uuid": diff.after.key.uuid,
            "before": entry(&diff.before),
            "after": entry(&diff.after),
            "fields": diff.fields,
        })).collect::<Vec<_>>(),
        "removed": plan.removed.iter().map(entry).collect::<Vec<_>>(),
        "unchanged": plan.unchanged,
        "settings": plan.settings.iter().map(|s| json!({
            "field": s.field, "before": s.before, "after": s.after,
        })).collect::<Vec<_>>(),
        "conflicts": plan.conflicts.iter().map(|c| json!({
            "feature": c.key.feature,
            "uuid": c.key.uuid,
            "reason": c.reason,
            "borrows": c.borrows.iter().map(ToString::to_string).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "applied": applied,
    })
}

fn decode_object<T: serde::de::DeserializeOwned>(
    params: &Params<'_>,
    name: &str,
) -> Result<T, RpcError> {
    let value = params.required_raw(name)?;
    serde_json::from_value(value.clone())
        .map_err(|e| RpcError::invalid_params(format!("{name}: {e}")))
}

fn decode_pool(params: &Params<'_>) -> Result<crate::borrow::pool::Pool, RpcError> {
    let value = params.required_raw("pool")?;
    pool_from_json(value).map_err(|e| RpcError::invalid_params(format!("pool: {e}")))
}

fn license_key(params: &Params<'_>) -> Result<LicenseKey, RpcError> {
    Ok(LicenseKey {
        feature: params.required_str("feature")?.to_string(),
        uuid: params.required_str("uuid")?.to_string(),
    })
}

/// `set` of `UpdateLicenseV1`: every field checked, unknown ones refused (a typo must not
/// silently change nothing).
fn decode_update(set: &Map<String, Value>) -> Result<LicenseUpdate, RpcError> {
    let mut update = LicenseUpdate::default();
    for (name, value) in set {
        let text = |value: &Value| match value {
            Value::String(text) => Ok(text.clone()),
            _ => Err(RpcError::invalid_params(format!(
                "set.{name} must be a string"
            ))),
        };
        let count = |value: &Value| {
            value
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    RpcError::invalid_params(format!(
                        "set.{name} must be a whole number from 0 to {}",
                        u32::MAX
                    ))
                })
        };
        match name.as_str() {
            "count" => update.count = Some(count(value)?),
            "version" => update.version = Some(text(value)?),
            "edition" => update.edition = Some(text(value)?),
            "modules" => update.modules = Some(text(value)?),
            "validFrom" => {
                update.valid_from = Some(
                    non_null(value)
                        .map(|v| instant(&text(v)?, DateRole::Start, "validFrom"))
                        .transpose()?,
                )
            }
            "validUntil" => {
                update.valid_until = Some(
                    non_null(value)
                        .map(|v| instant(&text(v)?, DateRole::End, "validUntil"))
                        .transpose()?,
                )
            }
            "maxBorrowDuration" => {
                update.max_borrow_secs = Some(
                    non_null(value)
                        .map(|v| {
                            parse_duration_secs(&text(v)?).map_err(|e| {
                                RpcError::invalid_params(format!("set.maxBorrowDuration: {e}"))
                            })
                        })
                        .transpose()?,
                )
            }
            "maxBorrowed" => update.max_borrowed = Some(non_null(value).map(count).transpose()?),
            "maxPerHost" => update.max_per_host = Some(non_null(value).map(count).transpose()?),
            other => {
                return Err(RpcError::invalid_params(format!(
                    "set.{other} is not a field: use count, version, edition, modules, validFrom, validUntil, maxBorrowDuration, maxBorrowed or maxPerHost"
                )))
            }
        }
    }
    Ok(update)
}

/// `None` for JSON `null`: an optional field cleared.
fn non_null(value: &Value) -> Option<&Value> {
    (!value.is_null()).then_some(value)
}

fn nullable_text(params: &Params<'_>, name: &str) -> Result<Option<Option<String>>, RpcError> {
    match params.raw(name) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(text)) => Ok(Some(Some(text.clone()))),
        Some(_) => Err(RpcError::invalid_params(format!(
            "parameter {name:?} must be a string, or null to clear it"
        ))),
    }
}

fn page_size(params: &Params<'_>) -> Result<usize, RpcError> {
    let limit = params
        .optional_u64_in("limit", 1..=MAX_PAGE)?
        .unwrap_or(DEFAULT_PAGE);
    Ok(usize::try_from(limit).unwrap_or(usize::MAX))
}

fn optional_instant(
    params: &Params<'_>,
    name: &'static str,
    role: DateRole,
) -> Result<Option<UnixSeconds>, RpcError> {
    params
        .optional_str(name)?
        .map(|text| instant(text, role, name))
        .transpose()
}

fn instant(text: &str, role: DateRole, field: &'static str) -> Result<UnixSeconds, RpcError> {
    parse_instant(text, role, field).map_err(|e| RpcError::invalid_params(e.to_string()))
}

fn host_id(text: &str) -> Result<HostId, RpcError> {
    HostId::parse(text).map_err(|e| RpcError::from(BorrowError::InvalidHostId(e.to_string())))
}

fn borrow_id(text: &str) -> Result<Uuid, RpcError> {
    Uuid::parse_str(text).map_err(|_| {
        RpcError::invalid_params(format!(
            "borrowId {:?} is not a UUID",
            crate::borrow::host_id::truncate_for_message(text)
        ))
    })
}
