//! Named parameters: presence and type checks (docs/protocol.md §2.1 and §5.2 check 1) with a reason that names
//! the parameter.

use serde_json::{Map, Value};

use super::error::RpcError;

/// Longest `userInfo` accepted; it ends up in every signed license.
pub const MAX_USER_INFO_CHARS: usize = 1024;

/// The `params` member of a request, by name.
pub struct Params<'a> {
    method: &'a str,
    named: Option<&'a Map<String, Value>>,
}

impl<'a> Params<'a> {
    /// Wraps `params`. Absent, `null`, `[]` and `{}` mean "no parameters"; a non-empty
    /// array is refused because methods take their parameters by name.
    pub fn new(method: &'a str, params: Option<&'a Value>) -> Result<Params<'a>, RpcError> {
        let named = match params {
            None | Some(Value::Null) => None,
            Some(Value::Object(map)) => Some(map),
            Some(Value::Array(items)) if items.is_empty() => None,
            Some(Value::Array(_)) => {
                return Err(RpcError::invalid_params(format!(
                    "{method} takes its parameters by name: send params as an object"
                )))
            }
            Some(_) => {
                return Err(RpcError::invalid_params(
                    "params must be an object (or absent)".to_string(),
                ))
            }
        };
        Ok(Params { method, named })
    }

    fn get(&self, name: &str) -> Option<&'a Value> {
        self.named.and_then(|map| map.get(name))
    }

    /// A required string.
    pub fn required_str(&self, name: &str) -> Result<&'a str, RpcError> {
        match self.get(name) {
            Some(Value::String(text)) => Ok(text),
            None | Some(Value::Null) => Err(RpcError::invalid_params(format!(
                "{} requires parameter {name:?}",
                self.method
            ))),
            Some(other) => Err(wrong_type(name, "a string", other)),
        }
    }

    /// An optional string: absent and `null` are both "not given".
    pub fn optional_str(&self, name: &str) -> Result<Option<&'a str>, RpcError> {
        match self.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(other) => Err(wrong_type(name, "a string", other)),
        }
    }

    /// A string that must be present but may be `null` (e.g. `validUntil: null` asks for the
    /// longest borrow allowed).
    pub fn required_nullable_str(&self, name: &str) -> Result<Option<&'a str>, RpcError> {
        match self.get(name) {
            None => Err(RpcError::invalid_params(format!(
                "{} requires parameter {name:?} (a date, or null for the longest borrow allowed)",
                self.method
            ))),
            Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(other) => Err(wrong_type(name, "a string or null", other)),
        }
    }
}

impl<'a> Params<'a> {
    /// An optional array of strings: absent and `null` are both "not given".
    pub fn optional_str_array(&self, name: &str) -> Result<Option<Vec<&'a str>>, RpcError> {
        match self.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(text) => Ok(text.as_str()),
                    other => Err(wrong_type(name, "an array of strings", other)),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(wrong_type(name, "an array of strings", other)),
        }
    }
}

impl<'a> Params<'a> {
    /// A parameter as given (any JSON), `None` when absent.
    pub fn raw(&self, name: &str) -> Option<&'a Value> {
        self.get(name)
    }

    /// A required parameter of any JSON type but `null`.
    pub fn required_raw(&self, name: &str) -> Result<&'a Value, RpcError> {
        match self.get(name) {
            None | Some(Value::Null) => Err(RpcError::invalid_params(format!(
                "{} requires parameter {name:?}",
                self.method
            ))),
            Some(value) => Ok(value),
        }
    }

    /// An optional boolean: absent and `null` are `false`.
    pub fn flag(&self, name: &str) -> Result<bool, RpcError> {
        match self.get(name) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(flag)) => Ok(*flag),
            Some(other) => Err(wrong_type(name, "a boolean", other)),
        }
    }

    /// An optional boolean: absent and `null` are "not given".
    pub fn optional_bool(&self, name: &str) -> Result<Option<bool>, RpcError> {
        match self.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(flag)) => Ok(Some(*flag)),
            Some(other) => Err(wrong_type(name, "a boolean", other)),
        }
    }

    /// A required whole number (no sign, no fraction).
    pub fn required_u64(&self, name: &str) -> Result<u64, RpcError> {
        match self.required_raw(name)? {
            Value::Number(n) => n.as_u64().ok_or_else(|| {
                RpcError::invalid_params(format!(
                    "parameter {name:?} must be a whole number of 0 or more, got {n}"
                ))
            }),
            other => Err(wrong_type(name, "a number", other)),
        }
    }

    /// An optional whole number in `range`.
    pub fn optional_u64_in(
        &self,
        name: &str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Option<u64>, RpcError> {
        match self.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(value) if range.contains(&value) => Ok(Some(value)),
                _ => Err(RpcError::invalid_params(format!(
                    "parameter {name:?} must be a whole number from {} to {}, got {n}",
                    range.start(),
                    range.end()
                ))),
            },
            Some(other) => Err(wrong_type(name, "a number", other)),
        }
    }
}

fn wrong_type(name: &str, expected: &str, got: &Value) -> RpcError {
    let kind = match got {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    RpcError::invalid_params(format!("parameter {name:?} must be {expected}, got {kind}"))
}
