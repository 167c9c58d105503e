//! History transactions: idempotent and conditional changes of a session's history, the
//! contract of the OpenAI Agents SDK for JavaScript (`applyHistoryTransaction`), made durable.
//!
//! A [`HistoryTransaction`] is applied under a caller-chosen operation id that stays the same
//! when the caller retries ([`StoreSession::apply_history_transaction`](crate::StoreSession::apply_history_transaction)):
//!
//! * atomic: the operation id and the change are stored in one step, or neither is;
//! * idempotent: the same id with the same transaction succeeds without applying it again
//!   ([`Applied::Before`]); the same id with another transaction is a
//!   [`Conflict`](crate::ErrorKind::Conflict) ([`ConflictReason::OperationReused`]);
//! * conditional: `replace_suffix` replaces the newest `expected_suffix.len()` items only if
//!   they equal `expected_suffix` as JSON values ([`ConflictReason::SuffixMismatch`] otherwise);
//! * a transaction that fails records nothing, so a corrected retry under the same id applies.
//!
//! Equality is JSON value equality: objects by key set (order ignored), arrays in order,
//! strings by content, numbers by numeric value (`1` equals `1.0`; big integers exactly). A
//! transaction is remembered by a SHA-256 digest of its canonical form ([`canonical_json`]).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> openai_agents_session::Result<()> {
//! use openai_agents_session::{Applied, ConflictReason, ErrorKind, HistoryTransaction, Session, Store};
//! let store = Store::open("memory://").await?;
//! let session = store.session("chat")?;
//! let turn = HistoryTransaction::append_items(vec![r#"{"role":"user","content":"hi"}"#.parse()?]);
//! assert_eq!(session.apply_history_transaction("turn-1", &turn).await?, Applied::Now);
//! // A retry after a timeout does not add the turn twice.
//! assert_eq!(session.apply_history_transaction("turn-1", &turn).await?, Applied::Before);
//! assert_eq!(session.get_items(None).await?.len(), 1);
//! // A rewind that expects what is no longer there changes nothing.
//! let rewind = HistoryTransaction::replace_suffix(vec![r#"{"other":1}"#.parse()?], vec![]);
//! let err = session.apply_history_transaction("rewind-1", &rewind).await.unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::Conflict);
//! assert_eq!(err.conflict_reason(), Some(ConflictReason::SuffixMismatch));
//! # Ok(()) }
//! ```

use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

pub use crate::error::ConflictReason;
use crate::error::{Error, ErrorKind, Operation, Result};
use crate::item::Item;

/// The largest operation id, in UTF-8 bytes.
pub const MAX_OPERATION_ID_BYTES: usize = 256;

/// How long operation ids are remembered by default (URL option `operation_retention`).
pub const DEFAULT_OPERATION_RETENTION: Duration = Duration::from_secs(86_400);

/// A change of a session's history.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HistoryTransaction {
    /// Appends `items` after the history (none: records the operation id only).
    AppendItems {
        /// The items to append, oldest first.
        items: Vec<Item>,
    },
    /// Replaces the newest `expected_suffix.len()` items with `replacement`, only if they equal
    /// `expected_suffix`. An empty `expected_suffix` appends; an empty `replacement` removes the
    /// suffix (a safe rewind); the whole history as `expected_suffix` replaces it (a compaction
    /// that cannot lose a concurrent write).
    ReplaceSuffix {
        /// What the newest items must be, oldest first.
        expected_suffix: Vec<Item>,
        /// What they become, oldest first.
        replacement: Vec<Item>,
    },
}

/// Whether [`apply_history_transaction`](crate::StoreSession::apply_history_transaction)
/// applied the transaction now, or found it applied before under the same operation id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Applied {
    /// Applied by this call.
    Now,
    /// Applied earlier under the same operation id; nothing was changed.
    Before,
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        Operation::ApplyTransaction,
        message,
    )
}

