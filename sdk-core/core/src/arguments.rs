//! Arguments as bindings receive them (names, numbers of seconds or milliseconds), checked
//! once here so that every language refuses the same input with the same message.

use std::time::Duration;

use crate::ValueKind;
use crate::error::Failure;

/// The value kind named `bool`, `string`, `number` or `json`; `INVALID_ARGUMENT` naming
/// `field` otherwise.
pub fn value_kind(name: &str, field: &str) -> Result<ValueKind, Failure> {
    ValueKind::from_name(name).ok_or_else(|| {
        Failure::invalid_argument(
            field,
            format!("expected 'bool', 'string', 'number' or 'json', got {name:?}"),
        )
    })
}

/// A duration given in seconds: finite and not negative, else `INVALID_ARGUMENT` naming
/// `field`.
pub fn seconds(amount: f64, field: &str) -> Result<Duration, Failure> {
    duration(amount, 1.0, "seconds", field)
}

/// A duration given in milliseconds: finite and not negative, else `INVALID_ARGUMENT`
/// naming `field`.
pub fn millis(amount: f64, field: &str) -> Result<Duration, Failure> {
    duration(amount, 1000.0, "milliseconds", field)
}

fn duration(amount: f64, per_second: f64, unit: &str, field: &str) -> Result<Duration, Failure> {
    if !(amount.is_finite() && amount >= 0.0) {
        return Err(Failure::invalid_argument(
            field,
            format!("expected a finite number of {unit} >= 0, got {amount}"),
        ));
    }
    Duration::try_from_secs_f64(amount / per_second)
        .map_err(|err| Failure::invalid_argument(field, err))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    #[test]
    fn refuses_what_is_not_a_duration_or_a_kind() {
        assert_eq!(seconds(1.5, "t").unwrap(), Duration::from_millis(1500));
        assert_eq!(millis(250.0, "t").unwrap(), Duration::from_millis(250));
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            let failure = seconds(bad, "timeout").unwrap_err();
            assert_eq!(failure.code, ErrorCode::InvalidArgument);
            assert!(
                failure.message.starts_with("timeout: "),
                "{}",
                failure.message
            );
        }
        assert!(millis(1e300, "t").is_err());
        assert_eq!(value_kind("json", "type").unwrap(), ValueKind::Json);
        let failure = value_kind("int", "type").unwrap_err();
        assert_eq!(
            failure.message,
            "type: expected 'bool', 'string', 'number' or 'json', got \"int\""
        );
    }
}
