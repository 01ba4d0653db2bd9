//! JSON shapes: check that a fake answers with the same field names and JSON types as the real
//! server did, whatever the values.
//!
//! The fakes of this crate are tested against real captures this way, and you can validate your own
//! fakes and recorded fixtures with it: keep one real answer, ask your fake the same question, and
//! compare the two shapes.
//!
//! ```
//! use rb_testkit::shape::{shape_diff, ShapeRules};
//! use serde_json::json;
//!
//! let real = json!({"state": "RUNNING", "tasks": [{"id": 0, "worker_id": "10.0.0.1:8083"}]});
//! let fake = json!({"state": "FAILED", "tasks": [{"id": 3, "worker_id": "127.0.0.1:8083"}]});
//! assert!(shape_diff(&real, &fake).is_empty());
//!
//! // A field renamed in the fake is reported on both sides.
//! let fake = json!({"state": "RUNNING", "tasks": [{"id": 0, "worker": "127.0.0.1:8083"}]});
//! assert_eq!(shape_diff(&real, &fake).len(), 2);
//!
//! // Rules for answers with data keys (maps) or fields the reference predates.
//! let rules = ShapeRules::new()
//!     .names("reference", "fake")
//!     .map_fields(&["config"])
//!     .allow_extra(&["version"]);
//! let reference = json!({"name": "s", "config": {"topic": "a"}});
//! let fake = json!({"name": "s", "config": {"file": "/tmp/x"}, "version": "4.1.0"});
//! assert!(rules.diff(&reference, &fake).is_empty());
//! ```
//!
//! Paths are written `a.b[].c`: object fields joined with `.`, array elements merged under `[]`, the
//! root is `$`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// The JSON type of a value: `null`, `bool`, `number`, `string`, `array` or `object` (integers and
/// floats are both `number`).
pub fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The shape of a JSON value: each path (`a.b[].c`, root `$`) with its JSON type. Array elements
/// are merged under `[]`; where elements of one array have different types, the last one counts.
/// An empty array is just `array`.
pub fn json_shape(value: &Value) -> BTreeMap<String, String> {
    Shape::of(value, &ShapeRules::new())
        .types
        .into_iter()
        .map(|(path, types)| (path, types_text(&types)))
        .collect()
}

/// Differences between two shapes, as readable lines (`only in real: a.b (string)`,
/// `type differs at a.c: real number, fake string`, `only in fake: …`). Empty when the shapes
/// agree. The same as [`ShapeRules::new`]`.diff(real, fake)`.
pub fn shape_diff(real: &Value, fake: &Value) -> Vec<String> {
    ShapeRules::new().diff(real, fake)
}

/// How two JSON values are compared by shape. [`ShapeRules::new`] gives the strict comparison of
/// [`shape_diff`]; each method relaxes or adapts one thing.
#[derive(Clone, Copy, Debug)]
pub struct ShapeRules<'a> {
    left: &'a str,
    right: &'a str,
    all_types: bool,
    subset: bool,
    skip_under_empty_arrays: bool,
    map_fields: &'a [&'a str],
    id_key: Option<fn(&str) -> bool>,
    allow_extra: &'a [&'a str],
}

