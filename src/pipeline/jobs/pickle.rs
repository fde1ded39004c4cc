//! Python's pickle, written for exactly one shape: RQ's job data, the tuple
//! `(function_name, None, (argument,), {})` whose argument is a JSON document (the `json` record)
//! decoded as Python's `json.loads` would — dicts in document order, lists, strings, ints, floats,
//! booleans and `None`.
//!
//! Hand-written because that shape is all RQ needs and no Rust crate writes pickle that a stock
//! Python reads without a custom class on the Python side: serde-pickle targets protocol 3 and maps
//! Rust types, not a JSON document's order, and pulling in a general serialiser for one fixed tuple
//! would be more code to trust than these opcodes. The stream is protocol 4 (`pickle.loads` reads
//! it on Python 3.4 and later, RQ's default serializer's own `HIGHEST_PROTOCOL` is 5, a superset):
//! the opcodes Python's own pickler writes for these types, without the optional framing and memo
//! (nothing in a tree refers back): Python's `pickletools.optimize(pickle.dumps(x, protocol=4))`
//! less its FRAME opcode. tests/job_queues.rs checks that `pickle.loads` of RQ's worker side gives
//! the object RQ's own client pickles.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

const PROTO: u8 = 0x80;
const STOP: u8 = b'.';
const MARK: u8 = b'(';
const NONE: u8 = b'N';
const NEWTRUE: u8 = 0x88;
const NEWFALSE: u8 = 0x89;
const BININT1: u8 = b'K';
const BININT2: u8 = b'M';
const BININT: u8 = b'J';
const LONG1: u8 = 0x8a;
const BINFLOAT: u8 = b'G';
const SHORT_BINUNICODE: u8 = 0x8c;
const BINUNICODE: u8 = b'X';
const BINUNICODE8: u8 = 0x8d;
const EMPTY_DICT: u8 = b'}';
const SETITEMS: u8 = b'u';
const EMPTY_LIST: u8 = b']';
const APPENDS: u8 = b'e';
const TUPLE1: u8 = 0x85;
const TUPLE: u8 = b't';

/// Appends the pickle of `(function, None, (json_loads(argument),), {})` to `out`. `argument` is
/// serde_json's output for the record, so it is valid JSON; an error here is a bug.
pub fn write_call(function: &str, argument: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&[PROTO, 4, MARK]);
    write_str(function, out);
    out.push(NONE);
    let mut json = serde_json::Deserializer::from_slice(argument);
    Value(out)
        .deserialize(&mut json)
        .and_then(|()| json.end())
        .expect("the record is serde_json's own output");
    out.extend_from_slice(&[TUPLE1, EMPTY_DICT, TUPLE, STOP]);
}

fn write_str(s: &str, out: &mut Vec<u8>) {
    let len = s.len();
    if len < 256 {
        out.extend_from_slice(&[SHORT_BINUNICODE, len as u8]);
    } else if let Ok(len) = u32::try_from(len) {
        out.push(BINUNICODE);
        out.extend_from_slice(&len.to_le_bytes());
    } else {
        out.push(BINUNICODE8);
        out.extend_from_slice(&(len as u64).to_le_bytes());
    }
    out.extend_from_slice(s.as_bytes());
}

/// An int as Python's pickler writes it: the shortest of the fixed-width opcodes, else `LONG1`
/// with the minimal little-endian two's complement bytes.
fn write_int(n: i128, out: &mut Vec<u8>) {
    if let Ok(small) = u8::try_from(n) {
        out.extend_from_slice(&[BININT1, small]);
    } else if let Ok(small) = u16::try_from(n) {
        out.push(BININT2);
        out.extend_from_slice(&small.to_le_bytes());
    } else if let Ok(word) = i32::try_from(n) {
        out.push(BININT);
        out.extend_from_slice(&word.to_le_bytes());
    } else {
        let bytes = n.to_le_bytes();
        // Drop high bytes that only repeat the sign of the byte below them.
        let mut len = bytes.len();
        while len > 1 {
            let (top, below) = (bytes[len - 1], bytes[len - 2]);
            let sign_only = (top == 0 && below < 0x80) || (top == 0xff && below >= 0x80);
            if !sign_only {
                break;
            }
            len -= 1;
        }
        out.extend_from_slice(&[LONG1, len as u8]);
        out.extend_from_slice(&bytes[..len]);
    }
}

/// One JSON value, written as pickle as the deserializer visits it (no tree in between).
struct Value<'o>(&'o mut Vec<u8>);

