//! Property-test strategies for bytes from outside: JSON that is almost right (a valid
//! value with a few edits), any JSON (including number literals no Rust type holds and
//! duplicate keys), text weighted towards what breaks parsers, and raw bodies around a
//! size limit. Shared by the fuzz targets of the server and of the sync engine.

use proptest::prelude::*;

/// JSON as text, including what `serde_json::Value` cannot hold: number literals of
/// any size and duplicate keys.
#[derive(Debug, Clone, PartialEq)]
pub enum J {
    Null,
    Bool(bool),
    /// A number literal as written.
    Num(String),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

impl J {
    pub fn of(value: &serde_json::Value) -> J {
        use serde_json::Value;
        match value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Number(n) => J::Num(n.to_string()),
            Value::String(s) => J::Str(s.clone()),
            Value::Array(items) => J::Arr(items.iter().map(J::of).collect()),
            Value::Object(fields) => {
                J::Obj(fields.iter().map(|(k, v)| (k.clone(), J::of(v))).collect())
            }
        }
    }

    /// `value` as JSON, then `edits` applied.
    pub fn edited(value: &impl serde::Serialize, edits: &[Edit]) -> String {
        let mut j = J::of(&serde_json::to_value(value).expect("serializes"));
        for edit in edits {
            j.edit(edit);
        }
        j.render()
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        let string = |s: &str| serde_json::to_string(s).expect("a string serializes");
        match self {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Num(n) => out.push_str(n),
            J::Str(s) => out.push_str(&string(s)),
            J::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            J::Obj(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&string(k));
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }

    fn count(&self) -> usize {
        1 + match self {
            J::Arr(items) => items.iter().map(J::count).sum(),
            J::Obj(fields) => fields.iter().map(|(_, v)| v.count()).sum(),
            _ => 0,
        }
    }

    /// The `n`th node in pre-order.
    fn nth(&mut self, n: &mut usize) -> Option<&mut J> {
        if *n == 0 {
            return Some(self);
        }
        *n -= 1;
        match self {
            J::Arr(items) => items.iter_mut().find_map(|item| item.nth(n)),
            J::Obj(fields) => fields.iter_mut().find_map(|(_, v)| v.nth(n)),
            _ => None,
        }
    }

    pub fn edit(&mut self, edit: &Edit) {
        let mut n = edit.at % self.count();
        let Some(node) = self.nth(&mut n) else {
            return;
        };
        match &edit.how {
            How::Replace(j) => *node = j.clone(),
            How::Drop(i) => match node {
                J::Arr(items) if !items.is_empty() => {
                    items.remove(i % items.len());
                }
                J::Obj(fields) if !fields.is_empty() => {
                    fields.remove(i % fields.len());
                }
                _ => *node = J::Null,
            },
            How::Add(key, j) => match node {
                J::Arr(items) => items.push(j.clone()),
                J::Obj(fields) => fields.push((key.clone(), j.clone())),
                _ => *node = J::Obj(vec![(key.clone(), j.clone())]),
            },
            How::Duplicate(i) => match node {
                J::Obj(fields) if !fields.is_empty() => {
                    let again = fields[i % fields.len()].clone();
                    fields.push(again);
                }
                J::Arr(items) if !items.is_empty() => {
                    let again = items[i % items.len()].clone();
                    items.push(again);
                }
                _ => {}
            },
            How::Retype => {
                *node = match node {
                    J::Str(s) => J::Num(s.clone()),
                    J::Num(n) => J::Str(n.clone()),
                    J::Bool(b) => J::Str(b.to_string()),
                    J::Null => J::Str(String::new()),
                    J::Arr(items) => J::Obj(
                        items
                            .iter()
                            .enumerate()
                            .map(|(i, j)| (i.to_string(), j.clone()))
                            .collect(),
                    ),
                    J::Obj(fields) => J::Arr(fields.iter().map(|(_, v)| v.clone()).collect()),
                }
            }
        }
    }
}

/// One change to valid JSON (a body or a frame): at node `at` (pre-order, modulo the node count).
#[derive(Debug, Clone)]
pub struct Edit {
    at: usize,
    how: How,
}

#[derive(Debug, Clone)]
enum How {
    Replace(J),
    Drop(usize),
    Add(String, J),
    Duplicate(usize),
    Retype,
}

pub fn edits() -> BoxedStrategy<Vec<Edit>> {
    let how = prop_oneof![
        4 => json().prop_map(How::Replace),
        2 => number().prop_map(|n| How::Replace(J::Num(n))),
        2 => any::<usize>().prop_map(How::Drop),
        2 => (key(), json()).prop_map(|(k, j)| How::Add(k, j)),
        1 => any::<usize>().prop_map(How::Duplicate),
        2 => Just(How::Retype),
    ];
    prop::collection::vec(
        (any::<usize>(), how).prop_map(|(at, how)| Edit { at, how }),
        1..4,
    )
    .boxed()
}

const SPECIAL: &[&str] = &[
    "\0",
    "\u{feff}",
    "\u{202e}",
    "\u{fffd}",
    "\u{7f}",
    "🙂",
    "\\",
    "\"",
    "\r\n",
    "'; DROP TABLE records; --",
    "%s%n%x",
    "../../etc/passwd",
    "null",
    "NaN",
    "Infinity",
    "1e400",
    "{}",
    "[]",
    "2026-02-30",
    "24:00:00",
    "00000000-0000-0000-0000-000000000000",
    "booking",
    "staff",
];

/// Any text, weighted towards what breaks parsers.
pub fn text() -> BoxedStrategy<String> {
    prop_oneof![
        6 => any::<String>(),
        3 => "[ -~]{0,40}",
        1 => Just(String::new()),
        2 => prop::sample::select(SPECIAL).prop_map(str::to_owned),
        1 => (any::<char>(), 0usize..300).prop_map(|(c, n)| c.to_string().repeat(n)),
    ]
    .boxed()
}

const KEYS: &[&str] = &[
    "type",
    "protocol",
    "token",
    "cursor",
    "op",
    "id",
    "version",
    "mutation_id",
    "mutation",
    "username",
    "password",
    "kind",
    "date",
    "start",
    "end",
    "booking",
    "slot",
    "message",
    "action",
    "client_name",
    "notes",
    "__proto__",
    "changes",
    "upto",
    "head",
    "seq",
    "actor",
    "record",
    "user_id",
    "reason",
    "code",
    "note",
    "staff_id",
];

fn key() -> BoxedStrategy<String> {
    prop_oneof![
        2 => prop::sample::select(KEYS).prop_map(str::to_owned),
        1 => text(),
    ]
    .boxed()
}

/// Number literals, including what no Rust integer or float holds.
pub fn number() -> BoxedStrategy<String> {
    prop_oneof![
        2 => any::<i64>().prop_map(|n| n.to_string()),
        2 => any::<u64>().prop_map(|n| n.to_string()),
        1 => any::<u32>().prop_map(|n| n.to_string()),
        1 => any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
        2 => prop::sample::select(&[
            "1e400",
            "-1e400",
            "1e-400",
            "18446744073709551616",
            "18446744073709551615",
            "-9223372036854775809",
            "340282366920938463463374607431768211456",
            "4294967296",
            "4294967295",
            "-0",
            "0.0",
            "1.0",
            "1E2",
            "-1",
            "0",
            "1",
            "2",
            "9223372036854775808",
        ][..])
        .prop_map(str::to_owned),
    ]
    .boxed()
}

pub fn json() -> BoxedStrategy<J> {
    let leaf = prop_oneof![
        Just(J::Null),
        any::<bool>().prop_map(J::Bool),
        number().prop_map(J::Num),
        text().prop_map(J::Str),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(J::Arr),
            prop::collection::vec((key(), inner), 0..6).prop_map(J::Obj),
        ]
    })
    .boxed()
}

