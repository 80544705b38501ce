//! Reading one CBOR item at a time, as authenticator data needs: its COSE key and its
//! extension outputs follow each other with no length prefix.

use ciborium::Value;

use crate::limits::CBOR_NESTING_DEPTH_MAX;

/// The item could not be read: truncated, not well-formed, or nested deeper than
/// [`CBOR_NESTING_DEPTH_MAX`]. Callers say which item it was.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct NotCbor;

/// Reads exactly one CBOR data item from the front of `input`, advances `input` past it,
/// and returns the item with its encoded bytes.
pub(crate) fn read_item<'a>(input: &mut &'a [u8]) -> Result<(Value, &'a [u8]), NotCbor> {
    let start: &'a [u8] = input;
    let mut reader: &'a [u8] = start;
    let value: Value =
        ciborium::de::from_reader_with_recursion_limit(&mut reader, CBOR_NESTING_DEPTH_MAX)
            .map_err(|_| NotCbor)?;
    let (item, rest) = start.split_at(start.len() - reader.len());
    *input = rest;
    Ok((value, item))
}

/// Reads a buffer that must hold exactly one CBOR item.
pub(crate) fn read_whole(bytes: &[u8]) -> Result<Value, NotCbor> {
    let mut input = bytes;
    let (value, _) = read_item(&mut input)?;
    if input.is_empty() {
        Ok(value)
    } else {
        Err(NotCbor)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn encode(value: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(value, &mut out).unwrap();
        out
    }

    #[test]
    fn reads_exactly_one_item_and_leaves_the_rest() {
        let first = Value::Map(vec![(Value::from(1), Value::Bytes(vec![9; 40]))]);
        let second = Value::Array(vec![Value::from("x")]);
        let mut bytes = encode(&first);
        let first_len = bytes.len();
        bytes.extend(encode(&second));
        bytes.push(0xff);

        let mut input = &bytes[..];
        let (value, raw) = read_item(&mut input).unwrap();
        assert_eq!(value, first);
        assert_eq!(raw, &bytes[..first_len]);
        let (value, _) = read_item(&mut input).unwrap();
        assert_eq!(value, second);
        assert_eq!(input, &[0xff]);
    }

    #[test]
    fn indefinite_length_items_end_at_their_break() {
        // [_ 1, 2] followed by 0x07
        let bytes = [0x9f, 0x01, 0x02, 0xff, 0x07];
        let mut input = &bytes[..];
        let (value, raw) = read_item(&mut input).unwrap();
        assert_eq!(value, Value::Array(vec![Value::from(1), Value::from(2)]));
        assert_eq!(raw.len(), 4);
        assert_eq!(input, &[0x07]);
    }

    #[test]
    fn refuses_deep_nesting_truncation_and_trailing_bytes() {
        let mut deep = vec![0x81; CBOR_NESTING_DEPTH_MAX + 2];
        deep.push(0x00);
        assert_eq!(read_whole(&deep), Err(NotCbor));

        let bytes = encode(&Value::Bytes(vec![1; 10]));
        assert_eq!(read_whole(&bytes[..bytes.len() - 1]), Err(NotCbor));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(read_whole(&trailing), Err(NotCbor));
        assert!(read_whole(&bytes).is_ok());
        assert_eq!(read_whole(&[]), Err(NotCbor));
    }
}
