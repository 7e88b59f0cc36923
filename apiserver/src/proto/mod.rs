//! Kubernetes' protobuf encoding for the built-in kinds kubectl and helm send through their
//! typed clients: the envelope (the `k8s\0` magic, then a `runtime.Unknown` holding the type
//! and the object's own message) and a mapping between each message and the object's JSON, the
//! form everything else in the server works with.
//!
//! Requests with `Content-Type: application/vnd.kubernetes.protobuf` are turned into JSON as
//! they arrive; responses are encoded as protobuf when the client's `Accept` names protobuf
//! first and the kind is one of [`served_kinds`]. Custom resources are JSON only, as upstream.

mod kinds;
mod wire;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

use kinds::{Message, Ty};
use wire::{Reader, Writer};

/// The media type.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The four bytes every Kubernetes protobuf document starts with.
const MAGIC: &[u8; 4] = b"k8s\0";

/// Why a protobuf body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not a protobuf document, or a malformed one.
    #[error("failed to decode the protobuf body: {0}")]
    Malformed(String),
    /// A kind this server does not read as protobuf.
    #[error(
        "protobuf bodies of {kind} ({api_version}) are not supported by this server; send it as application/json"
    )]
    Unsupported {
        /// The envelope's apiVersion.
        api_version: String,
        /// The envelope's kind.
        kind: String,
    },
}

/// The `(apiVersion, kind)` pairs served as protobuf, for documentation and tests.
pub fn served_kinds() -> impl Iterator<Item = (&'static str, &'static str)> {
    kinds::KINDS.iter().map(|k| (k.api_version, k.kind))
}

/// Reads a protobuf document into the object's JSON, with `apiVersion` and `kind` from the
/// envelope.
///
/// # Errors
/// [`DecodeError::Malformed`] for anything but a well-formed envelope and message,
/// [`DecodeError::Unsupported`] for a kind not in [`served_kinds`].
pub fn decode(bytes: &[u8]) -> Result<Value, DecodeError> {
    let malformed = DecodeError::Malformed;
    let body = bytes
        .strip_prefix(MAGIC)
        .ok_or_else(|| malformed("it does not start with the Kubernetes protobuf magic \"k8s\\0\"".into()))?;
    let envelope = read_message(&kinds::ENVELOPE, body).map_err(malformed)?;
    let type_meta = envelope.get("typeMeta").cloned().unwrap_or_default();
    let field = |object: &Value, k: &str| {
        object
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let (api_version, kind) = (field(&type_meta, "apiVersion"), field(&type_meta, "kind"));
    let encoding = envelope
        .get("contentEncoding")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !encoding.is_empty() {
        return Err(malformed(format!(
            "content encoding {encoding:?} is not supported"
        )));
    }
    let message = kinds::lookup(&api_version, &kind).ok_or_else(|| DecodeError::Unsupported {
        api_version: api_version.clone(),
        kind: kind.clone(),
    })?;
    let raw = envelope
        .get("raw")
        .and_then(Value::as_str)
        .map(|b| STANDARD.decode(b))
        .transpose()
        .map_err(|e| malformed(e.to_string()))?
        .unwrap_or_default();
    let mut object = read_message(message, &raw).map_err(malformed)?;
    object.insert("apiVersion".into(), api_version.into());
    object.insert("kind".into(), kind.into());
    Ok(Value::Object(object))
}

/// Writes an object (its JSON, with `apiVersion` and `kind`) as a protobuf document; None when
/// its kind is not served as protobuf or a field does not fit its message.
pub fn encode(object: &Value) -> Option<Vec<u8>> {
    let api_version = object.get("apiVersion").and_then(Value::as_str)?;
    let kind = object.get("kind").and_then(Value::as_str)?;
    let message = kinds::lookup(api_version, kind)?;
    let raw = write_message(message, object.as_object()?).ok()?;
    let mut envelope = Writer::default();
    let mut type_meta = Writer::default();
    type_meta.delimited(1, api_version.as_bytes());
    type_meta.delimited(2, kind.as_bytes());
    envelope.delimited(1, &type_meta.bytes);
    envelope.delimited(2, &raw);
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&envelope.bytes);
    Some(out)
}

fn utf8(bytes: &[u8], field: &str) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| format!("{field}: not UTF-8"))
}

