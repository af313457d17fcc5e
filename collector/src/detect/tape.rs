//! The detector's input for a batch: every event written once, by a serde `Serializer`, into one
//! flat list of nodes (a "tape"), its strings into one text buffer. A `serde_json::Value` per event
//! costs a map node per object and an allocation per key and per text value (about 6 KB and 3 µs
//! for a flow event); most events are only routed, screened by the prefilter and looked up in the
//! indicator set, then dropped. Those questions are answered here on the tape (`TapeEvent`); an
//! event that might match (a rule's gate may hold, an indicator hit) is turned into the same
//! `Value` `serde_json::to_value` gives (`Tape::value`) and goes the plain path unchanged.
//!
//! The tape is kept by the batch and reused: its lists keep their allocations from batch to batch.
//! The nodes are in the order serde writes the fields; an object node records where its entries
//! end, so a lookup skips a value without reading it. Struct field names are `&'static str` in
//! serde: they are not copied.

use canh_event::Timestamp;
use rsigma_eval::EventValue;
use serde::ser::{self, Serialize};
use serde_json::{Map, Number, Value};
use std::borrow::Cow;
use std::fmt;

/// Nesting levels rsigma's `JsonEvent` searches for strings (`MAX_NESTING_DEPTH`).
const STRING_DEPTH: usize = 64;

/// A string: a `&'static str` from serde (field and variant names) or a range of `Tape::text`.
#[derive(Debug, Clone, Copy)]
enum Text {
    Static(&'static str),
    Buffer { start: u32, len: u32 },
}

/// One node. An object is followed by its entries (a `Key`, then the value's nodes) up to `end`;
/// an array by its members up to `end`.
#[derive(Debug, Clone, Copy)]
enum Node {
    Object { end: u32 },
    Array { end: u32 },
    Key(Text),
    Str(Text),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
    Null,
}

/// A batch's events as nodes.
#[derive(Debug, Default)]
pub struct Tape {
    nodes: Vec<Node>,
    text: String,
    /// The first node of each event.
    events: Vec<u32>,
}

/// Why an event could not be written: the same refusals as `serde_json::to_value` (a map key that
/// is not a string or number, a number out of range), or a batch too large to index with `u32`.
#[derive(Debug)]
pub struct TapeError(String);

impl fmt::Display for TapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TapeError {}

impl ser::Error for TapeError {
    fn custom<T: fmt::Display>(msg: T) -> TapeError {
        TapeError(msg.to_string())
    }
}

impl Tape {
    pub fn new() -> Tape {
        Tape::default()
    }

    /// Events on the tape.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Forget the events, keeping the allocations, unless they hold more than four times what
    /// this batch used (and over 16 MB): then they shrink to twice that, so one batch of unusually
    /// large events does not keep its memory for good.
    pub fn clear(&mut self) {
        const KEEP_BYTES: usize = 16 << 20;
        let node = std::mem::size_of::<Node>();
        if self.nodes.capacity() * node > KEEP_BYTES.max(4 * self.nodes.len() * node) {
            self.nodes.shrink_to(2 * self.nodes.len());
        }
        if self.text.capacity() > KEEP_BYTES.max(4 * self.text.len()) {
            self.text.shrink_to(2 * self.text.len());
        }
        self.nodes.clear();
        self.text.clear();
        self.events.clear();
    }

    /// Bytes held (nodes, text and index, by capacity).
    pub fn capacity_bytes(&self) -> usize {
        self.nodes.capacity() * std::mem::size_of::<Node>()
            + self.text.capacity()
            + self.events.capacity() * 4
    }

