//! The messages of the built-in kinds that kubectl and helm send as protobuf, with their field
//! numbers and JSON names as in Kubernetes' `generated.proto` files (k8s.io/api and
//! k8s.io/apimachinery). Only the kinds listed in [`KINDS`] are read or written as protobuf;
//! everything else (custom resources among them, as upstream) is JSON only.

/// How a field maps between protobuf and JSON.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ty {
    /// `string`.
    Str,
    /// `bytes`: base64 in JSON.
    Bytes,
    /// `int64` or `int32`.
    Int,
    /// `bool`.
    Bool,
    /// `meta.v1.Time` (seconds, nanos): an RFC 3339 string in JSON.
    Time,
    /// `meta.v1.FieldsV1`: raw JSON bytes in protobuf, the JSON value itself in JSON.
    Json,
    /// An embedded message.
    Msg(&'static Message),
    /// `repeated string`.
    Strs,
    /// `repeated` messages.
    Msgs(&'static Message),
    /// `map<string, string>`.
    StrMap,
    /// `map<string, bytes>`: base64 values in JSON.
    BytesMap,
    /// `map<string, ExtraValue>` where `ExtraValue` is `repeated string`: lists of strings.
    ListMap,
}

/// One field of a message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    pub(crate) number: u32,
    pub(crate) name: &'static str,
    pub(crate) ty: Ty,
    /// Kept in JSON even when zero (`false`, `0`): pointer fields (`*bool`, `*int64`) whose
    /// presence means something, and fields JSON never omits.
    pub(crate) keep_zero: bool,
}

/// A message: its fields.
#[derive(Debug)]
pub(crate) struct Message {
    pub(crate) fields: &'static [Field],
}

const fn f(number: u32, name: &'static str, ty: Ty) -> Field {
    Field {
        number,
        name,
        ty,
        keep_zero: false,
    }
}

const fn kept(number: u32, name: &'static str, ty: Ty) -> Field {
    Field {
        number,
        name,
        ty,
        keep_zero: true,
    }
}

use Ty::{Bool, Bytes, BytesMap, Int, Json, ListMap, Msg, Msgs, Str, StrMap, Strs, Time};

/// `runtime.Unknown`, the envelope around every object: its `TypeMeta` and its message.
pub(crate) static ENVELOPE: Message = Message {
    fields: &[
        f(
            1,
            "typeMeta",
            Msg(&Message {
                fields: &[f(1, "apiVersion", Str), f(2, "kind", Str)],
            }),
        ),
        f(2, "raw", Bytes),
        f(3, "contentEncoding", Str),
        f(4, "contentType", Str),
    ],
};

// k8s.io/apimachinery/pkg/apis/meta/v1

static OWNER_REFERENCE: Message = Message {
    fields: &[
        f(5, "apiVersion", Str),
        f(1, "kind", Str),
        f(3, "name", Str),
        f(4, "uid", Str),
        kept(6, "controller", Bool),
        kept(7, "blockOwnerDeletion", Bool),
    ],
};

static MANAGED_FIELDS_ENTRY: Message = Message {
    fields: &[
        f(1, "manager", Str),
        f(2, "operation", Str),
        f(3, "apiVersion", Str),
        f(4, "time", Time),
        f(6, "fieldsType", Str),
        f(7, "fieldsV1", Json),
        f(8, "subresource", Str),
    ],
};

pub(crate) static OBJECT_META: Message = Message {
    fields: &[
        f(1, "name", Str),
        f(2, "generateName", Str),
        f(3, "namespace", Str),
        f(4, "selfLink", Str),
        f(5, "uid", Str),
        f(6, "resourceVersion", Str),
        f(7, "generation", Int),
        f(8, "creationTimestamp", Time),
        f(9, "deletionTimestamp", Time),
        kept(10, "deletionGracePeriodSeconds", Int),
        f(11, "labels", StrMap),
        f(12, "annotations", StrMap),
        f(13, "ownerReferences", Msgs(&OWNER_REFERENCE)),
        f(14, "finalizers", Strs),
        f(17, "managedFields", Msgs(&MANAGED_FIELDS_ENTRY)),
    ],
};

