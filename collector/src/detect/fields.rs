//! How rsigma reads fields of a Canh event. rsigma's own `JsonEvent` answers every dotted path by
//! parsing it into a list of steps and collecting the values into a list (two allocations per
//! lookup, on every field of every candidate rule). Canh's events are nested objects with plain
//! dotted names, so `CanhEvent` walks the objects directly and hands anything out of the ordinary
//! (arrays on the way, `[n]` indices, escapes) to `JsonEvent`: same answers, without the
//! allocations. `same_answers_as_json_event` in the tests holds that line.

use crate::detect::tape::{TapeEvent, TapeWalk};
use rsigma_eval::event::JsonEvent;
use rsigma_eval::{Event, EventValue};
use serde_json::{Map, Value};
use std::borrow::Cow;

/// Objects with at most this many keys are searched key by key (see `key_in`); larger ones
/// through the map's own ordered search.
const SCAN_KEYS: usize = 16;

/// `map.get(key)`. serde_json's map is a `BTreeMap`: its search compares the wanted key with
/// each key on the way through `memcmp` (a library call per key, and a read of each key's bytes,
/// which live in their own allocation). An event's objects are small, so a scan that compares
/// the lengths first (held in the map's node) reads the bytes of same-length keys only. Same
/// answer: keys are unique.
#[inline]
pub fn key_in<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    if map.len() > SCAN_KEYS {
        return map.get(key);
    }
    let key = key.as_bytes();
    map.iter().find(|(k, _)| same_bytes(k.as_bytes(), key)).map(|(_, v)| v)
}

/// `value.get(key)` for an object key, through `key_in`.
#[inline]
pub fn get<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    match value {
        Value::Object(map) => key_in(map, key),
        _ => None,
    }
}

/// `a == b` for short byte strings: the length first, then a byte loop (no `bcmp` call).
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// Reads the first two levels of these events (the top-level map and its keys, the objects under
/// it with their keys, and the strings among the values of both), so that they are in the cache
/// when the events are processed. Most of what detection costs on an event is waiting for its
/// memory: a serde_json event is a tree of small allocations (a map node per object, a string per
/// key and per text value), and every lookup follows pointers through them, each read waiting
/// for the one before. Here the reads of different keys and of different events do not depend on
/// each other, so the processor waits for many of them at once. Nothing is computed from the
/// bytes: the return value (a sum of first bytes) only keeps the reads from being optimised away.
pub fn warm(events: &[Value]) -> usize {
    let mut seen = 0usize;
    // The top-level map of every event first: all the other reads start from them.
    for event in events {
        if let Value::Object(map) = event {
            seen = seen.wrapping_add(map.keys().next().map_or(0, String::len));
        }
    }
    let mut touch = |text: &str| {
        seen = seen.wrapping_add(usize::from(text.as_bytes().first().copied().unwrap_or(0)))
    };
    for event in events {
        let Value::Object(map) = event else { continue };
        for (key, value) in map {
            touch(key);
            match value {
                Value::Object(child) => {
                    for (key, value) in child {
                        touch(key);
                        if let Value::String(text) = value {
                            touch(text);
                        }
                    }
                }
                Value::String(text) => touch(text),
                _ => {}
            }
        }
    }
    std::hint::black_box(seen)
}

/// Top-level keys kept in a `Root` at most; an event with more is searched through its map.
const ROOT_KEYS: usize = 16;

/// The top-level entries of an event, collected in one pass over its map. Every reader of the
/// event starts at the top (routing reads `event`, the prefilter `flow`, `source`, ..., alerts
/// `observer` and `organization`): each of those lookups was a walk through the map's ordered
/// entries; now they scan this array, comparing lengths first. The pass reads no key's bytes
/// (they live in their own allocations, a cache miss each on a cold event): a lookup reads those
/// of the keys as long as the wanted one only. So the probe for a top-level key equal to a whole
/// dotted path (rsigma's first step) is made on every lookup rather than skipped after a scan of
/// all keys for a dot: it costs a comparison of lengths per key.
pub struct Root<'a> {
    map: Option<&'a Map<String, Value>>,
    entries: [(&'a str, &'a Value); ROOT_KEYS],
    /// Entries in `entries`; `usize::MAX` when the map has more than `ROOT_KEYS` (then `map` is
    /// searched).
    len: usize,
}