    /// Append one event. On an error (where `serde_json::to_value` fails too) nothing is added.
    pub fn push<T: Serialize + ?Sized>(&mut self, event: &T) -> Result<(), TapeError> {
        let (nodes, text) = (self.nodes.len(), self.text.len());
        let start = u32::try_from(nodes).map_err(|_| TapeError("tape full".into()))?;
        let written = event.serialize(&mut Writer { tape: self });
        let fits =
            u32::try_from(self.nodes.len()).is_ok() && u32::try_from(self.text.len()).is_ok();
        match (written, fits) {
            (Ok(()), true) => {
                self.events.push(start);
                Ok(())
            }
            (result, _) => {
                self.nodes.truncate(nodes);
                self.text.truncate(text);
                Err(result.err().unwrap_or_else(|| TapeError("tape full".into())))
            }
        }
    }

    /// Event `index` (in the order pushed).
    pub fn event(&self, index: usize) -> TapeEvent<'_> {
        TapeEvent { tape: self, root: self.events[index] as usize }
    }

    /// The event indices in event-time order (stable: equal times keep their order), as
    /// `consume::in_event_time_order` orders `Value`s: by `@timestamp` parsed, events without a
    /// readable one first.
    pub fn time_order(&self) -> Vec<u32> {
        let keys: Vec<i64> = (0..self.len())
            .map(|index| {
                let event = self.event(index);
                event
                    .top_level("@timestamp")
                    .and_then(|node| event.tape.str_at(node))
                    .and_then(|text| Timestamp::parse(text).ok())
                    .map_or(i64::MIN, |t| t.nanos())
            })
            .collect();
        let mut order: Vec<u32> = (0..self.len() as u32).collect();
        order.sort_by_key(|&index| keys[index as usize]);
        order
    }

    /// Event `index` as `serde_json::to_value` gives it.
    pub fn value(&self, index: usize) -> Value {
        self.node_value(self.events[index] as usize)
    }

    fn text_of(&self, text: Text) -> &str {
        match text {
            Text::Static(text) => text,
            Text::Buffer { start, len } => {
                let start = start as usize;
                &self.text[start..start + len as usize]
            }
        }
    }

    /// The string at `node`, if it is one.
    fn str_at(&self, node: usize) -> Option<&str> {
        match self.nodes[node] {
            Node::Str(text) => Some(self.text_of(text)),
            _ => None,
        }
    }

    /// The node after the value that starts at `node`.
    fn skip(&self, node: usize) -> usize {
        match self.nodes[node] {
            Node::Object { end } | Node::Array { end } => end as usize,
            _ => node + 1,
        }
    }

    /// The value of key `key` in the object at `object` (`None` if it is not an object or has no
    /// such key).
    fn child(&self, object: usize, key: &str) -> Option<usize> {
        let Node::Object { end } = self.nodes[object] else { return None };
        let key = key.as_bytes();
        let mut at = object + 1;
        while at < end as usize {
            let Node::Key(name) = self.nodes[at] else { return None };
            let name = self.text_of(name).as_bytes();
            if name.len() == key.len() && name == key {
                return Some(at + 1);
            }
            at = self.skip(at + 1);
        }
        None
    }

    fn node_value(&self, node: usize) -> Value {
        match self.nodes[node] {
            Node::Object { end } => {
                let mut map = Map::new();
                let mut at = node + 1;
                while at < end as usize {
                    let Node::Key(name) = self.nodes[at] else { break };
                    map.insert(self.text_of(name).to_string(), self.node_value(at + 1));
                    at = self.skip(at + 1);
                }
                Value::Object(map)
            }
            Node::Array { end } => {
                let mut members = Vec::new();
                let mut at = node + 1;
                while at < end as usize {
                    members.push(self.node_value(at));
                    at = self.skip(at);
                }
                Value::Array(members)
            }
            Node::Key(text) | Node::Str(text) => Value::String(self.text_of(text).to_string()),
            Node::I64(n) => Value::Number(n.into()),
            Node::U64(n) => Value::Number(n.into()),
            Node::F64(f) => Number::from_f64(f).map_or(Value::Null, Value::Number),
            Node::Bool(b) => Value::Bool(b),
            Node::Null => Value::Null,
        }
    }
}

/// A value read from the tape.
#[derive(Debug, Clone, Copy)]
pub enum Leaf<'t> {
    Str(&'t str),
    /// A number, boolean or null: as a `Value`, which holds them without allocating.
    Scalar(ScalarValue),
    /// An object or an array.
    Container,
}

