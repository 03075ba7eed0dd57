//! Splits a text file into one file per line, plus a summary: several outputs, so the
//! response is a zip. `lines/0001.txt`, `lines/0002.txt`, ... and `summary.json`.
//! The service variable `PREFIX` is written before every line.

fn main() {
    oscar_guest::run(|input| {
        let text = input.read_to_string()?;
        let prefix = oscar_guest::var("PREFIX").unwrap_or_default();
        let mut count = 0;
        for (i, line) in text.lines().enumerate() {
            oscar_guest::write_output(
                &format!("lines/{:04}.txt", i + 1),
                format!("{prefix}{line}\n"),
            )?;
            count += 1;
        }
        oscar_guest::write_output(
            "summary.json",
            format!("{{\"lines\": {count}, \"bytes\": {}}}\n", text.len()),
        )?;
        Ok(())
    })
}
