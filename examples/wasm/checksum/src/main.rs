//! SHA-256 of the input, as `sha256sum` prints it, into `<input name>.sha256`. It reads the
//! input in 64 KiB pieces, so a file of any size fits in a small memory limit: the module for
//! large objects dropped into a bucket.

use sha2::{Digest, Sha256};
use std::io::Read;

fn main() {
    oscar_guest::run(|input| {
        let mut file = std::fs::File::open(input.path())?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        loop {
            let n = file.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            total += n as u64;
        }
        let digest = hasher.finalize();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        let name = format!("{}.sha256", input.file_name());
        oscar_guest::write_output(&name, format!("{hex}  {}\n", input.file_name()))?;
        println!("{total} bytes hashed");
        Ok(())
    })
}
