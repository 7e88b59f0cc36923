//! The query parameters each verb takes, checked before anything else: a parameter the verb
//! does not take, or a value it cannot have, is refused with 400 naming it, so nothing a client
//! asks for is silently ignored.

use super::query::Query;
use super::status::ApiError;

/// What a request on a collection or an object does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
}

/// Every verb: `pretty` (JSON is always compact here, which every client reads) and `timeout`
/// (client-go's request timeout; requests here end well within it).
const COMMON: &[&str] = &["pretty", "timeout"];
const READ: &[&str] = &["resourceVersion", "resourceVersionMatch"];
const LIST: &[&str] = &[
    "labelSelector",
    "fieldSelector",
    "limit",
    "continue",
    "timeoutSeconds",
    "allowWatchBookmarks",
    "sendInitialEvents",
    "watch",
];
const WRITE: &[&str] = &["dryRun", "fieldManager", "fieldValidation"];
const DELETE: &[&str] = &[
    "dryRun",
    "gracePeriodSeconds",
    "propagationPolicy",
    "orphanDependents",
    "ignoreStoreReadErrorWithClusterBreakingPotential",
];

fn taken(verb: Verb) -> Vec<&'static str> {
    let groups: &[&[&str]] = match verb {
        Verb::Get => &[READ],
        Verb::List | Verb::Watch => &[READ, LIST],
        Verb::Create | Verb::Update => &[WRITE],
        Verb::Patch => &[WRITE, &["force"]],
        Verb::Delete => &[DELETE],
        Verb::DeleteCollection => &[DELETE, READ, LIST],
    };
    COMMON
        .iter()
        .chain(groups.iter().flat_map(|g| g.iter()))
        .copied()
        .collect()
}

fn invalid(name: &str, value: &str, detail: &str) -> ApiError {
    ApiError::bad_request(format!("invalid query parameter {name}={value:?}: {detail}"))
}

/// Checks the parameters of a request; returns whether it is a dry run (`dryRun=All`).
///
/// # Errors
/// 400 naming the first parameter the verb does not take or whose value is wrong.
pub(crate) fn check(query: &Query, verb: Verb, apply_patch: bool) -> Result<bool, ApiError> {
    let allowed = taken(verb);
    for (name, value) in query.pairs() {
        if !allowed.contains(&name) {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter {name:?} for this request; it takes {}",
                allowed.join(", ")
            )));
        }
        let one_of = |values: &[&str]| {
            if values.contains(&value) {
                Ok(())
            } else {
                Err(invalid(
                    name,
                    value,
                    &format!("supported values: {}", values.join(", ")),
                ))
            }
        };
        match name {
            "dryRun" => one_of(&["All"])?,
            "fieldValidation" => one_of(&["Ignore", "Warn", "Strict"])?,
            "propagationPolicy" => one_of(&["Background", "Foreground", "Orphan"])?,
            "resourceVersionMatch" => one_of(&["NotOlderThan", "Exact"])?,
            "limit" | "timeoutSeconds" | "gracePeriodSeconds" if value.parse::<u64>().is_err() => {
                return Err(invalid(name, value, "must be a non-negative integer"));
            }
            "watch"
            | "allowWatchBookmarks"
            | "sendInitialEvents"
            | "orphanDependents"
            | "force"
            | "ignoreStoreReadErrorWithClusterBreakingPotential" => {
                one_of(&["true", "false", "1", "0", "True", "False"])?;
            }
            _ => {}
        }
    }
    if query.flag("force") && !apply_patch {
        return Err(invalid(
            "force",
            query.get("force").unwrap_or_default(),
            "may not be specified for non-apply patch",
        ));
    }
    let matching = query.get("resourceVersionMatch");
    let initial = query.get("sendInitialEvents").is_some();
    let no_version = query.get("resourceVersion").is_none_or(str::is_empty);
    // As upstream validates list options: a watch takes resourceVersionMatch only with
    // sendInitialEvents, and then NotOlderThan; a list only with a resourceVersion.
    let refused = match verb {
        Verb::Watch if matching.is_some() && !initial => {
            Some("resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided")
        }
        Verb::Watch if initial && matching != Some("NotOlderThan") => {
            Some("sendInitialEvents requires setting resourceVersionMatch to NotOlderThan")
        }
        Verb::List | Verb::DeleteCollection if matching.is_some() && no_version => {
            Some("resourceVersionMatch is forbidden unless resourceVersion is provided")
        }
        _ => None,
    };
    if let Some(detail) = refused {
        return Err(invalid(
            "resourceVersionMatch",
            matching.unwrap_or_default(),
            detail,
        ));
    }
    Ok(query.get("dryRun").is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(raw: &str) -> Query {
        Query::parse(Some(raw))
    }

    #[test]
    fn what_kubectl_helm_and_kube_rs_send_is_taken() {
        for (raw, verb) in [
            ("fieldManager=kubectl-create&fieldValidation=Strict", Verb::Create),
            (
                "dryRun=All&fieldManager=kubectl-client-side-apply&fieldValidation=Strict",
                Verb::Patch,
            ),
            ("limit=500&labelSelector=owner%3Dhelm", Verb::List),
            (
                "allowWatchBookmarks=true&resourceVersion=5&timeoutSeconds=290&watch=true",
                Verb::Watch,
            ),
            (
                "sendInitialEvents=true&resourceVersionMatch=NotOlderThan&resourceVersion=&watch=1",
                Verb::Watch,
            ),
            ("propagationPolicy=Background&gracePeriodSeconds=0", Verb::Delete),
            ("pretty=true&timeout=32s", Verb::Get),
        ] {
            let result = check(&q(raw), verb, false);
            assert!(result.is_ok(), "{raw}: {result:?}");
        }
        assert_eq!(check(&q("dryRun=All"), Verb::Delete, false), Ok(true));
        assert_eq!(check(&q(""), Verb::Create, false), Ok(false));
        assert_eq!(
            check(&q("force=true&fieldManager=m"), Verb::Patch, true),
            Ok(false)
        );
    }

    #[test]
    fn anything_else_is_refused_naming_it() {
        for (raw, verb, named) in [
            ("dryrun=All", Verb::Create, "dryrun"),
            ("dryRun=Yes", Verb::Create, "dryRun"),
            ("fieldValidation=strict", Verb::Update, "fieldValidation"),
            ("limit=-1", Verb::List, "limit"),
            ("limit=ten", Verb::List, "limit"),
            ("labelSelector=a", Verb::Create, "labelSelector"),
            ("force=true", Verb::Patch, "force"),
            ("propagationPolicy=Later", Verb::Delete, "propagationPolicy"),
            ("resourceVersionMatch=Exact", Verb::List, "resourceVersionMatch"),
            (
                "resourceVersionMatch=NotOlderThan&resourceVersion=1&watch=1",
                Verb::Watch,
                "sendInitialEvents",
            ),
            ("sendInitialEvents=true&watch=1", Verb::Watch, "NotOlderThan"),
            ("watch=maybe", Verb::Watch, "watch"),
        ] {
            let Err(e) = check(&q(raw), verb, false) else {
                panic!("{raw} was taken");
            };
            assert_eq!(e.code, 400, "{raw}");
            assert!(e.message.contains(named), "{raw}: {}", e.message);
        }
    }
}