/// A number, boolean or null (`Value` is not `Copy`; this is).
#[derive(Debug, Clone, Copy)]
pub enum ScalarValue {
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
    Null,
}

impl ScalarValue {
    /// The `Value` `serde_json::to_value` gives for it.
    pub fn to_value(self) -> Value {
        match self {
            ScalarValue::I64(n) => Value::Number(n.into()),
            ScalarValue::U64(n) => Value::Number(n.into()),
            ScalarValue::F64(f) => Number::from_f64(f).map_or(Value::Null, Value::Number),
            ScalarValue::Bool(b) => Value::Bool(b),
            ScalarValue::Null => Value::Null,
        }
    }
}

/// The answer of a walk on the tape, as `fields::Walk` answers on a `Value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapeWalk {
    /// The node of the value (see `TapeEvent::leaf`).
    Found(usize),
    Absent,
    /// Not a plain walk through objects (an array on the way, a path with `[` or `\`).
    Unsure,
}

/// One event of a tape.
#[derive(Debug, Clone, Copy)]
pub struct TapeEvent<'t> {
    tape: &'t Tape,
    root: usize,
}

impl<'t> TapeEvent<'t> {
    /// Whether the event is an object (serde writes Canh's events as objects).
    pub fn is_object(&self) -> bool {
        matches!(self.tape.nodes[self.root], Node::Object { .. })
    }

    /// The node of top-level key `key`.
    pub fn top_level(&self, key: &str) -> Option<usize> {
        self.tape.child(self.root, key)
    }