/// A body or frame that is not what the endpoint expects, whatever it is.
#[derive(Debug, Clone)]
pub enum Raw {
    Empty,
    Bytes(Vec<u8>),
    Text(String),
    Json(J),
    /// `[[[[...]]]]` or `{"a":{"a":...}}`, `depth` deep.
    Deep {
        depth: usize,
        object: bool,
    },
    /// `len` copies of `byte`: around the body limit and far over it.
    Sized {
        len: usize,
        byte: u8,
    },
}

impl Raw {
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Raw::Empty => Vec::new(),
            Raw::Bytes(b) => b.clone(),
            Raw::Text(t) => t.clone().into_bytes(),
            Raw::Json(j) => j.render().into_bytes(),
            Raw::Deep { depth, object } => deep(*depth, *object).into_bytes(),
            Raw::Sized { len, byte } => vec![*byte; *len],
        }
    }
}

pub fn deep(depth: usize, object: bool) -> String {
    if object {
        format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth))
    } else {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }
}

/// Raw bodies for a limit of `limit` bytes.
pub fn raw(limit: usize) -> BoxedStrategy<Raw> {
    prop_oneof![
        1 => Just(Raw::Empty),
        3 => prop::collection::vec(any::<u8>(), 0..512).prop_map(Raw::Bytes),
        2 => text().prop_map(Raw::Text),
        4 => json().prop_map(Raw::Json),
        1 => (1usize..20_000, any::<bool>())
            .prop_map(|(depth, object)| Raw::Deep { depth, object }),
        1 => (limit - 2..limit + 3, prop::sample::select(&b" {[a\0"[..]))
            .prop_map(|(len, byte)| Raw::Sized { len, byte }),
        1 => (limit..limit * 3, any::<u8>()).prop_map(|(len, byte)| Raw::Sized { len, byte }),
    ]
    .boxed()
}
