//! Human output: aligned tables and key-value blocks. Scripts use `--json` instead.

use serde_json::Value;

/// A cell's text: strings as they are, null as "-", lists joined with commas.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Prints rows under headers, each column as wide as its widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(c);
            } else {
                text.push_str(&format!("{c:<w$}  "));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// `key: value` lines for one record.
pub fn record(record: &Value) -> String {
    const FIELDS: &[&str] = &[
        "id",
        "name",
        "description",
        "hint",
        "permissions",
        "status",
        "created_at",
        "expires_at",
        "revoked_at",
        "revoke_reason",
        "last_used_at",
    ];
    let width = FIELDS.iter().map(|f| f.len()).max().unwrap_or(0) + 1;
    FIELDS
        .iter()
        .map(|f| format!("{:<width$} {}\n", format!("{f}:"), cell(&record[*f])))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align() {
        let t = table(
            &["ID", "NAME"],
            &[
                vec!["a".into(), "first".into()],
                vec!["bbbb".into(), "x".into()],
            ],
        );
        assert_eq!(t, "ID    NAME\na     first\nbbbb  x\n");
    }

    #[test]
    fn cells() {
        assert_eq!(cell(&json!(null)), "-");
        assert_eq!(cell(&json!(["a", "b"])), "a,b");
        assert_eq!(cell(&json!("x")), "x");
    }
}
