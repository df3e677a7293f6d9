//! What changed between two reads of a view, as a small JSON patch a window applies to the
//! view it holds (ui/js/patch.js), so that a change to one booking sends one row, not the
//! page of rows around it, and the window rebuilds only that row.
//!
//! The format knows nothing of dashboards. A patch `P` is one of:
//! - `{"=": v}`: the value is now `v`;
//! - `{"o": {field: P, ...}}`: an object with the same fields, only those listed changed;
//! - `{"l": [entry, ...]}`: the new list, each entry either `i` (the old list's element `i`,
//!   unchanged), `{"i": i, "p": P}` (the old element `i`, patched) or `{"=": v}` (new).
//!
//! Elements of a list are matched by their key (a row's `record.id`, a conversation's
//! `peer.id`, a lane's or person's `id`), so a row that moved is sent as its old index, not
//! again. The window needs no key: every entry names the old index itself.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

/// The patch that turns `old` into `new`, or `None` if they are equal.
pub fn diff(old: &Value, new: &Value) -> Option<Value> {
    match (old, new) {
        (Value::Object(a), Value::Object(b))
            if a.len() == b.len() && a.keys().all(|k| b.contains_key(k)) =>
        {
            let fields: Map<String, Value> = b
                .iter()
                .filter_map(|(k, v)| diff(&a[k], v).map(|p| (k.clone(), p)))
                .collect();
            (!fields.is_empty()).then(|| json!({ "o": fields }))
        }
        (Value::Array(a), Value::Array(b)) if keyed(a) && keyed(b) => list(a, b),
        _ if old == new => None,
        _ => Some(json!({ "=": new })),
    }
}

/// A list patch between two lists whose elements all have keys.
fn list(old: &[Value], new: &[Value]) -> Option<Value> {
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(old.len());
    for (i, v) in old.iter().enumerate() {
        if let Some(k) = key(v) {
            index.entry(k).or_insert(i);
        }
    }
    let mut same = old.len() == new.len();
    let entries: Vec<Value> = new
        .iter()
        .enumerate()
        .map(|(at, v)| match key(v).and_then(|k| index.get(k)) {
            Some(&i) => match diff(&old[i], v) {
                None => {
                    same &= i == at;
                    json!(i)
                }
                Some(p) => {
                    same = false;
                    json!({ "i": i, "p": p })
                }
            },
            None => {
                same = false;
                json!({ "=": v })
            }
        })
        .collect();
    (!same).then(|| json!({ "l": entries }))
}

/// Whether every element of a non-empty list has a key (an empty list counts as keyed, so
/// that a list filling up or emptying is still a list patch).
fn keyed(list: &[Value]) -> bool {
    list.iter().all(|v| key(v).is_some())
}

/// The key of a list element: what identifies the row across reads.
fn key(v: &Value) -> Option<&str> {
    fn id(v: &Value) -> Option<&str> {
        v.get("id").and_then(Value::as_str)
    }
    v.get("record")
        .and_then(id)
        .or_else(|| v.get("peer").and_then(id))
        .or_else(|| id(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The window's side, as ui/js/patch.js does it, to check that patches round-trip.
    fn apply(old: &Value, patch: &Value) -> Value {
        if let Some(v) = patch.get("=") {
            return v.clone();
        }
        if let Some(fields) = patch.get("o").and_then(Value::as_object) {
            let mut out = old.as_object().expect("an object").clone();
            for (k, p) in fields {
                let v = apply(&out[k], p);
                out.insert(k.clone(), v);
            }
            return Value::Object(out);
        }
        let entries = patch["l"].as_array().expect("a list patch");
        let old = old.as_array().expect("a list");
        Value::Array(
            entries
                .iter()
                .map(|e| match e {
                    Value::Number(i) => old[i.as_u64().expect("index") as usize].clone(),
                    e if e.get("=").is_some() => e["="].clone(),
                    e => apply(&old[e["i"].as_u64().expect("index") as usize], &e["p"]),
                })
                .collect(),
        )
    }

    fn row(id: &str, status: &str) -> Value {
        json!({ "record": { "id": id, "status": status }, "pending": false, "actions": ["accept"] })
    }

    #[test]
    fn equal_views_have_no_patch() {
        let v = json!({ "seq": 3, "bookings": [row("a", "requested")], "days": [1, 2] });
        assert_eq!(diff(&v, &v.clone()), None);
    }

    #[test]
    fn one_changed_row_is_sent_alone_and_the_others_by_index() {
        let old = json!({ "seq": 3, "bookings": [row("a", "requested"), row("b", "requested")] });
        let new = json!({ "seq": 4, "bookings": [row("a", "requested"), row("b", "confirmed")] });
        let p = diff(&old, &new).expect("a patch");
        assert_eq!(
            p,
            json!({ "o": {
                "seq": { "=": 4 },
                "bookings": { "l": [0, { "i": 1, "p": { "o": { "record": { "o": { "status": { "=": "confirmed" } } } } } }] },
            } })
        );
        assert_eq!(apply(&old, &p), new);
    }

    #[test]
    fn rows_that_move_enter_or_leave_are_told_by_index() {
        let old = json!([row("a", "x"), row("b", "x"), row("c", "x")]);
        let new = json!([row("d", "x"), row("c", "x"), row("a", "x")]);
        let p = diff(&old, &new).expect("a patch");
        assert_eq!(p, json!({ "l": [{ "=": row("d", "x") }, 2, 0] }));
        assert_eq!(apply(&old, &p), new);
    }

    #[test]
    fn lists_without_keys_and_changed_shapes_are_replaced() {
        let old = json!({ "days": [1, 2], "more": false });
        let new = json!({ "days": [1, 3], "more": false });
        assert_eq!(
            diff(&old, &new),
            Some(json!({ "o": { "days": { "=": [1, 3] } } }))
        );
        let grown = json!({ "days": [1, 2], "more": false, "peer": "x" });
        assert_eq!(diff(&old, &grown), Some(json!({ "=": grown })));
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (0u8..4).prop_map(Value::from),
            "[ab]{0,2}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                // Keyed rows, with few keys so that lists share, repeat and move them.
                prop::collection::vec(("[abc]", inner.clone()), 0..4).prop_map(|rows| {
                    Value::Array(
                        rows.into_iter()
                            .map(|(id, v)| json!({ "record": { "id": id }, "v": v }))
                            .collect(),
                    )
                }),
                prop::collection::btree_map("[xyz]", inner, 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn a_patch_turns_the_old_value_into_the_new(old in value(), new in value()) {
            match diff(&old, &new) {
                None => prop_assert_eq!(&old, &new),
                Some(p) => prop_assert_eq!(apply(&old, &p), new),
            }
        }
    }
}
