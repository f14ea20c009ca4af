//! Rewriting some top-level fields of a JSON object without parsing the rest into a tree: the
//! object is split into (name, raw JSON text) pairs borrowed from the input, and only the
//! fields a plugin replaces are written anew.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// A field name, borrowed from the input unless it had escapes.
struct Name<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// Writes a JSON object to `out` member by member as it is read, each value either as it was
/// or as `edit` replaces it.
struct Edit<'o, F> {
    out: &'o mut Vec<u8>,
    edit: F,
}

impl<'de, 'a, F> DeserializeSeed<'de> for Edit<'_, F>
where
    F: FnMut(&str, &RawValue) -> Option<Cow<'a, str>>,
{
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, 'a, F> Visitor<'de> for Edit<'_, F>
where
    F: FnMut(&str, &RawValue) -> Option<Cow<'a, str>>,
{
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        self.out.push(b'{');
        let mut first = true;
        while let Some((name, raw)) = map.next_entry::<Name<'de>, &'de RawValue>()? {
            if !first {
                self.out.push(b',');
            }
            first = false;
            // Writing a str into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *self.out, name.0.as_ref());
            self.out.push(b':');
            match (self.edit)(&name.0, raw) {
                Some(new) => self.out.extend_from_slice(new.as_bytes()),
                None => self.out.extend_from_slice(raw.get().as_bytes()),
            }
        }
        self.out.push(b'}');
        Ok(())
    }
}

/// `json` with the fields `edit` returns new JSON text for replaced, everything else as it
/// was (compact). `None` when `json` is not a JSON object.
pub fn edit_fields<'a>(
    json: &[u8],
    edit: impl FnMut(&str, &RawValue) -> Option<Cow<'a, str>>,
) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(json.len() + 16);
    let mut de = serde_json::Deserializer::from_slice(json);
    Edit {
        out: &mut out,
        edit,
    }
    .deserialize(&mut de)
    .ok()?;
    de.end().ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_edited_fields_change() {
        let json = br#"{"a": 1, "b\"c": "x", "d": {"e": [1, 2]}}"#;
        let out = edit_fields(json, |name, raw| {
            (name == "b\"c").then(|| {
                assert_eq!(raw.get(), "\"x\"");
                Cow::Borrowed("\"y\"")
            })
        })
        .unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"a":1,"b\"c":"y","d":{"e": [1, 2]}}"#
        );
    }

    #[test]
    fn non_objects_are_none() {
        for json in [&b"[1]"[..], b"\"s\"", b"{", b"not json"] {
            assert!(edit_fields(json, |_, _| None).is_none());
        }
    }
}