/// `meta.v1.Time` as RFC 3339, seconds precision unless it has nanoseconds.
fn time_text(bytes: &[u8], field: &str) -> Result<Option<String>, String> {
    let (mut seconds, mut nanos) = (0i64, 0i32);
    let mut reader = Reader::new(bytes);
    while let Some((number, value)) = reader.next_field()? {
        match (number, value) {
            (1, wire::Value::Varint(v)) => seconds = v.cast_signed(),
            (2, wire::Value::Varint(v)) => nanos = i32::try_from(v.cast_signed()).unwrap_or(0),
            _ => {}
        }
    }
    if seconds == 0 && nanos == 0 {
        return Ok(None);
    }
    let time = jiff::Timestamp::new(seconds, nanos).map_err(|e| format!("{field}: {e}"))?;
    Ok(Some(if nanos == 0 {
        time.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        time.to_string()
    }))
}

/// The key and value bytes of a map entry.
fn map_entry(bytes: &[u8]) -> Result<(String, &[u8]), String> {
    let (mut key, mut value) = (String::new(), &[][..]);
    let mut reader = Reader::new(bytes);
    while let Some((number, field)) = reader.next_field()? {
        match (number, field) {
            (1, wire::Value::Delimited(k)) => key = utf8(k, "map key")?,
            (2, wire::Value::Delimited(v)) => value = v,
            _ => {}
        }
    }
    Ok((key, value))
}

fn push(object: &mut Map<String, Value>, name: &str, item: Value) {
    let entry = object.entry(name).or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(items) = entry {
        items.push(item);
    }
}

fn insert_entry(object: &mut Map<String, Value>, name: &str, key: String, value: Value) {
    let entry = object.entry(name).or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(map) = entry {
        map.insert(key, value);
    }
}

/// Reads one message into JSON. Unknown fields are skipped, as protobuf readers do.
fn read_message(message: &Message, bytes: &[u8]) -> Result<Map<String, Value>, String> {
    let mut object = Map::new();
    let mut reader = Reader::new(bytes);
    while let Some((number, value)) = reader.next_field()? {
        let Some(field) = message.fields.iter().find(|f| f.number == number) else {
            continue;
        };
        let name = field.name;
        let wrong = || format!("{name}: field {number} has the wrong wire type");
        match (field.ty, value) {
            (Ty::Int, wire::Value::Varint(v)) => {
                let v = v.cast_signed();
                if v != 0 || field.keep_zero {
                    object.insert(name.into(), v.into());
                }
            }
            (Ty::Bool, wire::Value::Varint(v)) => {
                if v != 0 || field.keep_zero {
                    object.insert(name.into(), (v != 0).into());
                }
            }
            (_, wire::Value::Varint(_) | wire::Value::Fixed) => return Err(wrong()),
            (ty, wire::Value::Delimited(b)) => read_delimited(&mut object, name, ty, b)?,
        }
    }
    Ok(object)
}

fn read_delimited(object: &mut Map<String, Value>, name: &str, ty: Ty, b: &[u8]) -> Result<(), String> {
    match ty {
        Ty::Str => {
            let text = utf8(b, name)?;
            if !text.is_empty() {
                object.insert(name.into(), text.into());
            }
        }
        Ty::Bytes => {
            object.insert(name.into(), STANDARD.encode(b).into());
        }
        Ty::Time => {
            if let Some(text) = time_text(b, name)? {
                object.insert(name.into(), text.into());
            }
        }
        Ty::Json => {
            let mut raw = &[][..];
            let mut reader = Reader::new(b);
            while let Some((number, value)) = reader.next_field()? {
                if let (1, wire::Value::Delimited(v)) = (number, value) {
                    raw = v;
                }
            }
            if !raw.is_empty() {
                let value = serde_json::from_slice(raw).map_err(|e| format!("{name}: {e}"))?;
                object.insert(name.into(), value);
            }
        }
        Ty::Msg(m) => {
            object.insert(name.into(), Value::Object(read_message(m, b)?));
        }
        Ty::Strs => push(object, name, utf8(b, name)?.into()),
        Ty::Msgs(m) => push(object, name, Value::Object(read_message(m, b)?)),
        Ty::StrMap => {
            let (key, value) = map_entry(b)?;
            insert_entry(object, name, key, utf8(value, name)?.into());
        }
        Ty::BytesMap => {
            let (key, value) = map_entry(b)?;
            insert_entry(object, name, key, STANDARD.encode(value).into());
        }
        Ty::ListMap => {
            let (key, value) = map_entry(b)?;
            let mut items = Vec::new();
            let mut reader = Reader::new(value);
            while let Some((number, item)) = reader.next_field()? {
                if let (1, wire::Value::Delimited(v)) = (number, item) {
                    items.push(Value::from(utf8(v, name)?));
                }
            }
            insert_entry(object, name, key, Value::Array(items));
        }
        Ty::Int | Ty::Bool => return Err(format!("{name}: a number came as bytes")),
    }
    Ok(())
}