impl Default for ShapeRules<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> ShapeRules<'a> {
    /// The strict rules: same paths, same type at each path (the last element's type for arrays),
    /// sides named `real` and `fake` in the messages.
    pub fn new() -> Self {
        Self {
            left: "real",
            right: "fake",
            all_types: false,
            subset: false,
            skip_under_empty_arrays: false,
            map_fields: &[],
            id_key: None,
            allow_extra: &[],
        }
    }

    /// The names of the two sides in the messages (`real`/`fake` by default).
    pub fn names(mut self, left: &'a str, right: &'a str) -> Self {
        self.left = left;
        self.right = right;
        self
    }

    /// Keep every type seen at a path (arrays of mixed elements, the same field in several array
    /// elements), instead of the last one. Sets are compared whole (see [`ShapeRules::subset`]).
    pub fn all_types(mut self) -> Self {
        self.all_types = true;
        self
    }

    /// With [`ShapeRules::all_types`]: the left side's types at a path need only be among the
    /// right side's (the fake may show more variants than one capture did).
    pub fn subset(mut self) -> Self {
        self.all_types = true;
        self.subset = true;
        self
    }

    /// Paths under an array that is empty on one side cannot be compared: skip them instead of
    /// reporting them as missing.
    pub fn skip_under_empty_arrays(mut self) -> Self {
        self.skip_under_empty_arrays = true;
        self
    }

    /// Fields (by name, at any depth) whose object value is a map with data keys (a connector's
    /// `config`): its keys are merged under `*`.
    pub fn map_fields(mut self, fields: &'a [&'a str]) -> Self {
        self.map_fields = fields;
        self
    }

    /// Object keys that are ids (the predicate says which) are merged under `<id>`.
    pub fn id_keys(mut self, is_id: fn(&str) -> bool) -> Self {
        self.id_key = Some(is_id);
        self
    }

    /// A path only on the right side is allowed when one of its segments (without `[]`) is listed
    /// here (fields the reference capture predates).
    pub fn allow_extra(mut self, segments: &'a [&'a str]) -> Self {
        self.allow_extra = segments;
        self
    }

    /// Differences between the shapes of `left` and `right` under these rules, as readable lines
    /// (`only in real: a.b (string)`, `type differs at a.c: real number, fake string`,
    /// `only in fake: …`). Empty when the shapes agree.
    pub fn diff(&self, left: &Value, right: &Value) -> Vec<String> {
        let (l, r) = (Shape::of(left, self), Shape::of(right, self));
        let (ln, rn) = (self.left, self.right);
        let mut out = Vec::new();
        for (path, lt) in &l.types {
            match r.types.get(path) {
                None if self.skip_under_empty_arrays && r.under_empty_array(path) => {}
                None => out.push(format!("only in {ln}: {path} ({})", types_text(lt))),
                Some(rt) if !self.types_agree(lt, rt) => out.push(format!(
                    "type differs at {path}: {ln} {}, {rn} {}",
                    types_text(lt),
                    types_text(rt)
                )),
                Some(_) => {}
            }
        }
        for (path, rt) in &r.types {
            if l.types.contains_key(path)
                || (self.skip_under_empty_arrays && l.under_empty_array(path))
                || self.extra_allowed(path)
            {
                continue;
            }
            out.push(format!("only in {rn}: {path} ({})", types_text(rt)));
        }
        out
    }

    fn types_agree(&self, left: &BTreeSet<&'static str>, right: &BTreeSet<&'static str>) -> bool {
        if self.subset {
            left.is_subset(right)
        } else {
            left == right
        }
    }

    fn extra_allowed(&self, path: &str) -> bool {
        path.split('.')
            .any(|seg| self.allow_extra.contains(&seg.trim_end_matches("[]")))
    }

    fn is_map_field(&self, path: &str) -> bool {
        self.map_fields
            .iter()
            .any(|f| path == *f || path.ends_with(&format!(".{f}")))
    }
}

/// The types at each path and the arrays that were empty (by the prefix of their elements' paths).
struct Shape {
    types: BTreeMap<String, BTreeSet<&'static str>>,
    empty_arrays: BTreeSet<String>,
}

impl Shape {
    fn of(value: &Value, rules: &ShapeRules<'_>) -> Self {
        let mut shape = Shape {
            types: BTreeMap::new(),
            empty_arrays: BTreeSet::new(),
        };
        shape.walk(value, "", rules);
        shape
    }