    /// The value at `node`.
    pub fn leaf(&self, node: usize) -> Leaf<'t> {
        let tape = self.tape;
        match tape.nodes[node] {
            Node::Str(text) | Node::Key(text) => Leaf::Str(tape.text_of(text)),
            Node::I64(n) => Leaf::Scalar(ScalarValue::I64(n)),
            Node::U64(n) => Leaf::Scalar(ScalarValue::U64(n)),
            Node::F64(f) => {
                // `to_value` writes a number that is not finite as null.
                if f.is_finite() {
                    Leaf::Scalar(ScalarValue::F64(f))
                } else {
                    Leaf::Scalar(ScalarValue::Null)
                }
            }
            Node::Bool(b) => Leaf::Scalar(ScalarValue::Bool(b)),
            Node::Null => Leaf::Scalar(ScalarValue::Null),
            Node::Object { .. } | Node::Array { .. } => Leaf::Container,
        }
    }

    /// The value at `node` as rsigma's `EventValue::from` gives it for its `Value`, for strings,
    /// numbers, booleans, null and arrays of them; `None` for an object or an array holding one
    /// (rsigma lists an object's keys in the `Value`'s sorted order, the tape in serde's).
    pub fn event_value(&self, node: usize) -> Option<EventValue<'t>> {
        let value = match self.leaf(node) {
            Leaf::Str(text) => EventValue::Str(Cow::Borrowed(text)),
            Leaf::Scalar(ScalarValue::I64(n)) => EventValue::Int(n),
            Leaf::Scalar(ScalarValue::U64(n)) => match i64::try_from(n) {
                Ok(n) => EventValue::Int(n),
                Err(_) => EventValue::Float(n as f64),
            },
            Leaf::Scalar(ScalarValue::F64(f)) => EventValue::Float(f),
            Leaf::Scalar(ScalarValue::Bool(b)) => EventValue::Bool(b),
            Leaf::Scalar(ScalarValue::Null) => EventValue::Null,
            Leaf::Container => {
                let Node::Array { end } = self.tape.nodes[node] else { return None };
                let mut members = Vec::new();
                let mut at = node + 1;
                while at < end as usize {
                    members.push(self.event_value(at)?);
                    at = self.tape.skip(at);
                }
                EventValue::Array(members)
            }
        };
        Some(value)
    }

    /// Whether `pred` holds for a string value of the event (not a key), at any depth up to
    /// rsigma's 64 levels: what `JsonEvent::any_string_value` answers for the event's `Value`.
    pub fn any_string_value(&self, pred: &dyn Fn(&str) -> bool) -> bool {
        self.any_string_under(self.root, pred, STRING_DEPTH)
    }

    fn any_string_under(&self, node: usize, pred: &dyn Fn(&str) -> bool, depth: usize) -> bool {
        if depth == 0 {
            return false;
        }
        let tape = self.tape;
        match tape.nodes[node] {
            Node::Str(text) => pred(tape.text_of(text)),
            Node::Object { end } => {
                let mut at = node + 1;
                while at < end as usize {
                    // A key, then its value.
                    if self.any_string_under(at + 1, pred, depth - 1) {
                        return true;
                    }
                    at = tape.skip(at + 1);
                }
                false
            }
            Node::Array { end } => {
                let mut at = node + 1;
                while at < end as usize {
                    if self.any_string_under(at, pred, depth - 1) {
                        return true;
                    }
                    at = tape.skip(at);
                }
                false
            }
            _ => false,
        }
    }

    /// `mapping::lookup(value, path)` on the tape: a top-level key equal to the whole path, else
    /// one object key per dotted segment (anything but an object on the way: absent).
    pub fn lookup(&self, path: &str) -> Option<usize> {
        if let Some(node) = self.top_level(path) {
            return Some(node);
        }
        if !path.contains('.') {
            return None;
        }
        self.descend(self.root, path.split('.'))
    }

    /// `value.pointer("/a/b")` for a pointer of plain object keys, given as segments.
    pub fn descend<'s>(
        &self,
        mut node: usize,
        segments: impl IntoIterator<Item = &'s str>,
    ) -> Option<usize> {
        for segment in segments {
            node = self.tape.child(node, segment)?;
        }
        Some(node)
    }

    /// The string at `path` (`mapping::lookup` semantics), if it is a string.
    pub fn str_at(&self, path: &str) -> Option<&'t str> {
        self.lookup(path).and_then(|node| self.tape.str_at(node))
    }

    /// The string at these object keys from the root (`Value::pointer` semantics for a pointer
    /// of plain keys), if it is a string.
    pub fn str_under(&self, segments: &[&str]) -> Option<&'t str> {
        self.descend(self.root, segments.iter().copied()).and_then(|node| self.tape.str_at(node))
    }

    /// What `fields::walk` answers for a plain path (no `[`, `\`), given its segments, from the
    /// node of its first segment (`None`: the top-level key is absent).
    pub fn walk_under<'s>(
        &self,
        top: Option<usize>,
        rest: impl IntoIterator<Item = &'s str>,
    ) -> TapeWalk {
        let Some(mut current) = top else { return TapeWalk::Absent };
        for segment in rest {
            current = match self.tape.nodes[current] {
                Node::Object { .. } => match self.tape.child(current, segment) {
                    Some(next) => next,
                    None => return TapeWalk::Absent,
                },
                Node::Array { .. } => return TapeWalk::Unsure,
                // A scalar has no keys: rsigma collects nothing here either.
                _ => return TapeWalk::Absent,
            };
        }
        TapeWalk::Found(current)
    }
}

/// The serde `Serializer` that writes values onto a tape, node for node what
/// `serde_json::value::Serializer` builds.
struct Writer<'a> {
    tape: &'a mut Tape,
}

impl Writer<'_> {
    fn text(&mut self, text: &str) -> Text {
        let start = self.tape.text.len();
        self.tape.text.push_str(text);
        Text::Buffer { start: start as u32, len: text.len() as u32 }
    }

    fn open(&mut self, node: Node) -> usize {
        self.tape.nodes.push(node);
        self.tape.nodes.len() - 1
    }

    fn close(&mut self, at: usize) {
        let end = self.tape.nodes.len() as u32;
        match &mut self.tape.nodes[at] {
            Node::Object { end: slot } | Node::Array { end: slot } => *slot = end,
            _ => {}
        }
    }

    fn key_static(&mut self, key: &'static str) {
        self.tape.nodes.push(Node::Key(Text::Static(key)));
    }

    fn key_text(&mut self, key: &str) {
        let text = self.text(key);
        self.tape.nodes.push(Node::Key(text));
    }
}

