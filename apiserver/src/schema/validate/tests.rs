//! Tests of schema validation: the API server's messages, junctors, lists and the resource root.

use serde_json::json;

use super::*;

fn errors(schema: &Value, value: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    validate(schema, value, "spec", &mut errors);
    errors.iter().map(ToString::to_string).collect()
}

#[test]
fn ranges_use_the_api_server_messages() {
    let s =
        json!({"type": "object", "properties": {"players": {"type": "integer", "minimum": 2, "maximum": 4}}});
    assert_eq!(
        errors(&s, &json!({"players": 5})),
        ["spec.players: Invalid value: 5: spec.players in body should be less than or equal to 4"]
    );
    assert_eq!(
        errors(&s, &json!({"players": 1})),
        ["spec.players: Invalid value: 1: spec.players in body should be greater than or equal to 2"]
    );
    assert!(errors(&s, &json!({"players": 3})).is_empty());
    assert!(
        errors(&s, &json!({"players": 3.0})).is_empty(),
        "3.0 is an integer"
    );
}

#[test]
fn exclusive_bounds() {
    let s = json!({"type": "number", "minimum": 0, "exclusiveMinimum": true});
    assert_eq!(
        errors(&s, &json!(0)),
        ["spec: Invalid value: 0: spec in body should be greater than 0"]
    );
    assert!(errors(&s, &json!(0.1)).is_empty());
}

#[test]
fn wrong_types_name_the_field_and_both_types() {
    let s = json!({"type": "object", "properties": {"games": {"type": "integer"}}});
    assert_eq!(
        errors(&s, &json!({"games": "ten"})),
        [r#"spec.games: Invalid value: "string": spec.games in body must be of type integer: "string""#]
    );
    assert_eq!(
        errors(&s, &json!({"games": 1.5})).len(),
        1,
        "a fraction is not an integer"
    );
    assert_eq!(errors(&s, &json!([1])).len(), 1, "an array is not an object");
}

#[test]
fn enums_list_the_supported_values() {
    let s = json!({"type": "string", "enum": ["random", "heuristic"]});
    assert_eq!(
        errors(&s, &json!("perfect")),
        [r#"spec: Unsupported value: "perfect": supported values: "random", "heuristic""#]
    );
}

#[test]
fn required_fields_are_reported_at_their_own_path() {
    let s = json!({"type": "object", "required": ["board"], "properties": {"board": {"type": "string"}}});
    assert_eq!(errors(&s, &json!({})), ["spec.board: Required value"]);
}

#[test]
fn strings_lengths_and_patterns() {
    let s = json!({"type": "string", "minLength": 1, "maxLength": 3, "pattern": "^[a-z]+$"});
    assert_eq!(
        errors(&s, &json!("abcd")),
        ["spec: Too long: may not be more than 3 bytes"]
    );
    assert_eq!(errors(&s, &json!("")).len(), 2, "too short and no match");
    assert_eq!(
        errors(&s, &json!("A")),
        [r#"spec: Invalid value: "A": spec in body should match '^[a-z]+$'"#]
    );
}

#[test]
fn list_maps_reject_duplicate_keys() {
    let s = json!({
        "type": "array", "maxItems": 3, "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
        "items": {"type": "object", "properties": {"name": {"type": "string"}}}
    });
    assert_eq!(
        errors(&s, &json!([{"name": "a"}, {"name": "b"}, {"name": "a"}])),
        [r#"spec[2]: Duplicate value: "a""#]
    );
    assert_eq!(
        errors(
            &s,
            &json!([{"name": "a"}, {"name": "b"}, {"name": "c"}, {"name": "d"}])
        ),
        ["spec: Too many: 4: must have at most 3 items"]
    );
}

#[test]
fn maps_validate_each_value_at_its_key() {
    let s = json!({"type": "object", "additionalProperties": {"type": "string"}});
    assert_eq!(
        errors(&s, &json!({"a": "x", "b": 2})),
        [r#"spec[b]: Invalid value: "integer": spec[b] in body must be of type string: "integer""#]
    );
}

#[test]
fn null_only_where_nullable() {
    let s = json!({"type": "object", "properties": {
        "a": {"type": "string", "nullable": true}, "b": {"type": "string"}
    }});
    assert!(errors(&s, &json!({"a": null})).is_empty());
    assert_eq!(errors(&s, &json!({"b": null})).len(), 1);
}

#[test]
fn int_or_string() {
    let s = json!({"x-kubernetes-int-or-string": true});
    assert!(errors(&s, &json!(3)).is_empty());
    assert!(errors(&s, &json!("50%")).is_empty());
    assert_eq!(errors(&s, &json!(true)).len(), 1);
}

#[test]
fn junctors() {
    let any = json!({"type": "integer", "anyOf": [{"minimum": 10}, {"maximum": 0}]});
    assert!(errors(&any, &json!(11)).is_empty());
    assert_eq!(errors(&any, &json!(5)).len(), 1);
    let not = json!({"type": "integer", "not": {"minimum": 10}});
    assert_eq!(errors(&not, &json!(11)).len(), 1);
}

#[test]
fn resource_root_skips_server_owned_fields() {
    let s = json!({"type": "object", "required": ["spec"], "properties": {
        "metadata": {"type": "object"}, "spec": {"type": "object"}
    }});
    let mut errs = Vec::new();
    validate_resource(
        &RootSchema::new(&s),
        &json!({"apiVersion": "a/v1", "kind": "K", "metadata": {"name": 3}}),
        &mut errs,
    );
    assert_eq!(
        errs.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["spec: Required value"]
    );
}

#[test]
fn the_resource_root_is_checked_the_same_in_place_and_copied() {
    let object = json!({"apiVersion": "a/v1", "kind": "K", "metadata": {"name": "x"},
                        "spec": {"n": "three"}, "extra": 1});
    let plain = json!({"type": "object", "required": ["spec", "status", "kind"],
        "properties": {"spec": {"type": "object", "properties": {"n": {"type": "integer"}}}},
        "additionalProperties": {"type": "string"}});
    // `not` at the root makes the root check the whole object: the copy without the
    // server-owned fields.
    let mut copied = plain.clone();
    copied["not"] = json!({"required": ["nothing"]});
    let root = RootSchema::new(&plain);
    assert!(root.plain);
    assert!(!RootSchema::new(&copied).plain);
    let run = |schema: &Value| {
        let mut errs = Vec::new();
        validate_resource(&RootSchema::new(schema), &object, &mut errs);
        errs.iter().map(ToString::to_string).collect::<Vec<_>>()
    };
    let expected = [
        "status: Required value",
        "[extra]: Invalid value: \"integer\": [extra] in body must be of type string: \"integer\"",
        "spec.n: Invalid value: \"string\": spec.n in body must be of type integer: \"string\"",
    ];
    let mut got = run(&plain);
    got.sort();
    let mut want = expected.map(str::to_owned).to_vec();
    want.sort();
    assert_eq!(got, want);
    let mut got = run(&copied);
    got.sort();
    assert_eq!(got, want);
}

#[test]
fn huge_values_are_cut_short_in_messages() {
    let s = json!({"type": "string", "pattern": "^a$"});
    let long = "b".repeat(10_000);
    let msg = &errors(&s, &json!(long))[0];
    assert!(msg.len() < 300, "{msg}");
}
