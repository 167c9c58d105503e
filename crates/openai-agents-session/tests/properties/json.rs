//! Random JSON as *text*, with the tree it spells: strings with every kind of escape and
//! astral characters, numbers spelled oddly (`1e400`, `-0`, `1.0`, integers past 64 bits), deep
//! nesting. The tree gives the expected compact text, a spelling with whitespace, a value-equal
//! respelling (keys reversed, numbers respelled) and value equality, all written here,
//! independently of the library and of serde_json.

use std::cmp::Ordering;

use proptest::prelude::*;

/// One piece of a JSON string: how it is written and the text it stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    pub written: String,
    pub decoded: String,
}

/// A JSON value as written.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    /// The number as written.
    Num(String),
    Str(Vec<Piece>),
    Arr(Vec<Json>),
    /// Members in the written order (keys may repeat only in [`value`] trees).
    Obj(Vec<(Vec<Piece>, Json)>),
}

/// Numbers a demanding user writes: exact big integers, huge and tiny exponents, negative zero,
/// trailing zeros, every exponent spelling.
pub const ODD_NUMBERS: &[&str] = &[
    "0",
    "-0",
    "0.0",
    "-0.0",
    "1.0",
    "1.50",
    "1e400",
    "-1e400",
    "1e-400",
    "1E+2",
    "1e+0",
    "2.5E-10",
    "12345678901234567890123",
    "-98765432109876543210987654321",
    "18446744073709551616",
    "18446744073709551617",
    "9007199254740993",
    "0.1000000000000000055511151231257827",
    "123456789.123456789e-5",
    "1e170141183460469231731687303715884105728",
    "1e-170141183460469231731687303715884105728",
    "100e99999999999999999999999999999999999999998",
    "1e100000000000000000000000000000000000000000",
];

/// Escapes and characters that stores are known to mangle.
const ODD_PIECES: &[(&str, &str)] = &[
    ("\\\"", "\""),
    ("\\\\", "\\"),
    ("\\/", "/"),
    ("\\b", "\u{8}"),
    ("\\f", "\u{c}"),
    ("\\n", "\n"),
    ("\\r", "\r"),
    ("\\t", "\t"),
    ("\\u0000", "\0"),
    ("\\u001f", "\u{1f}"),
    ("\\u00e9", "\u{e9}"),
    ("\\u00E9", "\u{e9}"),
    ("\\u2028", "\u{2028}"),
    ("\\uffff", "\u{ffff}"),
    ("\\ud83d\\ude00", "\u{1F600}"),
    ("\\uD834\\uDD1E", "\u{1D11E}"),
    ("\u{2028}", "\u{2028}"),
    ("\u{1F600}", "\u{1F600}"),
    ("\u{10FFFF}", "\u{10FFFF}"),
    ("e\u{301}", "e\u{301}"),
    ("\u{7f}", "\u{7f}"),
    ("{", "{"),
    ("}", "}"),
    (":", ":"),
    ("%", "%"),
    ("'", "'"),
    ("<script>", "<script>"),
];

/// A raw character as JSON writes it: control characters, `"` and `\` escaped.
fn raw_piece(c: char) -> Piece {
    let written = match c {
        '"' => "\\\"".to_owned(),
        '\\' => "\\\\".to_owned(),
        c if (c as u32) < 0x20 => format!("\\u{:04x}", c as u32),
        c => c.to_string(),
    };
    Piece {
        written,
        decoded: c.to_string(),
    }
}

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        4 => proptest::char::range('a', 'z').prop_map(raw_piece),
        2 => any::<char>().prop_map(raw_piece),
        1 => proptest::char::range('\u{10000}', '\u{10FFFF}').prop_map(raw_piece),
        2 => proptest::sample::select(ODD_PIECES).prop_map(|(w, d)| Piece {
            written: w.to_owned(),
            decoded: d.to_owned(),
        }),
    ]
}

pub fn string(max: usize) -> impl Strategy<Value = Vec<Piece>> {
    proptest::collection::vec(piece(), 0..=max)
}