impl HistoryTransaction {
    /// `append_items(items)`.
    pub fn append_items(items: Vec<Item>) -> Self {
        HistoryTransaction::AppendItems { items }
    }

    /// `replace_suffix(expected_suffix, replacement)`.
    pub fn replace_suffix(expected_suffix: Vec<Item>, replacement: Vec<Item>) -> Self {
        HistoryTransaction::ReplaceSuffix {
            expected_suffix,
            replacement,
        }
    }

    /// Parses the JSON shape the CLI and the Python package take:
    /// `{"type": "append_items", "items": [...]}` or
    /// `{"type": "replace_suffix", "expected_suffix": [...], "replacement": [...]}`
    /// (`expectedSuffix` is accepted too, as the JavaScript SDK spells it). Anything else is
    /// `InvalidInput` naming the problem.
    ///
    /// ```
    /// use openai_agents_session::HistoryTransaction;
    /// let tx = HistoryTransaction::from_json(r#"{"type":"append_items","items":[{"a":1}]}"#).unwrap();
    /// assert_eq!(tx.items_added().len(), 1);
    /// assert!(HistoryTransaction::from_json(r#"{"type":"drop_table"}"#).is_err());
    /// ```
    pub fn from_json(text: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| invalid(format!("the transaction is not JSON: {e}")))?;
        Self::from_value(&value)
    }

    /// As [`from_json`](Self::from_json), from a parsed value.
    pub fn from_value(value: &Value) -> Result<Self> {
        let object = value
            .as_object()
            .ok_or_else(|| invalid("a transaction must be a JSON object"))?;
        let items = |key: &str, alias: Option<&str>| -> Result<Vec<Item>> {
            let found = object
                .get(key)
                .or_else(|| alias.and_then(|a| object.get(a)))
                .ok_or_else(|| invalid(format!("the transaction has no {key:?}")))?;
            let array = found
                .as_array()
                .ok_or_else(|| invalid(format!("{key:?} must be an array of items")))?;
            array
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    Item::from_value(v.clone()).map_err(|e| {
                        invalid(format!("{key}[{i}] is not a JSON object: {}", e.message()))
                    })
                })
                .collect()
        };
        let allowed: &[&str] = match object.get("type").and_then(Value::as_str) {
            Some("append_items") => &["type", "items"],
            Some("replace_suffix") => &["type", "expected_suffix", "expectedSuffix", "replacement"],
            Some(other) => {
                return Err(invalid(format!(
                    "unknown transaction type {other:?} (expected append_items or replace_suffix)"
                )))
            }
            None => return Err(invalid("the transaction has no string \"type\"")),
        };
        if let Some(extra) = object.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(invalid(format!("unknown transaction field {extra:?}")));
        }
        if object.contains_key("expected_suffix") && object.contains_key("expectedSuffix") {
            return Err(invalid("give expected_suffix or expectedSuffix, not both"));
        }
        Ok(match allowed.len() {
            2 => HistoryTransaction::AppendItems {
                items: items("items", None)?,
            },
            _ => HistoryTransaction::ReplaceSuffix {
                expected_suffix: items("expected_suffix", Some("expectedSuffix"))?,
                replacement: items("replacement", None)?,
            },
        })
    }

    /// The items the transaction writes.
    pub fn items_added(&self) -> &[Item] {
        match self {
            HistoryTransaction::AppendItems { items } => items,
            HistoryTransaction::ReplaceSuffix { replacement, .. } => replacement,
        }
    }

    /// The items it expects at the end of the history (none for an append).
    pub fn expected_suffix(&self) -> &[Item] {
        match self {
            HistoryTransaction::AppendItems { .. } => &[],
            HistoryTransaction::ReplaceSuffix {
                expected_suffix, ..
            } => expected_suffix,
        }
    }

    /// The transaction's canonical form: what its digest is taken of.
    pub fn canonical(&self) -> String {
        let mut out = String::new();
        let list = |out: &mut String, items: &[Item]| {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&canonical_item(item));
            }
            out.push(']');
        };
        match self {
            HistoryTransaction::AppendItems { items } => {
                out.push_str("{\"items\":");
                list(&mut out, items);
                out.push_str(",\"type\":\"append_items\"}");
            }
            HistoryTransaction::ReplaceSuffix {
                expected_suffix,
                replacement,
            } => {
                out.push_str("{\"expected_suffix\":");
                list(&mut out, expected_suffix);
                out.push_str(",\"replacement\":");
                list(&mut out, replacement);
                out.push_str(",\"type\":\"replace_suffix\"}");
            }
        }
        out
    }

    /// SHA-256 of [`canonical`](Self::canonical): how a transaction is remembered.
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.canonical().as_bytes()).into()
    }
}