/// An open object or array; closes it at `end`.
struct Open<'w, 'a> {
    writer: &'w mut Writer<'a>,
    at: usize,
}

impl<'w, 'a> ser::Serializer for &'w mut Writer<'a> {
    type Ok = ();
    type Error = TapeError;
    type SerializeSeq = Open<'w, 'a>;
    type SerializeTuple = Open<'w, 'a>;
    type SerializeTupleStruct = Open<'w, 'a>;
    type SerializeTupleVariant = Variant<'w, 'a>;
    type SerializeMap = Open<'w, 'a>;
    type SerializeStruct = Open<'w, 'a>;
    type SerializeStructVariant = Variant<'w, 'a>;

    fn serialize_bool(self, v: bool) -> Result<(), TapeError> {
        self.tape.nodes.push(Node::Bool(v));
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), TapeError> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i16(self, v: i16) -> Result<(), TapeError> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i32(self, v: i32) -> Result<(), TapeError> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i64(self, v: i64) -> Result<(), TapeError> {
        self.tape.nodes.push(Node::I64(v));
        Ok(())
    }
    fn serialize_i128(self, v: i128) -> Result<(), TapeError> {
        if let Ok(v) = u64::try_from(v) {
            return self.serialize_u64(v);
        }
        match i64::try_from(v) {
            Ok(v) => self.serialize_i64(v),
            Err(_) => Err(TapeError("number out of range".into())),
        }
    }
    fn serialize_u8(self, v: u8) -> Result<(), TapeError> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u16(self, v: u16) -> Result<(), TapeError> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u32(self, v: u32) -> Result<(), TapeError> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u64(self, v: u64) -> Result<(), TapeError> {
        self.tape.nodes.push(Node::U64(v));
        Ok(())
    }
    fn serialize_u128(self, v: u128) -> Result<(), TapeError> {
        match u64::try_from(v) {
            Ok(v) => self.serialize_u64(v),
            Err(_) => Err(TapeError("number out of range".into())),
        }
    }
    fn serialize_f32(self, v: f32) -> Result<(), TapeError> {
        self.serialize_f64(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<(), TapeError> {
        // Kept as given; `leaf` and `value` read a number that is not finite as null.
        self.tape.nodes.push(Node::F64(v));
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), TapeError> {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(self, v: &str) -> Result<(), TapeError> {
        let text = self.text(v);
        self.tape.nodes.push(Node::Str(text));
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), TapeError> {
        let at = self.open(Node::Array { end: 0 });
        for byte in v {
            self.tape.nodes.push(Node::U64(u64::from(*byte)));
        }
        self.close(at);
        Ok(())
    }
    fn serialize_none(self) -> Result<(), TapeError> {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), TapeError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), TapeError> {
        self.tape.nodes.push(Node::Null);
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), TapeError> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), TapeError> {
        self.tape.nodes.push(Node::Str(Text::Static(variant)));
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), TapeError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), TapeError> {
        let at = self.open(Node::Object { end: 0 });
        self.key_static(variant);
        value.serialize(&mut *self)?;
        self.close(at);
        Ok(())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Open<'w, 'a>, TapeError> {
        let at = self.open(Node::Array { end: 0 });
        Ok(Open { writer: self, at })
    }
    fn serialize_tuple(self, len: usize) -> Result<Open<'w, 'a>, TapeError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Open<'w, 'a>, TapeError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Variant<'w, 'a>, TapeError> {
        let outer = self.open(Node::Object { end: 0 });
        self.key_static(variant);
        let inner = self.open(Node::Array { end: 0 });
        Ok(Variant { writer: self, outer, inner })
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Open<'w, 'a>, TapeError> {
        let at = self.open(Node::Object { end: 0 });
        Ok(Open { writer: self, at })
    }
    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<Open<'w, 'a>, TapeError> {
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Variant<'w, 'a>, TapeError> {
        let outer = self.open(Node::Object { end: 0 });
        self.key_static(variant);
        let inner = self.open(Node::Object { end: 0 });
        Ok(Variant { writer: self, outer, inner })
    }
}

impl ser::SerializeSeq for Open<'_, '_> {
    type Ok = ();
    type Error = TapeError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), TapeError> {
        value.serialize(&mut *self.writer)
    }
    fn end(self) -> Result<(), TapeError> {
        self.writer.close(self.at);
        Ok(())
    }
}

impl ser::SerializeTuple for Open<'_, '_> {
    type Ok = ();
    type Error = TapeError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), TapeError> {
        value.serialize(&mut *self.writer)
    }
    fn end(self) -> Result<(), TapeError> {
        self.writer.close(self.at);
        Ok(())
    }
}

impl ser::SerializeTupleStruct for Open<'_, '_> {
    type Ok = ();
    type Error = TapeError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), TapeError> {
        value.serialize(&mut *self.writer)
    }
    fn end(self) -> Result<(), TapeError> {
        self.writer.close(self.at);
        Ok(())
    }
}

