//! Rewriting some top-level fields of a JSON object without parsing the rest into a tree: one
//! pass finds each member's name and the raw text of its value, and only the values a plugin
//! replaces are written anew; everything between them is copied as it was.
//!
//! The scan checks the object's structure (strings closed, escapes well-formed, numbers and
//! literals spelled right, brackets balanced) but does not build values, which is what makes it
//! cheaper than a JSON parser inside a plugin, where every instruction counts per record.

use std::borrow::Cow;

/// Nesting deeper than this is refused (as serde_json refuses past 128).
const MAX_DEPTH: usize = 128;

/// Bytes that end a plain run inside a string: the closing quote, a backslash, control bytes.
static STOP: [bool; 256] = {
    let mut stop = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        stop[b] = true;
        b += 1;
    }
    stop[b'"' as usize] = true;
    stop[b'\\' as usize] = true;
    stop
};

struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Scanner<'a> {
    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    #[inline(always)]
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.at += 1;
        }
    }

    #[inline(always)]
    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// A string from its opening quote; returns whether it had escapes.
    #[inline(always)]
    fn string(&mut self) -> Option<bool> {
        self.eat(b'"')?;
        let mut escaped = false;
        loop {
            while self.bytes.get(self.at).is_some_and(|&b| !STOP[b as usize]) {
                self.at += 1;
            }
            match *self.bytes.get(self.at)? {
                b'"' => {
                    self.at += 1;
                    return Some(escaped);
                }
                b'\\' => {
                    escaped = true;
                    self.at += 1;
                    match *self.bytes.get(self.at)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.at += 1,
                        b'u' => {
                            let hex = self.bytes.get(self.at + 1..self.at + 5)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            self.at += 5;
                        }
                        _ => return None,
                    }
                }
                // A control byte.
                _ => return None,
            }
        }
    }

    #[inline(always)]
    fn digits(&mut self) -> Option<()> {
        let start = self.at;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
        (self.at > start).then_some(())
    }

    #[inline(always)]
    fn number(&mut self) -> Option<()> {
        let _ = self.eat(b'-');
        match self.peek()? {
            b'0' => self.at += 1,
            b'1'..=b'9' => self.digits()?,
            _ => return None,
        }
        if self.eat(b'.').is_some() {
            self.digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            self.digits()?;
        }
        Some(())
    }

    #[inline(always)]
    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at + word.len();
        (self.bytes.get(self.at..end)? == word).then(|| self.at = end)
    }

    /// Any JSON value.
    #[inline(always)]
    fn value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' => self.container(b'}', depth, true),
            b'[' => self.container(b']', depth, false),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number(),
        }
    }

    /// An object (members) or an array (values) from its opening bracket.
    #[inline(never)]
    fn container(&mut self, close: u8, depth: usize, members: bool) -> Option<()> {
        if depth >= MAX_DEPTH {
            return None;
        }
        self.at += 1;
        self.skip_ws();
        if self.eat(close).is_some() {
            return Some(());
        }
        loop {
            if members {
                self.string()?;
                self.skip_ws();
                self.eat(b':')?;
                self.skip_ws();
            }
            self.value(depth + 1)?;
            self.skip_ws();
            match self.peek()? {
                b',' => {
                    self.at += 1;
                    self.skip_ws();
                }
                b if b == close => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A member name: borrowed, or decoded when it has escapes.
    #[inline(always)]
    fn name(&mut self) -> Option<Cow<'a, str>> {
        let start = self.at;
        let escaped = self.string()?;
        let quoted = &self.text[start..self.at];
        if escaped {
            serde_json::from_str::<String>(quoted).ok().map(Cow::Owned)
        } else {
            Some(Cow::Borrowed(&quoted[1..quoted.len() - 1]))
        }
    }
}

/// Writes `json` to `out` with the fields `edit` returns new JSON text for replaced (`edit` gets
/// each top-level member's name and its value's raw JSON text), everything else as it was,
/// byte for byte. `false` (and `out` unusable) when `json` is not a JSON object.
pub fn edit_fields<'a>(
    json: &[u8],
    out: &mut Vec<u8>,
    edit: impl FnMut(&str, &str) -> Option<Cow<'a, str>>,
) -> bool {
    out.clear();
    out.reserve(json.len() + 16);
    scan(json, out, edit).is_some()
}

