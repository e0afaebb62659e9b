//! The event schema, `schema/event.schema.json`, as a validator for the tests.

use serde_json::Value;

/// The schema's validator.
pub fn validator() -> jsonschema::Validator {
    let text = include_str!("../../../schema/event.schema.json");
    let schema: Value = serde_json::from_str(text).expect("the schema is JSON");
    jsonschema::draft202012::new(&schema).expect("the schema is a valid draft 2020-12 schema")
}

/// Panics with every violation if `event` does not match the schema.
pub fn assert_valid(validator: &jsonschema::Validator, event: &Value) {
    let errors: Vec<String> = validator
        .iter_errors(event)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{event}: {errors:?}");
}