impl ser::SerializeMap for Open<'_, '_> {
    type Ok = ();
    type Error = TapeError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), TapeError> {
        let text = key.serialize(KeyWriter)?;
        self.writer.key_text(&text);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), TapeError> {
        value.serialize(&mut *self.writer)
    }
    fn end(self) -> Result<(), TapeError> {
        self.writer.close(self.at);
        Ok(())
    }
}

impl ser::SerializeStruct for Open<'_, '_> {
    type Ok = ();
    type Error = TapeError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), TapeError> {
        self.writer.key_static(key);
        value.serialize(&mut *self.writer)
    }
    fn end(self) -> Result<(), TapeError> {
        self.writer.close(self.at);
        Ok(())
    }
}

/// An enum variant with fields: `{variant: [..]}` or `{variant: {..}}`, as serde_json writes it.
struct Variant<'w, 'a> {
    writer: &'w mut Writer<'a>,
    outer: usize,
    inner: usize,
}

impl ser::SerializeTupleVariant for Variant<'_, '_> {
    type Ok = ();
    type Error = TapeError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), TapeError> {
        value.serialize(&mut *self.writer)
    }
    fn end(self) -> Result<(), TapeError> {
        self.writer.close(self.inner);
        self.writer.close(self.outer);
        Ok(())
    }
}

impl ser::SerializeStructVariant for Variant<'_, '_> {
    type Ok = ();
    type Error = TapeError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), TapeError> {
        self.writer.key_static(key);
        value.serialize(&mut *self.writer)
    }
    fn end(self) -> Result<(), TapeError> {
        self.writer.close(self.inner);
        self.writer.close(self.outer);
        Ok(())
    }
}

/// A map key as serde_json writes it: strings and chars as they are, integers in decimal; any
/// other key is refused (serde_json refuses it too).
struct KeyWriter;

fn key_refused() -> TapeError {
    TapeError("key must be a string".into())
}

impl ser::Serializer for KeyWriter {
    type Ok = String;
    type Error = TapeError;
    type SerializeSeq = ser::Impossible<String, TapeError>;
    type SerializeTuple = ser::Impossible<String, TapeError>;
    type SerializeTupleStruct = ser::Impossible<String, TapeError>;
    type SerializeTupleVariant = ser::Impossible<String, TapeError>;
    type SerializeMap = ser::Impossible<String, TapeError>;
    type SerializeStruct = ser::Impossible<String, TapeError>;
    type SerializeStructVariant = ser::Impossible<String, TapeError>;

