//! [`Item`]: one conversation item, a JSON object kept exactly as given.

use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};

use crate::error::{Error, ErrorKind, Operation, Result};

/// One conversation item (a user message, a reasoning item, a function call, its output...): a
/// JSON object, validated once and held as compact JSON text.
///
/// Round trips are exact: key order, unicode, nested values and numbers as written (integers of
/// any size, `1.0` stays `1.0`, `1e400` stays `1e400`). Items parsed from text keep the text as
/// written less the whitespace outside strings; items built from a [`Value`] are serialised by
/// `serde_json` (compact, its own escapes).
///
/// ```
/// use openai_agents_session::Item;
/// let item: Item = r#"{"role": "user", "content": "hi", "n": 123456789012345678901234567890}"#
///     .parse()
///     .unwrap();
/// assert_eq!(
///     item.as_str(),
///     r#"{"role":"user","content":"hi","n":123456789012345678901234567890}"#
/// );
/// assert!("[1, 2]".parse::<Item>().is_err()); // not an object
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Item {
    json: Box<str>,
}

impl Item {
    /// Parses JSON text; it must be exactly one JSON object. The text is kept as written, less
    /// the whitespace outside strings, so numbers (`1e400`, `1.0`, huge integers) and escapes
    /// survive byte for byte.
    pub fn from_json_str(text: &str) -> Result<Item> {
        Item::from_json_cow(std::borrow::Cow::Borrowed(text))
    }

    /// Parses JSON bytes it takes ownership of; they must be UTF-8 and exactly one JSON object.
    /// The same as [`Item::from_json_slice`], but compact text (what this library writes) is
    /// kept in the given buffer instead of copied: what a backend does with the records it
    /// reads.
    ///
    /// ```
    /// use openai_agents_session::Item;
    /// let item = Item::from_json_vec(br#"{"role":"user","content":"hi"}"#.to_vec()).unwrap();
    /// assert_eq!(item.as_str(), r#"{"role":"user","content":"hi"}"#);
    /// assert!(Item::from_json_vec(b"[1]".to_vec()).is_err());
    /// assert!(Item::from_json_vec(vec![b'{', 0xff, b'}']).is_err());
    /// ```
    pub fn from_json_vec(bytes: Vec<u8>) -> Result<Item> {
        let text = String::from_utf8(bytes).map_err(|e| not_utf8(e.utf8_error()))?;
        Item::from_json_cow(std::borrow::Cow::Owned(text))
    }

    fn from_json_cow(text: std::borrow::Cow<'_, str>) -> Result<Item> {
        // The common case (records this library wrote, compact objects from a framework) is
        // checked without building a tree: one byte scan for the layout, one validating pass
        // of serde_json that keeps nothing, and the text kept as it is when already compact.
        // Invalid text falls through: the full parse below names the error.
        let shape = Shape::of(&text);
        if shape.is_fast() && serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok() {
            let json = if shape.whitespace {
                minify(&text)
            } else {
                text.into_owned()
            };
            return Ok(Item {
                json: json.into_boxed_str(),
            });
        }
        let value: Value = serde_json::from_str(&text).map_err(|e| {
            Error::new(
                ErrorKind::InvalidInput,
                Operation::ParseItem,
                "invalid JSON",
            )
            .with_source(e)
        })?;
        if !value.is_object() {
            return Err(not_an_object(&value));
        }
        Ok(Item {
            json: minify(&text).into_boxed_str(),
        })
    }

    /// Parses JSON bytes; they must be UTF-8 and exactly one JSON object.
    pub fn from_json_slice(bytes: &[u8]) -> Result<Item> {
        let text = std::str::from_utf8(bytes).map_err(not_utf8)?;
        Item::from_json_str(text)
    }