static LIST_META: Message = Message {
    fields: &[
        f(1, "selfLink", Str),
        f(2, "resourceVersion", Str),
        f(3, "continue", Str),
        kept(4, "remainingItemCount", Int),
    ],
};

static STATUS_CAUSE: Message = Message {
    fields: &[f(1, "reason", Str), f(2, "message", Str), f(3, "field", Str)],
};

static STATUS_DETAILS: Message = Message {
    fields: &[
        f(1, "name", Str),
        f(2, "group", Str),
        f(3, "kind", Str),
        f(6, "uid", Str),
        f(4, "causes", Msgs(&STATUS_CAUSE)),
        f(5, "retryAfterSeconds", Int),
    ],
};

static STATUS: Message = Message {
    fields: &[
        f(1, "metadata", Msg(&LIST_META)),
        f(2, "status", Str),
        f(3, "message", Str),
        f(4, "reason", Str),
        f(5, "details", Msg(&STATUS_DETAILS)),
        f(6, "code", Int),
    ],
};

static PRECONDITIONS: Message = Message {
    fields: &[f(1, "uid", Str), f(2, "resourceVersion", Str)],
};

static DELETE_OPTIONS: Message = Message {
    fields: &[
        kept(1, "gracePeriodSeconds", Int),
        f(2, "preconditions", Msg(&PRECONDITIONS)),
        kept(3, "orphanDependents", Bool),
        f(4, "propagationPolicy", Str),
        f(5, "dryRun", Strs),
        kept(6, "ignoreStoreReadErrorWithClusterBreakingPotential", Bool),
    ],
};

static SELECTOR_REQUIREMENT: Message = Message {
    fields: &[f(1, "key", Str), f(2, "operator", Str), f(3, "values", Strs)],
};

static LABEL_SELECTOR: Message = Message {
    fields: &[
        f(1, "matchLabels", StrMap),
        f(2, "matchExpressions", Msgs(&SELECTOR_REQUIREMENT)),
    ],
};

// k8s.io/api/core/v1

static NAMESPACE_CONDITION: Message = Message {
    fields: &[
        f(1, "type", Str),
        f(2, "status", Str),
        f(4, "lastTransitionTime", Time),
        f(5, "reason", Str),
        f(6, "message", Str),
    ],
};

static NAMESPACE: Message = Message {
    fields: &[
        f(1, "metadata", Msg(&OBJECT_META)),
        f(
            2,
            "spec",
            Msg(&Message {
                fields: &[f(1, "finalizers", Strs)],
            }),
        ),
        f(
            3,
            "status",
            Msg(&Message {
                fields: &[f(1, "phase", Str), f(2, "conditions", Msgs(&NAMESPACE_CONDITION))],
            }),
        ),
    ],
};

static SECRET: Message = Message {
    fields: &[
        f(1, "metadata", Msg(&OBJECT_META)),
        kept(5, "immutable", Bool),
        f(2, "data", BytesMap),
        f(4, "stringData", StrMap),
        f(3, "type", Str),
    ],
};

static CONFIG_MAP: Message = Message {
    fields: &[
        f(1, "metadata", Msg(&OBJECT_META)),
        kept(4, "immutable", Bool),
        f(2, "data", StrMap),
        f(3, "binaryData", BytesMap),
    ],
};

static OBJECT_REFERENCE: Message = Message {
    fields: &[
        f(1, "kind", Str),
        f(2, "namespace", Str),
        f(3, "name", Str),
        f(4, "uid", Str),
        f(5, "apiVersion", Str),
        f(6, "resourceVersion", Str),
        f(7, "fieldPath", Str),
    ],
};

static SERVICE_ACCOUNT: Message = Message {
    fields: &[
        f(1, "metadata", Msg(&OBJECT_META)),
        f(2, "secrets", Msgs(&OBJECT_REFERENCE)),
        f(
            3,
            "imagePullSecrets",
            Msgs(&Message {
                fields: &[f(1, "name", Str)],
            }),
        ),
        kept(4, "automountServiceAccountToken", Bool),
    ],
};

// k8s.io/api/rbac/v1

static POLICY_RULE: Message = Message {
    fields: &[
        f(1, "verbs", Strs),
        f(2, "apiGroups", Strs),
        f(3, "resources", Strs),
        f(4, "resourceNames", Strs),
        f(5, "nonResourceURLs", Strs),
    ],
};