pub fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(ODD_NUMBERS).prop_map(str::to_owned),
        2 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<u128>().prop_map(|n| n.to_string()),
        1 => (any::<f64>().prop_filter("finite", |f| f.is_finite())).prop_map(|f| format!("{f:?}")),
        1 => (any::<i32>(), 0u32..40, -500i32..500).prop_map(|(m, frac, e)| {
            let digits = m.unsigned_abs().to_string();
            let sign = if m < 0 { "-" } else { "" };
            let zeros = "0".repeat(frac as usize % 5);
            format!("{sign}{digits}.{zeros}{frac}e{e}")
        }),
    ]
}

/// Any JSON value, nested up to `depth` levels.
pub fn value(depth: u32, width: usize) -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        number().prop_map(Json::Num),
        string(12).prop_map(Json::Str),
    ];
    leaf.prop_recursive(depth, 64, width as u32, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..=width).prop_map(Json::Arr),
            proptest::collection::vec((string(6), inner), 0..=width).prop_map(Json::Obj),
        ]
    })
}

/// A JSON object (an item), any members: keys may repeat.
pub fn object(depth: u32, width: usize) -> impl Strategy<Value = Json> {
    proptest::collection::vec((string(8), value(depth, width)), 0..=width).prop_map(Json::Obj)
}

/// An object nested `depth` levels deep (arrays and objects alternating, odd leaves).
pub fn deep(max_depth: usize) -> impl Strategy<Value = Json> {
    (1..=max_depth, any::<u64>(), number()).prop_map(|(depth, mut bits, leaf)| {
        let mut v = Json::Num(leaf);
        for _ in 1..depth {
            v = if bits & 1 == 0 {
                Json::Arr(vec![v])
            } else {
                Json::Obj(vec![(vec![raw_piece('k')], v)])
            };
            bits = bits.rotate_right(1);
        }
        Json::Obj(vec![(vec![raw_piece('d')], v)])
    })
}

/// Objects with distinct keys (so that value equality needs no rule for repeated keys): the
/// items of the model tests.
pub fn model_item() -> impl Strategy<Value = Json> {
    (
        proptest::collection::vec(value(2, 3), 0..4),
        string(4),
        any::<u16>(),
    )
        .prop_map(|(values, tail, n)| {
            let mut members: Vec<(Vec<Piece>, Json)> = values
                .into_iter()
                .enumerate()
                .map(|(i, v)| (vec![raw_piece(char::from(b'a' + i as u8))], dedupe(v)))
                .collect();
            members.push((vec![raw_piece('n')], Json::Num(n.to_string())));
            members.push((
                vec![raw_piece('t'), raw_piece('\u{1F600}')],
                Json::Str(tail),
            ));
            Json::Obj(members)
        })
}

/// Drops repeated keys (by decoded text), keeping the first.
fn dedupe(v: Json) -> Json {
    match v {
        Json::Arr(a) => Json::Arr(a.into_iter().map(dedupe).collect()),
        Json::Obj(members) => {
            let mut seen: Vec<String> = Vec::new();
            let mut out = Vec::new();
            for (k, v) in members {
                let key = decoded(&k);
                if !seen.contains(&key) {
                    seen.push(key);
                    out.push((k, dedupe(v)));
                }
            }
            Json::Obj(out)
        }
        other => other,
    }
}

fn decoded(pieces: &[Piece]) -> String {
    pieces.iter().map(|p| p.decoded.as_str()).collect()
}

fn written(pieces: &[Piece]) -> String {
    let mut out = String::from("\"");
    for p in pieces {
        out.push_str(&p.written);
    }
    out.push('"');
    out
}

/// How a tree is spelled.
#[derive(Clone, Copy)]
enum Spelling {
    Compact,
    /// Whitespace between every token, chosen by the bits.
    Spaced(u64),
    /// Value-equal, textually different where it can be: members reversed, numbers respelled.
    Respelled,
}

impl Json {
    /// The compact text: what the library must store and return, byte for byte.
    pub fn compact(&self) -> String {
        let mut out = String::new();
        self.write(Spelling::Compact, &mut out);
        out
    }

    /// The same text with whitespace between tokens (the library removes it).
    pub fn spaced(&self, bits: u64) -> String {
        let mut out = String::new();
        self.write(Spelling::Spaced(bits | 1), &mut out);
        out
    }

    /// A value-equal spelling: object members in reverse order, every number respelled.
    pub fn respelled(&self) -> String {
        let mut out = String::new();
        self.write(Spelling::Respelled, &mut out);
        out
    }