    /// Takes a JSON value; it must be an object.
    ///
    /// ```
    /// use openai_agents_session::Item;
    /// let item = Item::from_value(serde_json::json!({"type": "message", "role": "user"})).unwrap();
    /// assert_eq!(item.as_str(), r#"{"type":"message","role":"user"}"#);
    /// assert!(Item::from_value(serde_json::json!("text")).is_err());
    /// ```
    pub fn from_value(value: Value) -> Result<Item> {
        match value {
            Value::Object(map) => Ok(Item::from_map(map)),
            other => Err(not_an_object(&other)),
        }
    }

    /// Takes a JSON object.
    pub fn from_map(map: Map<String, Value>) -> Item {
        // Serialising a `Value` cannot fail: its keys are strings.
        let json = Value::Object(map).to_string();
        Item {
            json: json.into_boxed_str(),
        }
    }

    /// The compact JSON text of the item.
    pub fn as_str(&self) -> &str {
        &self.json
    }

    /// The compact JSON text as bytes (what the codec stores).
    pub fn as_bytes(&self) -> &[u8] {
        self.json.as_bytes()
    }

    /// The size of the compact JSON text in bytes (what `max_item_bytes` limits).
    pub fn len_bytes(&self) -> usize {
        self.json.len()
    }

    /// The item as a JSON value (numbers stay exact: the crate builds `serde_json` with
    /// `arbitrary_precision`).
    pub fn to_value(&self) -> Value {
        Value::Object(self.to_map())
    }

    /// The item as a JSON object map.
    pub fn to_map(&self) -> Map<String, Value> {
        // The text was validated as a JSON object when the item was made, so it parses back.
        serde_json::from_str(&self.json).unwrap_or_default()
    }

    /// The `type` field, if the item has a string one (`"message"`, `"function_call"`...).
    pub fn item_type(&self) -> Option<String> {
        match self.to_map().get("type") {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        }
    }

    /// The compact JSON text, owned.
    pub fn into_string(self) -> String {
        self.json.into_string()
    }
}

/// The error of item bytes that are not UTF-8.
fn not_utf8(e: std::str::Utf8Error) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        Operation::ParseItem,
        "JSON is not UTF-8",
    )
    .with_source(e)
}

fn not_an_object(value: &Value) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        Operation::ParseItem,
        format!(
            "an item must be a JSON object, got {}",
            json_type_name(value)
        ),
    )
}

/// What one byte scan of JSON text tells before it is validated.
struct Shape {
    /// The first byte outside whitespace is `{`.
    object: bool,
    /// Whitespace outside strings (the text is not compact).
    whitespace: bool,
    /// A `\u` escape: serde_json's validating pass without a tree accepts lone surrogates,
    /// which its full parse refuses, so such text takes the full parse.
    unicode_escape: bool,
    /// The deepest nesting of arrays and objects (the full parse refuses more than 127).
    depth: usize,
}

/// Nesting the fast path accepts; deeper text takes the full parse, which decides.
const FAST_DEPTH: usize = 100;

impl Shape {
    fn of(text: &str) -> Shape {
        let bytes = text.as_bytes();
        let start = bytes
            .iter()
            .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
        let mut shape = Shape {
            object: start.is_some_and(|i| bytes[i] == b'{'),
            whitespace: start.is_some_and(|i| i > 0),
            unicode_escape: false,
            depth: 0,
        };
        let (mut i, mut depth) = (0usize, 0usize);
        while i < bytes.len() {
            match bytes[i] {
                b'"' => {
                    // A string: jump from escape to escape to its closing quote (most of an
                    // item's bytes are string contents).
                    i += 1;
                    loop {
                        match memchr::memchr2(b'"', b'\\', &bytes[i..]) {
                            None => return shape, // unterminated: the validating pass refuses it
                            Some(at) if bytes[i + at] == b'"' => {
                                i += at + 1;
                                break;
                            }
                            Some(at) => {
                                shape.unicode_escape |= bytes.get(i + at + 1) == Some(&b'u');
                                // A backslash as the text's last byte: past the end, which
                                // slicing refuses (found by the fuzz target `codec`).
                                i = (i + at + 2).min(bytes.len());
                            }
                        }
                    }
                    continue;
                }
                b'{' | b'[' => {
                    depth += 1;
                    shape.depth = shape.depth.max(depth);
                }
                b'}' | b']' => depth = depth.saturating_sub(1),
                b' ' | b'\t' | b'\n' | b'\r' => shape.whitespace = true,
                _ => {}
            }
            i += 1;
        }
        shape
    }