static SUBJECT: Message = Message {
    fields: &[
        f(1, "kind", Str),
        f(2, "apiGroup", Str),
        f(3, "name", Str),
        f(4, "namespace", Str),
    ],
};

static ROLE_REF: Message = Message {
    fields: &[f(1, "apiGroup", Str), f(2, "kind", Str), f(3, "name", Str)],
};

static ROLE: Message = Message {
    fields: &[
        f(1, "metadata", Msg(&OBJECT_META)),
        f(2, "rules", Msgs(&POLICY_RULE)),
    ],
};

static CLUSTER_ROLE: Message = Message {
    fields: &[
        f(1, "metadata", Msg(&OBJECT_META)),
        f(2, "rules", Msgs(&POLICY_RULE)),
        f(
            3,
            "aggregationRule",
            Msg(&Message {
                fields: &[f(1, "clusterRoleSelectors", Msgs(&LABEL_SELECTOR))],
            }),
        ),
    ],
};

static ROLE_BINDING: Message = Message {
    fields: &[
        f(1, "metadata", Msg(&OBJECT_META)),
        f(2, "subjects", Msgs(&SUBJECT)),
        f(3, "roleRef", Msg(&ROLE_REF)),
    ],
};

// k8s.io/api/authorization/v1 and authentication/v1

static SELECTOR_ATTRIBUTES: Message = Message {
    fields: &[
        f(1, "rawSelector", Str),
        f(2, "requirements", Msgs(&SELECTOR_REQUIREMENT)),
    ],
};

static RESOURCE_ATTRIBUTES: Message = Message {
    fields: &[
        f(1, "namespace", Str),
        f(2, "verb", Str),
        f(3, "group", Str),
        f(4, "version", Str),
        f(5, "resource", Str),
        f(6, "subresource", Str),
        f(7, "name", Str),
        f(8, "fieldSelector", Msg(&SELECTOR_ATTRIBUTES)),
        f(9, "labelSelector", Msg(&SELECTOR_ATTRIBUTES)),
    ],
};

static NON_RESOURCE_ATTRIBUTES: Message = Message {
    fields: &[f(1, "path", Str), f(2, "verb", Str)],
};

static ACCESS_REVIEW_STATUS: Message = Message {
    fields: &[
        kept(1, "allowed", Bool),
        f(4, "denied", Bool),
        f(2, "reason", Str),
        f(3, "evaluationError", Str),
    ],
};

static SELF_SUBJECT_ACCESS_REVIEW: Message = Message {
    fields: &[
        f(1, "metadata", Msg(&OBJECT_META)),
        f(
            2,
            "spec",
            Msg(&Message {
                fields: &[
                    f(1, "resourceAttributes", Msg(&RESOURCE_ATTRIBUTES)),
                    f(2, "nonResourceAttributes", Msg(&NON_RESOURCE_ATTRIBUTES)),
                ],
            }),
        ),
        f(3, "status", Msg(&ACCESS_REVIEW_STATUS)),
    ],
};

static SUBJECT_ACCESS_REVIEW: Message = Message {
    fields: &[
        f(1, "metadata", Msg(&OBJECT_META)),
        f(
            2,
            "spec",
            Msg(&Message {
                fields: &[
                    f(1, "resourceAttributes", Msg(&RESOURCE_ATTRIBUTES)),
                    f(2, "nonResourceAttributes", Msg(&NON_RESOURCE_ATTRIBUTES)),
                    f(3, "user", Str),
                    f(4, "groups", Strs),
                    f(5, "extra", ListMap),
                    f(6, "uid", Str),
                ],
            }),
        ),
        f(3, "status", Msg(&ACCESS_REVIEW_STATUS)),
    ],
};

