//! Upper-cases a text file: one input, one output file.

fn main() {
    oscar_guest::run(|input| {
        let bytes = input.read()?;
        // ASCII upper-casing keeps any byte sequence valid, text or not.
        oscar_guest::write_output("upper.txt", bytes.to_ascii_uppercase())?;
        println!("upper-cased {} bytes", bytes.len());
        Ok(())
    })
}