    fn walk(&mut self, v: &Value, path: &str, rules: &ShapeRules<'_>) {
        let key = if path.is_empty() { "$" } else { path };
        let types = self.types.entry(key.to_string()).or_default();
        if !rules.all_types {
            types.clear();
        }
        types.insert(json_type(v));
        match v {
            Value::Object(map) => {
                let is_map = rules.is_map_field(path);
                for (k, child) in map {
                    let k = if is_map {
                        "*"
                    } else if rules.id_key.is_some_and(|is_id| is_id(k)) {
                        "<id>"
                    } else {
                        k.as_str()
                    };
                    let p = if path.is_empty() {
                        k.to_string()
                    } else {
                        format!("{path}.{k}")
                    };
                    self.walk(child, &p, rules);
                }
            }
            Value::Array(items) => {
                let p = format!("{path}[]");
                if items.is_empty() {
                    self.empty_arrays.insert(p.clone());
                }
                for child in items {
                    self.walk(child, &p, rules);
                }
            }
            _ => {}
        }
    }

    fn under_empty_array(&self, path: &str) -> bool {
        self.empty_arrays.iter().any(|e| path.starts_with(e))
    }
}

fn types_text(types: &BTreeSet<&'static str>) -> String {
    types.iter().copied().collect::<Vec<_>>().join("|")
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
        assert!(d.contains(&"type differs at a: real string, fake number".to_string()));
        assert!(d.contains(&"only in real: b (number)".to_string()));
        assert!(d.contains(&"only in fake: c (number)".to_string()));
    }

    #[test]
    fn json_shape_lists_paths_with_the_last_type() {
        let s = json_shape(&json!({"a": {"b": [1, "x"]}, "c": []}));
        let want: BTreeMap<String, String> = [
            ("$", "object"),
            ("a", "object"),
            ("a.b", "array"),
            ("a.b[]", "string"),
            ("c", "array"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(s, want);
    }

    #[test]
    fn all_types_and_subset() {
        let (one, two) = (json!({"v": [1]}), json!({"v": [1, "1"]}));
        assert!(shape_diff(&json!({"v": [1, "1"]}), &json!({"v": ["1"]})).is_empty());
        assert_eq!(ShapeRules::new().all_types().diff(&one, &two).len(), 1);
        assert!(ShapeRules::new().subset().diff(&one, &two).is_empty());
        assert_eq!(ShapeRules::new().subset().diff(&two, &one).len(), 1);
    }

    #[test]
    fn empty_arrays_ids_maps_and_extras() {
        let skip = ShapeRules::new().skip_under_empty_arrays();
        let (empty, full) = (json!({"l": []}), json!({"l": [{"z": 1}]}));
        assert_eq!(shape_diff(&empty, &full).len(), 2);
        assert!(skip.diff(&empty, &full).is_empty());
        assert!(skip.diff(&full, &empty).is_empty());
        assert!(skip.diff(&json!([]), &json!([{"z": 1}])).is_empty());

        let ids =
            ShapeRules::new().id_keys(|k| k.len() == 4 && k.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(ids
            .diff(&json!({"m": {"0a1b": 1}}), &json!({"m": {"ffff": 2}}))
            .is_empty());
        assert_eq!(
            ids.diff(&json!({"m": {"0a1b": 1}}), &json!({"m": {"zzzz": 2}}))
                .len(),
            2
        );

        let maps = ShapeRules::new().map_fields(&["config"]);
        assert!(maps
            .diff(
                &json!({"x": [{"config": {"a": "1"}}]}),
                &json!({"x": [{"config": {"b": "2"}}]})
            )
            .is_empty());

        let extra = ShapeRules::new()
            .names("reference", "fake")
            .allow_extra(&["version"]);
        let d = extra.diff(
            &json!({"a": 1}),
            &json!({"a": 1, "version": "4", "b": [{"version": 1}]}),
        );
        assert_eq!(
            d,
            vec!["only in fake: b (array)", "only in fake: b[] (object)"]
        );
        let d = extra.diff(&json!({"a": 1, "version": "4"}), &json!({"a": 1}));
        assert_eq!(d, vec!["only in reference: version (string)".to_string()]);
    }
}
