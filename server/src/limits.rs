//! Sane maximum sizes of what a request may carry, checked before anything is stored, with
//! errors that name the field.

use tonic::Status;

/// Largest encoded request message accepted by the services, in bytes.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;
/// Longest key of a project, environment, flag, segment or rule.
pub const MAX_KEY_LEN: usize = 256;
/// Longest name.
pub const MAX_NAME_LEN: usize = 256;
/// Longest description.
pub const MAX_DESCRIPTION_LEN: usize = 4096;
/// Most tags on a flag, and the longest tag.
pub const MAX_TAGS: usize = 64;
pub const MAX_TAG_LEN: usize = 128;
/// Most variations of a flag.
pub const MAX_VARIATIONS: usize = 1000;
/// Most targets, rules, prerequisites or key lists of one flag or segment.
pub const MAX_ITEMS: usize = 5000;
/// Most values in one target, key list or clause.
pub const MAX_VALUES: usize = 100_000;
/// Most clauses in one rule.
pub const MAX_CLAUSES: usize = 100;
/// Longest ruleset JSON accepted by an import, in bytes.
pub const MAX_IMPORT_BYTES: usize = MAX_REQUEST_BYTES;
/// Longest retention of raw events that can be set, in days (ten years; 0 keeps them
/// forever).
pub const MAX_RETENTION_DAYS: u32 = 3650;

/// A retention of raw events in days: 0 (forever) to ten years.
pub fn retention_days(field: &str, days: u32) -> Result<(), Status> {
    if days > MAX_RETENTION_DAYS {
        return Err(Status::invalid_argument(format!(
            "{field}: {days} days is more than the most, {MAX_RETENTION_DAYS} (0 keeps raw events forever)"
        )));
    }
    Ok(())
}

/// A required key: 1 to 256 characters of `A-Z a-z 0-9 . _ -`.
pub fn key(field: &str, value: &str) -> Result<(), Status> {
    if value.is_empty() {
        return Err(Status::invalid_argument(format!("{field}: is required")));
    }
    if value.len() > MAX_KEY_LEN {
        return Err(Status::invalid_argument(format!(
            "{field}: is {} characters long, the most is {MAX_KEY_LEN}",
            value.len()
        )));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(Status::invalid_argument(format!(
            "{field}: `{}` is not allowed in a key (use A-Z a-z 0-9 . _ -)",
            c.escape_default()
        )));
    }
    Ok(())
}

/// A text of at most `max` bytes.
pub fn text(field: &str, value: &str, max: usize) -> Result<(), Status> {
    if value.len() > max {
        return Err(Status::invalid_argument(format!(
            "{field}: is {} bytes long, the most is {max}",
            value.len()
        )));
    }
    Ok(())
}

/// A list of at most `max` items.
pub fn count(field: &str, len: usize, max: usize) -> Result<(), Status> {
    if len > max {
        return Err(Status::invalid_argument(format!(
            "{field}: has {len} items, the most is {max}"
        )));
    }
    Ok(())
}

/// Name and description of a resource.
pub fn name_and_description(name: &str, description: &str) -> Result<(), Status> {
    text("name", name, MAX_NAME_LEN)?;
    text("description", description, MAX_DESCRIPTION_LEN)
}

/// A flag's tags.
pub fn tags(tags: &[String]) -> Result<(), Status> {
    count("tags", tags.len(), MAX_TAGS)?;
    for (i, tag) in tags.iter().enumerate() {
        if tag.is_empty() {
            return Err(Status::invalid_argument(format!("tags[{i}]: is empty")));
        }
        text(&format!("tags[{i}]"), tag, MAX_TAG_LEN)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_with_the_field_name() {
        assert!(key("key", "new-checkout_2.0").is_ok());
        let err = key("project_key", "").unwrap_err();
        assert!(err.message().starts_with("project_key: "));
        let err = key("key", "a b").unwrap_err();
        assert!(err.message().contains("key: ` `"));
        assert!(key("key", &"x".repeat(257)).is_err());
    }
}