    /// The same tree with numbers changed a little in their text: those with an exponent
    /// lose it (`1e400` -> `1`), or, when none has one, every number gets a digit more (`12` ->
    /// `121`). Values that differ, unless dropping `e0` keeps one: the model decides.
    pub fn nudged(&self) -> Json {
        let exponents = self.nudge(true);
        if exponents != *self {
            exponents
        } else {
            self.nudge(false)
        }
    }

    fn nudge(&self, exponents_only: bool) -> Json {
        match self {
            Json::Num(n) => Json::Num(match n.find(['e', 'E']) {
                Some(i) => n[..i].to_owned(),
                None if exponents_only => n.clone(),
                None if n == "0" || n == "-0" => "1".to_owned(),
                None => format!("{n}1"),
            }),
            Json::Arr(values) => {
                Json::Arr(values.iter().map(|v| v.nudge(exponents_only)).collect())
            }
            Json::Obj(members) => Json::Obj(
                members
                    .iter()
                    .map(|(k, v)| (k.clone(), v.nudge(exponents_only)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    fn write(&self, spelling: Spelling, out: &mut String) {
        let mut bits = match spelling {
            Spelling::Spaced(b) => b,
            _ => 0,
        };
        self.write_inner(spelling, &mut bits, out);
    }

    fn write_inner(&self, spelling: Spelling, bits: &mut u64, out: &mut String) {
        let space = |bits: &mut u64, out: &mut String| {
            if let Spelling::Spaced(_) = spelling {
                const WS: [&str; 5] = ["", " ", "\n", "\t", "\r\n  "];
                *bits = bits.rotate_left(3) ^ 0x9e37_79b9_7f4a_7c15;
                out.push_str(WS[(*bits % 5) as usize]);
            }
        };
        space(bits, out);
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Num(n) => match spelling {
                Spelling::Respelled => out.push_str(&respell_number(n)),
                _ => out.push_str(n),
            },
            Json::Str(s) => out.push_str(&written(s)),
            Json::Arr(values) => {
                out.push('[');
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        space(bits, out);
                        out.push(',');
                    }
                    v.write_inner(spelling, bits, out);
                }
                space(bits, out);
                out.push(']');
            }
            Json::Obj(members) => {
                out.push('{');
                let mut order: Vec<&(Vec<Piece>, Json)> = members.iter().collect();
                if let Spelling::Respelled = spelling {
                    order.reverse();
                }
                for (i, (k, v)) in order.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    space(bits, out);
                    out.push_str(&written(k));
                    space(bits, out);
                    out.push(':');
                    v.write_inner(spelling, bits, out);
                }
                space(bits, out);
                out.push('}');
            }
        }
        space(bits, out);
    }
}

/// Another spelling of the same number: `e0` added, or the exponent's letter's case swapped.
fn respell_number(n: &str) -> String {
    if n.contains('e') {
        n.replacen('e', "E", 1)
    } else if n.contains('E') {
        n.replacen('E', "e", 1)
    } else {
        format!("{n}e0")
    }
}

/// A number's value, exactly: `None` for zero, else the sign, the significant digits (no
/// leading or trailing zeros) and the exponent of the first digit, as decimal text of any size.
fn number_value(n: &str) -> Option<(bool, String, Decimal)> {
    let (negative, rest) = match n.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, n),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], Decimal::parse(&rest[i + 1..])),
        None => (rest, Decimal::zero()),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all: String = format!("{int}{frac}");
    let lead = all.len() - all.trim_start_matches('0').len();
    let significant = all.trim_start_matches('0').trim_end_matches('0');
    if significant.is_empty() {
        return None;
    }
    // The first significant digit sits at 10^(len(int) - 1 - lead + exponent).
    let position = int.len() as i64 - 1 - lead as i64;
    Some((negative, significant.to_owned(), exponent.plus(position)))
}

/// A signed decimal integer of any size (exponents past i128 are valid JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Decimal {
    negative: bool,
    /// No leading zeros; empty for zero.
    digits: String,
}

impl Decimal {
    fn zero() -> Self {
        Decimal {
            negative: false,
            digits: String::new(),
        }
    }

