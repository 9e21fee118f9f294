//! What every command prints: JSON, tables and times.

use serde_json::{Value, json};

use crate::convert::{self};

pub(crate) fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

/// Prints `value` as JSON with `--json`, else the line `text`.
pub(crate) fn print_json_or(json: bool, value: &Value, text: std::fmt::Arguments<'_>) {
    if json {
        print_json(value);
    } else {
        println!("{text}");
    }
}

/// Prints what a delete command removed: with `--json` `{"deleted": key}`, else the line
/// `deleted {what}`.
pub(crate) fn print_deleted(json: bool, key: &str, what: std::fmt::Arguments<'_>) {
    print_json_or(
        json,
        &json!({ "deleted": key }),
        format_args!("deleted {what}"),
    );
}

/// Prints a list: with `--json` an array of each item's `to_json`, else a table of each
/// item's `row` under `headers`.
pub(crate) fn print_list<T>(
    json: bool,
    items: &[T],
    to_json: impl Fn(&T) -> Value,
    headers: &[&str],
    row: impl Fn(&T) -> Vec<String>,
) {
    if json {
        print_json(&Value::Array(items.iter().map(to_json).collect()));
    } else {
        let rows: Vec<Vec<String>> = items.iter().map(row).collect();
        table(headers, &rows);
    }
}

/// Prints one item: with `--json` its `to_json`, else its `row` as a table under `headers`.
pub(crate) fn print_one<T>(
    json: bool,
    item: &T,
    to_json: impl Fn(&T) -> Value,
    headers: &[&str],
    row: impl Fn(&T) -> Vec<String>,
) {
    if json {
        print_json(&to_json(item));
    } else {
        table(headers, &[row(item)]);
    }
}

/// Prints rows under headers, in aligned columns.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        println!("{}", out.trim_end());
    };
    line(headers.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        line(row.clone());
    }
}

pub(crate) fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 40 {
        let cut: String = text.chars().take(37).collect();
        format!("{cut}...")
    } else {
        text
    }
}

pub(crate) fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

pub(crate) fn time(ts: Option<&prost_types::Timestamp>) -> String {
    ts.map_or_else(|| "-".to_owned(), convert::format_time)
}
