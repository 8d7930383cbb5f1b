//! dlib's serialization format, read with every field checked.
//!
//! dlib writes integers as a control byte (bit 7: negative, low four bits:
//! how many little-endian magnitude bytes follow) and the bytes; floats as
//! two such integers, a mantissa and a power-of-two exponent (with three
//! reserved exponents for the infinities and NaN); strings and vectors as
//! a length and their items; a `matrix` as its rows and columns (negated
//! in the current format) and its items row by row; a DNN `tensor` as a
//! version, four dimensions and raw little-endian 32-bit floats.
//!
//! A [`Reader`] walks a whole file held in memory. Each read names what it
//! reads, so a damaged file is reported as the field that was wrong and
//! the byte where it starts.

/// What is wrong with a model file, and where.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("the file ends at byte {offset}, inside {what}")]
    Truncated { offset: usize, what: &'static str },
    #[error("byte {offset}, {what}: an integer of {size} bytes where at most {max} fit")]
    IntegerSize {
        offset: usize,
        what: &'static str,
        size: u8,
        max: u8,
    },
    #[error("byte {offset}, {what}: {value} is outside {expected}")]
    OutOfRange {
        offset: usize,
        what: &'static str,
        value: i128,
        expected: String,
    },
    #[error(
        "byte {offset}, {what}: a float in dlib's old text format, which no pinned model uses"
    )]
    TextFloat { offset: usize, what: &'static str },
    #[error("byte {offset}, {what}: not a finite number")]
    NotFinite { offset: usize, what: &'static str },
    #[error("byte {offset}, {what}: found {found:?} where {expected} belongs")]
    Unexpected {
        offset: usize,
        what: &'static str,
        found: String,
        expected: String,
    },
    #[error("{what} are inconsistent: {detail}")]
    Inconsistent { what: &'static str, detail: String },
    #[error("{extra} bytes follow the end of the model at byte {offset}")]
    TrailingBytes { offset: usize, extra: usize },
}

/// A cursor over a serialized dlib object.
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    pub fn offset(&self) -> usize {
        self.at
    }

    /// The bytes not read yet: an upper bound on any count in the file,
    /// since every item takes at least one byte.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    /// Fails unless the whole file has been read.
    pub fn finish(&self) -> Result<(), FormatError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(FormatError::TrailingBytes {
                offset: self.at,
                extra,
            }),
        }
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], FormatError> {
        if self.remaining() < n {
            return Err(FormatError::Truncated {
                offset: self.bytes.len(),
                what,
            });
        }
        let out = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(out)
    }

    fn byte(&mut self, what: &'static str) -> Result<u8, FormatError> {
        Ok(self.take(1, what)?[0])
    }

    /// A packed integer of a type `max` bytes wide: its sign and magnitude.
    fn packed(&mut self, what: &'static str, max: u8) -> Result<(bool, u64), FormatError> {
        let offset = self.at;
        let control = self.byte(what)?;
        let size = control & 0x0F;
        if size == 0 || size > max || control & 0x70 != 0 {
            return Err(FormatError::IntegerSize {
                offset,
                what,
                size,
                max,
            });
        }
        let magnitude = self
            .take(usize::from(size), what)?
            .iter()
            .rev()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        Ok((control & 0x80 != 0, magnitude))
    }

    fn signed(&mut self, what: &'static str, bytes: u8) -> Result<i64, FormatError> {
        let offset = self.at;
        let (negative, magnitude) = self.packed(what, bytes)?;
        let bits = u32::from(bytes) * 8;
        let limit = 1u128 << (bits - 1);
        // dlib negates the type's value, so the magnitude must fit the type.
        if u128::from(magnitude) >= limit {
            return Err(FormatError::OutOfRange {
                offset,
                what,
                value: if negative {
                    -i128::from(magnitude)
                } else {
                    i128::from(magnitude)
                },
                expected: format!("a {bits}-bit signed integer"),
            });
        }
        let value = magnitude as i64;
        Ok(if negative { -value } else { value })
    }

    fn unsigned(&mut self, what: &'static str, bytes: u8) -> Result<u64, FormatError> {
        let offset = self.at;
        let (negative, magnitude) = self.packed(what, bytes)?;
        if negative {
            return Err(FormatError::OutOfRange {
                offset,
                what,
                value: -i128::from(magnitude),
                expected: "an unsigned integer".into(),
            });
        }
        Ok(magnitude)
    }

    /// A C++ `int`.
    pub fn int(&mut self, what: &'static str) -> Result<i32, FormatError> {
        Ok(self.signed(what, 4)? as i32)
    }

    /// A C++ `long` (or `long long`: both 8 bytes where dlib's models were made).
    pub fn long(&mut self, what: &'static str) -> Result<i64, FormatError> {
        self.signed(what, 8)
    }

    /// A C++ `unsigned long` or `size_t`.
    pub fn ulong(&mut self, what: &'static str) -> Result<u64, FormatError> {
        self.unsigned(what, 8)
    }

    /// A C++ `unsigned int`.
    pub fn uint(&mut self, what: &'static str) -> Result<u32, FormatError> {
        Ok(self.unsigned(what, 4)? as u32)
    }

    /// An integer that must equal `expected` (a version, a layer setting).
    pub fn expect_long(&mut self, what: &'static str, expected: i64) -> Result<(), FormatError> {
        let offset = self.at;
        let found = self.long(what)?;
        if found != expected {
            return Err(FormatError::OutOfRange {
                offset,
                what,
                value: i128::from(found),
                expected: format!("the value {expected}"),
            });
        }
        Ok(())
    }

    /// A count of items that each take at least one byte, checked against
    /// what is left of the file before anything is allocated for them.
    pub fn count(&mut self, what: &'static str) -> Result<usize, FormatError> {
        let offset = self.at;
        let n = self.ulong(what)?;
        if n > self.remaining() as u64 {
            return Err(FormatError::OutOfRange {
                offset,
                what,
                value: i128::from(n),
                expected: format!("the {} bytes left in the file", self.remaining()),
            });
        }
        Ok(n as usize)
    }

    /// A `bool`, written as the character `0` or `1`.
    pub fn bool(&mut self, what: &'static str) -> Result<bool, FormatError> {
        let offset = self.at;
        match self.byte(what)? {
            b'0' => Ok(false),
            b'1' => Ok(true),
            other => Err(FormatError::Unexpected {
                offset,
                what,
                found: format!("byte {other:#04x}"),
                expected: "'0' or '1'".into(),
            }),
        }
    }

    /// A float or double as dlib's mantissa and exponent; `T` is the type
    /// it is read into, which rounds the mantissa as `(T)mantissa` does.
    fn float_parts(&mut self, what: &'static str) -> Result<(i64, i16), FormatError> {
        let offset = self.at;
        match self.bytes.get(self.at) {
            None => {
                return Err(FormatError::Truncated {
                    offset: self.bytes.len(),
                    what,
                })
            }
            Some(b) if b & 0x70 != 0 => return Err(FormatError::TextFloat { offset, what }),
            Some(_) => {}
        }
        let mantissa = self.signed(what, 8)?;
        let exponent = self.signed(what, 2)? as i16;
        // 32000, 32001 and 32002 stand for +inf, -inf and NaN.
        if exponent >= 32000 {
            return Err(FormatError::NotFinite { offset, what });
        }
        Ok((mantissa, exponent))
    }

    pub fn f32(&mut self, what: &'static str) -> Result<f32, FormatError> {
        let offset = self.at;
        let (mantissa, exponent) = self.float_parts(what)?;
        let value = (f64::from(mantissa as f32) * 2f64.powi(i32::from(exponent))) as f32;
        if !value.is_finite() {
            return Err(FormatError::NotFinite { offset, what });
        }
        Ok(value)
    }

    pub fn f64(&mut self, what: &'static str) -> Result<f64, FormatError> {
        let offset = self.at;
        let (mantissa, exponent) = self.float_parts(what)?;
        let value = mantissa as f64 * 2f64.powi(i32::from(exponent));
        if !value.is_finite() {
            return Err(FormatError::NotFinite { offset, what });
        }
        Ok(value)
    }

    /// A `std::string`.
    pub fn string(&mut self, what: &'static str) -> Result<String, FormatError> {
        let n = self.count(what)?;
        Ok(String::from_utf8_lossy(self.take(n, what)?).into_owned())
    }

    /// A string that must be one of `allowed` (dlib's layer and version
    /// names); returns which.
    pub fn expect_string(
        &mut self,
        what: &'static str,
        allowed: &[&'static str],
    ) -> Result<&'static str, FormatError> {
        let offset = self.at;
        let found = self.string(what)?;
        allowed
            .iter()
            .find(|a| **a == found)
            .copied()
            .ok_or_else(|| FormatError::Unexpected {
                offset,
                what,
                found,
                expected: format!("one of {allowed:?}"),
            })
    }

    /// A column vector `matrix<float,0,1>`.
    pub fn column_f32(&mut self, what: &'static str) -> Result<Vec<f32>, FormatError> {
        let offset = self.at;
        let rows = self.long(what)?.unsigned_abs();
        let cols = self.long(what)?.unsigned_abs();
        if cols != 1 || rows > self.remaining() as u64 {
            return Err(FormatError::Unexpected {
                offset,
                what,
                found: format!("a {rows} × {cols} matrix"),
                expected: "a column vector".into(),
            });
        }
        (0..rows).map(|_| self.f32(what)).collect()
    }

    /// A DNN tensor: its dimensions (samples, channels, rows, columns) and
    /// values.
    pub fn tensor(&mut self, what: &'static str) -> Result<([usize; 4], Vec<f32>), FormatError> {
        let offset = self.at;
        let version = self.int(what)?;
        if version != 2 {
            return Err(FormatError::OutOfRange {
                offset,
                what,
                value: i128::from(version),
                expected: "tensor format version 2".into(),
            });
        }
        let mut dims = [0usize; 4];
        for d in dims.iter_mut() {
            let at = self.at;
            let v = self.long(what)?;
            *d = usize::try_from(v)
                .ok()
                .filter(|&v| v <= self.remaining())
                .ok_or(FormatError::OutOfRange {
                    offset: at,
                    what,
                    value: i128::from(v),
                    expected: "a tensor dimension that fits the file".into(),
                })?;
        }
        let n = dims
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n.checked_mul(4).is_some_and(|b| b <= self.remaining()))
            .ok_or(FormatError::Truncated {
                offset: self.bytes.len(),
                what,
            })?;
        let raw = self.take(n * 4, what)?;
        let values: Vec<f32> = raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if values.iter().any(|v| !v.is_finite()) {
            return Err(FormatError::NotFinite { offset, what });
        }
        Ok((dims, values))
    }

    /// An `alias_tensor`: only its dimensions (it views a layer's params).
    pub fn alias_tensor(&mut self, what: &'static str) -> Result<[usize; 4], FormatError> {
        let offset = self.at;
        let version = self.int(what)?;
        if version != 1 {
            return Err(FormatError::OutOfRange {
                offset,
                what,
                value: i128::from(version),
                expected: "alias_tensor format version 1".into(),
            });
        }
        let mut dims = [0usize; 4];
        for d in dims.iter_mut() {
            let at = self.at;
            let v = self.long(what)?;
            *d = usize::try_from(v).ok().filter(|&v| v < 1 << 24).ok_or(
                FormatError::OutOfRange {
                    offset: at,
                    what,
                    value: i128::from(v),
                    expected: "a tensor dimension".into(),
                },
            )?;
        }
        Ok(dims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_sign_and_little_endian_magnitude() {
        // 300 = 0x012C; -5; 0.
        let bytes = [0x02, 0x2C, 0x01, 0x81, 0x05, 0x01, 0x00];
        let mut r = Reader::new(&bytes);
        assert_eq!(r.long("a").unwrap(), 300);
        assert_eq!(r.int("b").unwrap(), -5);
        assert_eq!(r.ulong("c").unwrap(), 0);
        r.finish().unwrap();
    }

    #[test]
    fn a_negative_unsigned_or_an_oversized_integer_is_refused() {
        assert!(matches!(
            Reader::new(&[0x81, 0x05]).ulong("n"),
            Err(FormatError::OutOfRange { .. })
        ));
        assert!(matches!(
            Reader::new(&[0x05, 1, 2, 3, 4, 5]).int("n"),
            Err(FormatError::IntegerSize {
                size: 5,
                max: 4,
                ..
            })
        ));
        assert!(matches!(
            Reader::new(&[0x04, 0, 0, 0, 0x80]).int("n"),
            Err(FormatError::OutOfRange { .. })
        ));
    }

    #[test]
    fn floats_are_mantissa_times_a_power_of_two() {
        // 0.75 = 3 × 2^-2; -inf is exponent 32001.
        let mut r = Reader::new(&[0x01, 0x03, 0x81, 0x02, 0x01, 0x01, 0x02, 0x01, 0x7D]);
        assert_eq!(r.f32("x").unwrap(), 0.75);
        assert!(matches!(
            r.f32("y"),
            Err(FormatError::NotFinite { offset: 4, .. })
        ));
    }

    #[test]
    fn truncation_names_the_field() {
        let err = Reader::new(&[0x02, 0x01]).long("the version").unwrap_err();
        assert!(
            matches!(
                err,
                FormatError::Truncated {
                    what: "the version",
                    ..
                }
            ),
            "{err}"
        );
        let err = Reader::new(&[0x01, 0x09, b'x'])
            .string("a name")
            .unwrap_err();
        assert!(matches!(err, FormatError::OutOfRange { .. }), "{err}");
    }
}