    fn parse(text: &str) -> Self {
        let (negative, digits) = match text.strip_prefix('-') {
            Some(d) => (true, d),
            None => (false, text.strip_prefix('+').unwrap_or(text)),
        };
        let digits = digits.trim_start_matches('0').to_owned();
        Decimal {
            negative: negative && !digits.is_empty(),
            digits,
        }
    }

    fn plus(&self, n: i64) -> Self {
        let other = Decimal::parse(&n.to_string());
        if self.negative == other.negative {
            return Decimal {
                negative: self.negative,
                digits: add_magnitudes(&self.digits, &other.digits),
            };
        }
        match cmp_magnitudes(&self.digits, &other.digits) {
            Ordering::Equal => Decimal::zero(),
            Ordering::Greater => Decimal {
                negative: self.negative,
                digits: sub_magnitudes(&self.digits, &other.digits),
            },
            Ordering::Less => Decimal {
                negative: other.negative,
                digits: sub_magnitudes(&other.digits, &self.digits),
            },
        }
    }
}

fn cmp_magnitudes(a: &str, b: &str) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn add_magnitudes(a: &str, b: &str) -> String {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut out = Vec::new();
    let mut carry = 0;
    for i in 0..a.len().max(b.len()) {
        let da = if i < a.len() {
            a[a.len() - 1 - i] - b'0'
        } else {
            0
        };
        let db = if i < b.len() {
            b[b.len() - 1 - i] - b'0'
        } else {
            0
        };
        let s = da + db + carry;
        out.push(b'0' + s % 10);
        carry = s / 10;
    }
    if carry > 0 {
        out.push(b'0' + carry);
    }
    out.reverse();
    String::from_utf8(out).expect("digits")
}

/// `a - b` for `a >= b`.
fn sub_magnitudes(a: &str, b: &str) -> String {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut out = Vec::new();
    let mut borrow = 0i8;
    for i in 0..a.len() {
        let da = (a[a.len() - 1 - i] - b'0') as i8;
        let db = if i < b.len() {
            (b[b.len() - 1 - i] - b'0') as i8
        } else {
            0
        };
        let mut d = da - db - borrow;
        borrow = 0;
        if d < 0 {
            d += 10;
            borrow = 1;
        }
        out.push(b'0' + d as u8);
    }
    out.reverse();
    let text = String::from_utf8(out).expect("digits");
    text.trim_start_matches('0').to_owned()
}

/// JSON value equality, the contract of history transactions: objects by key set (order
/// ignored; trees from [`model_item`] have no repeated keys), arrays in order, strings by
/// content, numbers by exact numeric value.
pub fn value_eq(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Null, Json::Null) => true,
        (Json::Bool(x), Json::Bool(y)) => x == y,
        (Json::Num(x), Json::Num(y)) => number_value(x) == number_value(y),
        (Json::Str(x), Json::Str(y)) => decoded(x) == decoded(y),
        (Json::Arr(x), Json::Arr(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| value_eq(p, q))
        }
        (Json::Obj(x), Json::Obj(y)) => {
            x.len() == y.len()
                && x.iter().all(|(k, v)| {
                    let key = decoded(k);
                    y.iter()
                        .find(|(k2, _)| decoded(k2) == key)
                        .is_some_and(|(_, v2)| value_eq(v, v2))
                })
        }
        _ => false,
    }
}

#[test]
fn number_values() {
    let same = [
        ("1", "1.0"),
        ("1", "1e0"),
        ("1", "10e-1"),
        ("1", "0.1e1"),
        ("-0", "0"),
        ("1e400", "10e399"),
        ("12300", "123e2"),
        (
            "1e170141183460469231731687303715884105728",
            "10e170141183460469231731687303715884105727",
        ),
    ];
    for (a, b) in same {
        assert_eq!(number_value(a), number_value(b), "{a} {b}");
    }
    let different = [
        ("1", "2"),
        ("1", "-1"),
        ("18446744073709551617", "18446744073709551616"),
        ("1e170141183460469231731687303715884105728", "1"),
        (
            "1e100000000000000000000000000000000000000000",
            "1e-100000000000000000000000000000000000000000",
        ),
        ("0.1", "1"),
    ];
    for (a, b) in different {
        assert_ne!(number_value(a), number_value(b), "{a} {b}");
    }
}