/// Checks an operation id: non-empty, at most [`MAX_OPERATION_ID_BYTES`] bytes of UTF-8.
pub fn validate_operation_id(operation_id: &str) -> Result<()> {
    if operation_id.is_empty() {
        return Err(invalid("the operation id is empty"));
    }
    if operation_id.len() > MAX_OPERATION_ID_BYTES {
        return Err(invalid(format!(
            "the operation id is {} bytes, over {MAX_OPERATION_ID_BYTES}",
            operation_id.len()
        )));
    }
    Ok(())
}

/// The canonical JSON text of an item: object keys sorted, strings with serde_json's escapes,
/// numbers in one decimal spelling ([`canonical_number`]). Two items are equal as JSON values
/// exactly when their canonical texts are equal.
pub fn canonical_item(item: &Item) -> String {
    let mut out = String::new();
    write_canonical(&item.to_value(), &mut out);
    out
}

/// The canonical text of any JSON value (see [`canonical_item`]).
///
/// ```
/// use openai_agents_session::history::canonical_json;
/// let a: serde_json::Value = serde_json::from_str(r#"{"b":1.0,"a":[1e2,"x"]}"#).unwrap();
/// let b: serde_json::Value = serde_json::from_str(r#"{"a":[100,"x"],"b":1}"#).unwrap();
/// assert_eq!(canonical_json(&a), canonical_json(&b));
/// ```
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&canonical_number(&n.to_string())),
        Value::String(s) => out.push_str(&Value::String(s.clone()).to_string()),
        Value::Array(values) => {
            out.push('[');
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
    }
}

/// One spelling per numeric value, exact for any size: `0`, or `[-]DIGITSeEXP` with no leading
/// or trailing zeros in `DIGITS` (`1`, `1.0`, `10e-1` and `0.1e1` all give `1e0`). Exponents of
/// any length are kept exactly: JSON puts no bound on them, and `1e170141183460469231731687303715884105728`
/// (past `i128`) is not `1`.
///
/// ```
/// use openai_agents_session::history::canonical_number;
/// assert_eq!(canonical_number("1.0"), canonical_number("1"));
/// assert_eq!(canonical_number("-0.0"), "0");
/// assert_eq!(canonical_number("12300"), "123e2");
/// assert_ne!(canonical_number("18446744073709551617"), canonical_number("18446744073709551616"));
/// assert_ne!(canonical_number("1e170141183460469231731687303715884105728"), canonical_number("1"));
/// // Text that is not a JSON number is its own spelling.
/// assert_eq!(canonical_number("1x"), "1x");
/// ```
pub fn canonical_number(text: &str) -> String {
    if !is_json_number(text) {
        // Digit arithmetic below assumes the grammar: on other text it overflowed (a panic in
        // debug builds; found by the fuzz corpus test).
        return text.to_owned();
    }
    let (negative, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, "0"),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: String = int.chars().chain(frac.chars()).collect();
    let trimmed = digits.trim_start_matches('0');
    if trimmed.is_empty() {
        return "0".to_owned();
    }
    let significant = trimmed.trim_end_matches('0');
    // The value is significant * 10^(exponent - frac.len() + trailing zeros).
    let shift = (trimmed.len() - significant.len()) as i128 - frac.len() as i128;
    let exponent = match exponent
        .parse::<i128>()
        .ok()
        .and_then(|e| e.checked_add(shift))
    {
        Some(e) => e.to_string(),
        None => add_to_decimal(exponent, shift),
    };
    format!(
        "{}{significant}e{exponent}",
        if negative { "-" } else { "" }
    )
}