impl<'a> Root<'a> {
    pub fn new(value: &'a Value) -> Root<'a> {
        const NULL: &Value = &Value::Null;
        let mut root = Root { map: None, entries: [("", NULL); ROOT_KEYS], len: 0 };
        let Value::Object(map) = value else { return root };
        root.map = Some(map);
        for (key, child) in map {
            if root.len < ROOT_KEYS {
                root.entries[root.len] = (key.as_str(), child);
                root.len += 1;
            } else {
                root.len = usize::MAX;
            }
        }
        root
    }

    /// Whether the event is a JSON object.
    pub fn is_object(&self) -> bool {
        self.map.is_some()
    }

    /// The top-level key `key`: `value.get(key)`.
    #[inline]
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        if self.len == usize::MAX {
            return self.map.and_then(|map| map.get(key));
        }
        let key = key.as_bytes();
        self.entries[..self.len]
            .iter()
            .find(|(k, _)| same_bytes(k.as_bytes(), key))
            .map(|(_, v)| *v)
    }

    /// `mapping::lookup(value, path)`: a top-level key equal to the whole path, else one object
    /// key per dotted segment.
    pub fn lookup(&self, path: &str) -> Option<&'a Value> {
        if let Some(value) = self.get(path) {
            return Some(value);
        }
        let dot = path.bytes().position(|b| b == b'.')?;
        descend(self.get(&path[..dot])?, &path[dot + 1..])
    }
}

/// The value under `current` at `path`, one object key per dotted segment (`a.b` = key `a`, then
/// key `b`). The segments are found with a byte loop, not `split('.')` (a `memchr` call per
/// segment of a short path).
pub fn descend<'a>(mut current: &'a Value, path: &str) -> Option<&'a Value> {
    let mut rest = path;
    loop {
        match rest.bytes().position(|b| b == b'.') {
            Some(dot) => {
                current = get(current, &rest[..dot])?;
                rest = &rest[dot + 1..];
            }
            None => return get(current, rest),
        }
    }
}

/// A Canh event (a JSON object) as rsigma reads it.
pub struct CanhEvent<'a> {
    value: &'a Value,
    json: JsonEvent<'a>,
    root: Root<'a>,
}

impl<'a> CanhEvent<'a> {
    pub fn new(value: &'a Value) -> CanhEvent<'a> {
        CanhEvent { value, json: JsonEvent::borrow(value), root: Root::new(value) }
    }

    /// Whether a top-level key contains a dot (true for anything but an object). Canh's events
    /// have none, so the probe for a flat key equal to a whole dotted path can be skipped.
    #[cfg(test)]
    pub fn has_dotted_keys(&self) -> bool {
        has_dotted_keys(self.value)
    }

    /// The event's top-level entries.
    pub fn root(&self) -> &Root<'a> {
        &self.root
    }

    /// The event itself.
    pub fn value(&self) -> &'a Value {
        self.value
    }
}

/// Whether `root` may hold a key with a dot (true for anything but an object): when not, no key
/// can equal a dotted path (the condition under which `CanhEvent::lookup_under` answers as
/// `lookup_path` does). Lookups do not ask it: they probe for the whole path instead.
#[cfg(test)]
pub fn has_dotted_keys(root: &Value) -> bool {
    match root {
        Value::Object(map) => map.keys().any(|k| k.contains('.')),
        _ => true,
    }
}

/// The answer of the direct walk.
#[derive(Debug, Clone, Copy)]
pub enum Walk<'a> {
    Found(&'a Value),
    Absent,
    /// Not a plain walk through objects: ask `JsonEvent`.
    Unsure,
}

/// A field path taken apart once (at rule load), for lookups on many events.
#[derive(Debug, Clone)]
pub struct FieldPath {
    path: String,
    dotted: bool,
    /// The path has no index or escape syntax (`[`, `\`): rsigma reads it as plain segments.
    plain: bool,
    /// The path split at every dot.
    segments: Vec<String>,
}