impl<'de> DeserializeSeed<'de> for Value<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Value<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.0.push(NONE);
        Ok(())
    }

    fn visit_bool<E>(self, b: bool) -> Result<(), E> {
        self.0.push(if b { NEWTRUE } else { NEWFALSE });
        Ok(())
    }

    fn visit_i64<E>(self, n: i64) -> Result<(), E> {
        write_int(n.into(), self.0);
        Ok(())
    }

    fn visit_u64<E>(self, n: u64) -> Result<(), E> {
        write_int(n.into(), self.0);
        Ok(())
    }

    fn visit_f64<E>(self, x: f64) -> Result<(), E> {
        self.0.push(BINFLOAT);
        self.0.extend_from_slice(&x.to_be_bytes());
        Ok(())
    }

    fn visit_str<E>(self, s: &str) -> Result<(), E> {
        write_str(s, self.0);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let out = self.0;
        out.push(EMPTY_LIST);
        let mark = out.len();
        out.push(MARK);
        let mut items = 0;
        while seq.next_element_seed(Value(out))?.is_some() {
            items += 1;
        }
        if items == 0 {
            out.truncate(mark);
        } else {
            out.push(APPENDS);
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let out = self.0;
        out.push(EMPTY_DICT);
        let mark = out.len();
        out.push(MARK);
        let mut items = 0;
        while map.next_key_seed(Value(out))?.is_some() {
            map.next_value_seed(Value(out))?;
            items += 1;
        }
        if items == 0 {
            out.truncate(mark);
        } else {
            out.push(SETITEMS);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pickle_of(json: &str) -> Vec<u8> {
        let mut out = Vec::new();
        write_call("m.f", json.as_bytes(), &mut out);
        out
    }

    /// What Python 3.11 writes for `("m.f", None, (json.loads(doc),), {})`:
    /// `pickletools.optimize(pickle.dumps(obj, protocol=4))` (which drops the unused memo), less
    /// its FRAME opcode.
    #[test]
    fn opcodes_of_each_json_type() {
        let got = pickle_of(
            r#"{"a":[1,-1,255,256,65536,2147483648,-2147483649],"b":null,"c":true,"d":false,"e":1.5,"f":{},"g":[]}"#,
        );
        let mut want = vec![PROTO, 4, MARK, SHORT_BINUNICODE, 3];
        want.extend_from_slice(b"m.f");
        want.push(NONE);
        want.extend_from_slice(&[
            EMPTY_DICT,
            MARK,
            SHORT_BINUNICODE,
            1,
            b'a',
            EMPTY_LIST,
            MARK,
        ]);
        want.extend_from_slice(&[BININT1, 1]);
        want.extend_from_slice(&[BININT, 0xff, 0xff, 0xff, 0xff]);
        want.extend_from_slice(&[BININT1, 0xff]);
        want.extend_from_slice(&[BININT2, 0x00, 0x01]);
        want.extend_from_slice(&[BININT, 0x00, 0x00, 0x01, 0x00]);
        want.extend_from_slice(&[LONG1, 5, 0x00, 0x00, 0x00, 0x80, 0x00]);
        want.extend_from_slice(&[LONG1, 5, 0xff, 0xff, 0xff, 0x7f, 0xff]);
        want.push(APPENDS);
        want.extend_from_slice(&[SHORT_BINUNICODE, 1, b'b', NONE]);
        want.extend_from_slice(&[SHORT_BINUNICODE, 1, b'c', NEWTRUE]);
        want.extend_from_slice(&[SHORT_BINUNICODE, 1, b'd', NEWFALSE]);
        want.extend_from_slice(&[SHORT_BINUNICODE, 1, b'e', BINFLOAT]);
        want.extend_from_slice(&1.5f64.to_be_bytes());
        want.extend_from_slice(&[SHORT_BINUNICODE, 1, b'f', EMPTY_DICT]);
        want.extend_from_slice(&[SHORT_BINUNICODE, 1, b'g', EMPTY_LIST]);
        want.push(SETITEMS);
        want.extend_from_slice(&[TUPLE1, EMPTY_DICT, TUPLE, STOP]);
        assert_eq!(got, want);
    }

    #[test]
    fn long_strings_take_the_wider_opcode() {
        let s = "é".repeat(200);
        let got = pickle_of(&format!("\"{s}\""));
        let at = 3 + 2 + 3 + 1;
        assert_eq!(got[at], BINUNICODE);
        assert_eq!(&got[at + 1..at + 5], &400u32.to_le_bytes());
        assert_eq!(&got[at + 5..at + 405], s.as_bytes());
    }

    #[test]
    fn big_offsets_are_long1() {
        let mut out = Vec::new();
        write_int((1 << 53) + 1, &mut out);
        assert_eq!(out, [LONG1, 7, 1, 0, 0, 0, 0, 0, 0x20]);
        out.clear();
        write_int(i64::MAX.into(), &mut out);
        assert_eq!(
            out,
            [LONG1, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]
        );
        out.clear();
        write_int(u64::MAX.into(), &mut out);
        assert_eq!(
            out,
            [LONG1, 9, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00]
        );
    }
}