/// JSON's number grammar: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
fn is_json_number(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |i: usize| {
        b[i.min(b.len())..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count()
    };
    let mut i = usize::from(b.first() == Some(&b'-'));
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i += digits(i),
        _ => return false,
    }
    if b.get(i) == Some(&b'.') {
        let n = digits(i + 1);
        if n == 0 {
            return false;
        }
        i += 1 + n;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let n = digits(i);
        if n == 0 {
            return false;
        }
        i += n;
    }
    i == b.len()
}

/// `text` (a decimal integer of any length, with an optional sign) plus `delta`, as decimal
/// text without leading zeros (what `i128`'s `Display` gives where it fits).
fn add_to_decimal(text: &str, delta: i128) -> String {
    // Magnitudes as little-endian digit vectors; the sum of signed values through them.
    fn digits_of(text: &str) -> Vec<u8> {
        let mut d: Vec<u8> = text.bytes().rev().map(|b| b.wrapping_sub(b'0')).collect();
        while d.last() == Some(&0) {
            d.pop();
        }
        d
    }
    fn cmp(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
        a.len()
            .cmp(&b.len())
            .then_with(|| a.iter().rev().cmp(b.iter().rev()))
    }
    fn add(a: &[u8], b: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(a.len().max(b.len()) + 1);
        let mut carry = 0;
        for i in 0..a.len().max(b.len()) {
            let s = a.get(i).copied().unwrap_or(0) + b.get(i).copied().unwrap_or(0) + carry;
            out.push(s % 10);
            carry = s / 10;
        }
        if carry > 0 {
            out.push(carry);
        }
        out
    }
    /// `a - b` for `a >= b`.
    fn sub(a: &[u8], b: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(a.len());
        let mut borrow = 0;
        for (i, &x) in a.iter().enumerate() {
            let y = b.get(i).copied().unwrap_or(0) + borrow;
            borrow = u8::from(x < y);
            out.push(x + 10 * borrow - y);
        }
        while out.last() == Some(&0) {
            out.pop();
        }
        out
    }
    let (a_negative, a_text) = match text.strip_prefix('-') {
        Some(t) => (true, t),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let a = digits_of(a_text);
    let b = digits_of(&delta.unsigned_abs().to_string());
    let (negative, magnitude) = if a_negative == (delta < 0) || b.is_empty() {
        (a_negative, add(&a, &b))
    } else {
        match cmp(&a, &b) {
            std::cmp::Ordering::Less => (delta < 0, sub(&b, &a)),
            _ => (a_negative, sub(&a, &b)),
        }
    };
    if magnitude.is_empty() {
        return "0".to_owned();
    }
    let mut out = String::with_capacity(magnitude.len() + 1);
    if negative {
        out.push('-');
    }
    out.extend(magnitude.iter().rev().map(|d| char::from(b'0' + d)));
    out
}

/// A transaction checked and ready for a backend: the id validated, the digest taken, how long
/// the id is remembered.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PreparedTransaction {
    /// The caller's operation id (valid).
    pub operation_id: String,
    /// The digest the id is remembered with.
    pub digest: [u8; 32],
    /// The change.
    pub transaction: HistoryTransaction,
    /// How long the id is remembered.
    pub retention: Duration,
}

impl PreparedTransaction {
    /// Validates the id and takes the digest.
    pub fn new(
        operation_id: &str,
        transaction: &HistoryTransaction,
        retention: Duration,
    ) -> Result<Self> {
        validate_operation_id(operation_id)?;
        Ok(PreparedTransaction {
            operation_id: operation_id.to_owned(),
            digest: transaction.digest(),
            transaction: transaction.clone(),
            retention,
        })
    }