fn scan<'a>(
    json: &[u8],
    out: &mut Vec<u8>,
    mut edit: impl FnMut(&str, &str) -> Option<Cow<'a, str>>,
) -> Option<()> {
    let text = std::str::from_utf8(json).ok()?;
    let mut s = Scanner {
        text,
        bytes: json,
        at: 0,
    };
    // Input up to here is in `out` already.
    let mut copied = 0;
    s.skip_ws();
    s.eat(b'{')?;
    s.skip_ws();
    if s.eat(b'}').is_none() {
        loop {
            let name = s.name()?;
            s.skip_ws();
            s.eat(b':')?;
            s.skip_ws();
            let start = s.at;
            s.value(1)?;
            if let Some(new) = edit(&name, &text[start..s.at]) {
                out.extend_from_slice(&json[copied..start]);
                out.extend_from_slice(new.as_bytes());
                copied = s.at;
            }
            s.skip_ws();
            match s.peek()? {
                b',' => {
                    s.at += 1;
                    s.skip_ws();
                }
                b'}' => {
                    s.at += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    s.skip_ws();
    if s.at != json.len() {
        return None;
    }
    out.extend_from_slice(&json[copied..]);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edited(json: &str, field: &str, new: &'static str) -> Option<String> {
        let mut out = b"left over".to_vec();
        edit_fields(json.as_bytes(), &mut out, |name, _| {
            (name == field).then_some(Cow::Borrowed(new))
        })
        .then(|| String::from_utf8(out).unwrap())
    }

    #[test]
    fn only_the_edited_fields_change() {
        let json = br#"{"a": 1, "b\"c": "x", "d": {"e": [1, 2]}}"#;
        let mut seen = Vec::new();
        let mut out = Vec::new();
        assert!(edit_fields(json, &mut out, |name, raw| {
            seen.push((name.to_owned(), raw.to_owned()));
            (name == "b\"c").then_some(Cow::Borrowed("\"y\""))
        }));
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"a": 1, "b\"c": "y", "d": {"e": [1, 2]}}"#
        );
        assert_eq!(
            seen,
            [
                ("a".to_owned(), "1".to_owned()),
                ("b\"c".to_owned(), "\"x\"".to_owned()),
                ("d".to_owned(), r#"{"e": [1, 2]}"#.to_owned()),
            ]
        );
    }

    #[test]
    fn every_kind_of_value_is_skipped_whole() {
        let json = r#" { "s":"a\\b\u00e9\"", "n":-1.5e+3, "t":true, "f":false, "z":null,
            "o":{"x":[{}, [], "]"]}, "last": 0 } "#;
        let out = edited(json, "last", "1").unwrap();
        assert_eq!(out, json.replace("\"last\": 0", "\"last\": 1"));
        // The same text, read by serde_json, is the same object but for the edit.
        let a: serde_json::Value = serde_json::from_str(json).unwrap();
        let mut b: serde_json::Value = serde_json::from_str(&out).unwrap();
        b["last"] = 0.into();
        assert_eq!(a, b);
        assert_eq!(edited("{}", "a", "1").unwrap(), "{}");
    }

    #[test]
    fn what_is_not_one_json_object_is_none() {
        for json in [
            "[1]",
            "\"s\"",
            "{",
            "not json",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{\"a\":01}",
            "{\"a\":tru}",
            "{\"a\":\"x}",
            "{\"a\":\"\\q\"}",
            "{\"a\":\"\\u12\"}",
            "{\"a\":[1,2}",
            "{\"a\":1} x",
            "{\"a\":1}{}",
            "{\"a\":\"\u{1}\"}",
        ] {
            assert_eq!(edited(json, "a", "2"), None, "{json}");
        }
        assert!(!edit_fields(
            &[b'{', 0xff, b'}'],
            &mut Vec::new(),
            |_, _| None
        ));
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(200), "]".repeat(200));
        assert_eq!(edited(&deep, "a", "2"), None);
    }
}