    fn is_fast(&self) -> bool {
        self.object && !self.unicode_escape && self.depth <= FAST_DEPTH
    }
}

/// Removes the whitespace outside strings from valid JSON text; everything else stays as written.
fn minify(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0usize;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                // Copy the whole string at once, up to its closing quote.
                let start = i;
                i += 1;
                loop {
                    match memchr::memchr2(b'"', b'\\', &bytes[i..]) {
                        None => {
                            i = bytes.len();
                            break;
                        }
                        Some(at) if bytes[i + at] == b'"' => {
                            i += at + 1;
                            break;
                        }
                        Some(at) => i = (i + at + 2).min(bytes.len()),
                    }
                }
                out.extend_from_slice(&bytes[start..i]);
            }
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    // Only ASCII whitespace outside strings was removed, so the bytes are still UTF-8.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl FromStr for Item {
    type Err = Error;

    fn from_str(s: &str) -> Result<Item> {
        Item::from_json_str(s)
    }
}

impl TryFrom<Value> for Item {
    type Error = Error;

    fn try_from(value: Value) -> Result<Item> {
        Item::from_value(value)
    }
}

impl From<Map<String, Value>> for Item {
    fn from(map: Map<String, Value>) -> Item {
        Item::from_map(map)
    }
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.json)
    }
}

impl fmt::Debug for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 200;
        if self.json.len() <= SHOWN {
            write!(f, "Item({})", self.json)
        } else {
            let mut end = SHOWN;
            while !self.json.is_char_boundary(end) {
                end -= 1;
            }
            write!(
                f,
                "Item({}... {} bytes)",
                &self.json[..end],
                self.json.len()
            )
        }
    }
}

impl serde::Serialize for Item {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        self.to_value().serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for Item {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Item, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Item::from_value(value).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_and_borrowed_parsing_agree() {
        let texts: [&[u8]; 10] = [
            br#"{"role":"user","content":"hi"}"#,
            br#"{ "role" : "user", "content": "spaced" }"#,
            br#"{"e":"\u00e9\ud83d\ude0a","n":1e400}"#,
            br#"{"deep":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}"#,
            b"[1,2]",
            b"{\"a\":1",
            b"{\"a\":1}{}",
            b"",
            &[b'{', b'"', 0xff, b'"', b':', b'1', b'}'],
            "{\"\u{e9}\":\"\u{1F600}\"}".as_bytes(),
        ];
        for text in texts {
            let borrowed = Item::from_json_slice(text);
            let owned = Item::from_json_vec(text.to_vec());
            match (&borrowed, &owned) {
                (Ok(a), Ok(b)) => assert_eq!(a.as_str(), b.as_str()),
                (Err(a), Err(b)) => assert_eq!(a.kind(), b.kind()),
                _ => panic!("{text:?}: {borrowed:?} vs {owned:?}"),
            }
        }
    }

    #[test]
    fn numbers_are_kept_as_written() {
        let text = r#"{"big":123456789012345678901234567890,"neg":-98765432109876543210987,"f":1.0,"e":1e400,"E":2.5E+10,"g":0.1000000000000000055511151231257827,"z":-0.0}"#;
        let item = Item::from_json_str(text).unwrap();
        assert_eq!(item.as_str(), text);
        // Through a `Value` the number keeps its value (serde_json may respell an exponent).
        let via_value = item.to_value();
        assert_eq!(
            via_value["big"].to_string(),
            "123456789012345678901234567890"
        );
        assert_eq!(via_value["f"].to_string(), "1.0");
    }