/// Writes one object's JSON as a message: the fields the message has, in its order.
fn write_message(message: &Message, object: &Map<String, Value>) -> Result<Vec<u8>, String> {
    let mut w = Writer::default();
    for field in message.fields {
        let Some(value) = object.get(field.name).filter(|v| !v.is_null()) else {
            continue;
        };
        write_field(&mut w, field.number, field.name, field.ty, value)?;
    }
    Ok(w.bytes)
}

fn entries<'a>(value: &'a Value, name: &str) -> Result<&'a Map<String, Value>, String> {
    value.as_object().ok_or_else(|| format!("{name}: not an object"))
}

fn text<'a>(value: &'a Value, name: &str) -> Result<&'a str, String> {
    value.as_str().ok_or_else(|| format!("{name}: not a string"))
}

fn write_field(w: &mut Writer, number: u32, name: &str, ty: Ty, value: &Value) -> Result<(), String> {
    let entry = |key: &str, value: &[u8]| {
        let mut e = Writer::default();
        e.delimited(1, key.as_bytes());
        e.delimited(2, value);
        e.bytes
    };
    match ty {
        Ty::Str => w.delimited(number, text(value, name)?.as_bytes()),
        Ty::Bytes => w.delimited(
            number,
            &STANDARD
                .decode(text(value, name)?)
                .map_err(|e| format!("{name}: {e}"))?,
        ),
        Ty::Int => {
            let v = value.as_i64().ok_or_else(|| format!("{name}: not an integer"))?;
            w.uint(number, v.cast_unsigned());
        }
        Ty::Bool => {
            let v = value.as_bool().ok_or_else(|| format!("{name}: not a boolean"))?;
            w.uint(number, u64::from(v));
        }
        Ty::Time => {
            let time: jiff::Timestamp = text(value, name)?.parse().map_err(|e| format!("{name}: {e}"))?;
            let mut t = Writer::default();
            t.uint(1, time.as_second().cast_unsigned());
            if time.subsec_nanosecond() != 0 {
                t.uint(2, i64::from(time.subsec_nanosecond()).cast_unsigned());
            }
            w.delimited(number, &t.bytes);
        }
        Ty::Json => {
            let mut raw = Writer::default();
            raw.delimited(1, &serde_json::to_vec(value).map_err(|e| format!("{name}: {e}"))?);
            w.delimited(number, &raw.bytes);
        }
        Ty::Msg(m) => w.delimited(number, &write_message(m, entries(value, name)?)?),
        Ty::Strs | Ty::Msgs(_) => {
            let items = value.as_array().ok_or_else(|| format!("{name}: not a list"))?;
            for item in items {
                match ty {
                    Ty::Msgs(m) => w.delimited(number, &write_message(m, entries(item, name)?)?),
                    _ => w.delimited(number, text(item, name)?.as_bytes()),
                }
            }
        }
        Ty::StrMap | Ty::BytesMap | Ty::ListMap => {
            // Sorted, as Kubernetes writes maps: the same object is always the same bytes.
            let mut keys: Vec<(&String, &Value)> = entries(value, name)?.iter().collect();
            keys.sort_by(|a, b| a.0.cmp(b.0));
            for (key, v) in keys {
                let bytes = match ty {
                    Ty::StrMap => text(v, name)?.as_bytes().to_vec(),
                    Ty::BytesMap => STANDARD
                        .decode(text(v, name)?)
                        .map_err(|e| format!("{name}: {e}"))?,
                    _ => {
                        let mut list = Writer::default();
                        for item in v.as_array().ok_or_else(|| format!("{name}: not a list"))? {
                            list.delimited(1, text(item, name)?.as_bytes());
                        }
                        list.bytes
                    }
                };
                w.delimited(number, &entry(key, &bytes));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