static SELF_SUBJECT_RULES_REVIEW: Message = Message {
    fields: &[
        f(1, "metadata", Msg(&OBJECT_META)),
        f(
            2,
            "spec",
            Msg(&Message {
                fields: &[f(1, "namespace", Str)],
            }),
        ),
        f(
            3,
            "status",
            Msg(&Message {
                fields: &[
                    f(
                        1,
                        "resourceRules",
                        Msgs(&Message {
                            fields: &[
                                f(1, "verbs", Strs),
                                f(2, "apiGroups", Strs),
                                f(3, "resources", Strs),
                                f(4, "resourceNames", Strs),
                            ],
                        }),
                    ),
                    f(
                        2,
                        "nonResourceRules",
                        Msgs(&Message {
                            fields: &[f(1, "verbs", Strs), f(2, "nonResourceURLs", Strs)],
                        }),
                    ),
                    kept(3, "incomplete", Bool),
                    f(4, "evaluationError", Str),
                ],
            }),
        ),
    ],
};

static SELF_SUBJECT_REVIEW: Message = Message {
    fields: &[
        f(1, "metadata", Msg(&OBJECT_META)),
        f(
            2,
            "status",
            Msg(&Message {
                fields: &[f(
                    1,
                    "userInfo",
                    Msg(&Message {
                        fields: &[
                            f(1, "username", Str),
                            f(2, "uid", Str),
                            f(3, "groups", Strs),
                            f(4, "extra", ListMap),
                        ],
                    }),
                )],
            }),
        ),
    ],
};

/// `{metadata: ListMeta, items: [item]}`, the shape of every list.
macro_rules! list {
    ($item:expr) => {
        &Message {
            fields: &[f(1, "metadata", Msg(&LIST_META)), f(2, "items", Msgs($item))],
        }
    };
}

/// A kind read and written as protobuf. `api_version` "*" matches every group version (the
/// kinds every group serves: `Status`, `DeleteOptions`).
#[derive(Debug)]
pub(crate) struct Served {
    pub(crate) api_version: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) message: &'static Message,
}

const fn kind(api_version: &'static str, kind: &'static str, message: &'static Message) -> Served {
    Served {
        api_version,
        kind,
        message,
    }
}

const RBAC: &str = "rbac.authorization.k8s.io/v1";
const AUTHZ: &str = "authorization.k8s.io/v1";

/// Every kind served as protobuf (docs/apiserver.md lists them).
pub(crate) static KINDS: &[Served] = &[
    kind("*", "Status", &STATUS),
    kind("*", "DeleteOptions", &DELETE_OPTIONS),
    kind("v1", "Namespace", &NAMESPACE),
    kind("v1", "NamespaceList", list!(&NAMESPACE)),
    kind("v1", "Secret", &SECRET),
    kind("v1", "SecretList", list!(&SECRET)),
    kind("v1", "ConfigMap", &CONFIG_MAP),
    kind("v1", "ConfigMapList", list!(&CONFIG_MAP)),
    kind("v1", "ServiceAccount", &SERVICE_ACCOUNT),
    kind("v1", "ServiceAccountList", list!(&SERVICE_ACCOUNT)),
    kind(RBAC, "Role", &ROLE),
    kind(RBAC, "RoleList", list!(&ROLE)),
    kind(RBAC, "ClusterRole", &CLUSTER_ROLE),
    kind(RBAC, "ClusterRoleList", list!(&CLUSTER_ROLE)),
    kind(RBAC, "RoleBinding", &ROLE_BINDING),
    kind(RBAC, "RoleBindingList", list!(&ROLE_BINDING)),
    kind(RBAC, "ClusterRoleBinding", &ROLE_BINDING),
    kind(RBAC, "ClusterRoleBindingList", list!(&ROLE_BINDING)),
    kind(AUTHZ, "SelfSubjectAccessReview", &SELF_SUBJECT_ACCESS_REVIEW),
    kind(AUTHZ, "SelfSubjectRulesReview", &SELF_SUBJECT_RULES_REVIEW),
    kind(AUTHZ, "SubjectAccessReview", &SUBJECT_ACCESS_REVIEW),
    kind(
        "authentication.k8s.io/v1",
        "SelfSubjectReview",
        &SELF_SUBJECT_REVIEW,
    ),
];

/// The message of a kind, if it is served as protobuf.
pub(crate) fn lookup(api_version: &str, kind: &str) -> Option<&'static Message> {
    KINDS
        .iter()
        .find(|k| k.kind == kind && (k.api_version == "*" || k.api_version == api_version))
        .map(|k| k.message)
}
