//! Converts a CSV file with a header row into JSON: an array with one object per row, keyed
//! by the header's names, in the file's column order (`<input stem>.json`). `DELIMITER`
//! (service variable, one character, default `,`) reads `;`- or tab-separated files too.
//! Values stay strings: CSV has no types, and guessing them loses data such as leading zeros.

fn main() {
    oscar_guest::run(|input| {
        let delimiter = match oscar_guest::var("DELIMITER").as_deref() {
            None | Some("") => b',',
            Some("\\t") | Some("\t") => b'\t',
            Some(d) if d.len() == 1 => d.as_bytes()[0],
            Some(d) => {
                return Err(oscar_guest::Error::msg(format!(
                    "DELIMITER must be one ASCII character, not {d:?}"
                ))
                .into());
            }
        };
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .from_path(input.path())?;
        let headers = reader.headers()?.clone();
        let mut rows = Vec::new();
        for (i, record) in reader.records().enumerate() {
            let record =
                record.map_err(|e| oscar_guest::Error::msg(format!("row {}: {e}", i + 2)))?;
            let row: serde_json::Map<String, serde_json::Value> = headers
                .iter()
                .zip(record.iter())
                .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
                .collect();
            rows.push(serde_json::Value::Object(row));
        }
        let mut json = serde_json::to_vec_pretty(&rows)?;
        json.push(b'\n');
        let name = format!("{}.json", input.stem());
        oscar_guest::write_output(&name, json)?;
        println!("{name}: {} rows, {} columns", rows.len(), headers.len());
        Ok(())
    })
}
