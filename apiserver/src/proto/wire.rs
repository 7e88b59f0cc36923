//! The protobuf wire format, as much of it as Kubernetes' messages use: varints and
//! length-delimited fields (strings, bytes, embedded messages, map entries). No fixed-width or
//! packed fields occur in the kinds served.

/// A field as read: its number and value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Value<'a> {
    Varint(u64),
    Delimited(&'a [u8]),
    /// Fixed-width values are skipped by the decoder (no served field has one).
    Fixed,
}

/// Reads the fields of one message in order.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self
                .rest
                .split_first()
                .ok_or("a varint runs past the end of the message")?;
            self.rest = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a varint is longer than ten bytes".into())
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], String> {
        if len > self.rest.len() {
            return Err(format!(
                "a field of {len} bytes runs past the end of the message ({} left)",
                self.rest.len()
            ));
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(taken)
    }

    /// The next field, or None at the end.
    pub(crate) fn next_field(&mut self) -> Result<Option<(u32, Value<'a>)>, String> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let number = u32::try_from(key >> 3).map_err(|_| "a field number is out of range")?;
        if number == 0 {
            return Err("a field has number 0".into());
        }
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| "a length is out of range")?;
                Value::Delimited(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Value::Fixed
            }
            other => {
                return Err(format!(
                    "field {number} has wire type {other}, which is not supported"
                ));
            }
        };
        Ok(Some((number, value)))
    }
}

/// Writes fields into a buffer.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    pub(crate) bytes: Vec<u8>,
}

impl Writer {
    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            // Truncation intended: the low seven bits, with the continuation bit.
            #[allow(clippy::cast_possible_truncation)]
            self.bytes.push((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        #[allow(clippy::cast_possible_truncation)]
        self.bytes.push(value as u8);
    }

    /// A field's key: its number and wire type (0: varint, 2: length-delimited).
    fn key(&mut self, number: u32, wire: u64) {
        self.varint(u64::from(number) << 3 | wire);
    }

    /// A varint field (int64, int32 and bool are all varints; negatives as two's complement).
    pub(crate) fn uint(&mut self, number: u32, value: u64) {
        self.key(number, 0);
        self.varint(value);
    }

    /// A length-delimited field.
    pub(crate) fn delimited(&mut self, number: u32, bytes: &[u8]) {
        self.key(number, 2);
        self.varint(bytes.len() as u64);
        self.bytes.extend_from_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_their_edges() {
        for value in [
            0,
            1,
            127,
            128,
            300,
            u64::from(u32::MAX),
            u64::MAX,
            (-5i64).cast_unsigned(),
        ] {
            let mut w = Writer::default();
            w.uint(7, value);
            let mut r = Reader::new(&w.bytes);
            assert_eq!(r.next_field(), Ok(Some((7, Value::Varint(value)))));
            assert_eq!(r.next_field(), Ok(None));
        }
    }

    #[test]
    fn delimited_fields_and_their_lengths() {
        let mut w = Writer::default();
        w.delimited(1, b"name");
        w.delimited(300, &[0u8; 200]);
        let mut r = Reader::new(&w.bytes);
        assert_eq!(r.next_field(), Ok(Some((1, Value::Delimited(b"name")))));
        assert!(matches!(r.next_field(), Ok(Some((300, Value::Delimited(b)))) if b.len() == 200));
    }

    #[test]
    fn truncated_and_malformed_input_is_an_error_not_a_panic() {
        // A length past the end, a varint cut short, an eleven-byte varint, field number 0,
        // wire types 3 and 4 (groups).
        for bad in [
            &[0x0a, 0x05, b'a'][..],
            &[0x08, 0x80],
            &[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ],
            &[0x00, 0x01],
            &[0x0b],
            &[0x0c],
        ] {
            let mut r = Reader::new(bad);
            let result = (|| {
                while r.next_field()?.is_some() {}
                Ok::<(), String>(())
            })();
            assert!(result.is_err(), "{bad:?} was read");
        }
    }

    #[test]
    fn fixed_width_fields_are_skipped() {
        let mut bytes = vec![0x09];
        bytes.extend_from_slice(&[1; 8]);
        bytes.extend_from_slice(&[0x15, 1, 2, 3, 4, 0x18, 0x01]);
        let mut r = Reader::new(&bytes);
        assert_eq!(r.next_field(), Ok(Some((1, Value::Fixed))));
        assert_eq!(r.next_field(), Ok(Some((2, Value::Fixed))));
        assert_eq!(r.next_field(), Ok(Some((3, Value::Varint(1)))));
    }
}