    /// The digest as lower-case hex (how text stores keep it).
    pub fn digest_hex(&self) -> String {
        self.digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether the stored `records` (oldest first, as many as the expected suffix) hold exactly
    /// the expected items; a record that does not decode never matches.
    pub fn suffix_matches<'r>(
        &self,
        codec: &crate::codec::RecordCodec,
        session_id: &str,
        records: impl ExactSizeIterator<Item = &'r [u8]>,
    ) -> bool {
        let expected = self.transaction.expected_suffix();
        if records.len() != expected.len() {
            return false;
        }
        records
            .zip(expected)
            .all(|(record, want)| match codec.decode(session_id, record) {
                crate::codec::Decoded::Valid(item) => {
                    item == *want || canonical_item(&item) == canonical_item(want)
                }
                _ => false,
            })
    }
}

/// The typed conflict error.
pub(crate) fn conflict(reason: ConflictReason, message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Conflict, Operation::ApplyTransaction, message).with_conflict(reason)
}

/// The error for a reused id.
pub fn operation_reused(operation_id: &str) -> Error {
    conflict(
        ConflictReason::OperationReused,
        format!("operation id {operation_id:?} was used before for another transaction; nothing was changed"),
    )
}

/// The error for a suffix that is not what was expected.
pub fn suffix_mismatch() -> Error {
    conflict(
        ConflictReason::SuffixMismatch,
        "the newest items are not the expected suffix; nothing was changed",
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn canonical_number_of_text_that_is_no_number_is_that_text() {
        // Each overflowed the digit arithmetic (a panic in debug builds).
        for text in [
            "",
            "-",
            "x",
            "1x",
            "1.e5",
            "1e",
            "01",
            "1e+-5",
            "{\"a\":1}",
            "1.50e+3]}",
        ] {
            assert_eq!(canonical_number(text), text);
        }
        for (text, want) in [
            ("1.50e+3", "15e2"),
            ("-0", "0"),
            ("0.00", "0"),
            ("1E-2", "1e-2"),
        ] {
            assert_eq!(canonical_number(text), want, "{text}");
        }
    }

    use super::*;

    fn item(text: &str) -> Item {
        text.parse().unwrap()
    }

    #[test]
    fn numbers_compare_by_value() {
        for (a, b) in [
            ("1", "1.0"),
            ("1", "10e-1"),
            ("0.5", "5E-1"),
            ("-0", "0"),
            ("100", "1e2"),
            (
                "123456789012345678901234567890",
                "1.2345678901234567890123456789e29",
            ),
        ] {
            assert_eq!(canonical_number(a), canonical_number(b), "{a} {b}");
        }
        for (a, b) in [
            ("1", "2"),
            ("1", "-1"),
            ("18446744073709551616", "18446744073709551617"),
        ] {
            assert_ne!(canonical_number(a), canonical_number(b), "{a} {b}");
        }
    }

    /// Found by the property tests (tests/properties.rs): an exponent past `i128` was read as
    /// 0, so `{"a":1e170141183460469231731687303715884105728}` was the value `{"a":1}` and a
    /// `replace_suffix` expecting one replaced the other.
    #[test]
    fn exponents_of_any_length_are_exact() {
        let huge = "170141183460469231731687303715884105728"; // i128::MAX + 1
        for (a, b) in [
            (
                format!("1e{huge}"),
                "10e170141183460469231731687303715884105727".to_owned(),
            ),
            (format!("1e{huge}"), format!("1.0E+{huge}")),
            (
                format!("100e{huge}"),
                "1e170141183460469231731687303715884105730".to_owned(),
            ),
            (
                format!("1e-{huge}"),
                "0.1e-170141183460469231731687303715884105727".to_owned(),
            ),
            (
                "1e100000000000000000000000000000000000000000".to_owned(),
                "100e99999999999999999999999999999999999999998".to_owned(),
            ),
            (format!("-0e{huge}"), "0".to_owned()),
        ] {
            assert_eq!(canonical_number(&a), canonical_number(&b), "{a} {b}");
        }
        for (a, b) in [
            (format!("1e{huge}"), "1".to_owned()),
            (format!("1e{huge}"), format!("1e-{huge}")),
            (format!("1e{huge}"), format!("-1e{huge}")),
            (format!("1e{huge}"), format!("1e{huge}1")),
        ] {
            assert_ne!(canonical_number(&a), canonical_number(&b), "{a} {b}");
        }
        assert_eq!(
            canonical_number(&format!("1.50e{huge}")),
            format!("15e{huge}").replace("728", "727")
        );
        assert_eq!(
            add_to_decimal("-170141183460469231731687303715884105729", 3),
            "-170141183460469231731687303715884105726"
        );
        assert_eq!(add_to_decimal("5", -5), "0");
        assert_eq!(add_to_decimal("-000", 2), "2");
        let items = |a: &str, b: &str| canonical_item(&item(a)) == canonical_item(&item(b));
        assert!(!items(&format!(r#"{{"a":1e{huge}}}"#), r#"{"a":1}"#));
        assert!(items(
            &format!(r#"{{"a":1e{huge}}}"#),
            r#"{"a":10E+170141183460469231731687303715884105727}"#
        ));
    }

    #[test]
    fn items_compare_as_json_values() {
        let a = item(r#"{"role":"user","n":1,"c":[1,{"x":"\u00e9"}]}"#);
        let b = item(r#"{"c":[1.0,{"x":"é"}],"n":1e0,"role":"user"}"#);
        assert_eq!(canonical_item(&a), canonical_item(&b));
        let c = item(r#"{"c":[{"x":"é"},1],"n":1,"role":"user"}"#);
        assert_ne!(
            canonical_item(&a),
            canonical_item(&c),
            "arrays keep their order"
        );
    }

    #[test]
    fn digests_are_stable_and_distinguish_kinds() {
        let items = vec![item(r#"{"a":1,"b":2}"#)];
        let same = vec![item(r#"{"b":2,"a":1.0}"#)];
        assert_eq!(
            HistoryTransaction::append_items(items.clone()).digest(),
            HistoryTransaction::append_items(same).digest()
        );
        assert_ne!(
            HistoryTransaction::append_items(items.clone()).digest(),
            HistoryTransaction::replace_suffix(vec![], items).digest()
        );
    }

    #[test]
    fn parsing_names_the_problem() {
        for (text, needle) in [
            ("[]", "object"),
            (r#"{"items":[]}"#, "type"),
            (r#"{"type":"x"}"#, "unknown transaction type"),
            (r#"{"type":"append_items"}"#, "\"items\""),
            (r#"{"type":"append_items","items":[1]}"#, "items[0]"),
            (r#"{"type":"append_items","items":[],"more":1}"#, "more"),
            (
                r#"{"type":"replace_suffix","replacement":[]}"#,
                "expected_suffix",
            ),
            ("not json", "not JSON"),
        ] {
            let err = HistoryTransaction::from_json(text).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput);
            assert!(err.to_string().contains(needle), "{text}: {err}");
        }
        let tx = HistoryTransaction::from_json(
            r#"{"type":"replace_suffix","expectedSuffix":[{"a":1}],"replacement":[]}"#,
        )
        .unwrap();
        assert_eq!(tx.expected_suffix().len(), 1);
    }

    #[test]
    fn operation_ids_are_checked() {
        assert!(validate_operation_id("").is_err());
        assert!(validate_operation_id(&"x".repeat(257)).is_err());
        assert!(validate_operation_id(&"é".repeat(128)).is_ok());
        assert!(validate_operation_id(&"é".repeat(129)).is_err());
    }
}