    #[test]
    fn key_order_unicode_and_whitespace() {
        let item = Item::from_json_str("{ \"z\" : 1 ,\n\t\"a\" : \"h\u{e9}llo \u{1F600} \\\" { x } \\\\\", \"m\": {\"y\":[1, {\"b\":2,\"a\":3}]} }").unwrap();
        assert_eq!(
            item.as_str(),
            "{\"z\":1,\"a\":\"h\u{e9}llo \u{1F600} \\\" { x } \\\\\",\"m\":{\"y\":[1,{\"b\":2,\"a\":3}]}}"
        );
    }

    #[test]
    fn non_objects_are_invalid_input() {
        for bad in [
            "[1]",
            "1",
            "\"s\"",
            "null",
            "true",
            "",
            "{",
            "{} {}",
            "{\"a\":1}x",
        ] {
            let err = Item::from_json_str(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}");
        }
    }

    #[test]
    fn fast_and_full_parse_agree() {
        // Accepted by both paths, kept as written (less whitespace).
        for good in [
            r#"{}"#,
            r#"{"a":"\u00e9","b":"\ud83d\ude00"}"#,
            " {\"a\" : [1, 2.50, -0, 1E+2, {\"b\":null}]}\n",
            r#"{"s":"a\\\"b","t":"\\u"}"#,
        ] {
            let item = Item::from_json_str(good).unwrap();
            assert_eq!(item.as_str(), minify(good), "{good:?}");
        }
        // Refused by both: lone surrogates, nesting past serde_json's limit, bad numbers.
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(200), "]".repeat(200));
        for bad in [
            r#"{"a":"\ud800"}"#.to_owned(),
            deep,
            r#"{"a":01}"#.to_owned(),
            r#"{"a":1,}"#.to_owned(),
            r#"{"a":"\x"}"#.to_owned(),
            "{\"a\":\"tab\tin string\"}".to_owned(),
        ] {
            let err = Item::from_json_str(&bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}");
            assert!(serde_json::from_str::<Value>(&bad).is_err(), "{bad:?}");
        }
        // Nesting the full parse accepts, past the fast path's depth.
        let nested = format!("{{\"a\":{}1{}}}", "[".repeat(110), "]".repeat(110));
        assert_eq!(Item::from_json_str(&nested).unwrap().as_str(), nested);
    }

    #[test]
    fn a_trailing_backslash_in_a_string_is_an_error_not_a_panic() {
        // The shape scan stepped past the end of a text ending inside a string on a backslash
        // and panicked slicing it: `add_items` and every read of such a stored record crashed.
        for text in [r#"{"a":"\"#, r#"{"a":"x\"#, "\"\\", r#"{"\"#, "{\"\\"] {
            let err = Item::from_json_str(text).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{text:?}");
            assert!(Item::from_json_slice(text.as_bytes()).is_err(), "{text:?}");
        }
        let codec = crate::codec::RecordCodec::default();
        assert!(matches!(
            codec.decode("s", br#"{"a":"\"#),
            crate::codec::Decoded::Corrupt(_)
        ));
    }

    #[test]
    fn serde_round_trip() {
        let item =
            Item::from_json_str(r#"{"a":[1,2,{"b":null}],"n":18446744073709551616}"#).unwrap();
        let text = serde_json::to_string(&item).unwrap();
        let back: Item = serde_json::from_str(&text).unwrap();
        assert_eq!(back, item);
        assert!(serde_json::from_str::<Item>("[1]").is_err());
    }

    #[test]
    fn debug_truncates_long_items() {
        let item = Item::from_value(serde_json::json!({"s": "\u{e9}".repeat(500)})).unwrap();
        let shown = format!("{item:?}");
        assert!(shown.len() < 300, "{shown}");
        assert!(shown.contains("bytes"));
    }
}