impl FieldPath {
    pub fn new(path: &str) -> FieldPath {
        FieldPath {
            path: path.to_string(),
            dotted: path.contains('.'),
            plain: !path.contains(['[', '\\']),
            segments: path.split('.').map(str::to_string).collect(),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.path
    }

    /// The first segment of a plain path with two or more segments (the top-level object the
    /// rest is read from), else `None`.
    pub fn parent(&self) -> Option<&str> {
        (self.plain && self.dotted).then(|| self.segments[0].as_str())
    }

    /// What `CanhEvent::lookup_path` answers for this path, on an event of a tape.
    pub fn walk_tape(&self, event: &TapeEvent) -> TapeWalk {
        if !event.is_object() {
            return TapeWalk::Unsure;
        }
        if let Some(node) = event.top_level(&self.path) {
            return TapeWalk::Found(node);
        }
        if !self.plain {
            return TapeWalk::Unsure;
        }
        if !self.dotted {
            return TapeWalk::Absent;
        }
        let top = event.top_level(&self.segments[0]);
        event.walk_under(top, self.segments[1..].iter().map(String::as_str))
    }

    /// What `mapping::lookup(event, path)` answers (a key equal to the whole path, else one object
    /// key per dotted segment), read from the event's top-level entries.
    pub fn get_in_root<'a>(&self, root: &Root<'a>) -> Option<&'a Value> {
        if let Some(value) = root.get(self.path.as_str()) {
            return Some(value);
        }
        if !self.dotted {
            return None;
        }
        let mut current = root.get(self.segments[0].as_str())?;
        for segment in &self.segments[1..] {
            current = get(current, segment.as_str())?;
        }
        Some(current)
    }
}

/// `path` in `root` the way `JsonEvent::get_field` reads it, as long as the path is plain (no
/// `[`, no `\`) and the walk meets only objects: a flat key equal to the whole path first, then
/// one object key per dotted segment. An array on the way (rsigma fans out over its members) or a
/// path with index or escape syntax is left to `JsonEvent`.
/// `dotted` says whether the path has a dot, `segments` are its dotted segments (`None`: not a
/// plain path), `dotted_keys` whether the root may hold a key with a dot (else a flat key equal
/// to a dotted path cannot exist).
fn walk<'a, 's>(
    root: &Root<'a>,
    path: &str,
    dotted: bool,
    segments: Option<impl Iterator<Item = &'s str>>,
) -> Walk<'a> {
    if !root.is_object() {
        return Walk::Unsure;
    }
    if let Some(value) = root.get(path) {
        return Walk::Found(value);
    }
    let Some(mut segments) = segments else { return Walk::Unsure };
    if !dotted {
        return Walk::Absent;
    }
    let Some(first) = segments.next() else { return Walk::Absent };
    let Some(mut current) = root.get(first) else { return Walk::Absent };
    for segment in segments {
        current = match current {
            Value::Object(map) => match key_in(map, segment) {
                Some(next) => next,
                None => return Walk::Absent,
            },
            Value::Array(_) => return Walk::Unsure,
            // A scalar has no keys: rsigma collects nothing here either.
            _ => return Walk::Absent,
        };
    }
    Walk::Found(current)
}

impl<'a> CanhEvent<'a> {
    /// The value at `path` borrowed from the event, when a plain walk can tell (`Unsure`: ask
    /// `get_field`). What `get_field` answers, before the conversion to rsigma's value.
    pub fn lookup(&self, path: &str) -> Walk<'a> {
        // One pass over the path for the three questions (it is short: a call per question cost
        // more than the answers).
        let mut dotted = false;
        let mut plain = true;
        for &byte in path.as_bytes() {
            match byte {
                b'.' => dotted = true,
                b'[' | b'\\' => plain = false,
                _ => {}
            }
        }
        let segments = plain.then(|| path.split('.'));
        walk(&self.root, path, dotted, segments)
    }

    /// The top-level key `key` as the first step of `walk` takes it (no key with a dot).
    pub fn top_level(&self, key: &str) -> Walk<'a> {
        if !self.root.is_object() {
            return Walk::Unsure;
        }
        match self.root.get(key) {
            Some(value) => Walk::Found(value),
            None => Walk::Absent,
        }
    }

    /// `lookup_path(field)` given `top`, the `top_level` answer for `field.parent()`: the same
    /// answer when the event has no key with a dot (`has_dotted_keys` false), with the top-level
    /// lookup shared by the fields under one object.
    pub fn lookup_under(top: Walk<'a>, field: &FieldPath) -> Walk<'a> {
        let Walk::Found(mut current) = top else { return top };
        for segment in &field.segments[1..] {
            current = match current {
                Value::Object(map) => match key_in(map, segment.as_str()) {
                    Some(next) => next,
                    None => return Walk::Absent,
                },
                Value::Array(_) => return Walk::Unsure,
                _ => return Walk::Absent,
            };
        }
        Walk::Found(current)
    }

    /// `lookup` of a path taken apart beforehand.
    pub fn lookup_path(&self, field: &FieldPath) -> Walk<'a> {
        let segments = field.plain.then(|| field.segments.iter().map(String::as_str));
        walk(&self.root, &field.path, field.dotted, segments)
    }
}

