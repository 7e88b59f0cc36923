//! Reads: one object or a list, as JSON or a server-side `Table`, with the resourceVersion
//! rules upstream has (a revision not reached is 504; `Exact` and `continue` read a snapshot).

use hyper::header::{ACCEPT, HeaderMap};
use serde_json::{Value, json};

use super::convert::from_storage;
use super::meta::meta_str;
use super::query::Query;
use super::state::ApiServer;
use super::status::ApiError;
use super::target::{Reply, Target, selectors, stored};
use crate::store::ResourceKey;

/// Whether the client asked for a server-side `Table` (kubectl does).
fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get(ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("as=Table"))
}

pub(crate) async fn get(
    server: &ApiServer,
    target: &Target,
    name: &str,
    query: &Query,
    headers: &HeaderMap,
) -> Result<Reply, ApiError> {
    // A single object is read as now, once the store has reached any resourceVersion named.
    reached(server, query).await?;
    match stored(server, target, name).await? {
        Some(obj) if wants_table(headers) => {
            let metadata = json!({"resourceVersion": meta_str(&obj, "resourceVersion").unwrap_or_default()});
            Ok(Reply::ok(super::table::table(&target.t, &[obj], &metadata)))
        }
        Some(obj) => Ok(Reply::ok(obj)),
        None => Err(ApiError::not_found(&target.key, name)),
    }
}

fn list_key(obj: &Value) -> String {
    format!(
        "{}/{}",
        meta_str(obj, "namespace").unwrap_or_default(),
        meta_str(obj, "name").unwrap_or_default()
    )
}

/// A `continue` token: the revision of the list's first page and the key of the last object
/// given, base64 JSON as upstream's (`{"v":"meta.k8s.io/v1","rv":…,"start":…}`).
fn continue_token(revision: u64, last: &str) -> String {
    use base64::Engine as _;
    let token = json!({"v": "meta.k8s.io/v1", "rv": revision, "start": last});
    base64::engine::general_purpose::URL_SAFE.encode(token.to_string())
}

fn parse_continue(token: &str) -> Result<(u64, String), ApiError> {
    use base64::Engine as _;
    let invalid = || ApiError::bad_request(format!("continue key is not valid: {token:?}"));
    let bytes = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .map_err(|_| invalid())?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    match (value["v"].as_str(), value["rv"].as_u64(), value["start"].as_str()) {
        (Some("meta.k8s.io/v1"), Some(rv), Some(start)) if rv > 0 => Ok((rv, start.to_owned())),
        _ => Err(invalid()),
    }
}

/// The revision a read must see, from `resourceVersion` and `resourceVersionMatch`: None for the
/// current state (unset, `0`, or a revision reached, `NotOlderThan`), or an exact revision.
fn read_revision(query: &Query) -> Result<Option<u64>, ApiError> {
    let Some(rv) = query
        .get("resourceVersion")
        .filter(|rv| !rv.is_empty() && *rv != "0")
    else {
        return Ok(None);
    };
    let revision = rv
        .parse::<u64>()
        .map_err(|_| ApiError::bad_request(format!("invalid resource version {rv:?}: must be an integer")))?;
    Ok(match query.get("resourceVersionMatch") {
        Some("Exact") => Some(revision),
        _ => None,
    })
}

/// Refuses a read at a revision the store has not reached (`resourceVersion` newer than now).
async fn reached(server: &ApiServer, query: &Query) -> Result<(), ApiError> {
    let Some(rv) = query.get("resourceVersion").and_then(|rv| rv.parse::<u64>().ok()) else {
        return Ok(());
    };
    let current = server
        .store
        .revision()
        .await
        .map_err(|e| ApiError::from_store(e, &ResourceKey::new("", ""), ""))?;
    if rv > current {
        return Err(ApiError::from_store(
            crate::store::StoreError::TooLarge {
                requested: rv,
                current,
            },
            &ResourceKey::new("", ""),
            "",
        ));
    }
    Ok(())
}

pub(crate) async fn list(
    server: &ApiServer,
    target: &Target,
    query: &Query,
    headers: &HeaderMap,
) -> Result<Reply, ApiError> {
    let (labels, fields) = selectors(&target.t, query)?;
    let namespace = (!target.namespace.is_empty()).then_some(target.namespace.as_str());
    let continued = query
        .get("continue")
        .filter(|c| !c.is_empty())
        .map(parse_continue)
        .transpose()?;
    let exact = match &continued {
        Some((revision, _)) => {
            if query.get("resourceVersion").is_some_and(|rv| !rv.is_empty()) {
                return Err(ApiError::bad_request(
                    "specifying resource version is not allowed when using continue",
                ));
            }
            Some(*revision)
        }
        None => read_revision(query)?,
    };
    // A continued list reads the snapshot of its first page, as upstream; once the history no
    // longer reaches it, 410 Expired.
    let (items, revision) = if let Some(revision) = exact {
        let items = server
            .store
            .list_at(&target.key, namespace, revision)
            .await
            .map_err(|e| match e {
                crate::store::StoreError::Expired { .. } if continued.is_some() => ApiError::expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                ),
                e => ApiError::from_store(e, &target.key, ""),
            })?;
        (items, revision)
    } else {
        reached(server, query).await?;
        server
            .store
            .list(&target.key, namespace)
            .await
            .map_err(|e| ApiError::from_store(e, &target.key, ""))?
    };
    let start = continued.as_ref().map(|(_, start)| start.as_str());
    let mut items: Vec<Value> = items
        .into_iter()
        .map(|o| from_storage(&target.t, o))
        .filter(|o| labels.matches_labels(o) && fields.matches_fields(o))
        .filter(|o| start.is_none_or(|c| list_key(o).as_str() > c))
        .collect();
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    if let Some(limit) = limit.filter(|l| items.len() > *l) {
        let remaining = items.len() - limit;
        items.truncate(limit);
        if let Some(last) = items.last() {
            metadata["continue"] = continue_token(revision, &list_key(last)).into();
        }
        metadata["remainingItemCount"] = remaining.into();
    }
    if wants_table(headers) {
        return Ok(Reply::ok(super::table::table(&target.t, &items, &metadata)));
    }
    Ok(Reply::ok(json!({
        "kind": format!("{}List", target.t.kind),
        "apiVersion": target.t.api_version(),
        "metadata": metadata,
        "items": items,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_bad_ones_are_refused() {
        let token = continue_token(42, "default/job-7");
        assert_eq!(
            parse_continue(&token).ok(),
            Some((42, "default/job-7".to_owned()))
        );
        for bad in ["", "not base64!", "e30=", &continue_token(0, "x")] {
            let Err(e) = parse_continue(bad) else {
                panic!("{bad:?} was taken");
            };
            assert!(e.message.contains("continue key is not valid"), "{}", e.message);
        }
    }

    #[test]
    fn exact_reads_only_with_exact_match() {
        let q = |raw: &str| Query::parse(Some(raw));
        assert_eq!(read_revision(&q("")).ok(), Some(None));
        assert_eq!(
            read_revision(&q("resourceVersion=0&resourceVersionMatch=Exact")).ok(),
            Some(None)
        );
        assert_eq!(read_revision(&q("resourceVersion=5")).ok(), Some(None));
        assert_eq!(
            read_revision(&q("resourceVersion=5&resourceVersionMatch=NotOlderThan")).ok(),
            Some(None)
        );
        assert_eq!(
            read_revision(&q("resourceVersion=5&resourceVersionMatch=Exact")).ok(),
            Some(Some(5))
        );
        assert!(read_revision(&q("resourceVersion=abc")).is_err());
    }
}