    fn serialize_bool(self, _v: bool) -> Result<String, TapeError> {
        Err(key_refused())
    }
    fn serialize_i8(self, v: i8) -> Result<String, TapeError> {
        Ok(v.to_string())
    }
    fn serialize_i16(self, v: i16) -> Result<String, TapeError> {
        Ok(v.to_string())
    }
    fn serialize_i32(self, v: i32) -> Result<String, TapeError> {
        Ok(v.to_string())
    }
    fn serialize_i64(self, v: i64) -> Result<String, TapeError> {
        Ok(v.to_string())
    }
    fn serialize_u8(self, v: u8) -> Result<String, TapeError> {
        Ok(v.to_string())
    }
    fn serialize_u16(self, v: u16) -> Result<String, TapeError> {
        Ok(v.to_string())
    }
    fn serialize_u32(self, v: u32) -> Result<String, TapeError> {
        Ok(v.to_string())
    }
    fn serialize_u64(self, v: u64) -> Result<String, TapeError> {
        Ok(v.to_string())
    }
    fn serialize_f32(self, _v: f32) -> Result<String, TapeError> {
        Err(key_refused())
    }
    fn serialize_f64(self, _v: f64) -> Result<String, TapeError> {
        Err(key_refused())
    }
    fn serialize_char(self, v: char) -> Result<String, TapeError> {
        Ok(v.to_string())
    }
    fn serialize_str(self, v: &str) -> Result<String, TapeError> {
        Ok(v.to_string())
    }
    fn serialize_bytes(self, _v: &[u8]) -> Result<String, TapeError> {
        Err(key_refused())
    }
    fn serialize_none(self) -> Result<String, TapeError> {
        Err(key_refused())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<String, TapeError> {
        Err(key_refused())
    }
    fn serialize_unit(self) -> Result<String, TapeError> {
        Err(key_refused())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<String, TapeError> {
        Err(key_refused())
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<String, TapeError> {
        Ok(variant.to_string())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<String, TapeError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<String, TapeError> {
        Err(key_refused())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, TapeError> {
        Err(key_refused())
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, TapeError> {
        Err(key_refused())
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, TapeError> {
        Err(key_refused())
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, TapeError> {
        Err(key_refused())
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, TapeError> {
        Err(key_refused())
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, TapeError> {
        Err(key_refused())
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, TapeError> {
        Err(key_refused())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    #[derive(serde::Serialize)]
    enum Shape {
        Unit,
        New(u8),
        Pair(i32, String),
        Named { x: f64 },
    }

    #[derive(serde::Serialize)]
    struct Sample {
        #[serde(rename = "@t")]
        t: &'static str,
        n: i64,
        u: u64,
        f: f64,
        nan: f64,
        small: f32,
        b: bool,
        none: Option<u8>,
        list: Vec<Shape>,
        map: BTreeMap<String, BTreeMap<u16, String>>,
        c: char,
        nested: Option<Box<Sample>>,
    }

    fn sample() -> Sample {
        let mut inner = BTreeMap::new();
        inner.insert(7u16, "seven".to_string());
        let mut map = BTreeMap::new();
        map.insert("a.b".to_string(), inner);
        map.insert(String::new(), BTreeMap::new());
        Sample {
            t: "2026-01-01T00:00:00Z",
            n: -5,
            u: u64::MAX,
            f: 1.5,
            nan: f64::NAN,
            small: 0.1,
            b: true,
            none: None,
            list: vec![
                Shape::Unit,
                Shape::New(3),
                Shape::Pair(-1, "x".into()),
                Shape::Named { x: 2.0 },
            ],
            map,
            c: 'é',
            nested: Some(Box::new(Sample {
                t: "",
                n: 0,
                u: 0,
                f: f64::INFINITY,
                nan: 0.0,
                small: 1.0,
                b: false,
                none: Some(1),
                list: Vec::new(),
                map: BTreeMap::new(),
                c: 'a',
                nested: None,
            })),
        }
    }

    /// The tape gives back what `serde_json::to_value` gives, for every kind of serde value.
    #[test]
    fn values_equal_serde_json() {
        let mut tape = Tape::new();
        tape.push(&json!({"x": [1, {"y": null}]})).expect("pushed");
        tape.push(&sample()).expect("pushed");
        tape.push(&json!("scalar")).expect("pushed");
        assert_eq!(tape.value(0), json!({"x": [1, {"y": null}]}));
        assert_eq!(tape.value(1), serde_json::to_value(sample()).expect("to_value"));
        assert_eq!(tape.value(2), json!("scalar"));
        tape.clear();
        assert!(tape.is_empty());
    }

    /// A batch of large events leaves its memory to the next small batch only up to a bound.
    #[test]
    fn a_large_batch_does_not_keep_its_memory() {
        let mut tape = Tape::new();
        let big = "x".repeat(1 << 20);
        for _ in 0..40 {
            tape.push(&json!({"message": big})).expect("pushed");
        }
        tape.clear();
        assert!(tape.capacity_bytes() > 40 << 20, "the first clear keeps what this batch used");
        tape.push(&json!({"message": "small"})).expect("pushed");
        tape.clear();
        assert!(tape.capacity_bytes() < 1 << 20, "{} bytes kept", tape.capacity_bytes());
    }

    /// A refused event leaves the tape as it was.
    #[test]
    fn a_refused_event_adds_nothing() {
        let mut tape = Tape::new();
        tape.push(&json!({"a": 1})).expect("pushed");
        let mut bad: BTreeMap<(u8, u8), u8> = BTreeMap::new();
        bad.insert((1, 2), 3);
        assert!(serde_json::to_value(&bad).is_err());
        assert!(tape.push(&json!([1, 2])).is_ok());
        assert!(tape.push(&bad).is_err());
        assert_eq!(tape.len(), 2);
        tape.push(&json!({"b": "x"})).expect("pushed");
        assert_eq!(tape.value(2), json!({"b": "x"}));
    }

    /// Keyword searches and rsigma values answer as on the `Value`.
    #[test]
    fn strings_and_event_values_answer_as_on_values() {
        use rsigma_eval::event::JsonEvent;
        use rsigma_eval::Event as _;
        let event = json!({"a": "alpha", "b": {"c": ["beta", 1, {"d": "delta"}], "e": 2.5},
                           "k-gamma": 3, "big": u64::MAX, "list": [1, -2, "x", null, true]});
        let mut tape = Tape::new();
        tape.push(&event).expect("pushed");
        let on = tape.event(0);
        let plain = JsonEvent::borrow(&event);
        for needle in ["alpha", "beta", "delta", "gamma", "x", "zeta", ""] {
            let pred = |s: &str| s.contains(needle);
            assert_eq!(on.any_string_value(&pred), plain.any_string_value(&pred), "{needle}");
        }
        for key in ["a", "big", "list", "k-gamma"] {
            let node = on.top_level(key).expect("there");
            assert_eq!(on.event_value(node), Some(EventValue::from(&event[key])), "{key}");
        }
        let b = on.top_level("b").expect("there");
        assert_eq!(on.event_value(b), None, "an object is left to the Value");
        let c = on.descend(b, ["c"]).expect("there");
        assert_eq!(on.event_value(c), None, "an array holding an object too");
    }

    /// Lookups answer as `mapping::lookup` and `Value::pointer` do.
    #[test]
    fn lookups_answer_as_on_values() {
        let event = json!({"event": {"dataset": "dns"}, "a.b": "flat", "a": {"b": "deep", "c": [1]},
                           "dns": {"question": {"name": "x.example"}}, "n": 5});
        let mut tape = Tape::new();
        tape.push(&event).expect("pushed");
        let on = tape.event(0);
        for path in
            ["event.dataset", "a.b", "a.c", "a.c.d", "dns.question.name", "n", "n.x", "", "."]
        {
            let want = crate::detect::mapping::lookup(&event, path).and_then(Value::as_str);
            assert_eq!(on.str_at(path), want, "{path}");
        }
        assert_eq!(on.str_under(&["dns", "question", "name"]), Some("x.example"));
        assert_eq!(on.str_under(&["a", "b"]), Some("deep"));
    }
}