impl Event for CanhEvent<'_> {
    fn get_field(&self, path: &str) -> Option<EventValue<'_>> {
        match self.lookup(path) {
            Walk::Found(value) => Some(EventValue::from(value)),
            Walk::Absent => None,
            Walk::Unsure => self.json.get_field(path),
        }
    }

    fn any_string_value(&self, pred: &dyn Fn(&str) -> bool) -> bool {
        self.json.any_string_value(pred)
    }

    fn all_string_values(&self) -> Vec<Cow<'_, str>> {
        self.json.all_string_values()
    }

    fn visit_string_values(&self, visit: &mut dyn FnMut(&str)) {
        self.json.visit_string_values(visit)
    }

    fn to_json(&self) -> Value {
        self.json.to_json()
    }

    fn field_keys(&self) -> Vec<Cow<'_, str>> {
        self.json.field_keys()
    }

    fn top_level_keys(&self) -> Option<Vec<Cow<'_, str>>> {
        self.json.top_level_keys()
    }

    fn visit_top_level_keys(&self, visit: &mut dyn FnMut(&str)) -> bool {
        self.json.visit_top_level_keys(visit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every path of these events, and paths that are not there, get the answer `JsonEvent` gives.
    #[test]
    fn same_answers_as_json_event() {
        let events = [
            json!({"event": {"dataset": "flow", "category": ["network", "session"]},
                   "source": {"ip": "10.0.0.1", "port": 40000, "bytes": 1.5},
                   "flow.state": "flat key", "flow": {"state": "S0", "ok": true, "none": null},
                   "dns": {"answers": [{"data": "a"}, {"data": "b"}, {"other": 1}]},
                   "weird": {"": {"x": 1}, "a[0]": 2, "b\\c": 3}, "arr": [1, [2, 3]]}),
            json!({"event": {"dataset": "flow", "category": ["network"]}, "flow": {"state": "S0"},
                   "source": {"ip": "10.0.0.1", "port": 40000}, "arr": [1, [2, 3]],
                   "dns": {"answers": [{"data": "a"}, {"data": "b"}]}}),
            json!([{"a": 1}]),
            json!("scalar"),
        ];
        let paths = [
            "event.dataset",
            "event.category",
            "event",
            "source.ip",
            "source.port",
            "source.bytes",
            "source.missing",
            "missing.ip",
            "flow.state",
            "flow.ok",
            "flow.none",
            "flow.state.deeper",
            "dns.answers.data",
            "dns.answers.other",
            "dns.answers",
            "dns.answers[0].data",
            "dns.answers[-1]",
            "weird..x",
            "weird.a[0]",
            "weird.a\\[0\\]",
            "weird.b\\c",
            "arr",
            "arr[1]",
            "arr.x",
            ".event",
            "event.",
            "",
            "a",
            "a.b",
        ];
        for event in &events {
            let fast = CanhEvent::new(event);
            let slow = JsonEvent::borrow(event);
            for path in paths {
                assert_eq!(fast.get_field(path), slow.get_field(path), "{path} in {event}");
                let by_path = match fast.lookup_path(&FieldPath::new(path)) {
                    Walk::Found(value) => Some(EventValue::from(value)),
                    Walk::Absent => None,
                    Walk::Unsure => slow.get_field(path),
                };
                assert_eq!(by_path, slow.get_field(path), "{path} in {event}, split once");
                let field = FieldPath::new(path);
                if let (Some(parent), false) = (field.parent(), fast.has_dotted_keys()) {
                    let under = CanhEvent::lookup_under(fast.top_level(parent), &field);
                    let under = match under {
                        Walk::Found(value) => Some(EventValue::from(value)),
                        Walk::Absent => None,
                        Walk::Unsure => slow.get_field(path),
                    };
                    assert_eq!(under, slow.get_field(path), "{path} in {event}, under its parent");
                }
                let want = crate::detect::mapping::lookup(event, path);
                assert_eq!(field.get_in_root(fast.root()), want, "{path} in {event}, from Root");
                assert_eq!(fast.root().lookup(path), want, "{path} in {event}, Root::lookup");
            }
        }
    }
}
