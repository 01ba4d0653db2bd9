//! JSON shapes, for the differential tests: two answers have the same shape when they have the same
//! field names with the same JSON types, recursively (values may differ).

use std::collections::BTreeMap;

use serde_json::Value;

/// The shape of a JSON value: each leaf path (`a.b[].c`) with its JSON type (`string`, `number`,
/// `bool`, `null`, `object`, `array`). Array elements are merged under `[]`; an empty array is `array`.
pub fn json_shape(value: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    walk(value, String::new(), &mut out);
    out
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn walk(v: &Value, path: String, out: &mut BTreeMap<String, String>) {
    let key = if path.is_empty() {
        "$".to_string()
    } else {
        path.clone()
    };
    out.insert(key, type_name(v).to_string());
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                walk(child, p, out);
            }
        }
        Value::Array(items) => {
            for child in items {
                walk(child, format!("{path}[]"), out);
            }
        }
        _ => {}
    }
}

/// Differences between two shapes, as readable lines (`only in real: a.b (string)`,
/// `type differs at a.c: real number, fake string`). Empty when the shapes agree.
pub fn shape_diff(real: &Value, fake: &Value) -> Vec<String> {
    let (r, f) = (json_shape(real), json_shape(fake));
    let mut diffs = Vec::new();
    for (k, t) in &r {
        match f.get(k) {
            None => diffs.push(format!("only in real: {k} ({t})")),
            Some(ft) if ft != t => diffs.push(format!("type differs at {k}: real {t}, fake {ft}")),
            _ => {}
        }
    }
    for (k, t) in &f {
        if !r.contains_key(k) {
            diffs.push(format!("only in fake: {k} ({t})"));
        }
    }
    diffs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn same_shape_different_values() {
        assert!(shape_diff(
            &json!({"a": 1, "b": ["x"]}),
            &json!({"a": 2, "b": ["y", "z"]})
        )
        .is_empty());
    }

    #[test]
    fn reports_type_and_field_differences() {
        let d = shape_diff(&json!({"a": "1", "b": 1}), &json!({"a": 1, "c": 1}));
        assert_eq!(d.len(), 3, "{d:?}");
    }
}
