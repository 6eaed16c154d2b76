//! Bounds on a request body's JSON shape — nesting depth and string length — checked by one
//! pass over the bytes before anything parses them, so a deeply nested or huge-string body
//! costs no allocation and gets a precise reason.

/// How deep a request may nest arrays and objects (a batch of calls with object params
/// needs 3).
pub const DEFAULT_MAX_DEPTH: usize = 32;
/// The longest string (in bytes, as sent, escapes included) a request may hold. A coarse
/// cap: below it each field's own bound answers with the field's own error code (a host
/// id 36, a date 35, ...), which is what clients should see for anything realistic.
pub const DEFAULT_MAX_STRING_BYTES: usize = 64 * 1024;

/// The bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonShape {
    /// Deepest nesting of arrays and objects.
    pub max_depth: usize,
    /// Longest string, in bytes between its quotes.
    pub max_string_bytes: usize,
}

/// Which bound a body broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    /// Nested deeper than allowed.
    #[error("the request nests arrays and objects deeper than {max} levels (--max-json-depth)")]
    TooDeep {
        /// The bound.
        max: usize,
    },
    /// A string longer than allowed.
    #[error(
        "the request holds a string of more than {max} bytes at byte {at} (--max-string-bytes)"
    )]
    StringTooLong {
        /// The bound.
        max: usize,
        /// Where the string starts.
        at: usize,
    },
}

impl JsonShape {
    /// Checks the bounds. Malformed JSON passes here: the parser reports it with its own
    /// position. Brackets inside strings do not count.
    pub fn check(&self, body: &[u8]) -> Result<(), ShapeError> {
        let mut depth = 0usize;
        let mut in_string: Option<usize> = None;
        let mut escaped = false;
        for (at, &byte) in body.iter().enumerate() {
            if let Some(start) = in_string {
                if escaped {
                    escaped = false;
                } else if byte == b'\\' {
                    escaped = true;
                } else if byte == b'"' {
                    in_string = None;
                    continue;
                }
                if at - start > self.max_string_bytes {
                    return Err(ShapeError::StringTooLong {
                        max: self.max_string_bytes,
                        at: start,
                    });
                }
                continue;
            }
            match byte {
                b'"' => in_string = Some(at),
                b'[' | b'{' => {
                    depth += 1;
                    if depth > self.max_depth {
                        return Err(ShapeError::TooDeep {
                            max: self.max_depth,
                        });
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: JsonShape = JsonShape {
        max_depth: 3,
        max_string_bytes: 5,
    };

    #[test]
    fn a_batch_of_calls_with_object_params_fits() {
        let body = br#"[{"rpc":"2.0","p":{"a":"x"},"id":1}]"#;
        assert_eq!(SHAPE.check(body), Ok(()));
        assert_eq!(
            SHAPE.check(br#"[[[[1]]]]"#),
            Err(ShapeError::TooDeep { max: 3 })
        );
    }

    #[test]
    fn brackets_and_escaped_quotes_inside_strings_do_not_count() {
        assert_eq!(SHAPE.check(br#"{"a":"[[[["}"#), Ok(()));
        assert_eq!(SHAPE.check(br#"{"a":"\"{{"}"#), Ok(()));
        assert_eq!(
            SHAPE.check(br#"{"a":"\"{{{{{"}"#),
            Err(ShapeError::StringTooLong { max: 5, at: 5 })
        );
    }

    #[test]
    fn a_long_string_is_caught_even_unterminated() {
        assert_eq!(
            SHAPE.check(br#"{"abcdefgh"#),
            Err(ShapeError::StringTooLong { max: 5, at: 1 })
        );
        // Exactly at the bound passes.
        assert_eq!(SHAPE.check(br#"{"abcde":1}"#), Ok(()));
    }
}
